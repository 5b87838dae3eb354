"""The two step functions end to end on the tiny dataset: outputs, MLflow runs, holdout metrics, distillation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ebr.models.export import load_exported
from ebr.models.rankers.evaluation import ranking_metrics
from ebr.models.rankers.rows import load_eval_rows
from ebr.train.distill import DistillConfig
from ebr.train.rankers import (
    CoarseRankerStepConfig,
    FineRankerStepConfig,
    RankerEvalConfig,
    RankerTrainConfig,
    distill_coarse_ranker,
    load_coarse_ranker,
    train_fine_ranker,
)
from ebr.train.tracking import MlflowConfig
from tests.rankers.conftest import coarse_config, fine_config

pytestmark = pytest.mark.slow

TEACHER_EPOCHS = 3
STUDENT_EPOCHS = 4


def _train(epochs: int) -> RankerTrainConfig:
    adam = RankerTrainConfig().optimizer.model_copy(update={"lr": 3e-3})
    return RankerTrainConfig(epochs=epochs, batch_requests=32, optimizer=adam, num_threads=1, progress=False)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return MlflowConfig(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts"))


@pytest.fixture(scope="module")
def rows_cache(tmp_path_factory):
    """The day's joined training rows, written by the teacher's step and read by the distillation, as in the DAG."""
    return tmp_path_factory.mktemp("ranking_rows")


@pytest.fixture(scope="module")
def teacher(samples_dir, features_dir, tracking, rows_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "fine"
    cfg = FineRankerStepConfig(model=fine_config(), train=_train(TEACHER_EPOCHS), mlflow=tracking)
    return out, train_fine_ranker(samples_dir, out, cfg, features_dir=features_dir, rows_cache=rows_cache)


@pytest.fixture(scope="module")
def coarse(samples_dir, tiny_data, features_dir, tracking, teacher, rows_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("coarse") / "coarse"
    cfg = CoarseRankerStepConfig(
        model=coarse_config(), train=_train(STUDENT_EPOCHS), distill=DistillConfig(),
        evaluation=RankerEvalConfig(compare_plain=True, cost_candidates=200, cost_repeats=3), mlflow=tracking,
    )
    # run with more threads than the config's: every scoring pass must still run at the configured one
    import ebr.train.rankers as step

    seen: list[int] = []
    real = step.score_all_pairs

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    outer = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(step, "score_all_pairs", spy)
            result = distill_coarse_ranker(samples_dir, teacher[0], out, cfg, data_root=tiny_data,
                                           features_dir=features_dir, rows_cache=rows_cache)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(outer)
    return out, result | {"_threads_seen": seen, "_threads_after": after}


def _run(tracking: MlflowConfig, run_id: str):
    return MlflowClient(tracking.tracking_uri).get_run(run_id)


def test_teacher_writes_model_curves_and_an_mlflow_run(teacher, tracking):
    out, res = teacher
    for f in ("model.pt", "model_config.json", "metrics.json", "curves.png", "manifest.json"):
        assert (out / f).is_file(), f
    assert len(res["history"]) == TEACHER_EPOCHS
    assert res["history"][-1]["train_loss"] < res["history"][0]["train_loss"]
    assert "features joined from the feature store" in " ".join(res["notes"])
    assert res["feature_source"] == "feature_store"
    run = _run(tracking, res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["model.interaction"] == "dcn"
    client = MlflowClient(tracking.tracking_uri)
    assert len(client.get_metric_history(run.info.run_id, "teacher.train_loss")) == TEACHER_EPOCHS
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model.pt", "curves.png", "metrics.json"}


def test_holdout_report_has_the_three_rows_and_the_teacher_beats_a_random_order(coarse, tiny_data, tiny_days,
                                                                                 features_dir):
    out, res = coarse
    systems = res["systems"]
    assert list(systems) == ["teacher", "student_distilled", "student_plain"]
    for m in systems.values():
        for key in ("ndcg@10", "true_ndcg@10", "click_ndcg@10", "teacher_agreement@5", "teacher_agreement@10"):
            assert m[key]["n_requests"] > 0 and 0.0 <= m[key]["value"] <= 1.0
        assert m["cost_ms_per_1k"] > 0
    assert systems["teacher"]["teacher_agreement@10"]["value"] == pytest.approx(1.0)
    report = (out / "report.md").read_text()
    assert all(f"| {name} |" in report for name in systems)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["systems"] == systems and doc["judged_requests"]["true"] > 0
    ev = load_eval_rows(tiny_data, tiny_days[-1], features_dir)
    rnd = np.random.default_rng(0).normal(size=len(ev.pairs))
    random_ndcg = ranking_metrics(rnd, ev, [10], names=["true_ndcg"])["true_ndcg@10"].value
    assert systems["teacher"]["true_ndcg@10"]["value"] > random_ndcg + 0.1


def test_every_scoring_pass_runs_at_the_configured_threads_whatever_the_caller_had(coarse):
    _, out = coarse
    # teacher on train/valid/holdout pairs, both students on the holdout: all at train.num_threads = 1, although
    # the caller ran with 2 (a task beside another gets its share of the cores; the student must not depend on it)
    assert len(out["_threads_seen"]) >= 4 and set(out["_threads_seen"]) == {1}
    assert out["_threads_after"] == 2  # the caller's setting is restored


def test_distillation_raises_teacher_agreement_over_the_plain_student(coarse):
    systems = coarse[1]["systems"]
    for k in (5, 10):
        key = f"teacher_agreement@{k}"
        assert systems["student_distilled"][key]["value"] > systems["student_plain"][key]["value"]
    hist = coarse[1]["history"]
    assert hist["student_distilled"][-1]["valid_teacher_agreement@10"] > hist["student_plain"][-1][
        "valid_teacher_agreement@10"]


def test_student_export_and_doc_matrix_match_the_saved_model(coarse):
    out, res = coarse
    model = load_coarse_ranker(out)
    ids = np.load(out / "doc_ids.npy")
    vecs = np.load(out / "doc_vectors.npy")
    assert vecs.shape == (len(ids), 8) and len(np.unique(ids)) == len(ids)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    bundle = load_exported(out / "export")
    q = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    d = torch.from_numpy(vecs[:5])
    with torch.no_grad():
        eager = model.score_pairs(q, d)
    torch.testing.assert_close(bundle["scorer"]({"query": q, "doc": d}), eager, atol=1e-5, rtol=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "coarse_ranker" and manifest["rows"]["corpus_docs"] == len(ids)


def test_student_run_logs_both_students_per_epoch(coarse, tracking):
    res = coarse[1]
    client = MlflowClient(tracking.tracking_uri)
    run = client.get_run(res["mlflow_run_id"])
    assert run.data.params["distill.temperature"] == str(DistillConfig().temperature)
    for name in ("student_distilled", "student_plain"):
        hist = client.get_metric_history(run.info.run_id, f"{name}.valid_teacher_agreement_at_10")
        assert [m.step for m in hist] == list(range(1, STUDENT_EPOCHS + 1))
    assert "student_distilled.ndcg_at_10" in run.data.metrics
    assert {"export", "report.md", "curves.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_an_unrelated_output_dir_is_refused_before_training(samples_dir, features_dir, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="manifest.json"):
        train_fine_ranker(samples_dir, tmp_path, FineRankerStepConfig(model=fine_config()), features_dir=features_dir)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_holdout_evaluation_needs_the_feature_store(samples_dir, tiny_data, teacher, tmp_path):
    with pytest.raises(ValueError, match="features_dir"):
        distill_coarse_ranker(samples_dir, teacher[0], tmp_path / "coarse", CoarseRankerStepConfig(
            model=coarse_config()), data_root=tiny_data)
    assert not (tmp_path / "coarse").exists()


@pytest.fixture(scope="module")
def coarse_rc(samples_dir, tiny_data, features_dir, tracking, teacher, retrieval_model_dir, tmp_path_factory):
    """The distillation with the retrieval cosine on (distilled student only, 2 epochs)."""
    out = tmp_path_factory.mktemp("coarse_rc") / "coarse"
    cfg = CoarseRankerStepConfig(
        model=coarse_config(retrieval_cosine=True), train=_train(2), distill=DistillConfig(),
        evaluation=RankerEvalConfig(compare_plain=False, cost_candidates=200, cost_repeats=3),
        mlflow=tracking.model_copy(update={"registered_model": "ebr-coarse-ranker-rc"}),
    )
    return out, distill_coarse_ranker(samples_dir, teacher[0], out, cfg, data_root=tiny_data,
                                      features_dir=features_dir, retrieval_model_dir=retrieval_model_dir)


def test_distillation_with_the_retrieval_cosine_trains_evaluates_and_exports(coarse_rc, retrieval_model_dir):
    out, res = coarse_rc
    assert list(res["systems"]) == ["teacher", "student_distilled"]
    m = res["systems"]["student_distilled"]
    for key in ("ndcg@10", "true_ndcg@10", "teacher_agreement@10"):
        assert m[key]["n_requests"] > 0 and 0.0 <= m[key]["value"] <= 1.0
    hist = res["history"]["student_distilled"]
    assert len(hist) == 2 and all(np.isfinite(h["train_loss"]) for h in hist)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["retrieval_model_dir"] == str(retrieval_model_dir)
    assert manifest["config"]["model"]["retrieval_cosine"] is True
    assert res["mlflow_run_id"] is not None and res["registered_version"] is None
    assert any("retrieval cosine: not registered" in n for n in res["notes"])
    model = load_coarse_ranker(out)
    assert model.uses_retrieval_cosine
    assert float(model.head.retrieval_weight) != coarse_config().retrieval_cosine_init  # it was trained
    bundle = load_exported(out / "export")
    assert set(bundle["scorer"].input_spec) == {"query", "doc", "retrieval_cosine"}
    q = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    d = torch.from_numpy(np.load(out / "doc_vectors.npy")[:6])
    rc = torch.linspace(-0.5, 0.9, 6)
    with torch.no_grad():
        eager = model.score_pairs(q, d, retrieval_cosine=rc)
    torch.testing.assert_close(bundle["scorer"]({"query": q, "doc": d, "retrieval_cosine": rc}), eager,
                               atol=1e-5, rtol=0)
