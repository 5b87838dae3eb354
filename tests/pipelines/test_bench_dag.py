"""bench/bench_dag.py reads a run's step records and sets them against the compiled requests and limits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench_dag.py"
_SPEC = importlib.util.spec_from_file_location("bench_dag", _PATH)
bench_dag = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_dag)


def test_quantities_and_task_names():
    assert bench_dag.mebibytes("4Gi") == 4096 and bench_dag.mebibytes("512Mi") == 512
    with pytest.raises(ValueError, match="'4GB'"):
        bench_dag.mebibytes("4GB")
    assert bench_dag.task_of("export_embedding_shard_12") == "export-embedding-shard"
    assert bench_dag.task_of("train_two_tower") == "train-two-tower"


def test_a_run_is_read_per_task_and_overruns_are_flagged(tmp_path: Path):
    steps = tmp_path / "reports" / "2026-01-08" / "steps"
    steps.mkdir(parents=True)
    for name, rss in (("export_embedding_shard_0", 700.0), ("export_embedding_shard_1", 900.0),
                      ("train_two_tower", 99_000.0)):
        (steps / f"{name}.json").write_text(json.dumps({"step": name, "status": "ok", "wall_s": 1.0, "cpu_s": 2.0,
                                                        "peak_rss_mb": rss}), encoding="utf-8")
    (steps / "evaluate.json").write_text(json.dumps({"step": "evaluate", "status": "running"}), encoding="utf-8")
    run = bench_dag.read_run(tmp_path, "2026-01-08")
    assert run["export-embedding-shard"] == {"wall_s": 1.0, "cpu_s": 2.0, "peak_rss_mb": 900.0, "n": 2}
    assert "evaluate" not in run, "only finished steps count"
    rows, warnings = bench_dag.table({"small": run})
    assert any(w.startswith("train-two-tower at small: peak 99000 MiB > request") for w in warnings)
    assert not any(w.startswith("export-embedding-shard") for w in warnings)
    assert {r["task"] for r in rows} >= {"train-two-tower", "export-embedding-shard"}
    with pytest.raises(FileNotFoundError, match="no step records"):
        bench_dag.read_run(tmp_path, "2026-01-09")
