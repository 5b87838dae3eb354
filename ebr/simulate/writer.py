"""Arrow tables in exactly the contract's schemas, written as one parquet file per table and day.

Parquet options are fixed (zstd, dictionary encoding, statistics) so the same rows give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ebr.contract.schema import TABLES, TS, partition_dir

PART_NAME = "part-00000.parquet"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": True, "write_statistics": True}


def ts_array(us: np.ndarray) -> pa.Array:
    """Microseconds since the epoch as `timestamp[us, tz=UTC]`."""
    return pa.array(np.asarray(us, dtype=np.int64), type=TS)


def nullable(values: np.ndarray, missing: np.ndarray, type_: pa.DataType) -> pa.Array:
    """An arrow array of `type_` with nulls where `missing` is true."""
    return pa.array(np.asarray(values), type=type_, mask=np.asarray(missing, dtype=bool))


def list_column(ids: np.ndarray, texts: pa.Array) -> pa.Array:
    """list<string> rows from an (n, width) matrix of indices into `texts`, -1 = no item (may be empty)."""
    ids = np.asarray(ids)
    mask = ids >= 0
    offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int32)
    values = texts.take(pa.array(ids[mask].astype(np.int64)))
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)


def write_partition(root: Path, table: str, day: str, columns: dict[str, pa.Array]) -> int:
    """Write one day partition of a contract table; returns its row count. Columns must match the schema."""
    spec = TABLES[table]
    missing = [c for c in spec.names if c not in columns]
    extra = [c for c in columns if c not in spec.names]
    if missing or extra:
        raise ValueError(f"table {table}, day {day}: missing columns {missing}, unexpected columns {extra}")
    arrays = []
    for col in spec.columns:
        arr = columns[col.name]
        if arr.type != col.type:
            raise TypeError(f"table {table}, column {col.name}: type {arr.type} instead of {col.type}")
        if not col.nullable and arr.null_count:
            raise ValueError(f"table {table}, column {col.name}: {arr.null_count} nulls in a non-null column")
        arrays.append(arr)
    tbl = pa.Table.from_arrays(arrays, schema=spec.schema)
    path = Path(partition_dir(str(root), table, day)) / PART_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(tbl, path, **PARQUET_OPTIONS)
    return tbl.num_rows
