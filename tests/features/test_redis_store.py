"""Feast's Redis online store against a real redis-server: build_features materializes into Redis, and the
query-tower server's online lookup (serving.feature_source) answers exactly what it answers from SQLite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ebr.features.store import ONLINE_DB, STORE_JSON
from tests.features.conftest import read_view, same_value
from tests.redis_server import redis_server  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def _redis(address: str):
    import redis

    host, port = address.split(":")
    return redis.Redis(host=host, port=int(port))


@pytest.fixture(scope="module")
def redis_built(built, tiny_data, tiny_days, redis_server, tmp_path_factory):  # noqa: F811
    """The SQLite-built feature directory copied (without its online store) and rebuilt with the Redis online
    store: build_features rebuilds the last day and, the store being new, materializes the whole window."""
    from ebr.features import FeaturesConfig, build_features

    out = tmp_path_factory.mktemp("redis-features") / "store"
    shutil.copytree(built[0], out, ignore=shutil.ignore_patterns(ONLINE_DB))
    cfg = FeaturesConfig(online_store="redis", redis_connection=redis_server)
    result = build_features(tiny_data, tiny_days[-1], out, cfg)
    return out, result


def test_build_materializes_into_redis(built, redis_built, redis_server):  # noqa: F811
    out, result = redis_built
    for k in ("start", "end", "rows"):  # the same window and rows as the SQLite build
        assert result["materialized"][k] == built[1]["materialized"][k], k
    assert result["online_store"] == f"redis://{redis_server}"
    assert not (out / ONLINE_DB).exists()
    settings = json.loads((out / STORE_JSON).read_text(encoding="utf-8"))
    assert settings["online_store"] == "redis" and settings["redis_connection"] == redis_server
    assert "type: redis" in (out / "feature_store.yaml").read_text(encoding="utf-8")
    assert _redis(redis_server).dbsize() > 0


def test_server_lookup_from_redis_equals_sqlite(built, redis_built):
    from serving.feature_source import OnlineFeatureSource

    sqlite_dir, redis_dir = built[0], redis_built[0]
    seq = read_view(sqlite_dir, "user_sequences")
    stats = read_view(sqlite_dir, "query_stats")
    users = [int(u) for u in seq.loc[seq["seq_st_doc_ids"].map(len) > 0, "user_id"].unique()[:4]]
    queries = list(stats.loc[stats["query_searches_30d"] > 0, "query"].unique()[:3])
    assert len(users) >= 2 and len(queries) >= 2, "the tiny data should give users sequences and queries stats"
    requests = [(u, q) for u, q in zip(users, queries * 2, strict=False)]
    requests += [(None, queries[0]), (10**12, "a query nobody searched"), (users[0], "a query nobody searched")]
    from_sqlite, from_redis = OnlineFeatureSource(sqlite_dir), OnlineFeatureSource(redis_dir)
    assert from_redis.open() and from_sqlite.open()
    assert type(from_redis._ensure_store().config.online_store).__name__ == "RedisOnlineStoreConfig"
    personalized = 0
    for user, query in requests:
        want, got = from_sqlite.fetch(user, query), from_redis.fetch(user, query)
        assert got.fallback is None and want.fallback is None, (from_redis.last_error, from_sqlite.last_error)
        assert set(got.values) == set(want.values)
        for name, value in want.values.items():
            assert same_value(got.values[name], value), (user, query, name, got.values[name], value)
        assert got.user_known == want.user_known
        personalized += got.user_known
    assert personalized >= 2, "known users get their features from Redis"


def test_redis_unreachable_degrades_like_sqlite(redis_built, tmp_path):
    """A directory recorded with a Redis store nobody listens on: the server's lookup falls back, it never raises."""
    from serving.feature_source import OnlineFeatureSource

    out = tmp_path / "store"
    shutil.copytree(redis_built[0], out)
    settings = json.loads((out / STORE_JSON).read_text(encoding="utf-8"))
    settings["redis_connection"] = "127.0.0.1:1"
    (out / STORE_JSON).write_text(json.dumps(settings), encoding="utf-8")
    source = OnlineFeatureSource(out, retry_s=60.0, timeout_s=30.0, connect_timeout_s=30.0)  # a refusal, not a wait
    got = source.fetch(1, "x")
    assert got.fallback == "error" and not got.values and "onnection" in (source.last_error or "")


def test_production_yaml_online_store_reaches_redis(redis_server, monkeypatch):  # noqa: F811
    """The production feature_store.yaml, its ${VARS} set the way Feast expands them, connects to a real Redis."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.repo_config import load_repo_config

    monkeypatch.setenv("REDIS_CONNECTION", redis_server)
    monkeypatch.setenv("FEAST_REGISTRY_BUCKET", "ebr-test")
    cfg = load_repo_config(REPO, REPO / "feature_store.production.yaml")
    assert cfg.online_store.connection_string == redis_server
    assert RedisOnlineStore()._get_client(cfg.online_store).ping()
