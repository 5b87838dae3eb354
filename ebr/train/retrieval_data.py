"""The two-tower trainer's data: positives with their features, the doc table negatives come from, hard and
exposed-unclicked negatives per request, rewrite negatives, and the validation split.

Rows become arrays once (`ebr.models.inputs.query_arrays` / `doc_arrays`, the featurizer every other step uses);
batches index them. Query arrays are stored as int32 (ids fit) and widened per batch. `ebr.train.featurized_cache`
writes the arrays once per day and key and memory-maps them on later loads (read-only views: batches gather their
rows with fancy indexing, which copies only those rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.features.doc_features import DOC_FEATURE_COLUMNS, fill_missing_doc_features
from ebr.heap import return_freed_memory
from ebr.models.config import FeaturizerConfig
from ebr.models.inputs import (
    QUERY_UNDERSTANDING_COLUMNS,
    SEQUENCE_COLUMNS,
    USER_COLUMNS,
    doc_arrays,
    query_arrays,
)
from ebr.train.two_tower_config import TwoTowerTrainConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
SAMPLES_MANIFEST = "manifest.json"


def read_samples_manifest(samples_dir: str | Path) -> dict[str, Any]:
    """The samples step's manifest (shared with the rankers' reader)."""
    from ebr.models.rankers.rows import read_samples_manifest as read

    return read(samples_dir)


def sample_table(
    samples_dir: str | Path, manifest: dict[str, Any], name: str, arrow_lists: bool = False
) -> pd.DataFrame | None:
    """A sample table by name, or None when the samples step did not write it.

    `arrow_lists`: list columns other than the doc features stay Arrow arrays (pandas ArrowDtype) instead of one
    numpy array object per cell; the featurizer reads them column by column as the same arrays (a null reads as
    NA, which it takes for []). At `large` the 1.2M joined positives took 3.5 GB as objects, 0.8 GB as Arrow."""
    entry = manifest.get("tables", {}).get(name)
    if entry is None:
        return None
    path = Path(samples_dir) / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in {Path(samples_dir) / SAMPLES_MANIFEST} but missing")
    if not arrow_lists:
        return pd.read_parquet(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    def is_list(t: pa.DataType) -> bool:
        return pa.types.is_list(t) or pa.types.is_large_list(t)

    table = pq.read_table(path)
    frame = table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if is_list(t) else None)
    for c in DOC_FEATURE_COLUMNS:  # doc-side lists stay objects: fill_missing_doc_features writes into them
        if c in frame.columns and is_list(table.schema.field(c).type):
            frame[c] = table.column(c).to_pandas().to_numpy(dtype=object)
    return frame


def query_feature_columns(featurizer: FeaturizerConfig) -> list[str]:
    """Columns `featurize_queries` reads besides `query`: query understanding, user, sequence and user-numeric."""
    return [*QUERY_UNDERSTANDING_COLUMNS, *USER_COLUMNS, *SEQUENCE_COLUMNS,
            *(f.name for f in featurizer.user_numeric)]


def positives_with_features(
    samples_dir: str | Path, manifest: dict[str, Any], features_dir: str | Path, doc_table: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """Retrieval positives with query- and doc-side features: the samples' joined table, or a Feast join when the
    samples were built without one; doc columns the join left null come from the doc table."""
    notes: list[str] = []
    frame = sample_table(samples_dir, manifest, "retrieval_features", arrow_lists=True)
    if frame is None:
        from ebr.samples import join_features

        plain = sample_table(samples_dir, manifest, "retrieval")
        if plain is None:
            raise ValueError(f"samples in {samples_dir} have no retrieval table")
        frame = join_features(plain, features_dir, "retrieval_training", on_missing="null")
        frame.attrs.pop("feature_report", None)
        notes.append("samples carry no retrieval_features table: features joined from the feature store")
    if frame.empty:
        raise ValueError(f"the retrieval table of {samples_dir} is empty: nothing to train on")
    frame, filled = fill_missing_doc_features(frame, doc_table)
    if filled:
        notes.append(f"{filled} positive row(s) had no point-in-time doc features: taken from the doc table")
    return frame, notes


@dataclass
class DocTable:
    """The corpus as of the training day: featurized doc arrays, sampling probabilities and their logs."""

    ids: np.ndarray
    arrays: dict[str, np.ndarray]
    prob: np.ndarray
    log_q: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, table: pd.DataFrame, negatives: pd.DataFrame, featurizer: FeaturizerConfig) -> DocTable:
        """Docs of the feature table with `prob` from the negatives table (a doc missing there gets the smallest)."""
        table = table.sort_values("doc_id").reset_index(drop=True)
        ids = table["doc_id"].to_numpy(dtype=np.int64)
        probs = negatives.set_index("doc_id")["prob"].reindex(ids).to_numpy(dtype=np.float64)
        if np.isnan(probs).all():
            raise ValueError("no doc of the doc table is in negatives.parquet: the tables come from different days")
        probs = np.where(np.isnan(probs), np.nanmin(probs), probs)
        probs = probs / probs.sum()
        return cls(ids, _narrow(doc_arrays(table, featurizer)), probs, np.log(probs))  # int32: ids fit

    def rows(self, doc_ids: np.ndarray) -> np.ndarray:
        """Row of each doc id; -1 where the doc is not in the table."""
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, doc_ids), max(len(self.ids) - 1, 0))
        return np.where(self.ids[pos] == doc_ids, pos, -1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` rows drawn with replacement by `prob`."""
        return rng.choice(len(self.ids), size=n, p=self.prob) if n else np.zeros(0, dtype=np.int64)


def _group_rows(request_ids: pd.Series, doc_rows: np.ndarray, requests: pd.Index) -> list[np.ndarray]:
    """Per request of `requests` (by position), the doc-table rows listed for it (unknown docs dropped)."""
    keep = doc_rows >= 0
    codes = requests.get_indexer(request_ids.to_numpy()[keep])
    rows = doc_rows[keep]
    ok = codes >= 0
    codes, rows = codes[ok], rows[ok]
    order = np.argsort(codes, kind="stable")
    codes, rows = codes[order], rows[order]
    bounds = np.searchsorted(codes, np.arange(len(requests) + 1))
    return [rows[bounds[i] : bounds[i + 1]] for i in range(len(requests))]


@dataclass
class RowSet:
    """Positive rows of one split: query arrays (deduplicated), positive-doc arrays and per-row side data (`frame`:
    the rows themselves; from the featurization cache, only their key columns)."""

    frame: pd.DataFrame
    query: dict[str, np.ndarray]
    query_row: np.ndarray
    doc: dict[str, np.ndarray]
    doc_ids: np.ndarray
    weights: np.ndarray
    request_code: np.ndarray
    rewrite: dict[str, np.ndarray] | None = None
    rewrite_row: np.ndarray | None = None
    _shares: dict[bool, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def positive_share(self, weighted: bool) -> np.ndarray:
        """Per row, the probability that one row drawn for a batch has this row's positive doc: the sum of the
        draw probabilities of the rows with that doc (by weight when `weighted` and the weights differ, as
        `epoch_order` draws; else uniform). The in-batch negatives' sampling probability for log-Q."""
        if weighted not in self._shares:
            w = self.weights if weighted and not np.allclose(self.weights, self.weights[0]) else np.ones(len(self))
            p = w / w.sum()
            _, inv = np.unique(self.doc_ids, return_inverse=True)
            self._shares[weighted] = np.bincount(inv, weights=p)[inv]
        return self._shares[weighted]

    def query_tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return _tensors(self.query, self.query_row[idx])

    def doc_tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return _tensors(self.doc, idx)

    def rewrite_tensors(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        if self.rewrite is None:
            raise ValueError("this row set has no rewrite negatives")
        return _tensors(self.rewrite, rows)


def _tensors(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, torch.Tensor]:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v[idx]).astype(np.int64, copy=False)) for k, v in arrays.items()}


def _narrow(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.int32) if np.abs(v).max(initial=0) < 2**31 else v for k, v in arrays.items()}


FEATURIZE_CHUNK_ROWS = 100_000
# the columns of a row set's `frame` kept beside its arrays (all that the featurization cache stores of the rows)
ROW_COLUMNS = ("request_id", "user_id", "query", "doc_id", "kind", "event_timestamp", "weight")


def query_arrays_chunked(frame: pd.DataFrame, featurizer: FeaturizerConfig,
                         chunk_rows: int = FEATURIZE_CHUNK_ROWS) -> dict[str, np.ndarray]:
    """`query_arrays` of `frame`, `chunk_rows` rows at a time, narrowed: the same arrays (every key has a fixed
    width from config), while the featurizer's per-value intermediates stay one chunk's size (at `large` they
    added ~3.7 GB over 1M query rows at once). Each chunk is written into the output arrays and its freed heap
    handed back before the next (300k rows: +1.2 GB resident for 0.5 GB of arrays without that)."""
    out: dict[str, np.ndarray] = {}
    for i in range(0, max(len(frame), 1), chunk_rows):
        part = _narrow(query_arrays(frame.iloc[i : i + chunk_rows], featurizer))
        if len(frame) <= chunk_rows:
            return part
        for k, v in part.items():
            if k not in out:
                out[k] = np.empty((len(frame), *v.shape[1:]), dtype=v.dtype)
            elif np.result_type(out[k].dtype, v.dtype) != out[k].dtype:  # a chunk kept int64, earlier ones int32
                out[k] = out[k].astype(np.result_type(out[k].dtype, v.dtype))
            out[k][i : i + len(v)] = v
        del part
        return_freed_memory()
    return out


def _query_columns(frame: pd.DataFrame, featurizer: FeaturizerConfig) -> list[str]:
    """The columns of `frame` that `query_arrays` reads."""
    return ["query", *(c for c in query_feature_columns(featurizer) if c in frame.columns)]


def build_rowset(
    frame: pd.DataFrame,
    docs: DocTable,
    featurizer: FeaturizerConfig,
    requests: pd.Index,
    rewrites: pd.DataFrame | None,
    point_in_time_docs: bool = False,
    keep_features: bool = True,
) -> RowSet:
    """Featurize positives once: query arrays per distinct (request, query); doc arrays of the doc table (the
    features every candidate has), or the row's own point-in-time doc features (`point_in_time_docs`).
    Without `keep_features` the row set's `frame` keeps only `ROW_COLUMNS` once featurized (memory)."""
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)  # (a copy of every column: only when the index needs it)
    key = frame["request_id"].astype(str) + "\x1f" + frame["query"].astype(str)
    query_row, _ = pd.factorize(key)
    _, first = np.unique(query_row, return_index=True)
    uniq = frame.iloc[first].reset_index(drop=True)
    q = query_arrays_chunked(uniq[_query_columns(uniq, featurizer)], featurizer)
    ids = frame["doc_id"].to_numpy(dtype=np.int64)
    rows = docs.rows(ids)
    if point_in_time_docs or (rows < 0).any():
        d = _narrow(doc_arrays(frame, featurizer))
    else:
        d = {k: v[rows] for k, v in docs.arrays.items()}
    rs = RowSet(
        frame=frame, query=q, query_row=query_row.astype(np.int64), doc=d, doc_ids=ids,
        weights=frame["weight"].to_numpy(dtype=np.float64), request_code=requests.get_indexer(frame["request_id"]),
    )  # fmt: skip
    if rewrites is not None and len(rewrites):
        _attach_rewrites(rs, rewrites, featurizer)
    if not keep_features:
        rs.frame = rs.frame[[c for c in ROW_COLUMNS if c in rs.frame.columns]]
    return rs


def _attach_rewrites(rs: RowSet, rewrites: pd.DataFrame, featurizer: FeaturizerConfig) -> None:
    """Core-term-drop rewrites of a click positive: the same request and user, the rewritten query (one per row)."""
    neg = rewrites.loc[rewrites["kind"] == "hard_negative", ["request_id", "doc_id", "original_query", "query"]]
    clicks = rs.frame.loc[(rs.frame["kind"] == "click") & rs.frame["request_id"].isin(neg["request_id"]),
                          ["request_id", "doc_id", "query"]]
    keyed = pd.DataFrame({"request_id": clicks["request_id"], "doc_id": clicks["doc_id"],
                          "original_query": clicks["query"], "row": clicks.index.to_numpy()})
    m = neg.merge(keyed, on=["request_id", "doc_id", "original_query"], how="inner")
    m = m.drop_duplicates("row", keep="first").reset_index(drop=True)
    rs.rewrite_row = np.full(len(rs), -1, dtype=np.int64)
    if m.empty:
        return
    # only the rewritten rows' query-side columns (a copy of every column of 1.2M rows took ~1.3 GB at `large`)
    cols = rs.frame.columns.get_indexer(_query_columns(rs.frame, featurizer))
    base = rs.frame.iloc[m["row"].to_numpy(), cols].reset_index(drop=True)
    base["query"] = m["query"].to_numpy()
    rs.rewrite = query_arrays_chunked(base, featurizer)
    rs.rewrite_row[m["row"].to_numpy()] = np.arange(len(m))


@dataclass
class ValidationSet:
    """Held-out requests of the last training day: one query row each and its clicked docs."""

    rows: RowSet
    query_index: np.ndarray
    clicked: list[list[int]]

    @property
    def n_requests(self) -> int:
        return len(self.query_index)


@dataclass
class TrainingData:
    """Everything one training run reads, featurized."""

    day: str
    train_days: list[str]
    docs: DocTable
    train: RowSet
    valid: ValidationSet | None
    hard: list[np.ndarray] | None
    exposed: list[np.ndarray] | None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def validation_mask(frame: pd.DataFrame, last_day: str, share: float) -> np.ndarray:
    """Rows of requests of `last_day` whose stable hash of request_id falls in the first `share` of the range."""
    from ebr.text.hashing import stable_hash64

    if share <= 0:
        return np.zeros(len(frame), dtype=bool)
    day = pd.to_datetime(frame["event_timestamp"], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    on_day = day == last_day
    req = frame["request_id"].astype(str).to_numpy()
    cut = int(round(share * 10_000))
    hashed = np.array([stable_hash64(r, "ebr_valid") % 10_000 < cut for r in req[on_day]], dtype=bool)
    out = np.zeros(len(frame), dtype=bool)
    out[np.flatnonzero(on_day)[hashed]] = True
    return out


def _validation(frame: pd.DataFrame, docs: DocTable, featurizer: FeaturizerConfig,
                keep_features: bool = True) -> ValidationSet | None:
    clicks = frame[frame["kind"] == "click"].reset_index(drop=True)
    if clicks.empty:
        return None
    requests = pd.Index(clicks["request_id"].unique())
    rows = build_rowset(clicks, docs, featurizer, requests, None, keep_features=keep_features)
    first = clicks.drop_duplicates("request_id").index.to_numpy()
    clicked = clicks.groupby("request_id", sort=False)["doc_id"].agg(lambda s: sorted(set(s.tolist())))
    return ValidationSet(rows, first, [clicked[r] for r in clicks.loc[first, "request_id"]])


def load_training_data(samples_dir: str | Path, features_dir: str | Path, cfg: TwoTowerTrainConfig,
                       keep_features: bool = True) -> TrainingData:
    """Read the samples of day D, the doc table as of D (the negatives table's docs: known before D) and featurize
    everything. `keep_features`: the row sets' frames keep the joined feature columns (else only `ROW_COLUMNS`,
    as a featurization-cache entry has them: what the trainer's path asks for, to bound its memory)."""
    from ebr.features.doc_features import doc_feature_table

    manifest = read_samples_manifest(samples_dir)
    day, train_days = manifest["day"], list(manifest.get("train_days", []))
    if not train_days:
        raise ValueError(f"{Path(samples_dir) / SAMPLES_MANIFEST} lists no train_days")
    featurizer = cfg.model.featurizer
    negatives = sample_table(samples_dir, manifest, "negatives")
    if negatives is None or negatives.empty:
        raise ValueError(f"samples in {samples_dir} have no negatives table (the random-negative sampling table)")
    table = doc_feature_table(features_dir, negatives[["doc_id"]], day, cfg.features_as_of)
    docs = DocTable.build(table, negatives, featurizer)
    return_freed_memory()  # the corpus' featurization intermediates (1M titles at `large`)
    frame, notes = positives_with_features(samples_dir, manifest, features_dir, table)
    del table  # the doc table's arrays are built; its frame (1M docs at `large`) is not needed past here
    if not cfg.data.use_rewrites:
        frame = frame[frame["kind"] == "click"].reset_index(drop=True)
    valid = validation_mask(frame, train_days[-1], cfg.data.valid_share)
    val = _validation(frame[valid], docs, featurizer, keep_features) if valid.any() else None
    n_positives = len(frame)
    by_kind = {k: int(v) for k, v in frame["kind"].value_counts().sort_index().items()}
    train_frame = frame[~valid].reset_index(drop=True)
    del frame  # one copy of the joined positives while the training rows are featurized (memory at `large`)
    if cfg.data.max_rows is not None and len(train_frame) > cfg.data.max_rows:
        train_frame = train_frame.iloc[len(train_frame) - cfg.data.max_rows :].reset_index(drop=True)
        notes.append(f"training rows capped at data.max_rows = {cfg.data.max_rows} (latest kept)")
    if len(train_frame) < 2:
        raise ValueError(f"only {len(train_frame)} training row(s) after the validation split: nothing to train on")
    requests = pd.Index(train_frame["request_id"].unique())
    rewrites = sample_table(samples_dir, manifest, "rewrites") if cfg.data.use_rewrites else None
    pit = cfg.data.positive_doc_features == "point_in_time"
    train = build_rowset(train_frame, docs, featurizer, requests, rewrites, pit, keep_features)
    del train_frame
    return_freed_memory()
    if cfg.data.valid_share > 0 and val is None:
        notes.append(f"no held-out request on {train_days[-1]}: no validation, no early stopping")

    hard = exposed = None
    counts = {"positives": n_positives, "train_rows": len(train), "train_requests": len(requests),
              "valid_requests": val.n_requests if val else 0, "corpus_docs": len(docs),
              "rewrite_negatives": int((train.rewrite_row >= 0).sum()) if train.rewrite_row is not None else 0}
    if cfg.negatives.hard_negatives:
        table_h = sample_table(samples_dir, manifest, "hard_negatives")
        if table_h is None or table_h.empty:
            notes.append("no hard negatives in the samples (no previous index): random and in-batch negatives only")
        else:
            hard = _group_rows(table_h["request_id"], docs.rows(table_h["doc_id"].to_numpy()), requests)
            counts["hard_negative_rows"] = int(sum(len(h) for h in hard))
    if cfg.negatives.use_exposed_unclicked:
        table_e = sample_table(samples_dir, manifest, "exposed_unclicked")
        if table_e is None:
            raise ValueError(
                "negatives.use_exposed_unclicked is on but the samples have no exposed_unclicked table: build "
                "them with samples.use_exposed_unclicked_negatives = true"
            )
        exposed = _group_rows(table_e["request_id"], docs.rows(table_e["doc_id"].to_numpy()), requests)
        counts["exposed_unclicked_rows"] = int(sum(len(e) for e in exposed))
    counts["positives_by_kind"] = by_kind
    return TrainingData(day, train_days, docs, train, val, hard, exposed, counts, notes)
