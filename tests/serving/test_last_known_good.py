"""A server that starts while CURRENT names a bundle that fails verification serves the last known good one
(the newest earlier version that verifies), says so in /readyz and metrics, keeps refusing the bad one, and
moves on as soon as CURRENT names a bundle that verifies (real bundles built by the pipeline's own steps)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import InProcessClient
from tests.serving.conftest import copy_root, point_current, publish


def _corrupt_copy(root: Path, source: str, version: str) -> None:
    shutil.copytree(root / source, root / version)
    index = root / version / "index" / "index.faiss"
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))


def _metric(text: str, name: str) -> float:
    return float(next(ln for ln in text.splitlines() if ln.startswith(name + " ")).split()[1])


def test_start_on_a_refused_current_serves_the_last_good_bundle(published_root: Path, parts, tmp_path: Path):
    root = copy_root(published_root, tmp_path / "bundles")
    good = (root / "CURRENT").read_text(encoding="utf-8").strip()
    os.replace(publish(parts, root, f"{good}-b", publish_now=False), root / f"{good}-b")  # newer, and good
    _corrupt_copy(root, good, f"{good}-c")  # the newest: what CURRENT names, and corrupt
    _corrupt_copy(root, good, f"{good}-bb")  # newer than -b, older than -c, corrupt too: skipped
    point_current(root, f"{good}-c")

    app = create_app(ServerSettings(bundles_dir=root), start=False)
    manager = app.state.runtime.manager
    outcome = manager.reload()
    assert outcome.version == f"{good}-b", "the newest earlier version that verifies"
    assert manager.fallback_from == f"{good}-c"
    client = InProcessClient(app)
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["bundle_version"] == f"{good}-b"
        assert f"{good}-c" in ready.json()["detail"] and "last known good" in ready.json()["detail"]
        metrics = client.get("/metrics").text
        assert _metric(metrics, "ebr_serve_bundle_fallback") == 1
        assert f'ebr_serve_bundle_refusals_total{{reason="checksum",version="{good}-c"}} 1.0' in metrics
        assert client.post("/search", json={"query": "dress", "k": 3}).json()["bundle_version"] == f"{good}-b"
        # the watcher keeps refusing the bad CURRENT without reloading it
        try:
            manager.reload()
            raise AssertionError("a known refused CURRENT must stay refused")
        except Exception as e:  # noqa: BLE001 - BundleRefused
            assert "refused before" in str(e)
        assert manager.current.version == f"{good}-b"
        # CURRENT names a good bundle again: served, no fallback any more
        point_current(root, good)
        assert manager.reload().version == good and manager.fallback_from is None
        assert _metric(client.get("/metrics").text, "ebr_serve_bundle_fallback") == 0
    finally:
        client.close()


def test_no_good_bundle_at_all_stays_unready_naming_the_refusal(published_root: Path, tmp_path: Path):
    root = copy_root(published_root, tmp_path / "bundles")
    good = (root / "CURRENT").read_text(encoding="utf-8").strip()
    _corrupt_copy(root, good, f"{good}-c")
    shutil.rmtree(root / good)
    point_current(root, f"{good}-c")
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    try:
        app.state.runtime.manager.reload()
        raise AssertionError("nothing verifies: reload must refuse")
    except Exception as e:  # noqa: BLE001 - BundleRefused
        assert "checksum" in str(e)
    client = InProcessClient(app)
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and f"{good}-c" in r.json()["detail"]
        assert str(root) not in r.text and str(root.resolve()) not in r.text and "<bundles>" in r.text, (
            "public bodies carry no server paths")
    finally:
        client.close()
