"""The model registry as the source of truth: pyfunc models load by alias and score, and CURRENT follows the
`champion` alias (publish, rollback, and the errors when the alias and the bundles disagree)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ebr.bundle import (
    BundleError,
    champion_version_from_registry,
    current_version,
    publish_bundle,
    sync_current_from_registry,
)
from ebr.bundle.release import _set_champion_alias
from ebr.models.export import load_exported
from ebr.train.registry import COARSE_RANKER_MODEL, TWO_TOWER_MODEL, register_coarse_ranker, register_two_tower
from ebr.train.tracking import MlflowConfig, mlflow_run
from serving.coarse_rescorer import CoarseRescorer
from serving.synthetic import example_query_rows

from .conftest import copy_root, publish


@pytest.fixture(scope="module")
def registry(parts, tmp_path_factory):
    """A SQLite registry with one two-tower and one coarse-ranker pyfunc version (alias challenger)."""
    root = tmp_path_factory.mktemp("registry")
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts"))
    with mlflow_run(cfg, "registry_test") as run:
        two = register_two_tower(run, TWO_TOWER_MODEL, parts.model_dir / "export", "model-test")
        coarse = register_coarse_ranker(run, COARSE_RANKER_MODEL, parts.coarse_dir, "coarse-test")
    return {"uri": cfg.tracking_uri, "two_tower": two, "coarse": coarse}


@pytest.fixture
def tracked(registry, monkeypatch):
    """MLflow pointed at the test registry (what `models:/` URIs resolve against), by the environment and by a
    scoped process-wide URI, whatever ran before in this process."""
    from ebr.train.tracking import using_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    with using_tracking_uri(registry["uri"]):
        yield registry


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Request rows as the pyfunc takes them: a missing list is [] (MLflow's Array columns hold no nulls)."""
    frame = pd.DataFrame(rows)
    for col in frame.columns:
        if any(isinstance(v, list) for v in frame[col]):
            frame[col] = [v if isinstance(v, list) else [] for v in frame[col]]
    return frame


def test_two_tower_pyfunc_loads_by_alias_and_embeds_queries(parts, tracked):
    import mlflow.pyfunc

    client = MlflowClient(tracked["uri"])
    assert client.get_model_version_by_alias(TWO_TOWER_MODEL, "challenger").version == int(tracked["two_tower"])
    _set_champion_alias(tracked["uri"], TWO_TOWER_MODEL, tracked["two_tower"], "v1")
    from ebr.models.inputs import featurize_queries

    logged_in = example_query_rows()[:1] * 2
    logged_in[1] = {**logged_in[1], "query": "acme jacket", "user_id": 7}
    rows = _frame(logged_in)
    tower = load_exported(parts.model_dir / "export")
    want = tower["query_tower"](featurize_queries(logged_in, tower.featurizer)).numpy()
    for alias in ("champion", "challenger"):
        model = mlflow.pyfunc.load_model(f"models:/{TWO_TOWER_MODEL}@{alias}")
        out = model.predict(rows)
        assert out.shape == (2, parts.config.query_tower.out_dim) and out.dtype == np.float32
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)  # the same vectors as the exported tower
        np.testing.assert_array_equal(model.predict(rows), out)  # deterministic
    sig = model.metadata.get_input_schema()
    assert "query" in sig.required_input_names() and "user_id" in sig.optional_input_names()
    logged_out = example_query_rows()[1:]  # no user columns at all
    np.testing.assert_allclose(model.predict(pd.DataFrame(logged_out)),
                               tower["query_tower"](featurize_queries(logged_out, tower.featurizer)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_coarse_ranker_pyfunc_scores_pairs_like_the_server(parts, tracked):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{COARSE_RANKER_MODEL}@challenger")
    row = example_query_rows()[0]
    doc_ids = parts.docs_v1["doc_id"].to_numpy()[:5].tolist() + [999_999_999]
    frame = _frame([{**row, "doc_id": d} for d in doc_ids])
    scores = model.predict(frame)
    assert scores.shape == (6,) and np.isfinite(scores[:5]).all() and np.isnan(scores[5])
    served = CoarseRescorer.open(parts.coarse_dir).score(row, np.asarray(doc_ids))
    np.testing.assert_allclose(scores[:5], served[:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(frame), scores)


def test_current_is_derived_from_the_champion_alias(parts, registry, published_root, tmp_path):
    uri, client = registry["uri"], MlflowClient(registry["uri"])
    name = "ebr-two-tower-current"
    client.create_registered_model(name)
    v1, v2, v3 = (str(client.create_model_version(name, source=str(tmp_path)).version) for _ in range(3))
    assert champion_version_from_registry(uri, name) is None  # no alias yet
    root = copy_root(published_root, tmp_path / "bundles")
    assert sync_current_from_registry(root, uri, name) is None and current_version(root) == "v1"

    _set_champion_alias(uri, name, v1, "v1")
    staging = publish(parts, root, "v2", docs="v2", publish_now=False)
    publish_bundle(root, staging, "v2", switch_current=False)
    assert current_version(root) == "v1"  # moving the bundle in does not switch serving
    _set_champion_alias(uri, name, v2, "v2")
    assert champion_version_from_registry(uri, name) == "v2"
    assert sync_current_from_registry(root, uri, name) == "v2" and current_version(root) == "v2"
    assert client.get_model_version(name, v2).tags["ebr.bundle_version"] == "v2"

    # a rollback is an alias move in the registry; CURRENT follows on the next sync
    client.set_registered_model_alias(name, "champion", v1)
    assert sync_current_from_registry(root, uri, name) == "v1" and current_version(root) == "v1"

    _set_champion_alias(uri, name, v3, "v9")  # the alias names a bundle that was never published
    with pytest.raises(BundleError, match="v9 is not published"):
        sync_current_from_registry(root, uri, name)
    assert current_version(root) == "v1"
    client.delete_model_version_tag(name, v3, "ebr.bundle_version")
    with pytest.raises(BundleError, match="no ebr.bundle_version tag"):
        champion_version_from_registry(uri, name)
