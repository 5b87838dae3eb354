"""The committed pipelines/daily.yaml must equal a fresh compile (the real KFP compiler)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.schedule import resolve_day
from pipelines.compile import DEFAULT_PACKAGE, SCHEDULED_PACKAGE, compile_daily


@pytest.mark.parametrize(("package", "scheduled"), [(DEFAULT_PACKAGE, False), (SCHEDULED_PACKAGE, True)])
def test_committed_pipeline_matches_a_fresh_compile(tmp_path: Path, package: Path, scheduled: bool):
    fresh = compile_daily(tmp_path / "p.yaml", scheduled=scheduled).read_text(encoding="utf-8")
    assert fresh == package.read_text(encoding="utf-8"), (
        f"{package.name} is stale: run `ebr pipeline compile` and commit it")


def test_scheduled_run_evaluates_the_day_before_its_trigger_time():
    assert resolve_day.python_func(day="", scheduled_time="2026-11-24T02:00:00Z") == "2026-11-23"
    assert resolve_day.python_func(day="2026-11-01", scheduled_time="2026-11-24T02:00:00Z") == "2026-11-01"
    with pytest.raises(ValueError, match="RFC 3339"):
        resolve_day.python_func(day="", scheduled_time="yesterday")
    spec = yaml.safe_load(SCHEDULED_PACKAGE.read_text(encoding="utf-8"))
    assert "schedule_time" in yaml.safe_dump(spec["root"]["dag"]["tasks"]["resolve-day"])


def test_compiled_dag_has_every_step_and_the_gate():
    spec = yaml.safe_load(DEFAULT_PACKAGE.read_text(encoding="utf-8"))
    tasks = spec["root"]["dag"]["tasks"]
    for step in ("validate-data", "build-features", "build-samples", "validate-samples", "train-two-tower",
                 "train-fine-ranker", "distill-coarse-ranker", "export-doc-embeddings", "build-index", "evaluate"):
        assert step in tasks, step
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = [t["triggerPolicy"]["condition"] for t in branches.values()]
    assert any("evaluate-publish" in c and "== true" in c for c in conditions)
    assert any("evaluate-publish" in c and "!(" in c for c in conditions)
    # training waits for both validations (data and samples)
    assert "validate-samples" in tasks["train-two-tower"]["dependentTasks"]
    assert tasks["validate-data"]["cachingOptions"].get("enableCache") is True
    assert not tasks["train-two-tower"]["cachingOptions"].get("enableCache", False)
