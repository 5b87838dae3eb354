"""Fault injection: one fault planted in a copy of the tiny dataset makes validate_raw fail and name it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebr.validation import ValidationFailed, validate_raw

from .conftest import FAST, rewrite_partition


@dataclass
class Fault:
    """What the planted fault must produce: a failed check on (table, column, family) and an example value."""

    table: str
    column: str | None
    check: str
    example: object  # a value that must appear among the check's examples (None: no rows to quote)
    count: int | None  # rows the check must count as unexpected (the observed row count for volume)


def drop_query_column(root: Path, day: str) -> Fault:
    rewrite_partition(root, "search_requests", day, lambda df: df.drop(columns=["query"]), keep_schema=False)
    return Fault("search_requests", "query", "contract", None, None)


def null_doc_ids(root: Path, day: str) -> Fault:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df["doc_id"] = df["doc_id"].astype("Int64")
        df.loc[df.index[:3], "doc_id"] = pd.NA
        return df

    new = rewrite_partition(root, "impressions", day, change)
    return Fault("impressions", "doc_id", "not_null", new["request_id"].iloc[0], 3)


def duplicate_request_ids(root: Path, day: str) -> Fault:
    new = rewrite_partition(root, "search_requests", day, lambda df: pd.concat([df, df.head(4)], ignore_index=True))
    return Fault("search_requests", "request_id", "unique", new["request_id"].iloc[0], 8)


def liked_without_clicked(root: Path, day: str) -> Fault:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        idx = df.index[(df["stage"] == "exposed") & ~df["clicked"]][:5]
        df.loc[idx, "liked"] = True
        return df

    new = rewrite_partition(root, "impressions", day, change)
    bad = new[new["liked"] & ~new["clicked"]]
    return Fault("impressions", "clicked", "consistency", bad["request_id"].iloc[0], len(bad))


def half_the_requests(root: Path, day: str) -> Fault:
    kept = rewrite_partition(root, "search_requests", day, lambda df: df.iloc[: len(df) // 2])
    rewrite_partition(root, "impressions", day, lambda df: df[df["request_id"].isin(kept["request_id"])])
    return Fault("search_requests", None, "volume", None, len(kept))


def empty_titles(root: Path, day: str) -> Fault:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[:2], "title"] = ""
        return df

    new = rewrite_partition(root, "docs", day, change)
    return Fault("docs", "title", "not_null", int(new["doc_id"].iloc[0]), 2)


def timestamps_outside_day(root: Path, day: str) -> Fault:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[:4], "event_timestamp"] += timedelta(days=1)
        return df

    new = rewrite_partition(root, "user_events", day, change)
    return Fault("user_events", "event_timestamp", "timestamp", int(new["user_id"].iloc[0]), 4)


def unknown_docs(root: Path, day: str) -> Fault:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[:3], "doc_id"] = 987_654_321 + np.arange(3)
        return df

    rewrite_partition(root, "impressions", day, change)
    return Fault("impressions", "doc_first_seen", "references", 987_654_321, 3)


def missing_partition(root: Path, day: str) -> Fault:
    shutil.rmtree(root / "user_events" / f"ds={day}")
    return Fault("user_events", None, "freshness", None, None)


FAULTS = [drop_query_column, null_doc_ids, duplicate_request_ids, liked_without_clicked, half_the_requests,
          empty_titles, timestamps_outside_day, unknown_docs, missing_partition]


def _example_values(examples: list) -> list:
    return [v for e in examples for v in (e.values() if isinstance(e, dict) else [e])]


@pytest.mark.parametrize("plant", FAULTS, ids=[f.__name__ for f in FAULTS])
def test_planted_fault_fails_validation_and_is_named(plant, data_copy: Path, last_day: str, tmp_path: Path):
    fault = plant(data_copy, last_day)
    out = tmp_path / "validation"
    with pytest.raises(ValidationFailed) as info:
        validate_raw(data_copy, last_day, out, FAST)
    result = info.value.result
    assert info.value.report_path == out / "report.md" and str(out / "report.md") in str(info.value)
    hits = [c for c in result.failed if (c.table, c.check) == (fault.table, fault.check)
            and (fault.column is None or c.column == fault.column)]
    assert hits, f"no failed {fault} among {[(c.table, c.column, c.check) for c in result.failed]}"
    hit = hits[0]
    if fault.example is not None:
        assert fault.example in _example_values(hit.examples)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "**Verdict: FAILED**" in report
    assert f"`{hit.where}`: {hit.description}" in report
    if fault.check == "volume":
        assert hit.observed == fault.count < hit.expected["min_value"]
        assert f"observed value {fault.count}" in report and "trailing mean" in report
    elif fault.count is not None:
        assert hit.unexpected_count == fault.count
        assert f"{fault.count} of {hit.element_count} rows unexpected" in report
    elif fault.check == "freshness":
        assert f"{fault.table}/ds={last_day} is missing" in hit.description
    else:  # a partition that cannot load: the violation names partition and column, the suite is skipped
        assert f"ds={last_day}" in hit.description and f"'{fault.column}' is missing" in hit.description
        assert (fault.table, None) in {(c.table, c.column) for c in result.skipped}
    # no other table is blamed: the fault stays where it was planted
    assert {c.table for c in result.failed} <= {fault.table, "impressions"}
    saved = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert saved["success"] is False and saved["counts"]["failed"] == len(result.failed)
