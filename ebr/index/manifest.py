"""The index directory's manifest.json: file names, reading and shape checks.

Layout of an index directory (one shard)::

    index.faiss                  the Faiss index (labels are positions 0..n-1)
    doc_ids.npy                  int64 [n]: position -> doc id
    ann_recall_vs_latency.png    the tuning sweep
    manifest.json                everything else (see docs/index.md), with sha256 of every other file

With `shards > 1`: index-00000.faiss + doc_ids-00000.npy, index-00001.faiss + ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
PLOT_NAME = "ann_recall_vs_latency.png"
FORMAT = "ebr.index/1"
_REQUIRED = ("format", "n", "d", "metric", "factory", "shards", "search_params", "files", "model_version")


class ManifestError(ValueError):
    """An index directory whose manifest is missing, malformed or inconsistent with its files."""


def shard_file_names(shard_no: int, num_shards: int) -> tuple[str, str]:
    """(index file, doc-id file) names of one shard; a single shard uses the plain names."""
    if num_shards == 1:
        return "index.faiss", "doc_ids.npy"
    return f"index-{shard_no:05d}.faiss", f"doc_ids-{shard_no:05d}.npy"


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Load manifest.json and check the fields the loader relies on."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path} does not exist: not an index directory, or the build did not finish")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: top level must be an object")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ManifestError(f"{path}: missing fields {missing}")
    if manifest["format"] != FORMAT:
        raise ManifestError(f"{path}: format {manifest['format']!r}, expected {FORMAT!r}")
    if not isinstance(manifest["shards"], list) or not manifest["shards"]:
        raise ManifestError(f"{path}: 'shards' must be a non-empty list")
    for i, shard in enumerate(manifest["shards"]):
        for key in ("index_file", "doc_ids_file", "count"):
            if key not in shard:
                raise ManifestError(f"{path}: shards[{i}] has no {key!r}")
    return manifest
