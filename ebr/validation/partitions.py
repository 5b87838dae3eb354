"""Cheap reads of raw partitions for the history checks: row counts from parquet footers, selected columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from ebr import rawfs
from ebr.validation.frames import to_frame


def partition_files(root: rawfs.Root, table: str, day: str) -> list[rawfs.Root]:
    """Parquet files of `<root>/<table>/ds=<day>` (a local folder or a URI), sorted; empty when it is missing."""
    return rawfs.list_files(rawfs.join(rawfs.raw_root(root), table, f"ds={day}"), ".parquet")


def row_count(root: Path, table: str, day: str) -> int | None:
    """Rows of one partition from the parquet footers; None when the partition is missing or unreadable."""
    files = partition_files(root, table, day)
    if not files:
        return None
    try:
        return sum(rawfs.parquet_file(f).metadata.num_rows for f in files)
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
            parts.append(rawfs.read_parquet(f, columns=columns))
        except (OSError, KeyError, pa.ArrowException):
            return None
    try:
        return to_frame(pa.concat_tables(parts, promote_options="permissive"))
    except pa.ArrowException:
        return None
