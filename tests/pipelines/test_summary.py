"""The terminal summary of a daily run: one line per step in DAG order with its one-line result."""

from __future__ import annotations

from pipelines.summary import render_run


def test_steps_in_dag_order_with_rows_verdicts_and_the_easy_hard_ratio():
    report = {
        "day": "2026-11-08", "wall_s": 12.5,
        "steps": {
            "train_two_tower": {"status": "ok", "wall_s": 5.0,
                                "easy_hard": "easy:hard 412:1 effective (configured 100.0:1, hard slots 24% filled)"},
            "build_samples": {"status": "ok", "wall_s": 2.0, "rows": {"retrieval": 70000}},
            "validate_data": {"status": "ok", "wall_s": 1.0, "verdict": "12 checks passed"},
            "export_embedding_shard_1": {"status": "ok", "wall_s": 1.0},
            "export_embedding_shard_0": {"status": "ok", "wall_s": 1.0},
        },
        "bundle": {"current": "v1", "root": "/b"},
    }  # fmt: skip
    lines = render_run(report).splitlines()
    steps = [ln.split()[0] for ln in lines if ln.startswith("  ")]
    assert steps == ["validate_data", "build_samples", "train_two_tower", "export_embedding_shard_0",
                     "export_embedding_shard_1"]
    two_tower = next(ln for ln in lines if ln.startswith("  train_two_tower"))
    assert two_tower.endswith("ok  easy:hard 412:1 effective (configured 100.0:1, hard slots 24% filled)")
    assert any(ln.startswith("  build_samples") and ln.endswith("rows: retrieval 70000") for ln in lines)
    assert any(ln.endswith("12 checks passed") for ln in lines)


def test_the_merge_chosen_on_the_day_is_stated():
    report = {"day": "2026-11-08", "wall_s": 1.0, "steps": {}, "bundle": {"current": "v1", "root": "/b"},
              "evaluation": {"table": "| system |", "fusion": {"fusion": "weighted", "lexical_weight": 2.0,
                                                                "fold_weights": [1.0, 2.0]}}}
    text = render_run(report)
    assert "hybrid: weighted fusion at lexical weight 2, chosen on this day" in text
    assert "other half's choice: 1, 2)" in text
    assert "lexical weight" not in render_run({**report, "evaluation": {"table": "| system |"}})
