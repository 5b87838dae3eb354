"""The published champion as the daily run sees it: its model (warm start), metrics (gate) and index (mining).

The source of truth is the model registry: the `champion` alias of the two-tower registered model, whose
version carries the bundle version as tag `ebr.bundle_version`. `bundles/CURRENT` is derived from it
(`sync_current_from_registry`), so serving and the daily run read one file; mlflow is imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebr.bundle.layout import QUERY_TOWER_EXPORT, BundleError, current_version, read_bundle_manifest, write_current

CHAMPION_ALIAS = "champion"
BUNDLE_VERSION_TAG = "ebr.bundle_version"
TWO_TOWER_MODEL = "ebr-two-tower"


def champion_version_from_registry(tracking_uri: str, name: str = TWO_TOWER_MODEL) -> str | None:
    """The bundle version of the model version the registry's `champion` alias points at, or None when the
    model or the alias does not exist yet; an aliased version without the bundle tag is an error."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    bundle = (mv.tags or {}).get(BUNDLE_VERSION_TAG)
    if not bundle:
        raise BundleError(f"models:/{name}@{CHAMPION_ALIAS} (version {mv.version}) has no {BUNDLE_VERSION_TAG} "
                          "tag: it was not set by a publish")
    return bundle


def sync_current_from_registry(bundles_root: str | Path, tracking_uri: str, name: str = TWO_TOWER_MODEL) -> str | None:
    """Rewrite CURRENT from the registry's champion (after a publish, or after someone moved the alias, e.g. a
    rollback in the MLflow UI); returns the version, None (CURRENT untouched) when there is no champion yet."""
    version = champion_version_from_registry(tracking_uri, name)
    if version is None:
        return None
    if not (Path(bundles_root) / version).is_dir():
        raise BundleError(f"registry champion bundle {version} is not published under {bundles_root}")
    if current_version(bundles_root) != version:
        write_current(bundles_root, version)
    return version


def champion_dir(bundles_root: str | Path) -> Path | None:
    """The directory of the bundle CURRENT points to, or None before the first publish."""
    version = current_version(bundles_root)
    return None if version is None else Path(bundles_root) / version


def champion_model_dir(bundles_root: str | Path) -> Path | None:
    """The champion's trained model (checkpoint + export) for warm start, or None."""
    d = champion_dir(bundles_root)
    return None if d is None or not (d / "model").is_dir() else d / "model"


def champion_metrics(bundles_root: str | Path) -> dict[str, Any] | None:
    """The evaluation metrics recorded in the champion's manifest when it was published, or None."""
    d = champion_dir(bundles_root)
    if d is None:
        return None
    return read_bundle_manifest(d).get("info", {}).get("metrics")


def champion_miner(bundles_root: str | Path) -> tuple[Path | None, Callable[[pd.DataFrame], np.ndarray] | None]:
    """(index dir, query encoder) of the champion for offline hard-negative mining, or (None, None).

    The encoder runs the champion's exported query tower on every query-side column of the rows it is given
    (query text, user id, user profile, sequences, user statistics: `ebr.models.inputs.featurize_queries` reads
    what the champion's featurizer uses), the inputs training encodes the same requests with; `build_samples`
    passes each request with its point-in-time features (`ebr.samples.build.mining_requests`)."""
    d = champion_dir(bundles_root)
    if d is None:
        return None, None

    def encode(frame: pd.DataFrame) -> np.ndarray:
        from ebr.models.export import load_exported
        from ebr.models.inputs import featurize_queries

        exported = load_exported(d / QUERY_TOWER_EXPORT, only=["query_tower"])
        tower = exported["query_tower"]
        rows = frame.reset_index(drop=True)
        out = []
        for start in range(0, len(rows), 1024):
            batch = featurize_queries(rows.iloc[start:start + 1024], exported.featurizer)
            out.append(tower(batch).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, tower.output_dim), np.float32)

    return d / "index", encode
