"""The Feast store of a feature directory, built in code: file offline store + SQLite (or Redis) online store.

Everything lives under the directory: `registry.db`, `online_store.db`, `tables/` (the offline store's
parquet) and `store.json` (the settings it was built with). Source paths are relative to the directory,
so it can be moved or copied as a whole. With `FeaturesConfig.online_store: redis` the online store is the
Redis server at `redis_connection` instead of `online_store.db` (recorded in `store.json`, so every reader of
the directory, the query-tower server included, uses the same store).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebr.artifacts.atomic import write_text_atomic
from ebr.features.config import FeaturesConfig
from ebr.features.definitions import VIEWS, build_definitions

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

REGISTRY = "registry.db"
ONLINE_DB = "online_store.db"
STORE_JSON = "store.json"
FEATURE_STORE_YAML = """\
# Written by ebr.features for `feast -c <this folder> ...` (paths are relative to this folder).
project: {project}
provider: local
registry: {registry}
online_store:
{online}
offline_store:
  type: file
entity_key_serialization_version: 3
materialization:
  online_write_batch_size: {batch}
"""
DEFAULT_SETTINGS_KEYS = ("project", "snapshot_ttl_days", "online_store", "redis_connection", "offline_engine",
                         "offline_memory_limit", "realtime_max_len", "recent_queries_max_len", "sequence_event_types")


def _settings(cfg: FeaturesConfig) -> dict:
    """The recorded settings; the sequence lengths and event types are what a pushed real-time row follows."""
    return {k: list(v) if isinstance(v := getattr(cfg, k), tuple) else v for k in DEFAULT_SETTINGS_KEYS}


def store_settings(out_dir: str | Path) -> dict:
    """The settings a feature directory was built with (project, snapshot TTL, online store); defaults for
    what is not recorded (a directory written before the online store was configurable is SQLite)."""
    settings = _settings(FeaturesConfig())
    p = Path(out_dir) / STORE_JSON
    if p.is_file():
        settings.update(json.loads(p.read_text(encoding="utf-8")))
    return settings


def online_store_yaml(settings: dict) -> str:
    """The `online_store:` block (indented body) of a feature directory's feature_store.yaml."""
    if settings["online_store"] == "redis":
        return f"  type: redis\n  connection_string: {json.dumps(settings['redis_connection'])}"
    return f"  type: sqlite\n  path: {ONLINE_DB}"


def write_store_settings(out_dir: str | Path, cfg: FeaturesConfig) -> None:
    """Record the store settings and a feature_store.yaml for the Feast CLI (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(cfg)
    files = {
        STORE_JSON: json.dumps(settings, indent=2),
        "feature_store.yaml": FEATURE_STORE_YAML.format(
            project=cfg.project, registry=REGISTRY, online=online_store_yaml(settings),
            batch=cfg.online_write_batch_size,
        ),
    }
    for name, text in files.items():
        write_text_atomic(out / name, text)


def online_store_config(out_dir: str | Path, settings: dict) -> Any:
    """Feast online store config of a feature directory: SQLite in the directory, or Redis at
    `redis_connection` (its `${ENV}` placeholders expanded now, as Feast does in feature_store.yaml)."""
    if settings["online_store"] == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        return RedisOnlineStoreConfig(connection_string=os.path.expandvars(settings["redis_connection"]))
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    return SqliteOnlineStoreConfig(path=str(Path(out_dir).resolve() / ONLINE_DB))


def online_store_loaded(out_dir: str | Path, cfg: FeaturesConfig) -> bool:
    """Whether the directory's online store, as `cfg` configures it, was loaded by an earlier build: the
    same store was recorded (and, for SQLite, its file exists). A new store needs the full window."""
    out = Path(out_dir)
    if not (out / STORE_JSON).is_file() and not (out / ONLINE_DB).exists():
        return False
    before = store_settings(out)
    if before["online_store"] != cfg.online_store:
        return False
    if cfg.online_store == "redis":
        return before["redis_connection"] == cfg.redis_connection and before["project"] == cfg.project
    return (out / ONLINE_DB).exists()


def repo_config(out_dir: str | Path, project: str, settings: dict | None = None) -> RepoConfig:
    """Feast config of a feature directory: local provider, file offline store (whose tables the `asof` engine
    reads too), the recorded online store (`settings`, by default those of `store.json`: SQLite unless built with
    `online_store: redis`)."""
    from feast import RepoConfig

    out = Path(out_dir).resolve()
    settings = {**store_settings(out), **(settings or {}), "project": project}
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(out / REGISTRY),
        online_store=online_store_config(out, settings),
        offline_store="file",
        entity_key_serialization_version=3,
        repo_path=str(out),
    )


def _applied(store: FeatureStore, ttl_days: int) -> bool:
    """Whether the registry holds exactly the views (features, TTLs) that the definitions describe."""
    try:
        views = {v.name: v for v in store.list_feature_views()}
        services = {s.name for s in store.list_feature_services()}
    except Exception:  # noqa: BLE001 - an unreadable or empty registry just needs an apply
        return False
    defs = build_definitions(None, ttl_days)
    if set(views) != {v.name for v in VIEWS} or services != set(defs.services):
        return False
    for name, fv in views.items():
        want = defs.views[name]
        if [f.name for f in fv.features] != [f.name for f in want.features] or fv.ttl != want.ttl:
            return False
        if _stream_name(fv) != _stream_name(want):  # a registry applied before the push sources existed
            return False
    return True


def _stream_name(fv: Any) -> str | None:
    """The name of a view's stream (push) source, None without one."""
    return fv.stream_source.name if fv.stream_source is not None else None


def open_store(out_dir: str | Path, apply: bool | None = None) -> FeatureStore:
    """The FeatureStore of a feature directory written by `build_features`.

    The definitions are applied when the registry does not match them (or when `apply` is True)."""
    from feast import FeatureStore

    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"feature directory {out} does not exist; run build_features first")
    settings = store_settings(out)
    store = FeatureStore(config=repo_config(out, settings["project"], settings))
    if apply or (apply is None and not _applied(store, settings["snapshot_ttl_days"])):
        defs = build_definitions(None, settings["snapshot_ttl_days"])
        store.apply(defs.objects())
    return store
