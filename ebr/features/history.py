"""The slice of the raw contract tables a feature build reads, with times as int64 microseconds (UTC).

Dimension tables are read from their first partition up to the last built day (a dimension's current value
needs its whole history); fact tables only over the trailing look-back window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.features.definitions import UNKNOWN_AUTHOR, UNKNOWN_CATEGORY

DAY_US = 86_400_000_000


def day_start_us(day: str) -> int:
    """Microseconds since the epoch of `day` 00:00 UTC."""
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * DAY_US


def shift_day(day: str, n: int) -> str:
    """The day `n` days after `day` (negative: before)."""
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


def to_us(ts: pd.Series) -> np.ndarray:
    """A tz-aware timestamp column as int64 microseconds since the epoch."""
    return ts.dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()


@dataclass
class History:
    """Contract rows a build needs: dimension change rows, requests, exposed impressions, user events.

    `impressions` holds exposed impressions only, joined with their request's user_id and query and with
    the author of the doc as of the impression; `events` carry the doc's leaf category and author as of
    the event."""

    docs: pd.DataFrame
    users: pd.DataFrame
    authors: pd.DataFrame
    requests: pd.DataFrame
    impressions: pd.DataFrame
    events: pd.DataFrame
    first_fact_us: int


def _dimension(root: Path, table: str, last_day: str, key: str) -> pd.DataFrame:
    days = [d for d in list_days(root, table) if d <= last_day]
    df = load(root, table, days) if days else load(root, table, [])
    df = df.drop(columns=["ds"])
    df["ts"] = to_us(df["event_timestamp"])
    # Several rows of one entity at one instant: the last one read wins, deterministically.
    df = df.drop_duplicates([key, "ts"], keep="last")
    return df.sort_values([key, "ts"], kind="stable").reset_index(drop=True)


def _fact_days(root: Path, table: str, first: str, last: str) -> list[str]:
    return [d for d in list_days(root, table) if first <= d <= last]


def as_of(rows: pd.DataFrame, key: str, points: pd.DataFrame, columns: list[str], strict: bool) -> pd.DataFrame:
    """For each point (key, ts), the `columns` of the latest row of `rows` at or before ts (before, if strict).

    Returns a frame aligned with `points` (same index); null where the entity has no such row."""
    out = pd.DataFrame(index=points.index, columns=columns, dtype=object)
    if points.empty or rows.empty:
        return out
    left = pd.DataFrame({"_i": np.arange(len(points)), key: points[key].to_numpy(), "ts": points["ts"].to_numpy()})
    left = left.sort_values("ts", kind="stable")
    right = rows[[key, "ts", *columns]].sort_values("ts", kind="stable")
    merged = pd.merge_asof(
        left, right, on="ts", by=key, direction="backward", allow_exact_matches=not strict
    ).sort_values("_i")
    merged.index = points.index
    return merged[columns]


def load_history(root: str | Path, first_build_day: str, last_day: str, lookback_days: int) -> History:
    """Read what building the days `first_build_day`..`last_day` needs (ContractError on bad data)."""
    root = rawfs.raw_root(root)
    fact_first = shift_day(first_build_day, -(lookback_days + 1))
    docs = _dimension(root, "docs", last_day, "doc_id")
    docs["publish_us"] = to_us(docs["publish_ts"])
    users = _dimension(root, "users", last_day, "user_id")
    users["register_us"] = to_us(users["register_ts"])
    authors = _dimension(root, "authors", last_day, "author_id")

    req_days = _fact_days(root, "search_requests", fact_first, last_day)
    requests = load(root, "search_requests", req_days)
    requests = pd.DataFrame({
        "request_id": requests["request_id"].to_numpy(),
        "user_id": requests["user_id"].astype("Int64"),
        "query": requests["query"].to_numpy(),
        "qu_category_leaf": requests["query_category_leaf"].to_numpy(),
        "qu_brand": requests["query_brand"].to_numpy(),
        "ts": to_us(requests["event_timestamp"]),
    }).sort_values(["ts", "request_id"], kind="stable").reset_index(drop=True)

    parts = []
    for d in _fact_days(root, "impressions", fact_first, last_day):
        imp = load(root, "impressions", [d])
        imp = imp[imp["stage"] == "exposed"]
        parts.append(pd.DataFrame({
            "request_id": imp["request_id"].to_numpy(),
            "doc_id": imp["doc_id"].to_numpy(dtype=np.int64),
            "clicked": imp["clicked"].to_numpy(dtype=np.int64),
            "liked": imp["liked"].to_numpy(dtype=np.int64),
            "favorited": imp["favorited"].to_numpy(dtype=np.int64),
            "commented": imp["commented"].to_numpy(dtype=np.int64),
            "ts": to_us(imp["event_timestamp"]),
        }))
    cols = ["request_id", "doc_id", "clicked", "liked", "favorited", "commented", "ts"]
    impressions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    impressions = impressions.merge(requests[["request_id", "user_id", "query"]], on="request_id", how="left")
    impressions["author_id"] = as_of(docs, "doc_id", impressions, ["author_id"], strict=False)["author_id"]
    impressions = impressions.sort_values(["ts", "request_id", "doc_id"], kind="stable").reset_index(drop=True)

    ev_days = _fact_days(root, "user_events", fact_first, last_day)
    ev = load(root, "user_events", ev_days)
    events = pd.DataFrame({
        "user_id": ev["user_id"].to_numpy(dtype=np.int64),
        "doc_id": ev["doc_id"].to_numpy(dtype=np.int64),
        "event_type": ev["event_type"].to_numpy(),
        "ts": to_us(ev["event_timestamp"]),
    })
    side = as_of(docs, "doc_id", events, ["category_leaf", "author_id"], strict=False)
    events["category"] = side["category_leaf"].fillna(UNKNOWN_CATEGORY).astype(str).to_numpy()
    events["author_id"] = side["author_id"].fillna(UNKNOWN_AUTHOR).astype(np.int64).to_numpy()
    events = events.sort_values(["user_id", "ts", "doc_id", "event_type"], kind="stable").reset_index(drop=True)
    return History(docs, users, authors, requests, impressions, events, day_start_us(fact_first))
