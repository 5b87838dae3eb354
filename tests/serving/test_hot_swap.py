"""Hot swap against a real uvicorn server on 127.0.0.1: a bundle published under continuous traffic switches
with no failed request; corrupt, incomplete or inconsistent bundles are refused while the old one serves; the
admin reload and its token; in-flight requests finish on the bundle they started with."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from ebr.bundle import assemble_bundle
from ebr.index import IndexConfig, build_index, finalize_embeddings, write_embedding_shard
from serving.app import ServerRuntime, create_app
from serving.feature_source import FeatureLookup
from serving.schema import SearchRequest
from serving.settings import ServerSettings
from tests.serving.clients import InProcessClient, LiveServer, metric_value, wait_for
from tests.serving.conftest import Parts, copy_root, point_current, publish

TOKEN = "s3cret-token"


@pytest.fixture
def root(tmp_path, published_root) -> Path:
    """A private bundles root serving v1."""
    return copy_root(published_root, tmp_path / "bundles")


def ids_of(parts: Parts, version_docs: str) -> set[int]:
    frame = parts.docs_v1 if version_docs == "v1" else parts.docs_v2
    return set(frame["doc_id"].tolist())


def ready(url: str) -> bool:
    return httpx.get(url + "/readyz", timeout=10).status_code == 200


def served_version(url: str) -> str:
    return httpx.post(url + "/search", json={"query": "dress", "k": 3}, timeout=30).json()["bundle_version"]


@pytest.mark.slow
def test_publish_under_continuous_traffic_switches_with_no_failed_request(root, parts):
    app = create_app(ServerSettings(bundles_dir=root, watch_interval_s=0.05))
    log: list[list[tuple[int, str | None, list[int]]]] = [[], []]
    failures: list[str] = []
    stop = threading.Event()

    def client(out: list) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/search", json={"query": "red summer dress", "k": 10})
                    body = r.json() if r.status_code == 200 else {}
                    out.append((r.status_code, body.get("bundle_version"),
                                [it["doc_id"] for it in body.get("items", [])]))
                except Exception as e:  # noqa: BLE001 - every failure is collected and asserted on
                    failures.append(repr(e))

    with LiveServer(app) as srv:
        wait_for(lambda: ready(srv.url))
        threads = [threading.Thread(target=client, args=(out,)) for out in log]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: all(len(out) >= 10 for out in log))
            publish(parts, root, "v2", docs="v2")  # publish_bundle switches CURRENT while requests flow
            wait_for(lambda: all(sum(v == "v2" for _, v, _ in out) >= 10 for out in log), timeout=120)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    assert failures == []
    answers = [a for out in log for a in out]
    assert len(answers) >= 40
    assert all(status == 200 for status, _, _ in answers)
    for out in log:  # per client: v1 answers, then v2 answers, never back
        versions = [v for _, v, _ in out]
        first_v2 = versions.index("v2")
        assert set(versions[:first_v2]) == {"v1"} and set(versions[first_v2:]) == {"v2"}
    for _, version, ids in answers:  # every answer comes whole from the bundle it names
        assert len(ids) == 10 and set(ids) <= ids_of(parts, version)


def _staged(parts: Parts, root: Path, version: str) -> Path:
    """A complete, valid bundle directory for `version`, placed under root but not pointed to."""
    staging = publish(parts, root, version, publish_now=False)
    os.replace(staging, root / version)
    return root / version


def _wrong_dimension(parts: Parts, root: Path, work: Path, version: str) -> Path:
    """A bundle whose index (d=4) does not match its query tower (d=8); checksums are all correct."""
    rng = np.random.default_rng(0)
    write_embedding_shard(work / "emb", 0, parts.docs_v1["doc_id"].to_numpy(), rng.standard_normal((300, 4)))
    finalize_embeddings(work / "emb", "wrong-dim")
    build_index(work / "emb", work / "index", IndexConfig(num_eval_queries=20, latency_queries=2, recall_k=5,
                                                          progress=False))
    assemble_bundle(root / version, version=version, model_dir=parts.model_dir, index_dir=work / "index",
                    docs=parts.docs_v1)
    return root / version


@pytest.mark.slow
def test_bad_bundles_are_refused_and_the_old_one_keeps_serving(root, parts, tmp_path):
    checksum = _staged(parts, root, "bad-checksum")
    data = bytearray((checksum / "index" / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (checksum / "index" / "index.faiss").write_bytes(bytes(data))
    missing = _staged(parts, root, "bad-missing")
    (missing / "docs.parquet").unlink()
    _wrong_dimension(parts, root, tmp_path / "wrong", "bad-dimension")

    app = create_app(ServerSettings(bundles_dir=root, watch_interval_s=0.05))
    with LiveServer(app) as srv:
        wait_for(lambda: ready(srv.url))
        for version, reason in (("bad-checksum", "checksum"), ("bad-missing", "missing_file"),
                                ("bad-dimension", "dimension")):
            point_current(root, version)
            sample = f'ebr_serve_bundle_refusals_total{{reason="{reason}",version="{version}"}}'
            wait_for(lambda s=sample: metric_value(httpx.get(srv.url + "/metrics").text, s) == 1)
            assert served_version(srv.url) == "v1"
            r = httpx.get(srv.url + "/readyz")
            assert r.status_code == 200 and version in r.json()["detail"]
        text = httpx.get(srv.url + "/metrics").text
        assert metric_value(text, 'ebr_serve_bundle_loads_total{outcome="refused"}') == 3
        assert metric_value(text, 'ebr_serve_bundle_info{version="v1"}') == 1
        publish(parts, root, "v3", docs="v2")  # a good bundle after the bad ones is taken
        wait_for(lambda: served_version(srv.url) == "v3", timeout=120)
        assert metric_value(httpx.get(srv.url + "/metrics").text, 'ebr_serve_bundle_info{version="v1"}') == 0


def test_admin_reload_needs_the_token_and_switches_at_once(root, parts):
    app = create_app(ServerSettings(bundles_dir=root, watch_interval_s=3600, admin_token=TOKEN))
    with LiveServer(app) as srv:
        wait_for(lambda: ready(srv.url))
        reload = srv.url + "/admin/reload"
        r = httpx.post(reload)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["errors"][0]["field"] == "authorization"
        assert httpx.post(reload, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        r = httpx.post(reload, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403 and "invalid" in r.json()["error"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(reload, headers=auth)
        assert r.status_code == 200 and r.json() == {"version": "v1", "previous_version": "v1", "changed": False}

        publish(parts, root, "v2", docs="v2")  # the watcher sleeps for an hour: only the admin call swaps
        assert served_version(srv.url) == "v1"
        r = httpx.post(reload, headers=auth, timeout=120)
        assert r.status_code == 200 and r.json() == {"version": "v2", "previous_version": "v1", "changed": True}
        assert served_version(srv.url) == "v2"

        shutil.copytree(root / "v2", root / "broken")
        (root / "broken" / "docs.parquet").write_bytes(b"not parquet")
        point_current(root, "broken")
        r = httpx.post(reload, headers=auth, timeout=120)
        assert r.status_code == 409 and "broken" in r.json()["error"]
        assert served_version(srv.url) == "v2"


def test_admin_is_disabled_without_a_token(published_root):
    app = create_app(ServerSettings(bundles_dir=published_root), start=False)
    c = InProcessClient(app)
    try:
        r = c.post("/admin/reload", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "disabled" in r.json()["error"]
    finally:
        c.close()


class GatedFeatures:
    """A feature source that parks requests until released (to hold a request in flight)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def open(self) -> bool:
        return True

    def fetch(self, user_id: int | None, query: str) -> FeatureLookup:
        self.entered.set()
        assert self.release.wait(60)
        return FeatureLookup()


def test_a_request_in_flight_finishes_on_the_bundle_it_started_with(root, parts):
    gate = GatedFeatures()
    rt = ServerRuntime(ServerSettings(bundles_dir=root), features=gate)  # type: ignore[arg-type]
    rt.manager.reload()
    req = SearchRequest(query="red summer dress", k=10)
    out = {}
    t = threading.Thread(target=lambda: out.update(result=rt.engine.search(req)))
    t.start()
    assert gate.entered.wait(60)
    publish(parts, root, "v2", docs="v2")
    assert rt.manager.reload().version == "v2"  # swapped while the request is parked
    gate.release.set()
    t.join(60)
    first = out["result"]
    assert first.version == "v1" and {d for d, _, _ in first.items} <= ids_of(parts, "v1")
    second = rt.engine.search(req)
    assert second.version == "v2" and {d for d, _, _ in second.items} <= ids_of(parts, "v2")
