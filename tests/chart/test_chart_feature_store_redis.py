"""End to end: the feature_store.yaml the chart renders, read by the query-tower server's feature source against a
real redis-server on loopback.

The writer is the pipeline's own step: `build_features` with the Redis online store applies the project's feature
definitions into <features>/registry.db and materializes the tiny dataset into Redis, as the daily run does on the
workspace volume. The reader is set up the way the chart sets up a pod: the rendered ConfigMap's feature_store.yaml
alone in the directory EBR_FEATURE_REPO names (featureStore.mountPath), the registry reached through the registry
claim's mount (featureStore.registry.pvc.mountPath, here the local features directory), and the connection string
only in the environment variable the chart fills from the Secret. No cluster: the mount and the Secret are the two
things this test stands in for.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from tests.chart.manifests import RELEASE, render
from tests.features.conftest import read_view, same_value
from tests.redis_server import redis_server  # noqa: F401 - the fixture

STORE_CM = f"{RELEASE}-query-tower-feature-store"


@pytest.fixture(scope="module")
def pipeline_features(tiny_data, tiny_days, redis_server, tmp_path_factory) -> Path:  # noqa: F811
    """<workspace>/features as the pipeline leaves it: registry.db applied, the online store loaded into Redis."""
    from ebr.features import FeaturesConfig, build_features

    out = tmp_path_factory.mktemp("workspace") / "features"
    result = build_features(tiny_data, tiny_days[-1], out, FeaturesConfig(online_store="redis",
                                                                          redis_connection=redis_server))
    assert result["online_store"] == f"redis://{redis_server}"
    return out


def _pod_view(chart, features: Path, root: Path, registry: str = "registry.db") -> tuple[dict[str, str], str]:
    """Render the chart for this machine's paths and lay its feature_store.yaml out as the ConfigMap volume would.

    Returns the server's ConfigMap env (EBR_*) and the name of the variable the Secret fills."""
    repo = root / "etc-feature-store"
    rendered = render(chart, {"featureStore": {
        "mountPath": str(repo),
        "registry": {"path": str(features / registry), "pvc": {"mountPath": str(features)}},
    }})
    (cm,) = [d for d in rendered.of_kind("ConfigMap") if d["metadata"]["name"] == STORE_CM]
    server = rendered.container("server")
    (volume,) = [v for v in rendered.pod_spec["volumes"] if v.get("configMap", {}).get("name") == STORE_CM]
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == volume["name"]]
    target = Path(mount["mountPath"])
    target.mkdir(parents=True)
    for item in volume["configMap"]["items"]:
        (target / item["path"]).write_text(cm["data"][item["key"]], encoding="utf-8")
    (secret_env,) = [e["name"] for e in server["env"] if "secretKeyRef" in e.get("valueFrom", {})
                     and e["name"] != "EBR_ADMIN_TOKEN"]
    return rendered.server_config_map["data"], secret_env


def _source(directory: str | Path, **kwargs):
    """The server's feature source over `directory`; generous lookup timeouts where it has them (this test checks
    what it answers, not how fast, on a shared machine)."""
    from serving.feature_source import OnlineFeatureSource

    params = inspect.signature(OnlineFeatureSource).parameters
    for name, seconds in (("timeout_s", 30.0), ("connect_timeout_s", 60.0)):
        if name in params:
            kwargs.setdefault(name, seconds)
    return OnlineFeatureSource(directory, **kwargs)


def _known_users_and_queries(features: Path) -> tuple[list[int], list[str]]:
    seq = read_view(features, "user_sequences")
    stats = read_view(features, "query_stats")
    users = [int(u) for u in seq.loc[seq["seq_st_doc_ids"].map(len) > 0, "user_id"].unique()[:3]]
    queries = list(stats.loc[stats["query_searches_30d"] > 0, "query"].unique()[:3])
    assert len(users) >= 2 and queries, "the tiny data should give users with sequences and searched queries"
    return users, queries


def test_server_reads_personalized_features_through_the_rendered_config(
        chart, pipeline_features, redis_server, tmp_path, monkeypatch):  # noqa: F811
    from serving.settings import ServerSettings

    env, secret_env = _pod_view(chart, pipeline_features, tmp_path)
    monkeypatch.setenv(secret_env, redis_server)  # what the kubelet does with the Secret's key
    settings = ServerSettings.resolve({}, {**env, "EBR_BUNDLES_DIR": str(tmp_path / "bundles")})
    assert settings.feature_repo == tmp_path / "etc-feature-store"
    assert sorted(p.name for p in settings.feature_repo.iterdir()) == ["feature_store.yaml"]

    source = _source(settings.feature_repo)
    assert source.open(), source.last_error
    config = source._ensure_store().config
    assert type(config.online_store).__name__ == "RedisOnlineStoreConfig"
    assert config.online_store.connection_string == redis_server
    assert yaml.safe_load((settings.feature_repo / "feature_store.yaml").read_text())["online_store"][
        "connection_string"] == "${" + secret_env + "}", "the file holds the placeholder, never the value"

    pipeline_view = _source(pipeline_features)  # the pipeline's own reading of the same store
    users, queries = _known_users_and_queries(pipeline_features)
    for user, query in zip(users, queries * len(users), strict=False):
        got, want = source.fetch(user, query), pipeline_view.fetch(user, query)
        assert got.fallback is None and want.fallback is None, (source.last_error, pipeline_view.last_error)
        assert got.user_known, f"user {user} has features in Redis: the server must answer personalized"
        assert set(got.values) == set(want.values)
        for name, value in want.values.items():
            assert same_value(got.values[name], value), (user, query, name)
    unknown = source.fetch(10**12, queries[0])
    assert unknown.fallback is None and not unknown.user_known
    assert source.healthy


def test_unreachable_redis_degrades_visibly(chart, pipeline_features, tmp_path, monkeypatch):
    """A Secret naming a Redis nobody listens on: the store does not open, the source reports it (what /readyz and
    ebr_serve_feature_store_up show) and a request falls back instead of failing."""
    env, secret_env = _pod_view(chart, pipeline_features, tmp_path)
    monkeypatch.setenv(secret_env, "127.0.0.1:1")
    source = _source(env["EBR_FEATURE_REPO"], retry_s=60.0)
    assert not source.open()
    assert not source.healthy and "onnect" in (source.last_error or "")
    _trips(source)


def test_missing_registry_degrades_visibly(chart, pipeline_features, redis_server, tmp_path, monkeypatch):  # noqa: F811
    """A registry path with nothing behind it (the pipeline has not run, or a wrong subPath): reported, not hidden."""
    env, secret_env = _pod_view(chart, pipeline_features, tmp_path, registry="not-written-yet.db")
    monkeypatch.setenv(secret_env, redis_server)
    source = _source(env["EBR_FEATURE_REPO"], retry_s=60.0)
    assert not source.open()
    # Feast starts an empty registry when the file is missing (and tries to write it: in the pod the claim is
    # mounted read-only, so that fails too); either way the lookup fails and names what it lacks.
    assert not source.healthy and "does not exist in project ebr" in (source.last_error or "")
    _trips(source)


def _trips(source) -> None:
    """After the failed warm-up the store is asked again until `trip_after` consecutive failures, then skipped."""
    for _ in range(source.trip_after - 1):
        assert not source.backing_off
        assert source.fetch(1, "x").fallback in ("error", "unavailable")
    assert source.backing_off
    assert source.fetch(1, "x").fallback == "unavailable" and source.pending == 0
