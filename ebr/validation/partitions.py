"""Cheap reads of raw partitions for the history checks: row counts from parquet footers, selected columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ebr.validation.frames import to_frame


def partition_files(root: Path, table: str, day: str) -> list[Path]:
    """Parquet files of `<root>/<table>/ds=<day>`, sorted; empty when the partition is missing."""
    pdir = root / table / f"ds={day}"
    return sorted(p for p in pdir.glob("*.parquet") if p.is_file()) if pdir.is_dir() else []


def row_count(root: Path, table: str, day: str) -> int | None:
    """Rows of one partition from the parquet footers; None when the partition is missing or unreadable."""
    files = partition_files(root, table, day)
    if not files:
        return None
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, pa.ArrowException):
        return None


def read_columns(root: Path, table: str, day: str, columns: list[str]) -> pd.DataFrame | None:
    """`columns` of one partition (union of its files); None when missing, unreadable or lacking a column."""
    files = partition_files(root, table, day)
    if not files:
        return None
    parts = []
    for f in files:
        try:
            parts.append(pq.read_table(f, columns=columns))
        except (OSError, KeyError, pa.ArrowException):
            return None
    try:
        return to_frame(pa.concat_tables(parts, promote_options="permissive"))
    except pa.ArrowException:
        return None
