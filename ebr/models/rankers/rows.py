"""The rows the rankers read: requests (query and user features), docs (doc features) and candidate pairs.

Every feature comes from the feature store (`ebr.features`) through the feature service `ranking_training`,
point in time at each request: the views the samples step joins and whose query side the query-tower server
reads online, so training, evaluation and serving share one definition. Training rows are the samples step's
`ranking_features.parquet`, or, when it joined none, `ranking.parquet` joined here through the same service.
Evaluation rows are the evaluation day's logged candidates (every impression: pre-ranked, ranked and exposed
docs) joined the same way, with the clicks and relevance labels of the evaluation set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.features.definitions import LIST_FEATURES, SERVICES, VIEW_BY_NAME
from ebr.judgements.evalset import REQUEST_COLUMNS, build_evalset
from ebr.models.rankers.config import TASK_LABELS

if TYPE_CHECKING:
    from feast import FeatureStore

LABEL_COLUMNS = tuple(TASK_LABELS.values())
RANKING_SERVICE = "ranking_training"
QUERY_SIDE_FEATURES = tuple(f for v in SERVICES["query_tower_online"] for f in VIEW_BY_NAME[v].feature_names)
DOC_SIDE_FEATURES = tuple(
    f for v in SERVICES[RANKING_SERVICE] for f in VIEW_BY_NAME[v].feature_names if f not in QUERY_SIDE_FEATURES
)
ENTITY_COLUMNS = ("user_id", "query", "doc_id", "author_id", "event_timestamp")  # author_id optional
SAMPLES_MANIFEST = "manifest.json"
SOURCE_JOINED = "joined"  # the samples step joined the features (ranking_features.parquet)
SOURCE_STORE = "feature_store"  # joined here, through the same feature service


@dataclass(frozen=True)
class RankingRows:
    """Candidate lists: `pairs` rows point at `requests` (request_row) and `docs` (doc_row), grouped by request."""

    requests: pd.DataFrame
    docs: pd.DataFrame
    pairs: pd.DataFrame
    feature_source: str  # SOURCE_JOINED or SOURCE_STORE
    notes: tuple[str, ...] = ()

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

    def _remap(self, rows: np.ndarray) -> np.ndarray:
        remap = np.full(len(self.requests), -1, dtype=np.int64)
        remap[rows] = np.arange(len(rows))
        return remap

    def pair_positions(self, rows: np.ndarray) -> np.ndarray:
        """Positions in `pairs` of the pairs `select_requests(rows)` keeps, in its order: per-pair arrays of these
        rows (cross features) are sliced with them."""
        rows = np.asarray(rows, dtype=np.int64)
        request_row = self.pairs["request_row"].to_numpy()
        kept = np.flatnonzero(np.isin(request_row, rows))
        return kept[np.argsort(self._remap(rows)[request_row[kept]], kind="mergesort")]

    def select_requests(self, rows: np.ndarray) -> RankingRows:
        """The rows of a subset of requests (in the given order of `rows`, renumbered from 0)."""
        rows = np.asarray(rows, dtype=np.int64)
        pairs = self.pairs.iloc[self.pair_positions(rows)].reset_index(drop=True)
        pairs["request_row"] = self._remap(rows)[pairs["request_row"].to_numpy()]
        return replace(self, requests=self.requests.iloc[rows].reset_index(drop=True), pairs=pairs)


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


def _distinct_rows(frame: pd.DataFrame) -> np.ndarray:
    """A code per row of `frame`, equal for rows with equal values (lists compared element-wise), numbered in
    order of first sight."""
    per_column = []
    for c in frame.columns:  # one column's strings at a time (all at once: +2.7 GB for 2M rows at `large`)
        col = frame[c]
        if c in LIST_FEATURES or col.dtype == object:
            col = col.map(lambda v: "\x1f".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else repr(v))
        per_column.append(pd.util.hash_pandas_object(col, index=False).to_numpy())
    hashes = pd.util.hash_pandas_object(pd.DataFrame(np.stack(per_column, axis=1)), index=False).to_numpy()
    return pd.Series(hashes).groupby(hashes, sort=False).ngroup().to_numpy()


def rows_from_joined(frame: pd.DataFrame, feature_source: str = SOURCE_JOINED,
                     notes: tuple[str, ...] = ()) -> RankingRows:
    """Rows of a joined sample table (ranking.parquet columns plus `ranking_training` features, one row per pair);
    a doc seen with the same features by several pairs is one doc row."""
    missing = [c for c in (*REQUEST_COLUMNS, "doc_id", *LABEL_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"joined ranking rows lack column(s) {missing}")
    frame = frame.reset_index(drop=True)
    q_cols = [c for c in QUERY_SIDE_FEATURES if c in frame.columns]
    requests = frame.drop_duplicates("request_id")[REQUEST_COLUMNS + q_cols].reset_index(drop=True)
    doc_cols = ["doc_id", *(c for c in DOC_SIDE_FEATURES if c in frame.columns and c != "doc_id")]
    if "author_id" in frame.columns and "author_id" not in doc_cols:
        doc_cols.append("author_id")
    codes = _distinct_rows(frame[doc_cols])
    first = pd.Series(np.arange(len(frame))).groupby(codes, sort=False).first().to_numpy()
    docs = frame.iloc[first][doc_cols].reset_index(drop=True)
    req_row = pd.Index(requests["request_id"]).get_indexer(frame["request_id"])
    return RankingRows(requests, docs, _pairs(frame, req_row, codes), feature_source, tuple(notes))


def check_built(features_dir: str | Path, days: list[str]) -> None:
    """Fail, naming the days, when the feature directory has not built every day of `days`."""
    from ebr.features.partitions import built_days

    have = set(built_days(features_dir))
    lacking = [d for d in days if d not in have]
    if lacking:
        raise ValueError(f"the feature store {features_dir} has not built day(s) {lacking} (built: "
                         f"{sorted(have)[-3:] or 'none'}...): run build_features for them first")


def join_ranking_features(frame: pd.DataFrame, features_dir: str | Path | None = None,
                          store: FeatureStore | None = None) -> pd.DataFrame:
    """`frame` (request columns, doc_id, optional author_id) with the `ranking_training` features at each row's
    event_timestamp, row for row; a key without a feature row before that time gets null features, as in the
    samples step. Without author_id, the doc's author as of the row's time is joined (doc_profile)."""
    from ebr.features import historical_features, open_store

    missing = [c for c in ENTITY_COLUMNS if c not in frame.columns and c != "author_id"]
    if missing:
        raise ValueError(f"ranking rows lack entity column(s) {missing} of feature service {RANKING_SERVICE!r}")
    if store is None:
        if features_dir is None:
            raise ValueError("join_ranking_features needs features_dir or store")
        store = open_store(features_dir)
    frame = frame.reset_index(drop=True)
    entity = frame[[c for c in ENTITY_COLUMNS if c in frame.columns]]
    feats = historical_features(store, entity, RANKING_SERVICE, on_missing="null")
    added = [c for c in feats.columns if c not in entity.columns]
    clash = [c for c in added if c in frame.columns]
    if clash:
        raise ValueError(f"feature service {RANKING_SERVICE!r} returns column(s) {clash} the ranking rows have")
    return pd.concat([frame, feats[added].reset_index(drop=True)], axis=1)


def _without_featureless_docs(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop pairs whose doc had no doc_profile row at or before the request (e.g. a random negative published
    later in the window: it could not have been a candidate); a note counts them."""
    if "title" not in frame.columns:
        raise ValueError("ranking rows carry no doc features (no column 'title'): not joined with "
                         f"feature service {RANKING_SERVICE!r}")
    lost = frame["title"].isna().to_numpy()
    if not lost.any():
        return frame, []
    note = (f"{int(lost.sum())} of {len(frame)} pair(s) left out: their doc has no doc_profile row at or before "
            f"the request time (e.g. doc ids {frame.loc[lost, 'doc_id'].head(5).tolist()})")
    return frame[~lost].reset_index(drop=True), [note]


def read_samples_manifest(samples_dir: str | Path) -> dict:
    """The samples step's manifest; a missing one is an error naming the folder."""
    path = Path(samples_dir) / SAMPLES_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{samples_dir} holds no {SAMPLES_MANIFEST}: not a samples output folder")
    return json.loads(path.read_text(encoding="utf-8"))


def load_training_rows(samples_dir: str | Path, features_dir: str | Path | None = None) -> RankingRows:
    """Ranking rows of a samples folder with their `ranking_training` features: the samples step's
    `ranking_features.parquet`, else `ranking.parquet` joined through the feature store in `features_dir`."""
    manifest = read_samples_manifest(samples_dir)
    tables = manifest.get("tables", {})
    if "ranking" not in tables:
        raise ValueError(f"samples in {samples_dir} have no ranking table")
    if "ranking_features" in tables:
        frame, source = pd.read_parquet(Path(samples_dir) / tables["ranking_features"]["file"]), SOURCE_JOINED
    elif features_dir is None:
        raise ValueError(f"samples in {samples_dir} carry no joined ranking features (ranking_features.parquet): "
                         "pass features_dir so the rankers join them from the feature store")
    else:
        frame, source = pd.read_parquet(Path(samples_dir) / tables["ranking"]["file"]), SOURCE_STORE
    if frame.empty:
        raise ValueError(f"the ranking table of {samples_dir} is empty")
    if source == SOURCE_STORE:
        check_built(features_dir, list(manifest.get("train_days", [])))
        frame = join_ranking_features(frame, features_dir)
    frame, notes = _without_featureless_docs(frame)
    if source == SOURCE_STORE:
        notes.insert(0, f"samples carry no ranking_features table: features joined from the feature store "
                        f"(service {RANKING_SERVICE!r})")
    return rows_from_joined(frame, source, tuple(notes))


def load_eval_rows(
    data_root: str | Path, day: str, features_dir: str | Path, max_requests: int | None = None
) -> RankingRows:
    """Logged candidates of `day` (every impression row of its requests) with features and judgements.

    Features: `ranking_training` from the feature store in `features_dir` (which must have built `day`), as of
    each request. Requests are those of the evaluation set (`ebr.judgements.evalset.build_evalset`, the one rule
    for the clicks and relevance labels of a day) and carry its `labels_complete`, `label_doc_ids`,
    `label_values` and `clicked_doc_ids`; `max_requests` bounds them by the evaluation set's rule.
    """
    root = rawfs.raw_root(data_root)
    ev = build_evalset(root, day, max_requests=max_requests).frame
    nxt = (pd.Timestamp(day) + pd.Timedelta(days=1)).date().isoformat()
    imp_days = [d for d in list_days(root, "impressions") if d in (day, nxt)]
    if not imp_days:
        raise ValueError(f"{root}/impressions has no partition for the evaluation day {day}")
    imps = load(root, "impressions", imp_days)
    imps = imps[imps["request_id"].isin(ev["request_id"])].drop(columns=["event_timestamp"])
    samples = imps.merge(ev[REQUEST_COLUMNS], on="request_id", how="inner", validate="many_to_one")
    samples = samples.rename(columns={"stage": "source", "clicked": "label_click", "liked": "label_like",
                                      "favorited": "label_favorite", "commented": "label_comment"})
    samples = samples.sort_values(["event_timestamp", "request_id", "doc_id"], kind="mergesort").reset_index(drop=True)
    if samples.empty:
        raise ValueError(f"no logged candidate on the evaluation day {day}")
    check_built(features_dir, [day])
    frame = join_ranking_features(samples, features_dir)
    lost = frame["title"].isna().to_numpy()
    if lost.any():  # the contract guarantees every logged doc exists at its request time
        raise ValueError(f"{int(lost.sum())} logged candidate(s) of {day} have no doc features in {features_dir} "
                         f"(doc ids {frame.loc[lost, 'doc_id'].head(5).tolist()}): rebuild the features of {day}")
    rows = rows_from_joined(frame, SOURCE_STORE)
    judged = ev.set_index("request_id")[["labels_complete", "label_doc_ids", "label_values", "clicked_doc_ids"]]
    return replace(rows, requests=rows.requests.join(judged, on="request_id"))


def load_corpus_docs(data_root: str | Path, day: str, features_dir: str | Path) -> pd.DataFrame:
    """Every doc known before `day` (`corpus_docs`) with its features as of the day's start from the feature
    store (the doc-feature table): the coarse ranker's doc matrix."""
    from ebr.features.doc_features import corpus_docs, doc_feature_table

    return doc_feature_table(features_dir, corpus_docs(data_root, day, include_day=False), day, "day_start")
