"""Point-in-time join in DuckDB: an ASOF JOIN over the offline tables of Feast's own feature views.

Feast stays the single definition of every feature: the views, their batch sources (the parquet tables) and
TTLs are read from the store's registry, and the online store is still materialized by Feast. Only the
historical join runs here, with the file store's semantics (`feast.infra.offline_stores.dask`): the row of a
key with the latest `event_timestamp <= t`, and for a view with a TTL only if `event_timestamp >= t - ttl`.
A key with rows in the view but none that qualify is reported as dropped (the file store drops such rows),
a key with no row at all just gets null features. One vectorized join per view replaces the file store's
merge of every entity row with every row of its key (bench/results/features.md measures both).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ebr.features.definitions import TIMESTAMP

if TYPE_CHECKING:
    from feast import FeatureStore

_PAIRS = "__ebr_pairs"
_TS = "__ebr_feature_ts"


@dataclass(frozen=True)
class ViewSource:
    """What the join needs of one Feast feature view: its parquet table, timestamp field and TTL."""

    name: str
    path: Path
    timestamp_field: str
    ttl_seconds: float


def view_source(store: FeatureStore, view: str) -> ViewSource:
    """The registry's batch source and TTL of a feature view (paths relative to the store's repo)."""
    fv = store.get_feature_view(view)
    src = fv.batch_source
    path = Path(src.path)
    if not path.is_absolute():
        path = Path(store.config.repo_path) / path
    if not path.exists():
        raise FileNotFoundError(f"the offline table of view {view!r} is missing at {path}; build the features first")
    ttl = fv.ttl.total_seconds() if fv.ttl else 0.0
    return ViewSource(view, path, src.timestamp_field or TIMESTAMP, ttl)


def quote_ident(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def parquet_glob(path: Path) -> str:
    """The parquet files of a batch source (a partitioned directory or one file), as a DuckDB glob."""
    return str(path / "**" / "*.parquet") if path.is_dir() else str(path)


@contextmanager
def connect_duckdb(threads: int | None, memory_limit: str | None = None) -> Iterator:  # duckdb connection
    """An in-memory DuckDB connection in UTC (`threads`: DuckDB's thread count, None = its default).

    With `memory_limit` (e.g. "2GB") DuckDB spills joins past it to a private temporary directory, removed on
    exit; without one DuckDB takes up to 80% of the machine's memory (the doc views' join at `large` peaked
    ~5.7 GB above the step's own memory, 2.2 GB with a 1 GB limit)."""
    import duckdb

    con = duckdb.connect(config={"threads": threads} if threads else {})
    spill = tempfile.mkdtemp(prefix="ebr-duckdb-") if memory_limit else None
    try:
        con.execute("SET TimeZone = 'UTC'")
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET temp_directory = '{spill}'")
        yield con
    finally:
        con.close()
        if spill:
            shutil.rmtree(spill, ignore_errors=True)


def asof_features(
    store: FeatureStore,
    pairs: pd.DataFrame,
    key: str,
    views: dict[str, list[str]],
    threads: int | None = None,
    memory_limit: str | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Features of `views` (one entity, join key `key`) for `pairs` (key, event_timestamp), in pair order.

    Returns the feature columns (the offline table's dtypes, null where no row qualified), and per view a mask
    of the pairs whose key has rows in the view and a mask of those that got a row (point-in-time, within TTL).
    `memory_limit`: DuckDB's ("" = none), default the feature directory's recorded `offline_memory_limit`."""
    if TIMESTAMP not in pairs.columns or key not in pairs.columns:
        raise ValueError(f"pairs need the columns {key!r} and {TIMESTAMP!r}, got {list(pairs.columns)}")
    n = len(pairs)
    names = [c for cols in views.values() for c in cols]
    has_rows: dict[str, np.ndarray] = {}
    matched: dict[str, np.ndarray] = {}
    if n == 0:
        empty = pd.DataFrame(index=pd.RangeIndex(0), columns=names, dtype=object)
        return empty, {v: np.zeros(0, dtype=bool) for v in views}, {v: np.zeros(0, dtype=bool) for v in views}
    columns: dict[str, pd.Series] = {}
    probe = pd.DataFrame({key: pairs[key].to_numpy(), TIMESTAMP: pd.to_datetime(pairs[TIMESTAMP], utc=True)})
    probe["__ebr_pos"] = np.arange(n, dtype=np.int64)
    if memory_limit is None:
        from ebr.features.store import store_settings

        memory_limit = store_settings(store.config.repo_path)["offline_memory_limit"]
    with connect_duckdb(threads, memory_limit) as con:
        con.register(_PAIRS, probe)
        for view, cols in views.items():
            src = view_source(store, view)
            q = quote_ident
            table = (
                f"SELECT {q(key)}, {q(src.timestamp_field)} AS {_TS}, {', '.join(q(c) for c in cols)} "
                f"FROM read_parquet('{parquet_glob(src.path)}', hive_partitioning = false, union_by_name = true)"
            )
            ttl_us = int(round(src.ttl_seconds * 1e6))
            within = f"v.{_TS} >= p.{TIMESTAMP} - to_microseconds({ttl_us})" if ttl_us else "TRUE"
            sql = (
                f"WITH v AS ({table}), keys AS (SELECT DISTINCT {q(key)} FROM v) "
                f"SELECT p.__ebr_pos, p.{q(key)} IN (SELECT {q(key)} FROM keys) AS __has, "
                f"(v.{_TS} IS NOT NULL AND {within}) AS __ok, {', '.join('v.' + q(c) for c in cols)} "
                f"FROM {_PAIRS} p ASOF LEFT JOIN v ON p.{q(key)} = v.{q(key)} AND p.{TIMESTAMP} >= v.{_TS} "
                "ORDER BY p.__ebr_pos"
            )
            got = con.sql(sql).to_arrow_table().to_pandas()
            if len(got) != n:
                raise RuntimeError(f"ASOF join of view {view!r} returned {len(got)} rows for {n} pairs")
            ok = got["__ok"].to_numpy(dtype=bool)
            has_rows[view] = got["__has"].to_numpy(dtype=bool)
            matched[view] = ok
            for c in cols:  # the table's dtype where every pair matched, nulls (NaN) where a pair did not
                columns[c] = got[c] if ok.all() else got[c].where(ok)
    feats = pd.DataFrame(columns, index=pd.RangeIndex(n))
    return feats[names], has_rows, matched
