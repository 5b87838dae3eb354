"""Live progress of a local run: step starts and finishes with a one-line result, and the running step's newest
progress bar taken from the runner's log."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pipelines.progress import StepWatcher, last_bar, result_line


def _rec(d: Path, name: str, **fields) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps({"step": name, **fields}), encoding="utf-8")


def test_watcher_prints_each_start_and_finish_once(tmp_path: Path):
    steps, log, out = tmp_path / "steps", tmp_path / "kfp.log", io.StringIO()
    w = StepWatcher(steps, log, out, heartbeat_s=0.0)
    w.scan()
    assert out.getvalue() == ""
    _rec(steps, "build_features", status="running")
    log.write_text("noise\rtrain:  10%|#         | 1/10 [00:01<00:09]\rtrain:  40%|####      | 4/10 [00:02<00:03]",
                   encoding="utf-8")
    w.scan()
    w.scan()
    _rec(steps, "build_features", status="ok", wall_s=12.34, rows={"docs": 21400, "users": 5350})
    _rec(steps, "validate_data", status="failed", wall_s=1.0, report="/w/report.md")
    w.scan()
    lines = out.getvalue().splitlines()
    assert sum("start  build_features" in ln for ln in lines) == 1
    beats = [ln for ln in lines if "...    build_features" in ln]
    assert beats and "train: 40%|####" in beats[0], "the newest bar of the log, whitespace collapsed"
    assert any("done   build_features (12.3 s) rows: docs 21,400, users 5,350" in ln for ln in lines)
    assert any("FAILED validate_data (1.0 s) FAILED; report: /w/report.md" in ln for ln in lines)


def test_result_line_picks_the_informative_field():
    assert result_line({"status": "ok", "verdict": "PASSED: 12 checks, 0 warnings"}) == "PASSED: 12 checks, 0 warnings"
    assert result_line({"status": "ok", "factory": "IVF64,Flat"}) == "index: IVF64,Flat"
    assert result_line({"status": "ok", "skipped": "rollout.enabled is false"}) == "skipped: rollout.enabled is false"
    assert result_line({"status": "ok"}) == ""


def test_last_bar_without_a_log_or_a_bar(tmp_path: Path):
    assert last_bar(tmp_path / "missing.log") == ""
    (tmp_path / "a.log").write_text("no bars here\n", encoding="utf-8")
    assert last_bar(tmp_path / "a.log") == ""


def test_watcher_thread_starts_and_stops(tmp_path: Path):
    steps, out = tmp_path / "steps", io.StringIO()
    w = StepWatcher(steps, tmp_path / "kfp.log", out, interval_s=0.01)
    w.start()
    _rec(steps, "publish", status="ok", wall_s=3.0, bundle="/w/bundles/v1")
    w.stop()
    assert not w.is_alive()
    assert out.getvalue().count("done   publish (3.0 s) bundle: /w/bundles/v1") == 1
