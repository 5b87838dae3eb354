"""A day that breaks the contract stops the daily DAG at validation, before training, naming the fault and the
report (through the real KFP local runner and the `ebr` CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ebr.cli import main


@pytest.mark.slow
def test_broken_day_stops_at_validation_with_the_report_path(tiny_data: Path, tiny_days: list[str], tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    day = tiny_days[-1]
    part = next((data / "impressions" / f"ds={day}").glob("*.parquet"))
    pq.write_table(pq.read_table(part).drop(["stage"]), part)
    rc = main(["pipeline", "run", "--local", "--data", str(data), "--day", day, "--workspace", str(tmp_path / "ws")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "Inner task failed: 'validate-data'" in out and "required column 'stage' is missing" in out
    report = Path(out.split("validate_data report: ")[1].split()[0])
    assert report.is_file() and "stage" in report.read_text(encoding="utf-8")
    steps = {p.stem for p in (tmp_path / "ws" / "reports" / day / "steps").glob("*.json")}
    assert steps == {"data_fingerprint", "validate_data"}  # nothing after validation ran
    status = json.loads((tmp_path / "ws" / "reports" / day / "run_status.json").read_text(encoding="utf-8"))
    assert status["state"] == "FAILED", "the exit handler records the failed run in the workspace report"
    assert not (tmp_path / "ws" / "bundles").exists()
