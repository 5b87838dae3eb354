"""validate_samples: the sample tables against their specs; broken tables fail and are named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from ebr.contract.schema import Column, TableSpec
from ebr.validation import SAMPLE_TABLES, Range, SampleSpec, ValidationFailed, validate_samples
from ebr.validation.expectations import Expect

from .conftest import FAST, write_samples


def _run(tmp_path: Path, frames: dict[str, pd.DataFrame], **kwargs):
    folder = write_samples(tmp_path / "samples", frames)
    return validate_samples(folder, tmp_path / "v", FAST, raise_on_failure=False, **kwargs)


def test_valid_samples_pass_with_report(sample_frames, tmp_path: Path):
    result = _run(tmp_path, sample_frames)
    assert result.success, [(c.where, c.description, c.observed, c.note) for c in result.failed]
    assert {c.table for c in result.passed} == set(SAMPLE_TABLES)
    assert any(c.column == "label" and c.table == "retrieval" for c in result.passed)  # optional column
    report = (tmp_path / "v" / "report.md").read_text(encoding="utf-8")
    assert "**Verdict: PASSED**" in report and "negatives" in report


def test_probabilities_not_summing_to_one_fail(sample_frames, tmp_path: Path):
    frames = dict(sample_frames, negatives=sample_frames["negatives"].assign(
        prob=sample_frames["negatives"]["prob"] * 0.9))
    result = _run(tmp_path, frames)
    (hit,) = result.failed
    assert (hit.table, hit.column, hit.check) == ("negatives", "prob", "sum")
    assert hit.observed == pytest.approx(0.9)
    assert "observed value 0.9" in (tmp_path / "v" / "report.md").read_text(encoding="utf-8")


def test_zero_probability_fails_the_open_range(sample_frames, tmp_path: Path):
    neg = sample_frames["negatives"].copy()
    moved = neg.loc[0, "prob"]
    neg.loc[0, "prob"] = 0.0
    neg.loc[1, "prob"] += moved  # still sums to 1
    result = _run(tmp_path, dict(sample_frames, negatives=neg))
    (hit,) = result.failed
    assert (hit.table, hit.column, hit.check) == ("negatives", "prob", "range")
    assert hit.examples[0]["doc_id"] == int(neg.loc[0, "doc_id"])


def test_duplicate_keys_fail(sample_frames, tmp_path: Path):
    ranking = sample_frames["ranking"]
    frames = dict(sample_frames, ranking=pd.concat([ranking, ranking.head(3)], ignore_index=True))
    with pytest.raises(ValidationFailed) as info:
        validate_samples(write_samples(tmp_path / "s", frames), tmp_path / "v", FAST)
    (hit,) = info.value.result.failed
    assert (hit.table, hit.column, hit.check) == ("ranking", "request_id,doc_id", "unique")
    assert hit.unexpected_count == 6
    assert hit.examples[0]["request_id"] == ranking["request_id"].iloc[0]


def test_wrong_type_missing_column_and_bad_label(sample_frames, tmp_path: Path):
    retrieval = sample_frames["retrieval"].drop(columns=["user_id"])
    ranking = sample_frames["ranking"].assign(label_click=3)
    negatives = sample_frames["negatives"].assign(doc_id=lambda d: d["doc_id"].astype(str))
    result = _run(tmp_path, {"retrieval": retrieval, "ranking": ranking, "negatives": negatives})
    failed = {(c.table, c.column, c.check) for c in result.failed}
    assert failed == {("retrieval", None, "schema"), ("ranking", "label_click", "range"),
                      ("negatives", "doc_id", "type")}
    schema = next(c for c in result.failed if c.check == "schema")
    assert "user_id" in schema.note
    assert ("retrieval", "user_id") in {(c.table, c.column) for c in result.skipped}
    doc_type = next(c for c in result.failed if c.check == "type")
    assert doc_type.observed == "object" and doc_type.expected["type_"] == "Int64"


def test_missing_or_absent_tables_fail(sample_frames, tmp_path: Path):
    result = _run(tmp_path, {"retrieval": sample_frames["retrieval"]},
                  tables=["retrieval", "negatives"])
    assert [(c.table, c.observed) for c in result.failed] == [("negatives", "missing")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationFailed, match="at least one sample table"):
        validate_samples(empty, tmp_path / "v2", FAST)
    with pytest.raises(ValueError, match="no sample spec"):
        validate_samples(empty, tmp_path / "v3", FAST, tables=["nope"])


def test_partitioned_table_folder_and_custom_spec(tmp_path: Path):
    spec = SampleSpec(TableSpec(name="pairs", key=("a",), has_event_timestamp=False,
                                columns=(Column("a", pa.int64()), Column("p", pa.float64()))),
                      ranges=(Range("p", lo=0.0, hi=1.0),))
    folder = tmp_path / "samples" / "pairs"
    folder.mkdir(parents=True)
    pd.DataFrame({"a": [1, 2], "p": [0.5, 0.2]}).to_parquet(folder / "part-0.parquet")
    pd.DataFrame({"a": [2, 3], "p": [0.1, 1.5]}).to_parquet(folder / "part-1.parquet")
    result = validate_samples(tmp_path / "samples", tmp_path / "v", FAST, specs={"pairs": spec},
                              raise_on_failure=False)
    assert {(c.column, c.check) for c in result.failed} == {("a", "unique"), ("p", "range")}


class _BrokenSpec(SampleSpec):
    def expectations(self, present: set[str], sum_tolerance: float) -> list[Expect]:
        return [Expect("ExpectNoSuchThing", {"column": "doc_id"}, "range", "cannot be built")]


def test_nothing_is_written_when_a_run_breaks(sample_frames, tmp_path: Path):
    folder = write_samples(tmp_path / "samples", sample_frames)
    out = tmp_path / "v"
    out.mkdir()
    (out / "report.md").write_text("previous run", encoding="utf-8")
    broken = {"negatives": _BrokenSpec(SAMPLE_TABLES["negatives"].table)}
    with pytest.raises(ValueError, match="ExpectNoSuchThing"):
        validate_samples(folder, out, FAST, specs=broken)
    assert [p.name for p in out.iterdir()] == ["report.md"]
    assert (out / "report.md").read_text(encoding="utf-8") == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples", "v"]


def test_a_failed_run_replaces_the_previous_output_whole(sample_frames, tmp_path: Path):
    out = tmp_path / "v"
    out.mkdir()
    (out / "stale.txt").write_text("old", encoding="utf-8")
    frames = dict(sample_frames, negatives=sample_frames["negatives"].assign(prob=0.5))
    with pytest.raises(ValidationFailed) as info:
        validate_samples(write_samples(tmp_path / "s", frames), out, FAST)
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "result.json"]
    saved = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert saved["counts"]["failed"] == len(info.value.result.failed) > 0
