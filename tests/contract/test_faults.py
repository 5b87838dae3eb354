"""The fault-injection matrix of `ebr check-data`: each kind of delivery fault a search log can carry is caught
as a named violation (table, partition, column, rule) or, for what the contract ignores, a named warning; the
command exits 1 with no traceback and writes nothing. A clean dataset rewritten by another writer (pandas with
pyarrow-backed dtypes) passes."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebr.cli import main
from ebr.contract import check_dataset
from ebr.contract.schema import TABLES

from .conftest import D1, D2, write_table


def _rewrite(root: Path, table: str, day: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = root / table / f"ds={day}" / "part-0.parquet"
    frame = edit(pq.read_table(path).to_pandas())
    pq.write_table(pa.Table.from_pandas(frame, schema=TABLES[table].schema, preserve_index=False), path)


def _duplicate_doc_version(root: Path) -> None:
    _rewrite(root, "docs", D1, lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True))


def _negative(table: str, column: str, day: str = D1) -> Callable[[Path], None]:
    def fault(root: Path) -> None:
        def edit(f: pd.DataFrame) -> pd.DataFrame:
            f = f.copy()
            f.loc[f.index[0], column] = -5
            return f
        _rewrite(root, table, day, edit)
    return fault


def _zero_rows(root: Path) -> None:
    write_table(root, "impressions", D2, [])


def _day_missing_from_one_table(root: Path) -> None:
    shutil.rmtree(root / "user_events" / f"ds={D2}")


def _extra_column(root: Path) -> None:
    path = root / "search_requests" / f"ds={D1}" / "part-0.parquet"
    t = pq.read_table(path)
    pq.write_table(t.append_column("debug_blob", pa.array(["x"] * t.num_rows)), path)


def _stray_file(root: Path) -> None:
    (root / "impressions" / f"ds={D1}" / "part-1.csv").write_text("request_id,doc_id\nr1,1\n", encoding="utf-8")


# fault -> (rule, table, partition, column, is a warning rather than a violation)
FAULTS = {
    "duplicate doc version": (_duplicate_doc_version, "duplicate_key", "docs", D1, "doc_id,event_timestamp", False),
    "negative dwell_ms": (_negative("impressions", "dwell_ms"), "range", "impressions", D1, "dwell_ms", False),
    "negative follower_count": (_negative("authors", "follower_count"), "range", "authors", D1, "follower_count",
                                False),
    "negative age": (_negative("users", "age"), "range", "users", D1, "age", False),
    "zero-row fact partition": (_zero_rows, "empty_partition", "impressions", D2, None, False),
    "a day missing from one table": (_day_missing_from_one_table, "missing_partition", "user_events", D2, None,
                                     False),
    "unexpected extra column": (_extra_column, "extra_column", "search_requests", D1, "debug_blob", True),
    "stray non-parquet file": (_stray_file, "stray_file", "impressions", D1, None, True),
}


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_is_named_and_nothing_is_written(name: str, dataset: Path, capsys):
    inject, rule, table, day, column, warning = FAULTS[name]
    assert check_dataset(dataset).ok_strict(), "the clean dataset has neither violations nor warnings"
    inject(dataset)
    before = _snapshot(dataset)
    report = check_dataset(dataset)
    found = report.warnings if warning else report.violations
    hits = [v for v in found if v.rule == rule]
    assert hits, f"{name}: no {rule} among {[str(v) for v in report.violations + report.warnings]}"
    hit = hits[0]
    assert (hit.table, hit.partition, hit.column) == (table, day, column), str(hit)
    assert report.ok is warning, "a violation fails the check; a warning alone does not"
    rc = main(["check-data", "--data", str(dataset)] + ([] if not warning else ["--strict"]))
    out = capsys.readouterr()
    assert rc == 1 and "Traceback" not in out.out + out.err
    assert f"[{rule}]" in out.out and table in out.out
    assert _snapshot(dataset) == before, "check-data never writes"


def test_a_warning_alone_passes_without_strict(dataset: Path, capsys):
    _extra_column(dataset)
    assert main(["check-data", "--data", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "warnings: 1" in out and "debug_blob" in out and "OK" in out


def test_spark_style_markers_are_not_stray(dataset: Path):
    (dataset / "impressions" / f"ds={D1}" / "_SUCCESS").write_text("", encoding="utf-8")
    (dataset / "impressions" / f"ds={D1}" / ".part-0.parquet.crc").write_text("", encoding="utf-8")
    assert check_dataset(dataset).ok_strict()


def test_a_dimension_day_without_changes_is_fine(dataset: Path):
    """authors and users have no change rows on D2: empty dimension partitions are not faults."""
    assert pq.read_table(dataset / "authors" / f"ds={D2}" / "part-0.parquet").num_rows == 0
    assert check_dataset(dataset).ok_strict()


def test_a_clean_dataset_rewritten_by_pandas_with_pyarrow_dtypes_passes(tiny_data: Path, tmp_path: Path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for f in sorted(data.glob("*/ds=*/*.parquet")):
        pd.read_parquet(f, dtype_backend="pyarrow").to_parquet(f, index=False)
    assert b"[pyarrow]" in pq.read_schema(next(data.glob("docs/ds=*/*.parquet"))).metadata[b"pandas"]
    assert main(["check-data", "--data", str(data)]) == 0
    out = capsys.readouterr()
    assert "violations: 0" in out.out and "Traceback" not in out.err
