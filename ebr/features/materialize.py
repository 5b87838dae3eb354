"""Loading the online store for a window of built days, with memory bounded by one batch of rows.

Feast's `materialize` over the file offline store (Dask) reads and sorts every partition of a view before it keeps
the window's latest row per key: at `large` (1M docs, 8 daily snapshots) `doc_stats` alone took 9.4 GB and 8 minutes
(docs/features.md). With the `asof` offline engine the same rows (per key, the latest `event_timestamp` inside the
window, both ends included as in Feast's file store) are read by DuckDB from the views' registered batch sources
and handed to Feast's `write_to_online_store` in batches: Feast still converts and writes every value, the online
store holds what `materialize` would have written. With the `file` engine Feast's own `materialize` runs, its
online writes batched by `online_write_batch_size`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from ebr.features.asof import connect_duckdb, parquet_glob, quote_ident, view_source
from ebr.features.config import OfflineEngine
from ebr.features.definitions import ENTITIES, VIEWS

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)


def latest_rows_sql(glob: str, key: str, timestamp: str, columns: list[str], start: datetime, end: datetime) -> str:
    """DuckDB query of each key's latest row with start <= timestamp <= end (the file store's window)."""
    q = quote_ident
    cols = ", ".join(q(c) for c in [key, timestamp, *columns])
    return (
        f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning = false, union_by_name = true) "
        f"WHERE {q(timestamp)} BETWEEN TIMESTAMPTZ '{start.isoformat()}' AND TIMESTAMPTZ '{end.isoformat()}' "
        f"QUALIFY row_number() OVER (PARTITION BY {q(key)} ORDER BY {q(timestamp)} DESC) = 1"
    )


def materialize_window(store: FeatureStore, start: datetime, end: datetime, engine: OfflineEngine, batch_rows: int,
                       threads: int | None = None, memory_limit: str | None = None) -> dict[str, int]:
    """Load every view's latest rows of [start, end] into the online store; returns rows written per view
    (Feast's `materialize` does not count them: empty for the `file` engine)."""
    if batch_rows < 1:
        raise ValueError(f"online_write_batch_size must be >= 1, got {batch_rows}")
    if engine == "file":
        # Feast converts each batch to protos before writing: one batch per view would hold a whole view
        store.config.materialization_config.online_write_batch_size = batch_rows
        store.materialize(start_date=start, end_date=end)
        return {}
    written: dict[str, int] = {}
    with connect_duckdb(threads, memory_limit) as con:
        for spec in VIEWS:
            src = view_source(store, spec.name)
            key = ENTITIES[spec.entity].join_key
            sql = latest_rows_sql(parquet_glob(src.path), key, src.timestamp_field, spec.feature_names, start, end)
            reader = con.sql(sql).to_arrow_reader(batch_rows)
            n = 0
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                frame = batch.to_pandas(types_mapper=pd.ArrowDtype)  # arrow types survive Feast's from_pandas
                store.write_to_online_store(spec.name, df=frame)
                n += batch.num_rows
            written[spec.name] = n
            log.info("features: %s rows of %s written to the online store", n, spec.name)
    return written
