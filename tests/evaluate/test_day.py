"""The daily evaluate-and-gate step (`ebr.evaluate.day`): what it hands the evaluation, what it records, what it
decides; the evaluation itself is stood in for (its own tests are in tests/train/test_two_tower_evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ebr.evaluate.day
import ebr.evaluate.two_tower
from ebr.evaluate import evaluate_day as exported_evaluate_day
from ebr.evaluate.day import evaluate_day, ranker_rows
from ebr.evaluate.gate import GateDecision
from ebr.evaluate.two_tower import TwoTowerEvalConfig
from ebr.workspace import Workspace

DAY = "2026-11-08"


def test_ranker_rows_reads_the_coarse_step_report_or_nothing(tmp_path: Path) -> None:
    assert ranker_rows(tmp_path) == ("", {})
    (tmp_path / "report.md").write_text("| ranker | auc |\n", encoding="utf-8")
    (tmp_path / "metrics.json").write_text(json.dumps({"student": {"auc": 0.7}}), encoding="utf-8")
    assert ranker_rows(tmp_path) == ("| ranker | auc |\n", {"student": {"auc": 0.7}})


@pytest.mark.parametrize("publish", [True, False])
def test_evaluate_day_evaluates_against_the_given_champion_and_records_the_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, publish: bool
) -> None:
    seen: dict[str, Any] = {}
    reasons = ["click_recall@100: new 0.5000 vs champion 0.4000 (...): not worse"]

    def fake_evaluate(model_dir, embeddings_dir, features_dir, data_root, day, out_dir, cfg, champion_dir=None,
                      index_dir=None, coarse_dir=None):  # fmt: skip
        seen.update(model_dir=model_dir, champion_dir=champion_dir, index_dir=index_dir, cfg=cfg, day=day,
                    coarse_dir=coarse_dir)
        report = Path(out_dir) / "report"
        report.mkdir(parents=True)
        (report / "report.md").write_text("| system | click_recall@100 |\n", encoding="utf-8")
        return {"report_dir": str(report), "metrics": {"model": {}}, "gate": {"publish": publish, "reasons": reasons},
                "gate_inputs": {"new": {"click_recall@100": 0.5}}, "model_version": "m2", "champion_version": "m1",
                "mlflow_run_id": None}  # fmt: skip

    monkeypatch.setattr(ebr.evaluate.two_tower, "evaluate_two_tower", fake_evaluate)
    monkeypatch.setattr(ebr.evaluate.day, "example_queries", lambda *a, **kw: [{"query": "红色连衣裙"}])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    (coarse / "report.md").write_text("| ranker | auc |\n", encoding="utf-8")
    ws = Workspace.at(tmp_path / "ws")
    cfg = TwoTowerEvalConfig(progress=False)

    decision = evaluate_day(tmp_path / "data", DAY, ws, cfg, champion_dir=tmp_path / "champion/model",
                            model_dir="model", embeddings_dir="emb", index_dir="idx", coarse_dir=coarse,
                            features_dir="feat", out_dir=tmp_path / "out")  # fmt: skip

    assert decision == GateDecision(publish, reasons)
    assert seen == {"model_dir": "model", "champion_dir": tmp_path / "champion/model", "index_dir": "idx",
                    "cfg": cfg, "day": DAY, "coarse_dir": coarse}  # fmt: skip
    record = ws.read(DAY, "evaluation")
    assert record is not None
    assert record["table"] == "| system | click_recall@100 |\n\n| ranker | auc |"
    assert record["examples"] == [{"query": "红色连衣裙"}]
    assert record["gate_inputs"] == {"new": {"click_recall@100": 0.5}}
    assert record["model_version"] == "m2" and record["champion_version"] == "m1"
    assert record["report_dir"] == str(tmp_path / "out" / "report")
    assert record["mlflow_tracking_uri"] is None
    assert exported_evaluate_day is evaluate_day
