"""evaluate_two_tower on the tiny pipeline: model, champion and baselines on the holdout day, ann_recall of a
built index, the report files, MLflow, and one metric recomputed independently."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebr.evaluate.hybrid import WEIGHT_GRID
from tests.train.test_two_tower_pipeline import pipe, trained  # noqa: F401

pytestmark = pytest.mark.slow


def _eval_config(mlflow_dir: Path):
    from ebr.evaluate.two_tower import TwoTowerEvalConfig

    return TwoTowerEvalConfig(
        evaluate={"ks": [10, 50, 100], "main_k": 50}, num_threads=1, progress=False,
        mlflow={"tracking_uri": f"sqlite:///{mlflow_dir}/mlflow.db", "experiment": "ebr-two-tower",
                "artifact_location": str(mlflow_dir / "artifacts")},
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(pipe):  # noqa: F811
    """The base model evaluated on the tiny day: computed once per test process (test_realtime_skew.py reads the
    same evaluation; the tiny pipeline's files share one worker)."""
    return _evaluation(pipe)


@functools.cache
def _evaluation(pipe):  # noqa: F811
    from ebr.evaluate.two_tower import evaluate_two_tower
    from ebr.index import IndexConfig, build_index
    from ebr.index.export import ExportEmbeddingsConfig, export_doc_embeddings

    work = pipe.base / "evaluated"
    work.mkdir()
    model = trained(pipe, "base")
    emb, index = work / "emb", work / "index"
    export_doc_embeddings(model["model_dir"], pipe.features, pipe.data, pipe.day, emb,
                          ExportEmbeddingsConfig(num_shards=2, progress=False))
    build_index(emb, index, IndexConfig(factory="IVF8,Flat", num_eval_queries=50, latency_queries=5, recall_k=20,
                                        progress=False, target_recall=0.5))
    # a coarse ranker laid out as the distill step writes it (untrained; its doc matrix covers the corpus)
    from ebr.index.embeddings import read_embeddings
    from ebr.models.rankers.config import CoarseRankerConfig
    from serving.synthetic import build_coarse_ranker

    ids = read_embeddings(emb, mmap=False).ids
    vecs = np.random.default_rng(0).standard_normal((len(ids), 32)).astype(np.float32)
    coarse = build_coarse_ranker(work / "coarse", pd.DataFrame({"doc_id": ids}), CoarseRankerConfig(),
                                 doc_vectors=vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    # the champion is the model itself: re-embedding the corpus with its own doc tower must give the same results
    result = evaluate_two_tower(model["model_dir"], emb, pipe.features, pipe.data, pipe.day, work / "out",
                                _eval_config(work), champion_dir=model["model_dir"], index_dir=index,
                                coarse_dir=coarse)
    return model, emb, index, work, result


def test_report_has_model_champion_and_baselines(evaluated):
    _, _, _, work, result = evaluated
    assert set(result["systems"]) == {"model", "champion", "popularity", "bm25", "hybrid", "model_served",
                                      "hybrid_served", "hybrid_served_relaxed", "funnel_served", "champion_served"}
    funnel = result["funnel"]
    assert funnel["candidates"] == 500 and funnel["kept"] == 100
    assert set(funnel["survival"]) == {"ann", "lexical"} and all(0 <= v <= 1 for v in funnel["survival"].values())
    metrics = result["metrics"]["systems"]["funnel_served"]
    assert metrics["click_recall"]["100"]["n_requests"] == metrics["click_recall"]["10"]["n_requests"] > 0
    out = work / "out"
    assert {"report", "evalset.parquet", "evaluation.json"} <= {p.name for p in out.iterdir()}
    assert {"metrics.json", "report.md", "recall_at_k.png"} <= {p.name for p in (out / "report").iterdir()}
    text = (out / "report" / "report.md").read_text()
    for name in ("| model |", "| champion |", "| popularity |", "| bm25 |"):
        assert name in text
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["model_version"] == result["model_version"] and summary["n_requests"] > 0
    fusion = summary["fusion"]  # the lexical weight chosen on the day, with the grid it was chosen from
    assert fusion["lexical_weight"] in WEIGHT_GRID and all(w in WEIGHT_GRID for w in fusion["fold_weights"])
    assert set(fusion["channels"]) == {"ann", "lexical"} and set(fusion["grid"]) == {f"{w:g}" for w in WEIGHT_GRID}


def test_champion_equal_to_the_model_scores_the_same_and_passes_the_gate(evaluated):
    _, _, _, _, result = evaluated
    systems = result["metrics"]["systems"]
    for metric in ("click_recall", "true_recall", "ndcg"):
        for k, value in systems["model"][metric].items():
            champion = systems["champion"][metric][k]
            assert champion["n_requests"] == value["n_requests"]
            # same towers and features; only float rounding of near-tied docs may reorder a result
            assert champion["value"] == pytest.approx(value["value"], abs=1e-3)
    assert result["gate"]["publish"] is True
    assert result["gate_inputs"]["champion"].keys() == result["gate_inputs"]["new"].keys()
    # the served gate compares what each bundle would serve: the same towers serve the same
    served = result["gate_inputs"]["served"]
    assert served["champion"].keys() == served["new"].keys() == set(result["gate_inputs"]["keys"])
    for key, value in served["new"].items():
        assert served["champion"][key]["value"] == pytest.approx(value["value"], abs=1e-3)
    served_reasons = [r for r in result["gate"]["reasons"] if r.startswith("served ")]
    assert len(served_reasons) == len(served["new"]) and all("not worse" in r for r in served_reasons)


def test_ann_recall_of_the_built_index_is_reported_for_the_model(evaluated):
    _, _, _, _, result = evaluated
    ann = result["metrics"]["systems"]["model"]["ann_recall"]
    assert set(ann) == {"10", "50", "100"}
    assert all(0.0 < v["value"] <= 1.0 and v["n_requests"] == result["n_requests"] for v in ann.values())
    assert "ann_recall" not in result["metrics"]["systems"]["champion"]


def test_click_recall_matches_an_independent_recomputation(pipe, evaluated):  # noqa: F811
    from ebr.evaluate.two_tower import encode_queries, query_feature_rows
    from ebr.index import read_embeddings
    from ebr.index.export import export_dir_of
    from ebr.judgements.evalset import EvalSet
    from ebr.models.export import load_exported

    model, emb_dir, _, work, result = evaluated
    evalset = EvalSet.load(work / "out" / "evalset.parquet")
    bundle = load_exported(export_dir_of(model["model_dir"]))
    queries = encode_queries(bundle, query_feature_rows(pipe.features, evalset.frame), 256).astype(np.float64)
    emb = read_embeddings(emb_dir)
    scores = queries @ emb.vectors.astype(np.float64).T
    top = emb.ids[np.argsort(-scores, axis=1, kind="stable")[:, :10]]
    shares = [len(set(clicked) & set(row.tolist())) / len(set(clicked))
              for clicked, row in zip(evalset.frame["clicked_doc_ids"], top, strict=True) if len(clicked)]
    got = result["metrics"]["systems"]["model"]["click_recall"]["10"]
    assert got["n_requests"] == len(shares)
    assert got["value"] == pytest.approx(float(np.mean(shares)), abs=2.0 / len(shares))


def test_the_evaluation_is_logged_to_mlflow(evaluated):
    from mlflow.tracking import MlflowClient

    _, _, _, work, result = evaluated
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.metrics["click_recall_at_10"] == result["metrics"]["systems"]["model"]["click_recall"]["10"][
        "value"]
    assert "bm25.click_recall_at_10" in run.data.metrics
    assert run.data.params["model_version"] == result["model_version"]
    assert {"evaluation/metrics.json", "evaluation/report.md"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    # the evaluated index: its tuned recall and latency as metrics, its recall-vs-latency plot as an artifact
    index_manifest = json.loads((work / "index" / "manifest.json").read_text())
    assert run.data.metrics["index.ann_recall"] == pytest.approx(index_manifest["ann_recall"])
    assert run.data.metrics["index.latency_p99_ms"] == pytest.approx(index_manifest["latency_p99_ms"])
    assert run.data.params["index.factory"] == "IVF8,Flat"
    assert {"index/manifest.json", "index/ann_recall_vs_latency.png"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "index")}


def test_embeddings_of_another_model_are_refused(pipe, evaluated, tmp_path):  # noqa: F811
    from ebr.evaluate.two_tower import evaluate_two_tower

    _, emb, _, work, _ = evaluated
    other = trained(pipe, "other", json.dumps({"train": {"epochs": 1, "seed": 9}}))
    with pytest.raises(ValueError, match="export the embeddings of this model"):
        evaluate_two_tower(other["model_dir"], emb, pipe.features, pipe.data, pipe.day, tmp_path / "out",
                           _eval_config(tmp_path))
    assert not (tmp_path / "out").exists()
