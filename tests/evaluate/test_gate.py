"""The publish gate's rules: better, worse beyond tolerance, within tolerance, first run, unmeasured keys; and the
index's ANN quality (ann_recall@100 on real queries against index.min_ann_recall), alone and in the evaluate step."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ebr.evaluate import MetricValue, Report, compare
from ebr.evaluate.gate import GateDecision, ann_gate, combine, served_gate
from ebr.index.manifest import FORMAT

KEYS = ["click_recall@100", "true_recall@100"]


def _m(click: float, true: float, n_true: int = 50) -> dict[str, MetricValue]:
    return {"click_recall@100": MetricValue(click, 200), "true_recall@100": MetricValue(true, n_true)}


def test_better_model_publishes() -> None:
    d = compare(_m(0.50, 0.40), _m(0.45, 0.38), KEYS, tolerance=0.005)
    assert d.publish
    assert len(d.reasons) == 2 and all("not worse" in r for r in d.reasons)


def test_worse_beyond_tolerance_blocks_and_names_the_metric() -> None:
    d = compare(_m(0.50, 0.37), _m(0.45, 0.38), KEYS, tolerance=0.005)
    assert not d.publish
    blocking = [r for r in d.reasons if "worse beyond tolerance" in r]
    assert len(blocking) == 1 and blocking[0].startswith("true_recall@100")


def test_a_model_that_serves_worse_is_refused_even_when_it_retrieves_better() -> None:
    model = compare(_m(0.50, 0.40), _m(0.45, 0.38), KEYS, tolerance=0.005)
    served = served_gate(_m(0.44, 0.30), _m(0.45, 0.36), KEYS, tolerance=0.005)
    assert model.publish and not served.publish
    assert all(r.startswith("served ") for r in served.reasons)
    assert any(r.startswith("served true_recall@100") and "worse beyond tolerance" in r for r in served.reasons)
    both = combine(model, served)
    assert not both.publish and both.reasons == model.reasons + served.reasons
    first = served_gate(_m(0.44, 0.30), None, KEYS)
    assert first.publish and first.reasons == [], "no champion: the model rule's first-run reason stands alone"


def test_drop_within_tolerance_publishes() -> None:
    # a drop of exactly the tolerance is allowed
    d = compare(_m(0.445, 0.378), _m(0.45, 0.38), KEYS, tolerance=0.005)
    assert d.publish
    assert not compare(_m(0.445, 0.378), _m(0.45, 0.38), KEYS, tolerance=0.001).publish


def test_first_run_always_publishes() -> None:
    d = compare(_m(0.0, 0.0), None, KEYS, tolerance=0.0)
    assert d.publish and "first run" in d.reasons[0]


def test_lower_is_better_for_filtered_share() -> None:
    new = {"filtered_share@100": 0.30}
    assert compare(new, {"filtered_share@100": 0.35}, ["filtered_share@100"], tolerance=0.0).publish
    assert not compare(new, {"filtered_share@100": 0.25}, ["filtered_share@100"], tolerance=0.01).publish


def test_unmeasured_metrics() -> None:
    # too few labelled requests on both sides: true recall is skipped, click recall decides
    d = compare(_m(0.5, 0.1, n_true=3), _m(0.4, 0.9, n_true=3), KEYS, tolerance=0.0, min_requests=10)
    assert d.publish and any("skipped" in r for r in d.reasons)
    # measured for the champion but not for the new model: blocks
    d = compare(_m(0.5, 0.1, n_true=3), _m(0.4, 0.9, n_true=30), KEYS, tolerance=0.0, min_requests=10)
    assert not d.publish
    # nothing comparable at all: does not publish
    d = compare(_m(0.5, 0.1, n_true=0), _m(0.4, 0.9, n_true=0), ["true_recall@100"], 0.0, min_requests=1)
    assert not d.publish


def test_missing_key_is_an_error_naming_it() -> None:
    with pytest.raises(KeyError, match="ndcg@10"):
        compare(_m(0.5, 0.4), _m(0.5, 0.4), ["ndcg@10"], tolerance=0.0)


# --- the ANN quality rule: the index's ann_recall@100 on the day's real queries against index.min_ann_recall ---

def _ann(value: float, n: int = 6000) -> dict[str, MetricValue]:
    return {**_m(0.5, 0.4), "ann_recall@100": MetricValue(value, n)}


def _manifest(tuned_on: str = "queries", ann: float = 0.97, k: int = 100) -> dict:
    return {"factory": "IVF2048,Flat", "tuned_on": tuned_on, "recall_k": k, "ann_recall": ann,
            "search_params": {"nprobe": 12}, "tuning": {"num_queries": 1000}}  # fmt: skip


def test_low_ann_recall_is_refused_with_a_clear_reason() -> None:
    d = ann_gate(_ann(0.820), 0.95, 100, _manifest())
    assert not d.publish and len(d.reasons) == 1
    reason = d.reasons[0]
    for part in ("ann_recall@100", "IVF2048,Flat", "0.8200", "6000 evaluation requests",
                 "below index.min_ann_recall 0.95", "blocks publishing", "nprobe"):  # fmt: skip
        assert part in reason, part


def test_ann_recall_at_or_above_the_target_is_accepted() -> None:
    assert ann_gate(_ann(0.95), 0.95, 100).publish  # exactly the target passes
    d = ann_gate(_ann(0.981), 0.95, 100, _manifest())
    assert d.publish and "0.9810" in d.reasons[0] and ">= index.min_ann_recall 0.95" in d.reasons[0]
    assert not ann_gate(_ann(0.9499), 0.95, 100).publish


def test_the_combined_decision_lists_both_rules_and_needs_both() -> None:
    champion_ok = compare(_m(0.50, 0.40), _m(0.45, 0.38), KEYS, tolerance=0.005)
    refused = combine(champion_ok, ann_gate(_ann(0.82), 0.95, 100))
    assert champion_ok.publish and not refused.publish
    assert refused.reasons[:2] == champion_ok.reasons and "ann_recall@100" in refused.reasons[2]
    accepted = combine(champion_ok, ann_gate(_ann(0.97), 0.95, 100))
    assert accepted.publish and len(accepted.reasons) == 3
    # the first run publishes on the champion rule, but not with a poor index
    assert not combine(compare(_m(0.5, 0.4), None, KEYS), ann_gate(_ann(0.5), 0.95, 100)).publish
    with pytest.raises(ValueError, match="at least one decision"):
        combine()


def test_unmeasured_ann_recall_falls_back_to_a_real_query_manifest_only() -> None:
    no_ann = _m(0.5, 0.4)
    # measured by the build on real query vectors at the same K: used
    d = ann_gate(no_ann, 0.95, 100, _manifest("queries", 0.97))
    assert d.publish and "1000 real query vectors" in d.reasons[0]
    assert not ann_gate(no_ann, 0.95, 100, _manifest("queries", 0.90)).publish
    # measured on synthetic queries only, at another K, or not at all: blocks
    d = ann_gate(no_ann, 0.95, 100, _manifest("synthetic", 0.99))
    assert not d.publish and "not measured" in d.reasons[0] and "synthetic" in d.reasons[0]
    assert not ann_gate(no_ann, 0.95, 100, _manifest("queries", 0.99, k=50)).publish
    assert not ann_gate(no_ann, 0.95, 100).publish
    assert not ann_gate({"ann_recall@100": MetricValue(float("nan"), 0)}, 0.95, 100).publish


def test_min_ann_recall_zero_switches_the_check_off_and_bad_values_fail() -> None:
    d = ann_gate(_ann(0.1), 0.0, 100)
    assert d.publish and "check off" in d.reasons[0]
    with pytest.raises(ValueError, match="min_ann_recall"):
        ann_gate(_ann(0.9), 1.5, 100)


def _report_and_index(tmp_path: Path, ann: float) -> tuple[Path, Path]:
    report = Report(day="2026-11-08", n_requests=6000, ks=[100], systems={"model": _ann(ann)})
    report_dir = tmp_path / "report" / "report"
    report_dir.mkdir(parents=True)
    (report_dir / "metrics.json").write_text(json.dumps(report.to_json()), encoding="utf-8")
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    manifest = {"format": FORMAT, "n": 10, "d": 4, "metric": "ip", "model_version": "m", "files": {},
                "shards": [{"index_file": "index.faiss", "doc_ids_file": "doc_ids.npy", "count": 10}],
                **_manifest()}  # fmt: skip
    (index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path / "report", index_dir


@pytest.mark.parametrize(("ann", "publish"), [(0.82, False), (0.97, True)])
def test_the_evaluate_step_gates_on_the_index(tmp_path: Path, monkeypatch, ann: float, publish: bool) -> None:
    import ebr.evaluate.day
    from components.release import evaluate

    report_dir, index_dir = _report_and_index(tmp_path, ann)
    monkeypatch.setattr(ebr.evaluate.day, "evaluate_day",
                        lambda *a, **kw: GateDecision(True, ["first run: no champion to compare with, publishing"]))
    art = SimpleNamespace
    shown: dict[str, float] = {}
    out = evaluate.python_func(
        data_root=str(tmp_path), day="2026-11-08", workspace=str(tmp_path / "ws"), config="", model=art(path="m"),
        embeddings=art(path="e"), index=art(path=str(index_dir)), coarse=art(path="c"),
        features=art(path="f", metadata={"features_dir": "f"}), report=art(path=str(report_dir)),
        metrics=art(path=str(tmp_path / "metrics"), log_metric=lambda name, value: shown.update({name: value})),
        html=art(path=str(tmp_path / "evaluate.html")),
    )  # fmt: skip
    assert shown == {"gate.publish": float(publish)}, "no evaluation record here: only the gate is shown"
    assert "<html" in (tmp_path / "evaluate.html").read_text(encoding="utf-8")
    assert out.publish is publish
    assert out.reason.startswith("first run") and f"ann_recall@100: index IVF2048,Flat {ann:.4f}" in out.reason
    assert ("below index.min_ann_recall 0.95" in out.reason) is not publish
    step = json.loads((tmp_path / "ws" / "reports" / "2026-11-08" / "steps" / "evaluate.json").read_text())
    assert step["publish"] is publish and step["ann_gate"] in out.reason


def _full(click: float, true: float, p_good: float, filtered: float) -> dict[str, MetricValue]:
    return {"click_recall@100": MetricValue(click, 200), "true_recall@100": MetricValue(true, 50),
            "p_good@100": MetricValue(p_good, 50), "filtered_share@100": MetricValue(filtered, 200)}


def test_default_gate_refuses_a_relevance_regression_even_with_better_recall() -> None:
    from ebr.evaluate.config import GateConfig

    gate = GateConfig()
    assert {"p_good@100", "filtered_share@100"} <= set(gate.keys)
    champion = _full(0.80, 0.50, 0.75, 0.40)
    run = lambda new: compare(new, champion, gate.keys, gate.tolerance, gate.min_requests,  # noqa: E731
                              gate.key_tolerances)
    # more recall, but p_good fell by 0.05 (beyond its 0.01 tolerance): refused, and the reason names p_good
    d = run(_full(0.85, 0.55, 0.70, 0.40))
    assert not d.publish
    assert any(r.startswith("p_good@100") and "worse beyond tolerance" in r for r in d.reasons)
    # more of the list filtered out by relevance control (lower is better): refused
    assert not run(_full(0.85, 0.55, 0.75, 0.45)).publish
    # within the relevance keys' own tolerance (0.01, wider than the recall keys' 0.005): published
    d = run(_full(0.80, 0.50, 0.742, 0.408))
    assert d.publish and all("not worse" in r for r in d.reasons)
    # the same p_good drop under the recall keys' tolerance alone would have been refused
    assert not compare(_full(0.80, 0.50, 0.742, 0.408), champion, gate.keys, gate.tolerance).publish


def test_key_tolerances_are_checked() -> None:
    from ebr.evaluate.config import GateConfig

    with pytest.raises(ValueError, match="key_tolerances"):
        GateConfig(key_tolerances={"p_good@100": -0.1})
    with pytest.raises(ValueError, match="tolerance of p_good@100 must be >= 0"):
        compare(_full(0.8, 0.5, 0.7, 0.4), _full(0.8, 0.5, 0.7, 0.4), ["p_good@100"], 0.0, 1, {"p_good@100": -1})
