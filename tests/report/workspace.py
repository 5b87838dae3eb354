"""A small workspace shaped like a finished (or failed) daily run, written by the steps' own writers where they
exist: the step records (components.runtime.step), the validation result (ValidationResult.to_json), the
evaluation (Report.to_json), the gate (compare) and its decision (keep_day), a real Faiss index build with its
tuning sweep; the training histories in the layout the training steps write (manifest.json + metrics.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.runtime import step
from ebr.artifacts.atomic import write_json_atomic
from ebr.bundle.release import keep_day
from ebr.config import EbrConfig
from ebr.evaluate.gate import ann_gate, combine, compare
from ebr.evaluate.report import Report
from ebr.index import IndexConfig, build_index, finalize_embeddings, write_embedding_shard
from ebr.index.synthetic import clustered_vectors
from ebr.judgements.metrics import MetricValue, metric_key
from ebr.validation.outcome import CheckResult, ValidationResult
from ebr.validation.report import render_report
from ebr.workspace import Workspace

DAY = "2026-03-07"
MODEL_VERSION = f"{DAY}.abc12345"
RUN = "ebr-daily-2026-03-08-01-00-00-000000"  # a KFP local run directory under <workspace>/kfp
HOSTILE_STEP = "<script>alert(1)"
KS = [10, 50, 100]
SYSTEMS = {"model": 0.62, "popularity": 0.48, "bm25": 0.55}  # base recall of each system


def _config() -> str:
    return EbrConfig().to_yaml()


def record_step(ws: Workspace, name: str, fail: bool = False, **info: Any) -> None:
    """Record one step exactly as a component does (running, then its end with timings and `info`)."""
    try:
        with step(name, str(ws.root), DAY, _config()) as ctx:
            ctx.info.update(info)
            if fail:
                raise RuntimeError(f"{name} failed")
    except RuntimeError:
        if not fail:
            raise


def validation_report(ws: Workspace, task: str, kind: str, failed: bool) -> Path:
    """report.md, result.json and a Data Docs index.html in a task's `report` artifact; returns report.md."""
    out = ws.kfp_root / RUN / task / "report"
    checks = [CheckResult("docs", "doc_id", "unique", "expect_column_values_to_be_unique", "passed", "doc ids unique"),
              CheckResult("impressions", None, "references", "contract:references", "warning",
                          "2 impressions reference unknown docs")]
    if failed:
        checks.append(CheckResult("search_requests", "ts", "timestamp", "expect_column_values_to_be_between",
                                  "failed", "timestamps <outside> the day & its partition"))
    result = ValidationResult(kind, "/data", DAY, checks, out_dir=out, data_docs_index=out / "data_docs" / "index.html")
    (out / "data_docs").mkdir(parents=True)
    (out / "data_docs" / "index.html").write_text("<html>Data Docs</html>", encoding="utf-8")
    (out / "report.md").write_text(render_report(result), encoding="utf-8")
    (out / "result.json").write_text(result.to_json(), encoding="utf-8")
    return out / "report.md"


def retrieval_report() -> Report:
    """Every metric of three systems at every K, with per-metric request counts."""
    report = Report(day=DAY, n_requests=500, ks=KS)
    for i, (name, base) in enumerate(SYSTEMS.items()):
        metrics = {}
        for j, k in enumerate(KS):
            metrics[metric_key("click_recall", k)] = MetricValue(base + 0.1 * j, 450)
            metrics[metric_key("true_recall", k)] = MetricValue(base / 2 + 0.05 * j, 400)
            metrics[metric_key("p_good", k)] = MetricValue(0.9 - 0.02 * j - 0.01 * i, 400)
            metrics[metric_key("filtered_share", k)] = MetricValue(0.3 + 0.05 * j + 0.02 * i, 500)
        if name == "model":
            metrics[metric_key("ann_recall", 100)] = MetricValue(0.97, 500)
        report.systems[name] = metrics
    return report


def _history(epochs: int, metric: str) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = [{"epoch": 0.0, metric: 0.05, "valid_loss": 6.0}]
    for e in range(1, epochs + 1):
        rows.append({"epoch": float(e), "train_loss": 4.0 / e, metric: 0.5 + 0.1 * e, "valid_loss": 3.0 / e,
                     "examples_per_s": 800.0 + e})
    return rows


def trainings(ws: Workspace) -> dict[str, Any]:
    """The two-tower, fine-ranker and coarse-ranker artifacts (manifest.json + metrics.json) of the run."""
    tower, teacher, coarse = (ws.kfp_root / RUN / t for t in ("train-two-tower/model", "train-fine-ranker/teacher",
                                                                "distill-coarse-ranker/coarse"))
    for d in (tower, teacher, coarse):
        d.mkdir(parents=True)
    two_tower = _history(3, "valid_click_recall_at_100")
    write_json_atomic(tower / "manifest.json", {"format": "ebr.two_tower/1", "kind": "two_tower",
                                                "model_version": MODEL_VERSION, "day": DAY})
    write_json_atomic(tower / "metrics.json", {"format": "ebr.two_tower/1", "day": DAY, "model_version": MODEL_VERSION,
                                               "final": two_tower[-1], "summary": {"best_epoch": 3},
                                               "history": two_tower})
    teacher_h = _history(2, "valid_click_ndcg@10")[1:]
    write_json_atomic(teacher / "manifest.json", {"format": "ebr.rankers/1", "kind": "fine_ranker", "day": DAY})
    write_json_atomic(teacher / "metrics.json", {"format": "ebr.rankers/1", "day": DAY, "final": teacher_h[-1],
                                                 "history": {"teacher": teacher_h}})
    students = {"student_distilled": _history(2, "valid_teacher_agreement@10")[1:],
                "student_plain": _history(2, "valid_teacher_agreement@10")[1:]}
    rankers = {"format": "ebr.rankers/1", "day": DAY, "ks": [5, 10], "main_k": 10,
               "evaluation": f"Holdout day {DAY}: 500 requests.",
               "systems": {s: {"ndcg@10": {"value": v, "n_requests": 480}, "cost_ms_per_1k": c}
                           for s, v, c in (("teacher", 0.81, 19.5), ("student_distilled", 0.77, 2.5),
                                           ("student_plain", 0.70, 2.4))},
               "history": students}
    write_json_atomic(coarse / "manifest.json", {"format": "ebr.rankers/1", "kind": "coarse_ranker", "day": DAY,
                                                 "teacher_dir": str(teacher)})
    write_json_atomic(coarse / "metrics.json", rankers)
    return {"two_tower": two_tower, "teacher": teacher_h, "rankers": rankers}


def index(ws: Workspace, tmp: Path) -> dict[str, Any]:
    """A real IVF index build of synthetic doc vectors, tuned on query vectors: its manifest (with the sweep)."""
    x = clustered_vectors(3200, 16, num_clusters=30, seed=5)
    ids = np.arange(3000, dtype=np.int64) + 10
    emb = tmp / "embeddings"
    write_embedding_shard(emb, 0, ids, x[:3000])
    finalize_embeddings(emb, MODEL_VERSION)
    cfg = IndexConfig(factory="IVF16,Flat", num_eval_queries=200, latency_queries=10, recall_k=20, progress=False,
                      target_recall=0.95)
    return build_index(emb, ws.kfp_root / RUN / "build-index" / "index", cfg, query_vectors=x[3000:])


def finished_run(root: Path) -> dict[str, Any]:
    """A workspace whose run for DAY went through: every record and artifact the report reads."""
    ws = Workspace.at(root / "workspace")
    made: dict[str, Any] = {"ws": ws}
    record_step(ws, "data_fingerprint", fingerprint="f" * 64)
    made["validate_data"] = validation_report(ws, "validate-data", "raw", failed=False)
    record_step(ws, "validate_data", report=str(made["validate_data"]), verdict="PASSED: 2 checks, 1 warnings")
    record_step(ws, "build_samples", rows={"retrieval": 71814, "negatives": 21200})
    record_step(ws, HOSTILE_STEP, note="a step name with markup")
    record_step(ws, "train_two_tower", model_version=MODEL_VERSION)
    made.update(trainings(ws))
    made["index"] = index(ws, root)
    record_step(ws, "build_index", factory=made["index"]["factory"], ann_recall=made["index"]["ann_recall"])
    report = retrieval_report()
    keys = ["click_recall@100", "true_recall@100"]
    champion = {k: MetricValue(mv.value + 0.05, mv.n_requests) for k, mv in report.system("model").items()}
    decision = combine(compare(report.system("model"), champion, keys, 0.005),
                       ann_gate(report.system("model"), 0.95, 100))
    gate_inputs = {"new": {k: report.system("model")[k].to_json() for k in keys},
                   "champion": {k: champion[k].to_json() for k in keys}, "keys": keys, "tolerance": 0.005,
                   "min_requests": 1, "key_tolerances": {}}
    ws.record(DAY, "evaluation", {"day": DAY, "table": "(markdown)", "retrieval": report.to_json(),
                                  "rankers": made["rankers"], "gate_inputs": gate_inputs,
                                  "model_version": MODEL_VERSION, "champion_version": "2026-03-06-0123456789",
                                  "report_dir": str(ws.kfp_root / RUN / "evaluate" / "report" / "report"),
                                  "examples": []})
    record_step(ws, "evaluate", publish=decision.publish, ann_gate=decision.reasons[-1])
    record_step(ws, "keep_champion")
    keep_day(DAY, ws, "; ".join(decision.reasons))
    ws.record(DAY, "run_status", {"day": DAY, "state": "SUCCEEDED", "run": "local-run", "error_code": None,
                                  "error_message": None})
    made.update(report=report, decision=decision, gate_inputs=gate_inputs)
    return made


def failed_run(root: Path) -> dict[str, Any]:
    """A workspace whose run for DAY stopped at a failed data validation: no evaluation, no decision."""
    ws = Workspace.at(root / "workspace")
    record_step(ws, "data_fingerprint", fingerprint="e" * 64)
    report_md = validation_report(ws, "validate-data", "raw", failed=True)
    record_step(ws, "validate_data", fail=True, report=str(report_md))
    ws.record(DAY, "run_status", {"day": DAY, "state": "FAILED", "run": "local-run", "error_code": 9,
                                  "error_message": "task validate-data failed"})
    return {"ws": ws, "validate_data": report_md}
