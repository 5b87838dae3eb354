"""Referential integrity of day D's impressions: their request exists in search_requests of D or D-1, and their
doc exists in docs as of the impression (the doc's first version is not later than the impression)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from ebr.contract.load import list_days
from ebr.validation.expectations import Expect
from ebr.validation.partitions import read_columns

REFERENCE_COLUMNS = ["request_id", "doc_id", "event_timestamp", "request_day", "doc_first_seen"]


def _request_days(root: Path, day: str, requests_of_day: pd.DataFrame | None) -> tuple[pd.Series, list[str]]:
    """request_id -> the day of its request, over D-1 and D; and notes on days that could not be read."""
    prev = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    frames, notes = [], []
    for d in (prev, day):
        if d == day and requests_of_day is not None:
            ids = requests_of_day[["request_id"]]
        else:
            ids = read_columns(root, "search_requests", d, ["request_id"])
        if ids is None:
            notes.append(f"search_requests ds={d} could not be read")
            continue
        frames.append(ids.assign(request_day=d))
    if not frames:
        return pd.Series(dtype="object"), notes
    both = pd.concat(frames, ignore_index=True).drop_duplicates("request_id", keep="last")
    return both.set_index("request_id")["request_day"], notes


def _doc_first_seen(root: Path, day: str) -> tuple[pd.Series, list[str]]:
    """doc_id -> event_timestamp of its first version, over every docs partition up to `day`."""
    frames, notes = [], []
    for d in list_days(root, "docs"):
        if d > day:
            break
        part = read_columns(root, "docs", d, ["doc_id", "event_timestamp"])
        if part is None:
            notes.append(f"docs ds={d} could not be read")
            continue
        frames.append(part)
    if not frames:
        return pd.Series(dtype="datetime64[us, UTC]"), notes
    docs = pd.concat(frames, ignore_index=True)
    return docs.groupby("doc_id")["event_timestamp"].min(), notes


def reference_frame(root: Path, day: str, impressions: pd.DataFrame,
                    requests_of_day: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """Day D's impressions with the day of their request and the first-seen time of their doc (null when
    unknown), plus notes on partitions that could not be read."""
    request_day, notes = _request_days(root, day, requests_of_day)
    first_seen, doc_notes = _doc_first_seen(root, day)
    out = impressions[["request_id", "doc_id", "event_timestamp"]].copy()
    out["request_day"] = out["request_id"].map(request_day).astype("object")
    first_seen.index = first_seen.index.astype("Int64")
    seen = out["doc_id"].astype("Int64").map(first_seen)
    out["doc_first_seen"] = pd.to_datetime(seen, utc=True).astype(out["event_timestamp"].dtype)
    return out[REFERENCE_COLUMNS], notes + doc_notes


def reference_expectations(day: str) -> list[Expect]:
    """The three reference rules over `reference_frame`'s columns."""
    prev = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    return [
        Expect("ExpectColumnValuesToNotBeNull", {"column": "request_day"}, "references",
               f"every impression's request_id is in search_requests of {prev} or {day}",
               meta={"note": "request_day is the day of the matching request; null = no such request"}),
        Expect("ExpectColumnValuesToNotBeNull", {"column": "doc_first_seen"}, "references",
               f"every impression's doc_id is in docs (partitions up to {day})",
               meta={"note": "doc_first_seen is the doc's first version time; null = unknown doc"}),
        Expect("ExpectColumnPairValuesAToBeGreaterThanB",
               {"column_A": "event_timestamp", "column_B": "doc_first_seen", "or_equal": True,
                "ignore_row_if": "either_value_is_missing"}, "references",
               "every impression's doc existed at the impression time (event_timestamp >= doc_first_seen)"),
    ]
