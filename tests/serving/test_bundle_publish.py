"""Publishing is atomic and verified: a corrupted, incomplete or mismatched bundle never becomes CURRENT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebr.artifacts.checksums import sha256_file
from ebr.bundle import BundleError, current_version, publish_bundle, verify_bundle
from ebr.lexical import load_lexical_index
from serving.loaded_bundle import BundleRefused, LoadedBundle

from .conftest import N_DOCS, copy_root, publish


@pytest.fixture
def root(tmp_path, published_root):
    return copy_root(published_root, tmp_path / "bundles")


def _staged(parts, root, version):
    return publish(parts, root, version, docs="v2", publish_now=False)


def test_a_good_bundle_is_published_and_current_switches(parts, root):
    staging = _staged(parts, root, "v2")
    final = publish_bundle(root, staging, "v2")
    assert current_version(root) == "v2" and final == root / "v2" and not staging.exists()
    assert verify_bundle(final)["version"] == "v2"


@pytest.mark.parametrize("fault", ["flipped_byte", "missing_file", "extra_file", "wrong_dim"])
def test_a_broken_bundle_is_refused_and_current_stays(parts, root, fault):
    staging = _staged(parts, root, "v2")
    index_file = next(p for p in (staging / "index").iterdir() if p.suffix == ".faiss")
    if fault == "flipped_byte":
        data = bytearray(index_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        index_file.write_bytes(bytes(data))
        match = "checksum mismatch"
    elif fault == "missing_file":
        (staging / "docs.parquet").unlink()
        match = "docs.parquet is missing"
    elif fault == "extra_file":
        (staging / "index" / "stray.bin").write_bytes(b"x")
        match = "not in the manifest"
    else:
        path = staging / "index" / "manifest.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta["d"] = meta["d"] + 1
        path.write_text(json.dumps(meta), encoding="utf-8")
        manifest = json.loads((staging / "manifest.json").read_text(encoding="utf-8"))
        manifest["files"]["index/manifest.json"] = sha256_file(path)
        (staging / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        match = "dim"
    with pytest.raises(BundleError, match=match):
        publish_bundle(root, staging, "v2")
    assert current_version(root) == "v1"
    assert not (root / "v2").exists()
    shutil.rmtree(staging)


def test_the_bundle_carries_a_checksummed_lexical_index_over_the_doc_titles(parts, root):
    staging = _staged(parts, root, "v2")
    manifest = verify_bundle(staging)
    lexical_files = sorted(name for name in manifest["files"] if name.startswith("lexical/"))
    assert lexical_files == sorted(f"lexical/{p.name}" for p in (staging / "lexical").iterdir())
    assert {"lexical/lexical.json", "lexical/doc_ids.npy", "lexical/vocab.index.json"} <= set(lexical_files)
    entry = manifest["lexical"]
    assert (entry["method"], entry["idf_method"], entry["k1"], entry["b"]) == ("atire", "robertson", 1.5, 0.75)
    assert entry["n_docs"] == len(parts.docs_v2) and entry["n_vocab"] > 0
    index = load_lexical_index(staging / "lexical")
    assert index.n_vocab == entry["n_vocab"]
    np.testing.assert_array_equal(np.sort(index.doc_ids), np.sort(parts.docs_v2["doc_id"].to_numpy()))
    shutil.rmtree(staging)


@pytest.mark.parametrize("fault", ["flipped_byte", "missing_file", "manifest_entry_without_files"])
def test_a_tampered_lexical_index_is_refused_and_current_stays(parts, root, fault):
    staging = _staged(parts, root, "v2")
    if fault == "flipped_byte":
        path = staging / "lexical" / "vocab.index.json"
        path.write_text(path.read_text(encoding="utf-8").replace('"', "'", 1), encoding="utf-8")
        match = "checksum mismatch for lexical/vocab.index.json"
    elif fault == "missing_file":
        (staging / "lexical" / "doc_ids.npy").unlink()
        match = "lexical/doc_ids.npy is missing"
    else:
        shutil.rmtree(staging / "lexical")
        _rewrite_bundle_manifest(staging, drop_lexical_files=True)
        match = "lexical/lexical.json is missing"
    with pytest.raises(BundleError, match=match):
        publish_bundle(root, staging, "v2")
    assert current_version(root) == "v1" and not (root / "v2").exists()
    shutil.rmtree(staging)


def _rewrite_bundle_manifest(bundle: Path, *, drop_lexical_files: bool = False, drop_entry: bool = False) -> None:
    """Edit a bundle manifest in place, re-hashing every file listed (as a bundle assembled that way would be)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if drop_lexical_files:
        manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("lexical/")}
    if drop_entry:
        manifest.pop("lexical")
    manifest["files"] = {k: sha256_file(bundle / k) for k in manifest["files"]}
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_the_loaded_bundle_searches_its_lexical_index(published_root):
    bundle = LoadedBundle.open(published_root / "v1", "v1")
    assert bundle.lexical is not None and bundle.lexical.n_docs == bundle.manifest["lexical"]["n_docs"]
    titles = pd.read_parquet(published_root / "v1" / "docs.parquet", columns=["doc_id", "title"])
    by_id = dict(zip(titles["doc_id"].tolist(), titles["title"].tolist(), strict=True))
    for title in titles["title"].iloc[:20]:
        ids, scores = bundle.lexical.search(title, 5)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        assert by_id[int(ids[0])] == title and scores[0] > 0  # the exact title ranks first (or ties with a twin)
        assert (np.diff(scores[ids != -1]) <= 0).all()


def test_a_bundle_without_a_lexical_index_still_loads(published_root, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(published_root / "v1", old)
    shutil.rmtree(old / "lexical")
    _rewrite_bundle_manifest(old, drop_lexical_files=True, drop_entry=True)
    assert "lexical" not in verify_bundle(old)
    bundle = LoadedBundle.open(old, "v1")
    assert bundle.lexical is None and bundle.ntotal == N_DOCS


@pytest.mark.parametrize(
    "fault", ["manifest_says_more_docs", "doc_ids_unknown_to_docs", "lexical_without_entry", "entry_disagrees"]
)
def test_a_lexical_index_that_does_not_load_refuses_the_bundle(published_root, tmp_path, fault):
    bad = tmp_path / "v1"
    shutil.copytree(published_root / "v1", bad)
    lexical = bad / "lexical"
    if fault == "manifest_says_more_docs":
        meta = json.loads((lexical / "lexical.json").read_text(encoding="utf-8"))
        meta["n_docs"] += 1
        (lexical / "lexical.json").write_text(json.dumps(meta), encoding="utf-8")
        _rewrite_bundle_manifest(bad)
        match = "lexical.json says n_docs"
    elif fault == "doc_ids_unknown_to_docs":
        ids = np.load(lexical / "doc_ids.npy")
        np.save(lexical / "doc_ids.npy", ids + 1_000_000)
        _rewrite_bundle_manifest(bad)
        match = "docs.parquet lacks .* lexical doc ids"
    elif fault == "lexical_without_entry":
        _rewrite_bundle_manifest(bad, drop_entry=True)
        match = "no lexical entry"
    else:
        manifest = json.loads((bad / "manifest.json").read_text(encoding="utf-8"))
        manifest["lexical"]["k1"] = 0.9
        (bad / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        match = "manifest lexical entry .* disagrees"
    with pytest.raises(BundleRefused, match=match) as err:
        LoadedBundle.open(bad, "v1")
    assert err.value.reason == "invalid"
