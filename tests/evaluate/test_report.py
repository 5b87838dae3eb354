"""The report files against an independent recomputation, and the MLflow round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ebr.evaluate import Corpus, MetricValue, Report, evaluate_systems, log_report_to_mlflow, write_report
from tests.evaluate.handmade import make_evalset, reference_metrics

CLICKS = [[1, 4], [], [6], [2]]
LABELS = [{1: 2, 3: 1}, {5: 1}, None, {}]
SYSTEMS = {
    "model": np.array([[1, 2, 3, 4], [5, 6, -1, -1], [6, 1, 2, 3], [2, 1, 3, 5]]),
    "champion": np.array([[4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 6, -1], [5, 6, 1, 2]]),
    "bm25": np.array([[3, -1, -1, -1], [-1, -1, -1, -1], [6, 5, 4, 3], [1, 2, 3, 4]]),
}
DOCS = pd.DataFrame(
    {
        "doc_id": [1, 2, 3, 4, 5, 6],
        "title": ["t"] * 6,
        "category_leaf": ["a", "a", "b", "b", "a", "c"],
        "brand": ["x", None, "x", "y", "x", None],
    }
)
QUERY_CATS = ["a", None, "c", "b"]
QUERY_BRANDS = ["x", None, None, "y"]


@pytest.fixture()
def report_dir(tmp_path):
    es = make_evalset(["q0", "q1", "q2", "q3"], CLICKS, LABELS, QUERY_CATS, QUERY_BRANDS)
    extra = {"model": {"ann_recall@2": MetricValue(0.75, 4)}}
    report = evaluate_systems(es, SYSTEMS, [2, 4], corpus=Corpus.from_frame(DOCS), extra=extra)
    return write_report(report, tmp_path / "eval", main_k=4)


def _filtered_reference(retrieved: np.ndarray, k: int) -> list[float]:
    cat = dict(zip(DOCS["doc_id"], DOCS["category_leaf"], strict=True))
    brand = dict(zip(DOCS["doc_id"], DOCS["brand"], strict=True))
    out = []
    for row, qc, qb in zip(retrieved.tolist(), QUERY_CATS, QUERY_BRANDS, strict=True):
        top = [d for d in row[:k] if d != -1]
        if top:
            off = [d for d in top if (qc is not None and cat[d] != qc) or (qb is not None and brand[d] != qb)]
            out.append(len(off) / len(top))
    return out


def test_report_files_match_an_independent_recomputation(report_dir) -> None:
    assert {p.name for p in report_dir.iterdir()} == {"metrics.json", "report.md", "recall_at_k.png"}
    assert (report_dir / "recall_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((report_dir / "metrics.json").read_text())
    assert data["day"] == "2026-03-05" and data["n_requests"] == 4 and data["ks"] == [2, 4]
    for system, retrieved in SYSTEMS.items():
        for k in (2, 4):
            ref = reference_metrics(retrieved, CLICKS, LABELS, k)
            ref["filtered_share"] = _filtered_reference(retrieved, k)
            for name, values in ref.items():
                cell = data["systems"][system][name][str(k)]
                assert cell["n_requests"] == len(values), (system, name, k)
                assert cell["value"] == pytest.approx(float(np.mean(values))), (system, name, k)
    assert data["systems"]["model"]["ann_recall"]["2"] == {"value": 0.75, "n_requests": 4}
    # bm25 retrieves nothing for request 1: no filled slot, so filtered_share averages over 3 requests
    assert data["systems"]["bm25"]["filtered_share"]["4"]["n_requests"] == 3


def test_report_markdown_table(report_dir) -> None:
    md = (report_dir / "report.md").read_text()
    report = Report.load(report_dir)
    header = next(line for line in md.splitlines() if line.startswith("| system | click_recall@4"))
    assert "true_recall@4" in header and "ndcg@4" in header and "ann_recall@4" in header
    row = next(line for line in md.splitlines() if line.startswith("| champion |"))
    cr = report.system("champion")["click_recall@4"]
    assert f"{cr.value:.4f} (n={cr.n_requests})" in row
    # model click recall@4 by hand: request 0 finds 1 and 4 (1), request 2 finds 6 (1), request 3 finds 2 (1)
    assert report.system("model")["click_recall@4"] == MetricValue(1.0, 3)


def test_rewriting_a_report_replaces_it_and_refuses_foreign_dirs(report_dir, tmp_path) -> None:
    report = Report.load(report_dir)
    report.systems.pop("bm25")
    write_report(report, report_dir, main_k=2)
    assert set(json.loads((report_dir / "metrics.json").read_text())["systems"]) == {"model", "champion"}
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="holds no metrics.json"):
        write_report(report, other, main_k=2)
    assert (other / "keep.txt").exists()
    with pytest.raises(ValueError, match="main_k=3"):
        write_report(report, tmp_path / "x", main_k=3)


def test_evaluate_systems_names_a_bad_system() -> None:
    es = make_evalset(["q0", "q1"], [[1], [2]])
    with pytest.raises(ValueError, match="system 'bad'"):
        evaluate_systems(es, {"bad": np.array([[1, 2]])}, [2])
    with pytest.raises(ValueError, match="system 'short': .*K=4 needs at least 4"):
        evaluate_systems(es, {"short": np.array([[1, 2], [2, 1]])}, [4])


def test_mlflow_round_trip(report_dir, tmp_path, monkeypatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from ebr.train.tracking import using_tracking_uri

    monkeypatch.chdir(tmp_path)
    before = tracking_utils._tracking_uri
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with using_tracking_uri(uri):
        with pytest.raises(RuntimeError, match="no active MLflow run"):
            log_report_to_mlflow(report_dir)
        exp = mlflow.create_experiment("evaluation", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            log_report_to_mlflow(report_dir)
        client = MlflowClient(tracking_uri=uri)
        logged = client.get_run(run.info.run_id).data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert tracking_utils._tracking_uri == before, "the scope restores the process-wide URI, set or not"
    report = Report.load(report_dir)
    model = report.system("model")
    assert logged["true_recall_at_4"] == pytest.approx(model["true_recall@4"].value)
    assert logged["true_recall_at_4.n_requests"] == model["true_recall@4"].n_requests
    assert logged["champion.click_recall_at_2"] == pytest.approx(report.system("champion")["click_recall@2"].value)
    assert logged["ann_recall_at_2"] == pytest.approx(0.75)
    nan_keys = [k for s in report.systems.values() for k, v in s.items() if math.isnan(v.value)]
    assert len(logged) == 2 * sum(len(s) for s in report.systems.values()) - len(nan_keys)
    assert artifacts == {"evaluation/metrics.json", "evaluation/report.md", "evaluation/recall_at_k.png"}
