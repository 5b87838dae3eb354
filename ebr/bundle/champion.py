"""The published champion as the daily run sees it: its model (warm start), metrics (gate) and index (mining)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebr.bundle.layout import QUERY_TOWER_EXPORT, current_version, read_bundle_manifest


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

    The encoder runs the champion's exported query tower on the query text alone (no user features): mining
    looks for docs the previous model confuses with the query's meaning, which is what hard negatives are for."""
    d = champion_dir(bundles_root)
    if d is None:
        return None, None

    def encode(frame: pd.DataFrame) -> np.ndarray:
        from ebr.models.inputs import featurize_queries
        from ebr.train.export import load_exported

        exported = load_exported(d / QUERY_TOWER_EXPORT)
        tower = exported["query_tower"]
        rows = pd.DataFrame({"query": frame["query"].astype(str).to_numpy()})
        out = []
        for start in range(0, len(rows), 1024):
            batch = featurize_queries(rows.iloc[start:start + 1024], exported.featurizer)
            out.append(tower(batch).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, tower.output_dim), np.float32)

    return d / "index", encode
