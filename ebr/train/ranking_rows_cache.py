"""Cache of the rankers' training rows: the fine ranker and the distillation of a day read the same ranking
samples with the same `ranking_training` features, so the first of them joins them through the feature store and
the other reads the entry (at `small`: ~85 s of joining, pandas copies and row dedup against ~3 s of reading).

    <cache root>/<key>/manifest.json                           format, key, what the key hashed, source, notes
                      /requests.parquet, docs.parquet, pairs.parquet
                      /cross-<names digest>.npy                  the pairs' cross features, float32 [pairs, F]

The cross features of every pair (per-pair Python over token sets, ~20 s at `small`) are stored beside the rows
by the first step that computes them; a step slices its split's rows out of them (`RankingRows.pair_positions`:
a pair's cross features depend on its request and doc only, so the slices equal a computation on the split).

The key hashes the samples (`featurized_cache.samples_identity`), the feature store (`features_identity`, absent
when the samples carry their joined features) and the code that builds the rows (`CODE_FILES`): any change gives
another key. An entry is written whole or not at all; one that cannot be read back (missing or unreadable file,
wrong key) is logged, removed and rebuilt, never used. Old entries are pruned (`KEEP`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebr.artifacts.atomic import atomic_output_dir, save_npy_atomic
from ebr.models.rankers.rows import RankingRows, load_training_rows
from ebr.train.featurized_cache import code_digest, digest, features_identity, prune, samples_identity

log = logging.getLogger(__name__)
FORMAT = "ebr.ranking_rows/1"
MANIFEST = "manifest.json"
FRAMES = ("requests", "docs", "pairs")
KEEP = 2  # a day's entry and the previous one
CODE_FILES = ("models/rankers", "features/retrieval.py", "features/asof.py", "features/encoding.py",
              "features/definitions.py", "train/ranking_rows_cache.py")


def cache_key(samples_dir: str | Path, features_dir: str | Path | None) -> tuple[str, dict[str, Any]]:
    """(24 hex digits of a SHA-256, what was hashed) for the training rows of `samples_dir`."""
    inputs = {"format": FORMAT, "code": code_digest(CODE_FILES), "samples": samples_identity(samples_dir),
              "features": features_identity(features_dir) if features_dir is not None else None}
    return digest(inputs)[:24], inputs


def _lists_back(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet gives list cells back as numpy arrays: make them the Python lists the join produced."""
    for c in frame.columns:
        if frame[c].dtype == object:
            col = frame[c].to_numpy()
            if any(isinstance(v, np.ndarray) for v in col):
                frame[c] = [v.tolist() if isinstance(v, np.ndarray) else v for v in col]
    return frame


def write_rows(rows: RankingRows, entry: str | Path, key: str, inputs: dict[str, Any]) -> Path:
    """Write `rows` as an entry (atomically)."""
    entry = Path(entry)
    with atomic_output_dir(entry, marker=MANIFEST) as tmp:
        for name in FRAMES:
            getattr(rows, name).to_parquet(tmp / f"{name}.parquet", index=False)
        manifest = {"format": FORMAT, "key": key, "inputs": inputs, "feature_source": rows.feature_source,
                    "notes": list(rows.notes), "rows": {n: len(getattr(rows, n)) for n in FRAMES}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return entry


def read_rows(entry: str | Path, key: str) -> RankingRows:
    """The rows of an entry; ValueError when it is not the entry of `key` or a frame is missing or short."""
    entry = Path(entry)
    manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("key") != key:
        raise ValueError(f"{entry}: entry of another key or format ({manifest.get('format')}, {manifest.get('key')})")
    frames = {n: _lists_back(pd.read_parquet(entry / f"{n}.parquet")) for n in FRAMES}
    for n, frame in frames.items():
        if len(frame) != manifest["rows"][n]:
            raise ValueError(f"{entry}: {n}.parquet has {len(frame)} rows, the manifest says {manifest['rows'][n]}")
    return RankingRows(**frames, feature_source=manifest["feature_source"], notes=tuple(manifest["notes"]))


def training_rows(samples_dir: str | Path, features_dir: str | Path | None,
                  cache_dir: str | Path | None) -> tuple[RankingRows, Path | None]:
    """`load_training_rows(samples_dir, features_dir)` through the cache in `cache_dir` when one is given: (the
    rows, their cache entry or None when uncached, for `training_cross`)."""
    if cache_dir is None:
        return load_training_rows(samples_dir, features_dir), None
    root = Path(cache_dir)
    key, inputs = cache_key(samples_dir, features_dir)
    entry = root / key
    if (entry / MANIFEST).is_file():
        try:
            rows = read_rows(entry, key)
            log.info("ranking rows of %s read from the cache entry %s", samples_dir, entry)
            return rows, entry
        except Exception as e:  # noqa: BLE001 - a broken entry is rebuilt, never used
            log.warning("ranking rows cache entry %s unreadable (%s: %s): rebuilding it", entry, type(e).__name__, e)
            shutil.rmtree(entry, ignore_errors=True)
    rows = load_training_rows(samples_dir, features_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_rows(rows, entry, key, inputs)
        prune(root, KEEP, protect=entry)
    except OSError as e:
        log.warning("ranking rows not cached in %s: %s", root, e)
        return rows, None
    return rows, entry


def training_cross(rows: RankingRows, entry: Path | None, names: list[str]) -> np.ndarray:
    """Cross features float32 [pairs, len(names)] of every pair of `rows`, read from their cache `entry` (as
    `training_rows` gave it) when a step stored them there, else computed (and stored there)."""
    from ebr.models.rankers.tensors import rows_cross_features

    path = entry / f"cross-{digest(list(names))[:12]}.npy" if entry is not None else None
    want = (len(rows.pairs), len(names))
    if path is not None and path.is_file():
        try:
            cross = np.load(path, allow_pickle=False)
            if cross.shape == want and cross.dtype == np.float32:
                log.info("cross features read from %s", path)
                return cross
            log.warning("%s holds cross features of shape %s %s, expected %s float32: recomputing", path,
                        cross.shape, cross.dtype, want)
        except (OSError, ValueError) as e:
            log.warning("%s unreadable (%s): recomputing", path, e)
    cross = rows_cross_features(rows, list(names))
    if path is not None:
        try:
            save_npy_atomic(path, cross)
        except OSError as e:
            log.warning("cross features not cached at %s: %s", path, e)
    return cross
