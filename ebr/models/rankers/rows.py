"""The rows the rankers read: requests (query and user features), docs (doc features) and candidate pairs.

Training rows come from the samples step's `ranking.parquet`; their features from `ranking_features.parquet`
when the samples step joined them from Feast, otherwise from the contract tables
(`ebr.models.rankers.contract_features`). Evaluation rows are the evaluation day's logged candidates (every
impression: pre-ranked, ranked and exposed docs), with relevance labels where the day has them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.features.definitions import SERVICES, VIEW_BY_NAME
from ebr.judgements.evalset import build_evalset
from ebr.models.config import MaxLengths
from ebr.models.rankers.config import TASK_LABELS
from ebr.models.rankers.contract_features import REQUEST_KEYS, doc_features, request_features

LABEL_COLUMNS = tuple(TASK_LABELS.values())
QUERY_SIDE_FEATURES = tuple(f for v in SERVICES["query_tower_online"] for f in VIEW_BY_NAME[v].feature_names)
SAMPLES_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RankingRows:
    """Candidate lists: `pairs` rows point at `requests` (request_row) and `docs` (doc_row), grouped by request."""

    requests: pd.DataFrame
    docs: pd.DataFrame
    pairs: pd.DataFrame
    feature_source: str  # "joined" (Feast, by the samples step) or "contract" (computed here)

    def __post_init__(self) -> None:
        for c in ("request_row", "doc_row", "doc_id", *LABEL_COLUMNS):
            if c not in self.pairs.columns:
                raise ValueError(f"ranking pairs lack column {c!r}")
        r = self.pairs["request_row"].to_numpy()
        if len(r) and (np.any(np.diff(r) < 0) or r.min() < 0 or r.max() >= len(self.requests)):
            raise ValueError("ranking pairs must be sorted by request_row and point inside the requests table")
        d = self.pairs["doc_row"].to_numpy()
        if len(d) and (d.min() < 0 or d.max() >= len(self.docs)):
            raise ValueError("ranking pairs point outside the docs table")

    @property
    def n_requests(self) -> int:
        return len(self.requests)

    def select_requests(self, rows: np.ndarray) -> RankingRows:
        """The rows of a subset of requests (in the given order of `rows`, renumbered from 0)."""
        rows = np.asarray(rows, dtype=np.int64)
        remap = np.full(len(self.requests), -1, dtype=np.int64)
        remap[rows] = np.arange(len(rows))
        pairs = self.pairs[np.isin(self.pairs["request_row"].to_numpy(), rows)].copy()
        pairs["request_row"] = remap[pairs["request_row"].to_numpy()]
        pairs = pairs.sort_values("request_row", kind="mergesort").reset_index(drop=True)
        return replace(self, requests=self.requests.iloc[rows].reset_index(drop=True), pairs=pairs)


def _day(ts: pd.Series) -> np.ndarray:
    return pd.to_datetime(ts, utc=True).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)


def _pairs(samples: pd.DataFrame, request_row: np.ndarray, doc_row: np.ndarray) -> pd.DataFrame:
    pairs = pd.DataFrame({
        "request_row": request_row.astype(np.int64),
        "doc_row": doc_row.astype(np.int64),
        "request_id": samples["request_id"].to_numpy(dtype=object),
        "doc_id": samples["doc_id"].to_numpy(dtype=np.int64),
        "source": samples["source"].to_numpy(dtype=object) if "source" in samples else None,
    })
    for c in LABEL_COLUMNS:
        pairs[c] = samples[c].to_numpy(dtype=np.int8)
    return pairs.sort_values("request_row", kind="mergesort").reset_index(drop=True)


def rows_from_contract(samples: pd.DataFrame, data_root: str | Path, max_len: MaxLengths) -> RankingRows:
    """Rows of sample pairs (ranking.parquet columns) with features computed from the contract tables."""
    requests = samples.drop_duplicates("request_id")[REQUEST_KEYS].reset_index(drop=True)
    requests = request_features(data_root, requests, max_len)
    keys = pd.DataFrame({"doc_id": samples["doc_id"].to_numpy(dtype=np.int64), "day": _day(samples["event_timestamp"])})
    docs = doc_features(data_root, keys)
    req_row = pd.Index(requests["request_id"]).get_indexer(samples["request_id"])
    doc_index = pd.MultiIndex.from_frame(docs[["doc_id", "day"]])
    doc_row = doc_index.get_indexer(pd.MultiIndex.from_frame(keys))
    return RankingRows(requests, docs, _pairs(samples, req_row, doc_row), "contract")


def rows_from_joined(frame: pd.DataFrame) -> RankingRows:
    """Rows of a joined sample table (ranking.parquet columns plus Feast features, one row per pair)."""
    q_cols = [c for c in QUERY_SIDE_FEATURES if c in frame.columns]
    requests = frame.drop_duplicates("request_id")[REQUEST_KEYS + q_cols].reset_index(drop=True)
    doc_cols = [c for c in frame.columns if c not in set(requests.columns) | set(LABEL_COLUMNS)] + ["doc_id"]
    docs = frame[list(dict.fromkeys(doc_cols))].reset_index(drop=True)
    req_row = pd.Index(requests["request_id"]).get_indexer(frame["request_id"])
    return RankingRows(requests, docs, _pairs(frame.reset_index(drop=True), req_row, np.arange(len(frame))), "joined")


def read_samples_manifest(samples_dir: str | Path) -> dict:
    """The samples step's manifest; a missing one is an error naming the folder."""
    path = Path(samples_dir) / SAMPLES_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{samples_dir} holds no {SAMPLES_MANIFEST}: not a samples output folder")
    return json.loads(path.read_text(encoding="utf-8"))


def load_training_rows(samples_dir: str | Path, data_root: str | Path | None, max_len: MaxLengths) -> RankingRows:
    """Ranking rows of a samples folder: features computed from `data_root` (the same computation the holdout
    evaluation uses, so training and evaluation see one feature definition), else the joined Feast features."""
    manifest = read_samples_manifest(samples_dir)
    tables = manifest.get("tables", {})
    if "ranking" not in tables:
        raise ValueError(f"samples in {samples_dir} have no ranking table")
    if data_root is None and "ranking_features" in tables:
        return rows_from_joined(pd.read_parquet(Path(samples_dir) / tables["ranking_features"]["file"]))
    if data_root is None:
        raise ValueError(f"samples in {samples_dir} carry no joined ranking features (ranking_features.parquet): "
                         "pass data_root so the rankers compute them from the contract tables")
    samples = pd.read_parquet(Path(samples_dir) / tables["ranking"]["file"])
    if samples.empty:
        raise ValueError(f"the ranking table of {samples_dir} is empty")
    return rows_from_contract(samples, data_root, max_len)


def load_eval_rows(data_root: str | Path, day: str, max_len: MaxLengths) -> RankingRows:
    """Logged candidates of `day` (every impression row of its requests) with features and judgements.

    Requests are those of the evaluation set (`ebr.judgements.evalset.build_evalset`, the one rule for the
    clicks and relevance labels of a day) and carry its `labels_complete`, `label_doc_ids`, `label_values` and
    `clicked_doc_ids`.
    """
    root = rawfs.raw_root(data_root)
    ev = build_evalset(root, day).frame
    nxt = (pd.Timestamp(day) + pd.Timedelta(days=1)).date().isoformat()
    imp_days = [d for d in list_days(root, "impressions") if d in (day, nxt)]
    if not imp_days:
        raise ValueError(f"{root}/impressions has no partition for the evaluation day {day}")
    imps = load(root, "impressions", imp_days)
    imps = imps[imps["request_id"].isin(ev["request_id"])].drop(columns=["event_timestamp"])
    samples = imps.merge(ev[REQUEST_KEYS], on="request_id", how="inner", validate="many_to_one")
    samples = samples.rename(columns={"stage": "source", "clicked": "label_click", "liked": "label_like",
                                      "favorited": "label_favorite", "commented": "label_comment"})
    samples = samples.sort_values(["event_timestamp", "request_id", "doc_id"], kind="mergesort").reset_index(drop=True)
    if samples.empty:
        raise ValueError(f"no logged candidate on the evaluation day {day}")
    rows = rows_from_contract(samples, root, max_len)
    judged = ev.set_index("request_id")[["labels_complete", "label_doc_ids", "label_values", "clicked_doc_ids"]]
    reqs = rows.requests.join(judged, on="request_id")
    return replace(rows, requests=reqs)


def load_corpus_docs(data_root: str | Path, day: str) -> pd.DataFrame:
    """Every doc known before `day` with its features as of the day's start (the coarse ranker's doc matrix)."""
    root = rawfs.raw_root(data_root)
    days = [d for d in list_days(root, "docs") if d < day]
    if not days:
        raise ValueError(f"{root}/docs has no partition before {day}")
    ids = np.unique(load(root, "docs", days)["doc_id"].to_numpy(dtype=np.int64))
    return doc_features(root, pd.DataFrame({"doc_id": ids, "day": day}))
