"""The training window of day D and the contract data it may use: days [D - k, D - 1] and nothing later."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.features.doc_features import corpus_docs
from ebr.judgements.evalset import REQUEST_COLUMNS

CORPUS_COLUMNS = ("author_id", "category_leaf", "brand")


def day_start(day: str) -> pd.Timestamp:
    """Midnight UTC that starts `day`."""
    return pd.Timestamp(datetime.fromisoformat(day).replace(tzinfo=UTC))


def check_day(day: str, what: str) -> str:
    try:
        parsed = date.fromisoformat(day)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: {day!r} is not a YYYY-MM-DD day") from e
    if len(day) != 10:
        raise ValueError(f"{what}: {day!r} is not a YYYY-MM-DD day")
    return parsed.isoformat()


def training_days(data_root: str | Path, day: str, days_back: int) -> list[str]:
    """The days of [day - days_back, day - 1] that have search logs; errors name the parameter or the data."""
    day = check_day(day, "day")
    if not isinstance(days_back, int) or days_back < 1:
        raise ValueError(f"days_back (k) must be an integer >= 1, got {days_back!r}")
    root = rawfs.check_root(data_root)
    if not rawfs.is_dir(root):
        raise FileNotFoundError(f"data root {root} is not a directory")
    available = list_days(root, "search_requests")
    if day not in available:
        span = f"{available[0]}..{available[-1]}" if available else "none"
        raise ValueError(f"day {day} has no partition in {root}/search_requests (days there: {span})")
    d = date.fromisoformat(day)
    wanted = [(d - timedelta(days=i)).isoformat() for i in range(days_back, 0, -1)]
    have = [x for x in wanted if x in available]
    if not have:
        raise ValueError(
            f"no training day before {day} in {root}/search_requests: the window "
            f"{wanted[0]}..{wanted[-1]} (days_back={days_back}) holds no partition"
        )
    return have


@dataclass
class Window:
    """Contract rows of the training window, all strictly before day D starts."""

    day: str
    days: list[str]
    requests: pd.DataFrame  # REQUEST_COLUMNS
    impressions: pd.DataFrame  # impressions joined with their request's user, query and QU fields
    docs: pd.DataFrame  # every doc known before D (`corpus_docs`): doc_id, first_seen and CORPUS_COLUMNS

    @property
    def cutoff(self) -> pd.Timestamp:
        return day_start(self.day)


def load_window(data_root: str | Path, day: str, days_back: int) -> Window:
    """Load requests, impressions and the corpus of the window of `day`; nothing of `day` or later is read."""
    root = rawfs.raw_root(data_root)
    days = training_days(root, day, days_back)
    cutoff = day_start(day)
    # an impression's request may sit in the previous partition (contract): read one day more of requests
    prev = (date.fromisoformat(days[0]) - timedelta(days=1)).isoformat()
    req_days = ([prev] if prev in list_days(root, "search_requests") else []) + days
    requests = load(root, "search_requests", req_days)[REQUEST_COLUMNS].copy()
    requests["user_id"] = requests["user_id"].astype("Int64")
    requests = requests[requests["event_timestamp"] < cutoff]
    imp_days = [d for d in days if d in list_days(root, "impressions")]
    if not imp_days:
        raise ValueError(f"{root}/impressions has no partition in the training window {days[0]}..{days[-1]}")
    imps = load(root, "impressions", imp_days)
    imps = imps[imps["event_timestamp"] < cutoff].drop(columns=["ds", "event_timestamp"])
    imps = imps.merge(requests, on="request_id", how="inner", validate="many_to_one")
    requests = requests[requests["event_timestamp"] >= day_start(days[0])]
    docs = corpus_docs(root, day, include_day=False, columns=CORPUS_COLUMNS)
    return Window(day=day, days=days, requests=requests.reset_index(drop=True), impressions=imps, docs=docs)


def attach_author(frame: pd.DataFrame, docs: pd.DataFrame) -> pd.DataFrame:
    """Add `author_id` from the corpus table (the doc's author as of the end of the window) to `frame` in place,
    and return it: the window's impressions are the step's biggest frame (28M rows at `large`), which a merge
    would copy whole."""
    if not docs["doc_id"].is_unique:
        dup = docs.loc[docs["doc_id"].duplicated(), "doc_id"].head(5).tolist()
        raise ValueError(f"docs table: doc_id is not unique, e.g. {dup}")
    at = pd.Index(docs["doc_id"]).get_indexer(frame["doc_id"])
    if (at < 0).any():
        bad = frame["doc_id"].to_numpy()[at < 0][:5].tolist()
        raise ValueError(f"doc_id not in the corpus known before the day (docs table): {bad}")
    frame["author_id"] = docs["author_id"].to_numpy()[at].astype("int64")
    return frame
