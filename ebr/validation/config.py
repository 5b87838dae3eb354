"""Thresholds of the data-quality checks run by `validate_raw` and `validate_samples`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ebr.settings import Section

CheckFamily = Literal[
    "contract", "schema", "type", "not_null", "enum", "range", "unique", "consistency", "timestamp",
    "references", "freshness", "volume", "drift", "sum",
]


class ValidationConfig(Section):
    """Volume, drift and sample-table thresholds; every default is documented in docs/validation.md."""

    trailing_days: int = Field(
        7, ge=1, le=90,
        description="days before D that form the history of the volume and drift checks (a week covers weekly "
        "seasonality)",
    )
    min_history_days: int = Field(
        1, ge=1,
        description="volume and drift checks are skipped, with a note in the report, when fewer earlier days exist",
    )
    volume_tolerance: float = Field(
        0.4, gt=0.0, lt=1.0,
        description="rows of day D of every fact table must lie within +/- this share of the trailing daily mean",
    )
    ctr_tolerance: float = Field(
        0.3, gt=0.0, lt=1.0,
        description="CTR of exposed impressions of D may differ from the trailing CTR by this share of it",
    )
    query_length_tolerance: float = Field(
        0.2, gt=0.0, lt=1.0,
        description="mean query length (characters) of D may differ from the trailing mean by this share of it",
    )
    category_psi_max: float = Field(
        0.25, gt=0.0,
        description="largest population stability index of the requests' query_category_leaf mix vs the trailing "
        "days; rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift",
    )
    psi_floor: float = Field(
        1e-4, gt=0.0, lt=0.01,
        description="share given to a category absent on one side, so the PSI stays finite",
    )
    probability_sum_tolerance: float = Field(
        1e-6, gt=0.0, lt=0.1, description="a probability column (negatives.prob) must sum to 1 within this"
    )
    warn_only: list[CheckFamily] = Field(
        default_factory=list,
        description="check families whose failures are reported as warnings and do not fail the run, "
        "e.g. ['drift']",
    )
    max_examples: int = Field(5, ge=1, le=100, description="unexpected rows quoted per failed check")
    data_docs: bool = Field(True, description="build Great Expectations Data Docs HTML under out_dir/data_docs")
