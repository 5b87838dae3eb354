"""The doc-feature table: every doc of the corpus known as of a day with its latest features, keyed by doc_id.

Training draws negatives from it and validates against it; the embedding export and the evaluation encode it.
`corpus_docs` is the one loader of the corpus as of a day (the docs table's latest versions), for every floor.
Features come from the Feast offline store of `ebr.features` (views doc_profile, doc_stats, author_profile,
author_stats), taken for each doc at max(as-of time, the doc's first appearance): `day_start` = 00:00 of the day
(statistics through the day before: no look-ahead into an evaluation day), `day_end` = 00:00 of the next day
(freshest, for serving). Feast is imported inside functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.features.definitions import LIST_FEATURES, TIMESTAMP, VIEW_BY_NAME, table_path
from ebr.features.encoding import decode_lists

if TYPE_CHECKING:
    from feast import FeatureStore

AsOf = Literal["day_start", "day_end"]
DOC_VIEWS = ("doc_profile", "doc_stats")
AUTHOR_VIEWS = ("author_profile", "author_stats")
DOC_FEATURE_COLUMNS = tuple(
    n for v in DOC_VIEWS + AUTHOR_VIEWS for n in VIEW_BY_NAME[v].feature_names if n != "author_id"
) + ("author_id",)
_ROW = "__ebr_row"


def _day_start(day: str) -> pd.Timestamp:
    return pd.Timestamp(date.fromisoformat(day), tz="UTC")


def corpus_docs(
    data_root: str | Path, day: str, include_day: bool = True, columns: Sequence[str] = ()
) -> pd.DataFrame:
    """The corpus as of `day`, the one loader of the docs table by day: every doc known by the end of `day`
    (include_day) or before it starts, sorted by doc_id, with its first appearance (`first_seen`) and `columns` of
    its latest version before that instant (the contract's rule: the latest row wins)."""
    root = rawfs.raw_root(data_root)
    limit = _day_start(day) + (pd.Timedelta(days=1) if include_day else pd.Timedelta(0))
    days = [d for d in list_days(root, "docs") if _day_start(d) < limit]
    if not days:
        raise ValueError(f"{root}/docs has no partition {'up to' if include_day else 'before'} {day}: no corpus")
    docs = load(root, "docs", days)
    unknown = [c for c in columns if c not in docs.columns]
    if unknown:
        raise ValueError(f"corpus columns {unknown} are not columns of the docs table")
    docs = docs[docs["event_timestamp"] < limit].sort_values(["doc_id", "event_timestamp"], kind="mergesort")
    first = docs.groupby("doc_id", sort=True)["event_timestamp"].min()
    latest = docs.drop_duplicates("doc_id", keep="last").set_index("doc_id").reindex(first.index)
    out = pd.DataFrame({"doc_id": first.index.to_numpy(dtype=np.int64), "first_seen": first.to_numpy()})
    for c in columns:
        if c not in ("doc_id", "first_seen"):
            out[c] = latest[c].reset_index(drop=True)
    return out.reset_index(drop=True)


def feature_times(corpus: pd.DataFrame, day: str, as_of: AsOf = "day_start") -> pd.Series:
    """When each doc's features are read: max(as-of instant of `day`, first appearance when `first_seen` is given)."""
    if as_of not in ("day_start", "day_end"):
        raise ValueError(f"as_of must be 'day_start' or 'day_end', got {as_of!r}")
    at = _day_start(day) + (pd.Timedelta(days=1) if as_of == "day_end" else pd.Timedelta(0))
    if "first_seen" not in corpus.columns:
        return pd.Series(pd.DatetimeIndex([at] * len(corpus)).astype("datetime64[us, UTC]"))
    first = pd.to_datetime(corpus["first_seen"], utc=True).reset_index(drop=True)
    return first.where(first > at, at).astype("datetime64[us, UTC]")


def _retrieve(store: FeatureStore, key: str, keys: np.ndarray, times: pd.Series, views: Sequence[str]) -> pd.DataFrame:
    """Point-in-time features of `views` for (key, time) rows, in row order, joined by the directory's offline
    engine; rows the store dropped (a view holds rows of the key, none at or before the time) are all-null."""
    from ebr.features.asof import asof_features
    from ebr.features.retrieval import offline_engine

    names = [n for v in views for n in VIEW_BY_NAME[v].feature_names if n != key]
    entity = pd.DataFrame({key: keys, TIMESTAMP: times.to_numpy(), _ROW: np.arange(len(keys), dtype=np.int64)})
    if not len(entity):
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names}).assign(**{_ROW: pd.Series(dtype=bool)})
    if offline_engine(store) == "asof":
        by_view = {v: [n for n in VIEW_BY_NAME[v].feature_names if n != key] for v in views}
        out, has_rows, matched = asof_features(store, entity, key, by_view)
        present = np.logical_and.reduce([matched[v] | ~has_rows[v] for v in views])
        if not present.all():
            out.loc[~present, names] = None
    else:
        refs = [f"{v}:{n}" for v in views for n in VIEW_BY_NAME[v].feature_names if n != key]
        got = store.get_historical_features(entity_df=entity, features=refs).to_df()
        out = got.set_index(_ROW)[names].reindex(pd.RangeIndex(len(keys)))
        present = np.zeros(len(keys), dtype=bool)
        present[got[_ROW].to_numpy(dtype=np.int64)] = True
    for n in names:
        if n in LIST_FEATURES:
            out[n] = decode_lists(out[n].astype(object))
    return out.reset_index(drop=True).assign(**{_ROW: present})


def check_known_docs(features_dir: str | Path, doc_ids: np.ndarray, times: pd.Series) -> None:
    """With the local file offline store: every doc needs a doc_profile row at or before its time (Feast's file
    store fails on keys it has no row for at all); the error names examples."""
    path = Path(table_path(features_dir, "doc_profile"))
    if not path.is_dir():
        return
    import pyarrow.parquet as pq

    rows = pq.read_table(path, columns=["doc_id", TIMESTAMP]).to_pandas()
    first = rows.groupby("doc_id")[TIMESTAMP].min()
    seen = pd.Series(np.asarray(doc_ids, dtype=np.int64)).map(first)
    at = pd.Series(pd.to_datetime(times, utc=True)).reset_index(drop=True)
    bad = (seen.isna() | (pd.to_datetime(seen, utc=True) > at)).to_numpy()
    if bad.any():
        raise ValueError(
            f"doc features: {int(bad.sum())} of {len(doc_ids)} docs have no doc_profile row at or before their time "
            f"in {features_dir} (e.g. doc ids {np.asarray(doc_ids)[bad][:5].tolist()}); build_features for the day "
            "first, or pass docs of its corpus"
        )


def doc_features(store: FeatureStore, doc_ids: np.ndarray, times: pd.Series) -> pd.DataFrame:
    """Doc and author features of each doc at its time: doc_id + DOC_FEATURE_COLUMNS, one row per doc, same order.

    A doc without any doc_profile row at or before its time is an error naming examples; a missing author row
    leaves the author features null."""
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    if len(np.unique(doc_ids)) != len(doc_ids):
        raise ValueError("doc_features: doc ids must be unique")
    times = pd.Series(pd.to_datetime(times, utc=True)).reset_index(drop=True)
    docs = _retrieve(store, "doc_id", doc_ids, times, DOC_VIEWS)
    lost = ~docs.pop(_ROW).to_numpy(dtype=bool) | docs["title"].isna().to_numpy()
    if lost.any():
        raise ValueError(
            f"doc features: {int(lost.sum())} of {len(doc_ids)} docs have no doc_profile row at or before their time "
            f"in the feature store (e.g. doc ids {doc_ids[lost][:5].tolist()}); run build_features for the day first"
        )
    authors = docs["author_id"].astype("int64").to_numpy()
    pairs = pd.DataFrame({"author_id": authors, TIMESTAMP: times.to_numpy()})
    codes = pairs.groupby(["author_id", TIMESTAMP], sort=False).ngroup().to_numpy()
    uniq = pairs.drop_duplicates(["author_id", TIMESTAMP]).reset_index(drop=True)
    author = _retrieve(store, "author_id", uniq["author_id"].to_numpy(), uniq[TIMESTAMP], AUTHOR_VIEWS)
    author = author.drop(columns=[_ROW]).iloc[codes].reset_index(drop=True)
    out = pd.concat([pd.DataFrame({"doc_id": doc_ids}), docs, author], axis=1)
    out["author_id"] = authors
    return out[["doc_id", *DOC_FEATURE_COLUMNS]]


def doc_feature_table(
    features_dir: str | Path,
    corpus: pd.DataFrame,
    day: str,
    as_of: AsOf = "day_start",
    store: FeatureStore | None = None,
) -> pd.DataFrame:
    """The docs of `corpus` (doc_id, optional first_seen) with their features as of `day`, sorted by doc_id.

    The training corpus is the samples' negatives table (docs known before D); the serving and evaluation corpus
    is `corpus_docs(data_root, day)` (docs known by the end of D)."""
    from ebr.features import open_store

    if "doc_id" not in corpus.columns:
        raise ValueError("corpus frame has no column 'doc_id'")
    corpus = corpus.sort_values("doc_id").reset_index(drop=True)
    times = feature_times(corpus, day, as_of)
    check_known_docs(features_dir, corpus["doc_id"].to_numpy(), times)
    store = store if store is not None else open_store(features_dir)
    return doc_features(store, corpus["doc_id"].to_numpy(), times)


def fill_missing_doc_features(rows: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows whose doc features are null (the point-in-time join found none) or absent take them from `table`
    (the doc-feature table, by doc_id); returns the rows and how many were filled."""
    missing_cols = [c for c in DOC_FEATURE_COLUMNS if c not in rows.columns and c != "author_id"]
    out = rows.reset_index(drop=True).copy()
    for c in missing_cols:
        out[c] = None
    need = out["title"].isna().to_numpy() if "title" in out.columns else np.ones(len(out), dtype=bool)
    if not need.any():
        return out, 0
    by_id = table.set_index("doc_id")
    ids = out.loc[need, "doc_id"].to_numpy(dtype=np.int64)
    absent = ~np.isin(ids, by_id.index.to_numpy())
    if absent.any():
        raise ValueError(f"doc ids {ids[absent][:5].tolist()} have no joined features and are not in the doc table")
    cols = [c for c in DOC_FEATURE_COLUMNS if c != "author_id"]
    filled = by_id.loc[ids, cols]
    for c in cols:
        col = out[c].astype(object).to_numpy()
        col[need] = filled[c].astype(object).to_numpy()
        out[c] = col
    return out, int(need.sum())
