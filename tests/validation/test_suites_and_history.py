"""Suites come from the contract's TableSpecs; history statistics and the output folder behave (no GX run)."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pytest

from ebr.contract.schema import TABLES, Column, TableSpec
from ebr.validation.config import ValidationConfig
from ebr.validation.frames import cast_compatible, pandas_dtype, to_frame
from ebr.validation.history import category_mix, exposed_ctr, psi, query_lengths, trailing_days
from ebr.validation.outcome import plain
from ebr.validation.raw_rules import raw_table_expectations
from ebr.validation.staging import staged_dir


@pytest.mark.parametrize("table", sorted(TABLES))
def test_raw_suite_follows_the_table_spec(table: str):
    spec = TABLES[table]
    expects = raw_table_expectations(spec, "2026-03-02")
    by = {(e.gx_type, e.check, e.kwargs.get("column")) for e in expects if e.condition is None}
    for c in spec.columns:
        assert ("ExpectColumnTypeToBe", "type", c.name) in by
        assert (("ExpectColumnValuesToNotBeNull", "not_null", c.name) in by) == (not c.nullable)
        assert (("ExpectColumnValuesToBeInSet", "enum", c.name) in by) == (c.enum is not None)
    schema = next(e for e in expects if e.gx_type == "ExpectTableColumnsToMatchSet")
    assert schema.kwargs["column_set"] == spec.names
    if spec.has_event_timestamp:
        ts = next(e for e in expects if e.check == "timestamp")
        assert str(ts.kwargs["min_value"]) == "2026-03-02 00:00:00+00:00" and ts.kwargs["strict_max"]


def test_a_new_contract_column_gets_checked_without_restating_it():
    spec = TableSpec(name="extra", key=("k",), has_event_timestamp=False,
                     columns=(Column("k", pa.string()), Column("color", pa.string(), enum=("red", "blue"))))
    kinds = {(e.check, e.kwargs.get("column")) for e in raw_table_expectations(spec, "2026-03-02")}
    assert {("type", "color"), ("not_null", "color"), ("enum", "color"), ("unique", "k")} <= kinds


def test_pandas_dtypes_match_the_frames_they_describe():
    t = pa.table({"i": pa.array([1, None], pa.int32()), "b": pa.array([True, None]),
                  "ts": pa.array([0, 1], pa.timestamp("us", tz="UTC")), "s": ["x", None], "f": [0.5, None]})
    frame = to_frame(t)
    assert {c: str(frame[c].dtype) for c in frame} == {c: pandas_dtype(t.schema.field(c).type) for c in frame}


def test_cast_compatible_narrows_safely_and_leaves_the_rest():
    t = pa.table({"label": pa.array([0, 2], pa.int64()), "doc_id": ["1", "2"], "big": pa.array([1, 300])})
    out = cast_compatible(t, {"label": pa.int8(), "doc_id": pa.int64(), "big": pa.int8()})
    assert out.schema.field("label").type == pa.int8()
    assert out.schema.field("doc_id").type == pa.string()  # not the same family: the type check reports it
    assert out.schema.field("big").type == pa.int64()  # unsafe narrowing is not done


def test_trailing_days_are_the_days_before():
    assert trailing_days("2026-03-02", 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]


def test_psi_is_zero_for_equal_mixes_and_grows_with_the_shift():
    ref = pd.Series({"a": 50, "b": 30, "c": 20})
    assert psi(ref * 3, ref, 1e-4) == pytest.approx(0.0)
    small = psi(pd.Series({"a": 55, "b": 27, "c": 18}), ref, 1e-4)
    big = psi(pd.Series({"a": 90, "b": 5, "c": 5}), ref, 1e-4)
    assert 0 < small < 0.1 < ValidationConfig().category_psi_max < big
    new_category = psi(pd.Series({"a": 50, "b": 30, "d": 20}), ref, 1e-4)
    assert math.isfinite(new_category) and new_category > big


def test_statistics_of_a_day():
    imps = pd.DataFrame({"stage": ["exposed", "exposed", "exposed", "ranked"],
                         "clicked": pd.array([True, False, False, False], dtype="boolean")})
    assert exposed_ctr(imps) == pytest.approx(1 / 3)
    assert exposed_ctr(imps[imps["stage"] == "ranked"]) is None
    reqs = pd.DataFrame({"query": ["红色连衣裙", "ab"], "query_category_leaf": ["连衣裙", None]})
    assert query_lengths(reqs).tolist() == [5.0, 2.0]
    assert category_mix(reqs).to_dict() == {"连衣裙": 1, "(none)": 1}


def test_plain_makes_results_json_ready():
    ts = pd.Timestamp("2026-03-01T10:00", tz="UTC")
    value = plain({"a": [pd.NA, float("nan"), ts, (1, 2)], "b": pa.scalar(1).as_py(), "c": pd.NaT})
    assert value == {"a": [None, None, "2026-03-01T10:00:00+00:00", [1, 2]], "b": 1, "c": None}


def test_staged_dir_swaps_in_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), staged_dir(out) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
