"""The evaluation set of day D: every request of D with its clicked docs and, when the query has complete
relevance labels, its graded relevant docs. Saved and loaded as one parquet file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ebr.artifacts.atomic import atomic_file
from ebr.contract import list_days, load
from ebr.judgements.corpus import Corpus
from ebr.judgements.metrics import Judgements

FORMAT = "ebr.evalset/1"
LabelDays = Literal["same_day", "up_to_day", "any_day"]
LABEL_DAYS: tuple[str, ...] = ("same_day", "up_to_day", "any_day")
REQUEST_COLUMNS = ["request_id", "user_id", "query", "query_category_leaf", "query_brand", "event_timestamp"]
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64()),
        pa.field("query", pa.string(), nullable=False),
        pa.field("query_category_leaf", pa.string()),
        pa.field("query_brand", pa.string()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("clicked_doc_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("labels_complete", pa.bool_(), nullable=False),
        pa.field("label_doc_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("label_values", pa.list_(pa.int8()), nullable=False),
        pa.field("label_ds", pa.string()),
    ]
)


@dataclass(frozen=True)
class EvalSet:
    """Requests of one day (frame columns: see SCHEMA); label lists hold only docs of label >= 1."""

    day: str
    frame: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in SCHEMA.names if c not in self.frame.columns]
        if missing:
            raise ValueError(f"evaluation set frame lacks column {missing[0]!r}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_requests(self) -> int:
        return len(self.frame)

    @property
    def queries(self) -> list[str]:
        return self.frame["query"].tolist()

    def _once(self, name: str, build: Callable[[], Judgements]) -> Judgements:
        """`build()` the first time, then the same judgements: every system of an evaluation is scored against
        the day's clicks and labels, and rebuilding them per system was most of a medium day's metric time. The
        frame is not to be changed after the set is built (the set is frozen; its frame is taken as read-only)."""
        cache = self.__dict__.setdefault("_judgements", {})
        if name not in cache:
            built = build()
            for arr in (built.rows, built.docs, built.grades, built.judged):
                arr.flags.writeable = False  # shared by every caller from now on
            cache[name] = built
        return cache[name]

    def clicks(self) -> Judgements:
        """Clicked docs per request (grade 1); requests without clicks are not judged."""
        return self._once("clicks", self._build_clicks)

    def labels(self) -> Judgements:
        """Graded docs (label >= 1) of requests whose query has complete labels; others are not judged."""
        return self._once("labels", self._build_labels)

    def _build_clicks(self) -> Judgements:
        lists = self.frame["clicked_doc_ids"]
        lengths = lists.map(len).to_numpy(dtype=np.int64)
        rows = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
        docs = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if len(lists) else np.zeros(0, int)
        return Judgements.from_arrays(len(lists), rows, docs, np.ones(len(docs), dtype=np.int64), lengths > 0)

    def _build_labels(self) -> Judgements:
        ids, vals = self.frame["label_doc_ids"], self.frame["label_values"]
        lengths = ids.map(len).to_numpy(dtype=np.int64)
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
        n = len(ids)
        docs = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if n else np.zeros(0, np.int64)
        grades = np.concatenate([np.asarray(x, dtype=np.int64) for x in vals]) if n else np.zeros(0, np.int64)
        judged = self.frame["labels_complete"].to_numpy(dtype=bool)
        return Judgements.from_arrays(n, rows, docs, grades, judged)

    def save(self, path: str | Path) -> Path:
        """Write the parquet file through a temp file beside it, then rename (never a partial file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(self.frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({b"ebr.format": FORMAT.encode(), b"ebr.day": self.day.encode()})
        with atomic_file(path) as tmp:
            pq.write_table(table, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalSet:
        """Read a file written by `save`; another file is a ValueError naming it."""
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if meta.get(b"ebr.format") != FORMAT.encode():
            raise ValueError(f"{path} is not an evaluation set (format {FORMAT})")
        return cls(day=meta[b"ebr.day"].decode(), frame=table.to_pandas())


def _clicked_lists(impressions: pd.DataFrame, request_ids: pd.Series) -> pd.Series:
    clicks = impressions.loc[impressions["clicked"], ["request_id", "doc_id"]].drop_duplicates()
    by_req = clicks.sort_values(["request_id", "doc_id"]).groupby("request_id")["doc_id"].agg(list)
    return request_ids.map(by_req).map(lambda x: x if isinstance(x, list) else [])


def label_sets(labels: pd.DataFrame, day: str, queries: set[str], known: np.ndarray | None) -> pd.DataFrame:
    """One row per query with complete labels on some day of `labels`: the nearest such day to `day` (earlier
    first on ties) and its docs of label >= 1; `known` (when given) keeps only those doc ids."""
    labels = labels[labels["query"].isin(queries)]
    if labels.empty:
        return pd.DataFrame(columns=["query", "label_ds", "label_doc_ids", "label_values"])
    complete = labels.groupby(["query", "ds"])["complete"].all().reset_index()
    complete = complete[complete["complete"]].copy()
    d0 = date.fromisoformat(day).toordinal()
    delta = complete["ds"].map(lambda d: date.fromisoformat(d).toordinal() - d0)
    complete["distance"] = delta.abs()
    complete["later"] = delta > 0
    chosen = complete.sort_values(["query", "distance", "later"]).drop_duplicates("query", keep="first")
    rows = labels.merge(chosen[["query", "ds"]], on=["query", "ds"], how="inner")
    rows = rows[rows["label"] >= 1]
    if known is not None:
        rows = rows[rows["doc_id"].isin(known)]
    rows = rows.sort_values(["query", "doc_id"])
    grouped = rows.groupby("query").agg(label_doc_ids=("doc_id", list), label_values=("label", list))
    out = chosen[["query", "ds"]].rename(columns={"ds": "label_ds"}).set_index("query").join(grouped)
    for col in ("label_doc_ids", "label_values"):
        out[col] = out[col].map(lambda x: x if isinstance(x, list) else [])
    return out.reset_index()


def evaluation_requests(request_ids: pd.Series, max_requests: int) -> np.ndarray:
    """Mask of the `max_requests` requests with the smallest stable hash of request_id (all when fewer)."""
    from ebr.text.hashing import stable_hash64

    if max_requests < 1:
        raise ValueError(f"max_requests must be >= 1, got {max_requests}")
    keys = np.fromiter((stable_hash64(str(r), "ebr_eval") for r in request_ids), dtype=np.uint64,
                       count=len(request_ids))
    keep = np.zeros(len(keys), dtype=bool)
    keep[np.argsort(keys, kind="stable")[:max_requests]] = True
    return keep


def build_evalset(
    root: str | Path,
    day: str,
    label_days: LabelDays = "up_to_day",
    corpus: Corpus | None = None,
    max_requests: int | None = None,
) -> EvalSet:
    """The evaluation set of `day`: clicks from impressions of `day` and `day`+1 (when present); labels from the
    partitions `label_days` allows, chosen by `label_sets`; labeled docs outside `corpus` (when given) dropped.

    `max_requests`: a day with more requests keeps that many, those with the smallest stable hash of request_id
    (`evaluation_requests`): a uniform sample, the same for every evaluation of the day with the same bound."""
    if label_days not in LABEL_DAYS:
        raise ValueError(f"label_days must be one of {LABEL_DAYS}, got {label_days!r}")
    if day not in list_days(root, "search_requests"):
        raise ValueError(f"no search_requests partition for day {day} under {root}")
    requests = load(root, "search_requests", [day]).sort_values(["event_timestamp", "request_id"], kind="stable")
    requests = requests[REQUEST_COLUMNS]
    if max_requests is not None and len(requests) > max_requests:
        requests = requests[evaluation_requests(requests["request_id"], max_requests)]
    requests = requests.reset_index(drop=True)
    requests["user_id"] = requests["user_id"].astype("Int64")
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    imp_days = [d for d in list_days(root, "impressions") if d in (day, next_day)]
    impressions = load(root, "impressions", imp_days) if imp_days else pd.DataFrame(
        {"request_id": pd.Series(dtype=object), "doc_id": pd.Series(dtype=np.int64), "clicked": pd.Series(dtype=bool)}
    )
    requests["clicked_doc_ids"] = _clicked_lists(impressions, requests["request_id"])

    label_partitions = list_days(root, "relevance_labels")
    wanted = {
        "same_day": [d for d in label_partitions if d == day],
        "up_to_day": [d for d in label_partitions if d <= day],
        "any_day": label_partitions,
    }[label_days]
    if wanted:
        labels = load(root, "relevance_labels", wanted)
        known = corpus.doc_ids if corpus is not None else None
        sets = label_sets(labels, day, set(requests["query"]), known)
    else:
        sets = pd.DataFrame(columns=["query", "label_ds", "label_doc_ids", "label_values"])
    frame = requests.merge(sets, on="query", how="left")
    frame["labels_complete"] = frame["label_ds"].notna()
    for col in ("label_doc_ids", "label_values"):
        frame[col] = frame[col].map(lambda x: x if isinstance(x, list) else [])
    frame["label_ds"] = frame["label_ds"].astype(object).where(frame["labels_complete"], None)
    return EvalSet(day=day, frame=frame[SCHEMA.names])
