"""Serving bundles: query tower + coarse ranker + index + doc metadata + manifest, published atomically.

Layout of a bundles root:

    <root>/CURRENT              the published version (one line); switched with an atomic rename
    <root>/<version>/manifest.json
    <root>/<version>/model/         two-tower model dir: checkpoint (warm start) and export/ (query tower)
    <root>/<version>/coarse_ranker/ coarse-ranker export (optional)
    <root>/<version>/index/         Faiss index dir with its own manifest
    <root>/<version>/docs.parquet   doc_id, title, category_leaf, brand (relevance control, display)

The query tower and the index always switch together because CURRENT names one directory holding both.
CURRENT is derived from the MLflow registry's `champion` alias (see `ebr.bundle.champion`).
"""

from ebr.bundle.champion import (
    champion_dir,
    champion_metrics,
    champion_miner,
    champion_model_dir,
    champion_version_from_registry,
    sync_current_from_registry,
)
from ebr.bundle.layout import (
    BundleError,
    assemble_bundle,
    current_version,
    list_versions,
    publish_bundle,
    read_bundle_manifest,
    verify_bundle,
    write_current,
)

__all__ = [
    "BundleError",
    "assemble_bundle",
    "champion_dir",
    "champion_metrics",
    "champion_miner",
    "champion_model_dir",
    "champion_version_from_registry",
    "current_version",
    "list_versions",
    "publish_bundle",
    "read_bundle_manifest",
    "sync_current_from_registry",
    "verify_bundle",
    "write_current",
]
