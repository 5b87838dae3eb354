"""The clean tiny dataset passes with readable outputs; drift fires on a planted shift and only then."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ebr.contract import load
from ebr.validation import ValidationConfig, ValidationFailed, validate_raw
from ebr.validation.history import exposed_ctr

from .conftest import FAST, rewrite_partition


def test_clean_day_passes_every_check(clean_result, last_day: str):
    assert clean_result.success, [(c.where, c.description, c.observed) for c in clean_result.failed]
    assert clean_result.day == last_day and not clean_result.skipped
    tables = {c.table for c in clean_result.passed}
    assert tables == {"docs", "authors", "users", "search_requests", "impressions", "user_events",
                      "relevance_labels", "drift"}
    families = {c.check for c in clean_result.passed}
    assert {"schema", "type", "not_null", "enum", "range", "unique", "consistency", "timestamp", "references",
            "freshness", "volume", "drift"} <= families


def test_clean_day_writes_report_result_and_data_docs(clean_result, tiny_data: Path, last_day: str):
    out = clean_result.out_dir
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith(f"# Data validation: raw data of {last_day}") and "**Verdict: PASSED**" in report
    ctr = next(c for c in clean_result.passed if c.column == "exposed_ctr")
    imps = load(tiny_data, "impressions", [last_day])
    assert ctr.observed == pytest.approx(exposed_ctr(imps))
    assert f"observed value {ctr.observed:.4g}" in report
    saved = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert saved["success"] is True and len(saved["checks"]) == len(clean_result.checks)
    index = out / "data_docs" / "index.html"
    assert clean_result.data_docs_index == index and index.is_file()
    pages = list((out / "data_docs" / "validations").rglob("*.html"))
    assert any("impressions" in p.name for p in pages)
    assert "Int32" in next(p for p in pages if p.name.endswith("-impressions.html")).read_text(encoding="utf-8")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_first_day_skips_history_checks_with_a_note(tiny_data: Path, tiny_days: list[str], tmp_path: Path):
    result = validate_raw(tiny_data, tiny_days[0], tmp_path / "v", FAST)
    assert result.success
    skipped = {(c.table, c.check) for c in result.skipped}
    assert {("search_requests", "volume"), ("impressions", "volume"), ("user_events", "volume"),
            ("drift", "drift")} <= skipped
    assert all("not run" in c.note for c in result.skipped)
    assert "## Skipped checks" in (tmp_path / "v" / "report.md").read_text(encoding="utf-8")


def double_ctr(root: Path, day: str) -> None:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        exposed = df["stage"] == "exposed"
        clicks = int((exposed & df["clicked"]).sum())
        df.loc[df.index[exposed & ~df["clicked"]][:clicks], "clicked"] = True
        return df

    rewrite_partition(root, "impressions", day, change)


def test_doubled_ctr_fires_drift_only(data_copy: Path, last_day: str, tmp_path: Path, clean_result):
    double_ctr(data_copy, last_day)
    with pytest.raises(ValidationFailed) as info:
        validate_raw(data_copy, last_day, tmp_path / "v", FAST)
    failed = info.value.result.failed
    assert [(c.table, c.column, c.check) for c in failed] == [("drift", "exposed_ctr", "drift")]
    before = next(c for c in clean_result.checks if c.column == "exposed_ctr")
    assert before.status == "passed"
    assert failed[0].observed == pytest.approx(2 * before.observed, rel=0.01)
    assert failed[0].observed > failed[0].expected["max_value"]
    assert "CTR of exposed impressions" in (tmp_path / "v" / "report.md").read_text(encoding="utf-8")


def test_drift_can_be_made_a_warning(data_copy: Path, last_day: str, tmp_path: Path):
    double_ctr(data_copy, last_day)
    cfg = ValidationConfig(data_docs=False, warn_only=["drift"])
    result = validate_raw(data_copy, last_day, tmp_path / "v", cfg)
    assert result.success and [c.column for c in result.warnings] == ["exposed_ctr"]
    assert "## Warnings (1)" in (tmp_path / "v" / "report.md").read_text(encoding="utf-8")


def test_category_mix_shift_fires_psi(data_copy: Path, last_day: str, tmp_path: Path):
    def one_category(df: pd.DataFrame) -> pd.DataFrame:
        df["query_category_leaf"] = df["query_category_leaf"].mode().iloc[0]
        return df

    rewrite_partition(data_copy, "search_requests", last_day, one_category)
    result = validate_raw(data_copy, last_day, tmp_path / "v", FAST, raise_on_failure=False)
    assert [(c.column, c.check) for c in result.failed] == [("query_category_psi", "drift")]
    psi = result.failed[0]
    assert psi.observed > ValidationConfig().category_psi_max and "largest share changes" in psi.note


def test_tighter_volume_tolerance_is_honoured(data_copy: Path, last_day: str, tmp_path: Path):
    rewrite_partition(data_copy, "user_events", last_day, lambda df: df.iloc[: int(len(df) * 0.8)])
    loose = validate_raw(data_copy, last_day, tmp_path / "a", FAST, raise_on_failure=False)
    tight = validate_raw(data_copy, last_day, tmp_path / "b", ValidationConfig(data_docs=False, volume_tolerance=0.1),
                         raise_on_failure=False)
    assert loose.success
    assert [(c.table, c.check) for c in tight.failed] == [("user_events", "volume")]


def test_bad_arguments_raise_clear_errors(tiny_data: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        validate_raw(tmp_path / "nowhere", "2026-11-01", tmp_path / "v")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        validate_raw(tiny_data, "yesterday", tmp_path / "v")
    assert not (tmp_path / "v").exists()
