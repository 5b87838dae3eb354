"""Typed config of the evaluation step (metrics, evaluation set, baselines) and of the publish gate."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ebr.judgements.evalset import LabelDays
from ebr.judgements.metrics import parse_metric_key
from ebr.settings import Section


class EvaluateConfig(Section):
    """What the evaluation of day D computes: cut-offs, which labels count, baseline parameters."""

    ks: list[int] = Field([10, 50, 100, 200], description="cut-offs K of every @K metric; sorted, unique, >= 1")
    main_k: int = Field(100, ge=1, description="the K of the summary table in report.md; must be one of `ks`")
    label_days: LabelDays = Field(
        "up_to_day",
        description="which label partitions count: same_day (D only), up_to_day (a query's latest complete labels "
        "on or before D: reproducible) or any_day (the nearest complete day, earlier first on ties)",
    )
    max_requests: int | None = Field(
        30_000, ge=1,
        description="bound on the evaluation day's requests (a uniform sample by a stable hash of request_id, the "
        "ranker evaluation's rule): a `medium` day (30,000) is whole; a `large` day's 100,000 requests with "
        "every system's lists and features would not fit the step's memory. None = every request",
    )
    popularity_window_days: int | None = Field(
        None, ge=1, description="training days (before D) whose exposures rank the popularity baseline; None = all"
    )
    bm25_k1: float = Field(1.5, gt=0, description="BM25 term-frequency saturation (the lexical channel's default)")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalization (the lexical channel's default)")

    @field_validator("ks")
    @classmethod
    def _ks_valid(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("ks must hold at least one cut-off")
        if any(k < 1 for k in v):
            raise ValueError(f"ks must be >= 1, got {v}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _main_k_in_ks(self) -> EvaluateConfig:
        if self.main_k not in self.ks:
            raise ValueError(f"main_k={self.main_k} is not one of ks={self.ks}")
        return self


class GateConfig(Section):
    """The publish rule: the new model must not be worse than the champion on `keys` by more than `tolerance`."""

    keys: list[str] = Field(
        ["click_recall@100", "true_recall@100", "p_good@100", "filtered_share@100"],
        description="metric keys `name@K` the gate compares: coverage (click/true recall) and relevance (p_good; "
        "filtered_share, lower is better), so a bundle that recalls more but less relevant docs is refused",
    )
    tolerance: float = Field(0.005, ge=0, description="largest allowed absolute drop of a key metric")
    key_tolerances: dict[str, float] = Field(
        {"p_good@100": 0.01, "filtered_share@100": 0.01},
        description="per-key tolerance overriding `tolerance` (relevance metrics move more from day to day)",
    )
    min_requests: int = Field(
        1, ge=1, description="a metric averaged over fewer requests than this counts as not measured"
    )

    @field_validator("keys")
    @classmethod
    def _keys_valid(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("keys must name at least one metric")
        for key in v:
            parse_metric_key(key)
        return v

    @field_validator("key_tolerances")
    @classmethod
    def _tolerances_valid(cls, v: dict[str, float]) -> dict[str, float]:
        for key, tol in v.items():
            parse_metric_key(key)
            if tol < 0:
                raise ValueError(f"key_tolerances[{key!r}] must be >= 0, got {tol}")
        return v
