"""Assemble, verify and publish serving bundles (see the package docstring for the layout)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ebr.artifacts.atomic import atomic_output_dir, write_text_atomic
from ebr.artifacts.checksums import sha256_file
from ebr.lexical import DEFAULT_B, DEFAULT_K1, LexicalIndex, save_lexical_index
from ebr.lexical import MANIFEST as LEXICAL_MANIFEST
from ebr.models.runtime import ONNX_FILE

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
DOC_COLUMNS = ("doc_id", "title", "category_leaf", "brand")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BundleError(ValueError):
    """A bundle that is incomplete, corrupt or inconsistent; the message names the file and the problem."""


def _check_version(version: str) -> None:
    if not _VERSION_RE.match(version or ""):
        raise BundleError(f"bundle version {version!r} must match {_VERSION_RE.pattern}")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p != root / MANIFEST)


QUERY_TOWER_EXPORT = "model/export"
LEXICAL_DIR = "lexical"


def _export_dim(export_dir: Path) -> int:
    meta = json.loads((export_dir / "export.json").read_text(encoding="utf-8"))
    return int(meta["modules"]["query_tower"]["output"]["shape"][-1])


def assemble_bundle(
    dest: str | Path,
    *,
    version: str,
    model_dir: str | Path,
    index_dir: str | Path,
    docs: pd.DataFrame,
    coarse_ranker_dir: str | Path | None = None,
    info: dict[str, Any] | None = None,
    lexical_k1: float = DEFAULT_K1,
    lexical_b: float = DEFAULT_B,
) -> dict[str, Any]:
    """Copy the parts into `dest` (which must not exist), build the lexical index (BM25 over the docs' titles) into
    `lexical/` (`lexical_k1`, `lexical_b`: its BM25 parameters), and write a manifest with a sha256 per file.

    `model_dir` is the two-tower model directory (checkpoint for warm start, `export/` with the query tower)."""
    _check_version(version)
    dest = Path(dest)
    if dest.exists():
        raise BundleError(f"bundle staging dir {dest} already exists")
    missing = [c for c in DOC_COLUMNS if c not in docs.columns]
    if missing:
        raise BundleError(f"docs frame for the bundle lacks columns {missing}")
    with atomic_output_dir(dest, marker=MANIFEST) as tmp:  # a unique temp dir: two assemblies cannot collide
        shutil.copytree(model_dir, tmp / "model")
        shutil.copytree(index_dir, tmp / "index")
        if coarse_ranker_dir is not None:
            shutil.copytree(coarse_ranker_dir, tmp / "coarse_ranker")
        doc_rows = docs.loc[:, list(DOC_COLUMNS)].reset_index(drop=True)
        doc_rows.to_parquet(tmp / "docs.parquet", index=False)
        try:
            lexical_index = LexicalIndex.build(doc_rows["doc_id"].to_numpy(), doc_rows["title"].to_numpy(),
                                               k1=lexical_k1, b=lexical_b)
        except ValueError as e:
            raise BundleError(f"docs frame for the bundle: cannot build the lexical index: {e}") from e
        lexical = save_lexical_index(lexical_index, tmp / LEXICAL_DIR)
        index_manifest = json.loads((tmp / "index" / "manifest.json").read_text(encoding="utf-8"))
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": version,
            "dim": _export_dim(tmp / QUERY_TOWER_EXPORT),
            "index": {k: index_manifest.get(k) for k in ("n", "d", "factory", "search_params", "ann_recall")
                      if k in index_manifest},
            "has_coarse_ranker": coarse_ranker_dir is not None,
            "query_tower_runtime": "onnxruntime" if (tmp / QUERY_TOWER_EXPORT / ONNX_FILE).is_file()
            else "torch_export",
            "lexical": {k: lexical[k] for k in ("method", "idf_method", "k1", "b", "tokenizer", "n_docs", "n_vocab")},
            "info": info or {},
            "files": {name: sha256_file(tmp / name) for name in _files(tmp)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str), "utf-8")
    return manifest


def read_bundle_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The manifest of a bundle directory; a clear error when it is missing or not JSON."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: {MANIFEST} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from e


def verify_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    """Check every file against the manifest's checksums, no file missing or extra, and that the query tower's
    output dimension equals the index dimension. Returns the manifest."""
    root = Path(bundle_dir)
    manifest = read_bundle_manifest(root)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{root}: unsupported bundle format {manifest.get('format')!r}")
    expected: dict[str, str] = manifest.get("files", {})
    present = set(_files(root))
    for name in sorted(set(expected) - present):
        raise BundleError(f"bundle {root}: file {name} is missing")
    for name in sorted(present - set(expected)):
        raise BundleError(f"bundle {root}: file {name} is not in the manifest")
    for name, digest in sorted(expected.items()):
        if sha256_file(root / name) != digest:
            raise BundleError(f"bundle {root}: checksum mismatch for {name} (file changed or corrupt)")
    for part in (f"{QUERY_TOWER_EXPORT}/export.json", "index/manifest.json", "docs.parquet"):
        if part not in expected:
            raise BundleError(f"bundle {root}: required part {part} is missing")
    has_lexical = any(name.startswith(f"{LEXICAL_DIR}/") for name in expected)
    if "lexical" in manifest and f"{LEXICAL_DIR}/{LEXICAL_MANIFEST}" not in expected:
        raise BundleError(f"bundle {root}: required part {LEXICAL_DIR}/{LEXICAL_MANIFEST} is missing")
    if has_lexical and "lexical" not in manifest:
        raise BundleError(f"bundle {root}: {LEXICAL_DIR}/ is present but the manifest has no lexical entry")
    q_dim = _export_dim(root / QUERY_TOWER_EXPORT)
    index_dim = int(json.loads((root / "index" / "manifest.json").read_text(encoding="utf-8"))["d"])
    if q_dim != index_dim or manifest.get("dim") != q_dim:
        raise BundleError(f"bundle {root}: query tower dim {q_dim} != index dim {index_dim} "
                          f"(manifest dim {manifest.get('dim')})")
    return manifest


def list_versions(root: str | Path) -> list[str]:
    """Published bundle versions under `root` (directories with a manifest), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / MANIFEST).is_file())


def current_version(root: str | Path) -> str | None:
    """The version CURRENT points to, or None before the first publish."""
    path = Path(root) / CURRENT
    if not path.is_file():
        return None
    version = path.read_text(encoding="utf-8").strip()
    return version or None


def write_current(root: str | Path, version: str) -> Path:
    """Point CURRENT at the published bundle `version` with an atomic rename; the bundle must be there."""
    _check_version(version)
    root = Path(root)
    read_bundle_manifest(root / version)
    return write_text_atomic(root / CURRENT, version + "\n")


def publish_bundle(root: str | Path, staging: str | Path, version: str, switch_current: bool = True) -> Path:
    """Verify `staging`, move it to `<root>/<version>` and (unless `switch_current` is False: the caller derives
    CURRENT from the registry's `champion` alias) switch CURRENT to it atomically.

    A bundle that fails verification is never moved and CURRENT is left as it was."""
    _check_version(version)
    root, staging = Path(root), Path(staging)
    verify_bundle(staging)
    manifest = read_bundle_manifest(staging)
    if manifest.get("version") != version:
        raise BundleError(f"bundle {staging} is version {manifest.get('version')!r}, not {version!r}")
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        if read_bundle_manifest(final).get("files") != manifest.get("files"):
            raise BundleError(f"bundle version {version} already published under {root} with other content")
        shutil.rmtree(staging)
    else:
        os.replace(staging, final)  # same filesystem: staging is created under root by the caller
    if switch_current:
        write_current(root, version)
    return final
