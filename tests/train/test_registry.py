"""A tiny two-tower training registers a pyfunc version that loads by alias, from SQLite and over HTTP from a
real `mlflow server` (tests/mlflow_server.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ebr.bundle import champion_version_from_registry
from ebr.bundle.release import _set_champion_alias
from ebr.models.export import load_exported
from ebr.train.registry import TWO_TOWER_MODEL
from tests.train.test_two_tower_pipeline import pipe, tiny_config, trained  # noqa: F401

pytestmark = pytest.mark.slow
QUERIES = pd.DataFrame({"query": ["red running shoes", "手机壳", "red running shoes"], "user_id": [3, 4, 3]})


def _check_embeddings(uri_alias: str, export_dir: str, tracking_uri: str) -> np.ndarray:
    import mlflow.pyfunc

    from ebr.evaluate.two_tower import encode_queries
    from ebr.train.tracking import using_tracking_uri

    with using_tracking_uri(tracking_uri):  # what models:/ resolves against, whatever ran before in this process
        model = mlflow.pyfunc.load_model(uri_alias)
    out = model.predict(QUERIES)
    dim = load_exported(export_dir)["query_tower"].output_dim
    assert out.shape == (3, dim) and np.isfinite(out).all()
    # same row, same vector (up to the summation order of a multi-threaded batch matmul)
    np.testing.assert_allclose(out[0], out[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(QUERIES), out)
    np.testing.assert_allclose(out, encode_queries(load_exported(export_dir), QUERIES, 2), rtol=1e-5, atol=1e-6)
    return out


def test_trained_version_loads_as_challenger_and_champion(pipe, monkeypatch):  # noqa: F811
    result = trained(pipe, "base")  # the shared model: its own registry, where nothing else sets an alias
    uri = f"sqlite:///{pipe.base / 'base'}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    version = result["registered_version"]
    client = MlflowClient(uri)
    assert client.get_model_version_by_alias(TWO_TOWER_MODEL, "challenger").version == int(version)
    assert client.get_model_version(TWO_TOWER_MODEL, version).tags["ebr.model_version"] == result["model_version"]
    assert champion_version_from_registry(uri) is None
    _set_champion_alias(uri, TWO_TOWER_MODEL, version, "bundle-1")
    assert champion_version_from_registry(uri) == "bundle-1"
    a = _check_embeddings(f"models:/{TWO_TOWER_MODEL}@challenger", result["export_dir"], uri)
    b = _check_embeddings(f"models:/{TWO_TOWER_MODEL}@champion", result["export_dir"], uri)
    np.testing.assert_array_equal(a, b)


def test_training_logs_registers_and_loads_over_a_tracking_server(pipe, mlflow_server_uri, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    from ebr.train.two_tower import train_two_tower

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server_uri)
    cfg = tiny_config(None, train={"epochs": 1}, mlflow={"experiment": "ebr-server-test"})
    champion_before = champion_version_from_registry(mlflow_server_uri)
    result = train_two_tower(pipe.samples, pipe.features, tmp_path / "model", cfg)
    client = MlflowClient(mlflow_server_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "model/checkpoint.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    mv = client.get_model_version_by_alias(TWO_TOWER_MODEL, "challenger")
    assert str(mv.version) == result["registered_version"] and mv.run_id == run.info.run_id
    # over REST; the server is shared by the session's tests, so another test may have published a champion:
    # training never moves it, only publish does
    assert champion_version_from_registry(mlflow_server_uri) == champion_before
    _check_embeddings(f"models:/{TWO_TOWER_MODEL}@challenger", result["export_dir"], mlflow_server_uri)
    _set_champion_alias(mlflow_server_uri, TWO_TOWER_MODEL, result["registered_version"], "bundle-http")
    assert champion_version_from_registry(mlflow_server_uri) == "bundle-http"
