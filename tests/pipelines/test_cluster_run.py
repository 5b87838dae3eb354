"""The daily DAG as it runs on a cluster, on one machine: raw logs on an S3 endpoint (moto's standalone server on
loopback stands in for S3), tracking and the model registry on a real `mlflow server` over HTTP (SQLite backend,
local artifact root), the workspace on a separate directory as a PVC would be. The tiny run must publish a
bundle, and the registry's champion must load with `mlflow.pyfunc.load_model` and score a query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ebr.bundle import current_version, verify_bundle
from ebr.config import load_ebr_config
from ebr.train.registry import COARSE_RANKER_MODEL, TWO_TOWER_MODEL
from ebr.train.tracking import using_tracking_uri
from pipelines.local import run_local
from tests.pipelines.test_local_run import FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_run(request, tmp_path_factory) -> dict:
    """One tiny DAG run reading s3:// and tracking to the MLflow server (fixtures resolved lazily: module scope)."""
    s3_uri = request.getfixturevalue("_s3_tiny_uri")
    server = request.getfixturevalue("mlflow_server_uri")
    endpoint = request.getfixturevalue("s3_server")
    days = request.getfixturevalue("tiny_days")
    from tests.objectstore import S3_ENV

    mp = pytest.MonkeyPatch()
    for k, v in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "EBR_MLFLOW_TRACKING_URI": server}.items():
        mp.setenv(k, v)
    try:
        ws = tmp_path_factory.mktemp("pvc") / "workspace"
        report = json.loads(run_local(s3_uri, days[-2], ws, load_ebr_config(None, FAST)).read_text(encoding="utf-8"))
    finally:
        mp.undo()
    return {"ws": ws, "report": report, "server": server, "s3": s3_uri}


def test_reads_object_storage_and_publishes(cluster_run):
    report, ws = cluster_run["report"], cluster_run["ws"]
    assert report["decision"]["publish"] is True, report["decision"]
    version = current_version(ws / "bundles")
    assert version == report["decision"]["version"]
    verify_bundle(ws / "bundles" / version)
    assert report["run_status"]["state"] == "SUCCEEDED"
    assert report["steps"]["data_fingerprint"]["fingerprint"] == report["steps"]["validate_data"]["fingerprint"]
    shards = [s for s in report["steps"] if s.startswith("export_embedding_shard_")]
    assert len(shards) >= 2 and report["steps"]["finalize_embeddings"]["status"] == "ok"
    assert report["steps"]["rollout"]["skipped"] == "rollout.enabled is false"
    assert not (ws / "mlflow.db").exists(), "tracked on the server, not in the workspace"


def test_champion_loads_from_the_tracking_server_and_scores_a_query(cluster_run):
    import mlflow.pyfunc

    ws, server = cluster_run["ws"], cluster_run["server"]
    version = current_version(ws / "bundles")
    manifest = json.loads((ws / "bundles" / version / "model" / "manifest.json").read_text(encoding="utf-8"))
    client = MlflowClient(server)
    champion = client.get_model_version_by_alias(TWO_TOWER_MODEL, "champion")
    assert str(champion.version) == str(manifest["registered_version"])
    assert champion.tags["ebr.bundle_version"] == version
    assert client.get_model_version_by_alias(COARSE_RANKER_MODEL, "champion").tags["ebr.bundle_version"] == version
    queries = pd.DataFrame({"query": ["连衣裙 夏季", "手机壳"], "user_id": [1, 2]})
    with using_tracking_uri(server):
        model = mlflow.pyfunc.load_model(f"models:/{TWO_TOWER_MODEL}@champion")
    vectors = np.asarray(model.predict(queries))
    assert vectors.shape == (2, manifest["config"]["model"]["query_tower"]["out_dim"])
    assert np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_a_missing_bucket_fails_the_run_naming_the_uri(cluster_run, s3_env, tmp_path: Path):
    from pipelines.local import resolve_local_day

    with pytest.raises(Exception, match="s3://no-such-bucket-ebr"):
        resolve_local_day("s3://no-such-bucket-ebr/logs", "latest")


def test_the_server_answers_from_the_pipeline_published_bundle(cluster_run, tiny_data: Path):
    """The query-tower server over real HTTP (uvicorn on loopback) on the bundle and the Feast online store the
    run left in the workspace, as a pod mounting the same PVC would."""
    import httpx

    from serving.app import create_app
    from serving.settings import ServerSettings
    from tests.serving.clients import LiveServer, wait_for

    ws = cluster_run["ws"]
    version = current_version(ws / "bundles")
    user = int(pd.read_parquet(tiny_data / "users")["user_id"].min())
    app = create_app(ServerSettings(bundles_dir=ws / "bundles", feature_repo=ws / "features", watch_interval_s=0.2))
    with LiveServer(app) as server:
        wait_for(lambda: httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200)
        assert httpx.get(f"{server.url}/readyz", timeout=5).json()["bundle_version"] == version
        r = httpx.post(f"{server.url}/search", json={"query": "连衣裙", "user_id": user, "k": 10}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bundle_version"] == version and body["personalized"] is True, body
    assert 0 < len(body["items"]) <= 10
    docs = set(pd.read_parquet(ws / "bundles" / version / "docs.parquet")["doc_id"].tolist())
    assert {it["doc_id"] for it in body["items"]} <= docs
