"""The Feast store of a feature directory, built in code: file offline store + SQLite online store.

Everything lives under the directory: `registry.db`, `online_store.db`, `tables/` (the offline store's
parquet) and `store.json` (the settings it was built with). Source paths are relative to the directory,
so it can be moved or copied as a whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

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
  type: sqlite
  path: {online}
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def store_settings(out_dir: str | Path) -> dict:
    """The settings a feature directory was built with (project, snapshot TTL); defaults if none recorded."""
    p = Path(out_dir) / STORE_JSON
    if p.is_file():
        return json.loads(p.read_text(encoding="utf-8"))
    d = FeaturesConfig()
    return {"project": d.project, "snapshot_ttl_days": d.snapshot_ttl_days}


def write_store_settings(out_dir: str | Path, cfg: FeaturesConfig) -> None:
    """Record the store settings and a feature_store.yaml for the Feast CLI (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        STORE_JSON: json.dumps({"project": cfg.project, "snapshot_ttl_days": cfg.snapshot_ttl_days}, indent=2),
        "feature_store.yaml": FEATURE_STORE_YAML.format(project=cfg.project, registry=REGISTRY, online=ONLINE_DB),
    }
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def repo_config(out_dir: str | Path, project: str) -> RepoConfig:
    """Feast config of a feature directory: local provider, file offline store, SQLite online store."""
    from feast import RepoConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    out = Path(out_dir).resolve()
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(out / REGISTRY),
        online_store=SqliteOnlineStoreConfig(path=str(out / ONLINE_DB)),
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
    return True


def open_store(out_dir: str | Path, apply: bool | None = None) -> FeatureStore:
    """The FeatureStore of a feature directory written by `build_features`.

    The definitions are applied when the registry does not match them (or when `apply` is True)."""
    from feast import FeatureStore

    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"feature directory {out} does not exist; run build_features first")
    settings = store_settings(out)
    store = FeatureStore(config=repo_config(out, settings["project"]))
    if apply or (apply is None and not _applied(store, settings["snapshot_ttl_days"])):
        defs = build_definitions(None, settings["snapshot_ttl_days"])
        store.apply(defs.objects())
    return store
