"""feature_repo's Feast configs load: the local feature_store.yaml and the production one (Redis online store,
registry on S3, file offline store), its ${VARS} expanded by Feast's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
PROD_ENV = {"REDIS_CONNECTION": "redis.test:6379,ssl=true,password=s3cret", "FEAST_REGISTRY_BUCKET": "ebr-test"}


def test_production_yaml_builds_a_repo_config(monkeypatch):
    from feast.infra.registry.registry import get_registry_store_class_from_scheme
    from feast.repo_config import RepoConfig, load_repo_config

    for k, v in PROD_ENV.items():
        monkeypatch.setenv(k, v)
    cfg = load_repo_config(REPO, REPO / "feature_store.production.yaml")  # os.path.expandvars, then RepoConfig
    assert isinstance(cfg, RepoConfig) and cfg.project == "ebr"
    # every store config is resolved (Feast imports their classes lazily): types exist and their modules import
    assert type(cfg.online_store).__name__ == "RedisOnlineStoreConfig"
    assert cfg.online_store.connection_string == PROD_ENV["REDIS_CONNECTION"]
    assert cfg.online_store.key_ttl_seconds and cfg.online_store.key_ttl_seconds > 0
    assert cfg.offline_store.type == "file"
    assert cfg.batch_engine.type == "local"
    assert cfg.registry.path == "s3://ebr-test/ebr/registry.pb"
    assert get_registry_store_class_from_scheme(cfg.registry.path).__name__ == "S3RegistryStore"
    assert cfg.entity_key_serialization_version == 3


def test_production_yaml_has_no_unexpanded_placeholders(monkeypatch):
    """Every ${VAR} of the file is one the deployment sets (PROD_ENV lists them): nothing stays literal."""
    from feast.repo_config import load_repo_config

    for k, v in PROD_ENV.items():
        monkeypatch.setenv(k, v)
    cfg = load_repo_config(REPO, REPO / "feature_store.production.yaml")
    dumped = repr(cfg.online_store) + repr(cfg.registry) + repr(cfg.offline_store)
    assert "${" not in dumped


def test_production_yaml_without_its_env_is_not_silently_valid(monkeypatch):
    """Feast leaves an unset ${VAR} as written; the Redis connection string then names no host:port."""
    from feast.repo_config import load_repo_config

    for k in PROD_ENV:
        monkeypatch.delenv(k, raising=False)
    cfg = load_repo_config(REPO, REPO / "feature_store.production.yaml")
    assert cfg.online_store.connection_string == "${REDIS_CONNECTION}"


def test_local_yaml_still_loads():
    from feast.repo_config import load_repo_config

    cfg = load_repo_config(REPO, REPO / "feature_store.yaml")
    assert cfg.online_store.type == "sqlite" and cfg.offline_store.type == "file"
    assert "data/features" in str(cfg.registry.path)


@pytest.mark.parametrize(("kwargs", "field"), [({"online_store": "dynamodb"}, "online_store"),
                                               ({"redis_connection": ""}, "redis_connection")])
def test_bad_online_store_config_names_the_field(kwargs, field):
    from pydantic import ValidationError

    from ebr.features import FeaturesConfig

    with pytest.raises(ValidationError, match=field):
        FeaturesConfig(**kwargs)
