"""Publishing is atomic and verified: a corrupted, incomplete or mismatched bundle never becomes CURRENT."""

from __future__ import annotations

import json
import shutil

import pytest

from ebr.bundle import BundleError, current_version, publish_bundle, verify_bundle

from .conftest import copy_root, publish


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
        from ebr.artifacts.checksums import sha256_file

        manifest["files"]["index/manifest.json"] = sha256_file(path)
        (staging / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        match = "dim"
    with pytest.raises(BundleError, match=match):
        publish_bundle(root, staging, "v2")
    assert current_version(root) == "v1"
    assert not (root / "v2").exists()
    shutil.rmtree(staging)
