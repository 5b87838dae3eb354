"""Point-in-time features for entity rows through Feast's offline store, with every row accounted for.

Feast's file offline store (0.67) silently loses entity rows: a row whose feature rows all lie in its
future or beyond the view's TTL is dropped, and rows that share the join keys of the first joined view and
the timestamp collapse into one (even when they differ in other keys). It also fails to sort the null
timestamps of keys without any row once a table has several files. So each entity is asked separately for
its distinct (key, timestamp) pairs, only of the views that hold rows of the key, and the answers are merged
back here; pairs the store drops are counted per view, reported with examples and then raised, kept with
null features, or dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ebr.features.asof import asof_features, view_source
from ebr.features.config import OFFLINE_ENGINES, OfflineEngine, OnMissing
from ebr.features.definitions import ENTITIES, LIST_FEATURES, SERVICES, TIMESTAMP, VIEW_BY_NAME
from ebr.features.encoding import decode_lists

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)
ENTITY_ORDER = ("user", "query", "doc", "author")
MAX_EXAMPLES = 5
_ROW_KEY = "__ebr_key"


@dataclass
class DroppedRows:
    """Keys one view's offline table dropped (its rows all in the entity row's future or beyond its TTL)."""

    view: str
    keys: int
    rows: int
    examples: list[dict[str, Any]]


@dataclass
class RetrievalReport:
    """What happened to the entity rows of one historical retrieval."""

    service: str
    on_missing: str
    rows_in: int
    rows_out: int = 0
    duplicate_rows: int = 0
    null_key_rows: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, DroppedRows] = field(default_factory=dict)
    missing_rows: int = 0

    def summary(self) -> str:
        """One paragraph: counts and a few examples of dropped keys per entity."""
        parts = [
            f"feature service {self.service!r}: {self.rows_in} entity rows in, {self.rows_out} out; "
            f"{self.missing_rows} row(s) lost features because the offline store dropped their keys "
            f"(every feature row in the row's future or older than the view's TTL; on_missing={self.on_missing!r})"
        ]
        for d in self.dropped.values():
            parts.append(f"{d.view}: {d.keys} key(s) / {d.rows} row(s), e.g. {d.examples}")
        if self.duplicate_rows:
            parts.append(f"{self.duplicate_rows} row(s) repeat another row's keys and timestamp (served once)")
        return "; ".join(parts)


class FeatureRetrievalError(ValueError):
    """Entity rows lost their features in the offline store; carries the report."""

    def __init__(self, report: RetrievalReport) -> None:
        super().__init__(report.summary())
        self.report = report


def _timestamps(entity_df: pd.DataFrame) -> pd.Series:
    if TIMESTAMP not in entity_df.columns:
        raise ValueError(f"entity_df lacks the column {TIMESTAMP!r} (the time each row's features are taken at)")
    ts = entity_df[TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        try:
            ts = pd.to_datetime(ts, utc=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"entity_df column {TIMESTAMP!r} must hold timestamps: {e}") from e
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            raise ValueError(f"entity_df column {TIMESTAMP!r} must be timezone-aware (UTC), got {ts.dtype}")
    if ts.isna().any():
        raise ValueError(f"entity_df column {TIMESTAMP!r} has {int(ts.isna().sum())} null value(s)")
    return ts.dt.tz_convert("UTC")


def _plan(service_name: str, columns: list[str]) -> tuple[dict[str, dict[str, list[str]]], bool]:
    """Features to fetch per entity and view for a service, and whether author_id comes from doc_profile."""
    if service_name not in SERVICES:
        raise ValueError(f"unknown feature service {service_name!r}; services: {sorted(SERVICES)}")
    views = SERVICES[service_name]
    has_author = any(VIEW_BY_NAME[v].entity == "author" for v in views)
    derive_author = has_author and "author_id" not in columns
    plan: dict[str, dict[str, list[str]]] = {}
    for v in views:
        spec = VIEW_BY_NAME[v]
        names = [n for n in spec.feature_names if not (n == "author_id" and not derive_author)]
        plan.setdefault(spec.entity, {})[v] = names
    if derive_author and "doc" not in plan:
        raise ValueError(f"feature service {service_name!r} needs author_id in entity_df")
    for entity, vs in plan.items():
        key = ENTITIES[entity].join_key
        if key not in columns and not (entity == "author" and derive_author):
            raise ValueError(
                f"entity_df lacks the column {key!r} that feature service {service_name!r} joins on (views {list(vs)})"
            )
    clash = [n for vs in plan.values() for names in vs.values() for n in names if n in columns]
    if clash:
        raise ValueError(f"entity_df column(s) {clash} collide with features of service {service_name!r}")
    return {e: plan[e] for e in ENTITY_ORDER if e in plan}, derive_author


def _key_values(values: pd.Series, entity: str) -> tuple[np.ndarray, np.ndarray]:
    """Valid-row mask and the typed key values of those rows."""
    valid = values.notna().to_numpy()
    dtype = ENTITIES[entity].dtype
    key = ENTITIES[entity].join_key
    v = values[valid]
    try:
        typed = v.astype(str).to_numpy() if dtype == "string" else v.astype("int64").to_numpy()
    except (TypeError, ValueError) as e:
        raise ValueError(f"entity_df column {key!r} must hold {dtype} keys: {e}") from e
    return valid, typed


def _view_keys(store: FeatureStore, view: str, key: str) -> pd.Index:
    """Distinct keys that have at least one row in a view's offline table."""
    path = view_source(store, view).path
    return pd.Index(pq.read_table(path, columns=[key]).column(key).unique().to_pandas())


def _fetch(store: FeatureStore, pairs: pd.DataFrame, views: dict[str, list[str]]) -> tuple[pd.DataFrame, np.ndarray]:
    """One Feast call for distinct pairs of one entity: the returned features (indexed by pair id) and a mask
    of the pairs the store returned."""
    refs = [f"{v}:{n}" for v, names in views.items() for n in names]
    got = store.get_historical_features(entity_df=pairs, features=refs).to_df()
    ids = got[_ROW_KEY].to_numpy(dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise RuntimeError(f"the offline store returned duplicate rows for views {list(views)}")
    return got.set_index(_ROW_KEY), pairs[_ROW_KEY].isin(ids).to_numpy()


def _retrieve_entity(
    store: FeatureStore, views: dict[str, list[str]], pairs: pd.DataFrame, key: str, engine: OfflineEngine
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Features of an entity's views for its distinct (key, ts) pairs, and per view the pairs the store dropped.

    `asof` joins in DuckDB (`ebr.features.asof`). Through a Feast offline store, pairs are sent together with
    the views that hold rows of their key (a key without any row in a view is never sent to it: the file store
    fails sorting the null timestamps it produces); when the store drops a pair, its views are asked one by
    one, so one expired view does not hide the others."""
    if engine == "asof":
        feats, has_rows, matched = asof_features(store, pairs, key, views)
        dropped = {v: has_rows[v] & ~matched[v] for v in views}
    else:
        feats, dropped = _retrieve_entity_feast(store, views, pairs, key)
    for name in feats.columns:
        if name in LIST_FEATURES:
            feats[name] = decode_lists(feats[name].astype(object))
    return feats, dropped


def _retrieve_entity_feast(
    store: FeatureStore, views: dict[str, list[str]], pairs: pd.DataFrame, key: str
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    names = [n for ns in views.values() for n in ns]
    feats = pd.DataFrame(index=pd.RangeIndex(len(pairs)), columns=names, dtype=object)
    dropped = {v: np.zeros(len(pairs), dtype=bool) for v in views}
    member = pd.DataFrame({v: pairs[key].isin(_view_keys(store, v, key)).to_numpy() for v in views})
    for signature, idx in member.groupby(list(views), sort=False).groups.items():
        sig = signature if isinstance(signature, tuple) else (signature,)
        chosen = {v: views[v] for v, m in zip(views, sig, strict=True) if m}
        if not chosen:
            continue
        sub = pairs.loc[idx]
        got, ok = _fetch(store, sub, chosen)
        cols = [n for ns in chosen.values() for n in ns]
        feats.loc[got.index, cols] = got[cols].to_numpy(dtype=object)
        lost = sub[~ok]
        for v, ns in (chosen.items() if len(lost) else ()):
            got_v, ok_v = _fetch(store, lost, {v: ns})
            feats.loc[got_v.index, ns] = got_v[ns].to_numpy(dtype=object)
            dropped[v][lost.loc[~ok_v, _ROW_KEY].to_numpy()] = True
    return feats, dropped


def _examples(pairs: pd.DataFrame, mask: np.ndarray, key: str) -> list[dict[str, Any]]:
    rows = pairs.loc[mask, [key, TIMESTAMP]].head(MAX_EXAMPLES)
    return [{key: (v.item() if hasattr(v, "item") else v), TIMESTAMP: t.isoformat()}
            for v, t in zip(rows[key], rows[TIMESTAMP], strict=True)]  # fmt: skip


def offline_engine(store: FeatureStore, engine: OfflineEngine | None = None) -> OfflineEngine:
    """The historical-join engine: `engine` when given, else the one the feature directory records."""
    from ebr.features.store import store_settings

    chosen = engine or store_settings(store.config.repo_path)["offline_engine"]
    if chosen not in OFFLINE_ENGINES:
        raise ValueError(f"offline engine must be one of {list(OFFLINE_ENGINES)}, got {chosen!r}")
    return chosen


def _spread(values: pd.Series, codes: np.ndarray, rows: np.ndarray, n: int, is_list: bool) -> np.ndarray:
    """One feature column of the entity rows: `values` (one per distinct pair) at `codes`, placed at `rows` of n.

    Numbers stay numeric arrays (ints as int64, or float64 with NaN where a row has no key; floats as float64),
    the dtypes an object column would infer, without a Python object per value (2M ranking rows x ~60 features
    in objects took ~4 GB at `large`). Other columns are objects with None (lists: []) where a row has no key."""
    kind, complete = values.dtype.kind, len(rows) == n
    numpy_typed = isinstance(values.dtype, np.dtype) and not is_list
    if numpy_typed and (kind in "fi" or (kind == "b" and complete)):
        dtype = np.dtype("float64") if kind == "f" or not complete else values.dtype if kind == "b" else np.int64
        col = np.empty(n, dtype=dtype) if complete else np.full(n, np.nan, dtype=dtype)
        col[rows] = values.to_numpy()[codes]
        return col
    col = np.full(n, None, dtype=object)
    col[rows] = values.to_numpy(dtype=object)[codes]
    if is_list:
        for i in np.setdiff1d(np.arange(n), rows, assume_unique=True):
            col[i] = []
    return col


def historical_features_with_report(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service_name: str,
    on_missing: OnMissing = "raise",
    engine: OfflineEngine | None = None,
) -> tuple[pd.DataFrame, RetrievalReport]:
    """`entity_df` (same rows, same order, same index) with the service's point-in-time features, and a report.

    entity_df needs `event_timestamp` (tz-aware) and the join keys of the service's entities; a null key
    (a logged-out user) gives null features for that entity. author_id, when absent, is the doc's author as
    of the row's time. Rows whose keys the store dropped are handled by `on_missing` (raise/null/drop).
    `engine` (default: the directory's `offline_engine`) runs the join: DuckDB ASOF or a Feast offline store."""
    engine = offline_engine(store, engine)
    if on_missing not in ("raise", "null", "drop"):
        raise ValueError(f"on_missing must be 'raise', 'null' or 'drop', got {on_missing!r}")
    if not isinstance(entity_df, pd.DataFrame):
        raise TypeError(f"entity_df must be a pandas DataFrame, got {type(entity_df).__name__}")
    plan, derive_author = _plan(service_name, list(entity_df.columns))
    ts = _timestamps(entity_df).reset_index(drop=True)
    n = len(entity_df)
    report = RetrievalReport(service=service_name, on_missing=on_missing, rows_in=n)
    keys_present = [ENTITIES[e].join_key for e in plan if ENTITIES[e].join_key in entity_df.columns]
    report.duplicate_rows = int(entity_df[keys_present].reset_index(drop=True).assign(_t=ts).duplicated().sum())
    given = {e: _key_values(entity_df[ENTITIES[e].join_key].reset_index(drop=True), e)
             for e in plan if not (e == "author" and derive_author)}  # fmt: skip
    features: dict[str, np.ndarray] = {}
    missing = np.zeros(n, dtype=bool)
    for entity, views in plan.items():
        key = ENTITIES[entity].join_key
        if entity in given:
            valid, typed = given[entity]
        else:
            valid, typed = _key_values(pd.Series(features["author_id"]), entity)
        report.null_key_rows[entity] = int((~valid).sum())
        rows = pd.DataFrame({key: typed, TIMESTAMP: ts[valid].array})
        codes = rows.groupby([key, TIMESTAMP], sort=False).ngroup().to_numpy()  # numbered in order of first sight
        pairs = rows.drop_duplicates([key, TIMESTAMP]).reset_index(drop=True)
        pairs[_ROW_KEY] = np.arange(len(pairs), dtype=np.int64)
        rows_valid = np.flatnonzero(valid)
        feats, dropped_by_view = _retrieve_entity(store, views, pairs, key, engine)
        for view, dropped in dropped_by_view.items():
            if dropped.any():
                lost = dropped[codes]
                report.dropped[view] = DroppedRows(view, int(dropped.sum()), int(lost.sum()),
                                                   _examples(pairs, dropped, key))
                missing[rows_valid[lost]] = True
        for name in feats.columns:
            features[name] = _spread(feats[name], codes, rows_valid, n, name in LIST_FEATURES)
    report.missing_rows = int(missing.sum())
    out = entity_df.copy()
    for name, col in features.items():
        s = pd.Series(col, index=entity_df.index, name=name)
        out[name] = s if name in LIST_FEATURES else s.infer_objects()
    if report.missing_rows:
        if on_missing == "raise":
            report.rows_out = n
            raise FeatureRetrievalError(report)
        log.warning("%s", report.summary())
        if on_missing == "drop":
            out = out[~missing]
    report.rows_out = len(out)
    return out, report


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service_name: str,
    on_missing: OnMissing = "raise",
    engine: OfflineEngine | None = None,
) -> pd.DataFrame:
    """`entity_df` with the point-in-time features of `service_name`, row for row (see the report variant).

    Raises FeatureRetrievalError (with the count and examples) when the offline store dropped rows, unless
    `on_missing` is 'null' (keep them with null features) or 'drop'."""
    return historical_features_with_report(store, entity_df, service_name, on_missing, engine)[0]
