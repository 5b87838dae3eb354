"""Searches compute on a bounded worker pool off the event loop, behind a bounded queue: probes and metrics
answer while every worker is busy, a search beyond workers + queue is shed with 503 and Retry-After, and the
admitted ones all finish (real uvicorn on loopback; a search is held on an event so the test controls when
compute ends, with no timing involved)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import LiveServer, wait_for

BODY = {"query": "红色 连衣裙", "k": 5}


def _gauge(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


def test_probes_answer_while_searches_compute_and_overload_is_shed(published_root: Path):
    app = create_app(ServerSettings(bundles_dir=published_root, watch_interval_s=0.1, search_workers=1,
                                    max_queue=2, retry_after_s=3))
    rt = app.state.runtime
    release, started = threading.Event(), threading.Event()
    search = rt.engine.search

    def held(req):
        started.set()
        assert release.wait(60), "the test never released the search"
        return search(req)

    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client, \
            ThreadPoolExecutor(3) as senders:
        wait_for(lambda: client.get("/readyz").status_code == 200)
        assert client.post("/search", json=BODY).status_code == 200, "served before the hold"
        rt.engine.search = held
        try:
            admitted = [senders.submit(httpx.post, f"{server.url}/search", json=BODY, timeout=60) for _ in range(3)]
            assert started.wait(30)
            wait_for(lambda: rt.admission.admitted == 3)  # 1 computing + 2 waiting: workers + queue are full
            # the event loop is free: probes and metrics answer while the only worker is held
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/readyz").status_code == 200
            metrics = client.get("/metrics").text
            assert _gauge(metrics, "ebr_serve_searches_in_flight") == 1
            assert _gauge(metrics, "ebr_serve_search_queue_depth") == 2
            shed = client.post("/search", json=BODY)
            assert shed.status_code == 503 and shed.headers["retry-after"] == "3"
            assert "retry later" in shed.json()["errors"][0]["message"]
        finally:
            release.set()
        answers = [f.result() for f in admitted]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert client.post("/search", json=BODY).status_code == 200, "admits again once drained"
        metrics = client.get("/metrics").text
        assert _gauge(metrics, "ebr_serve_searches_shed_total") == 1
        assert _gauge(metrics, "ebr_serve_searches_in_flight") == 0
        assert _gauge(metrics, "ebr_serve_search_queue_depth") == 0


def test_bad_pool_settings_are_refused_by_name(published_root: Path):
    import pytest

    with pytest.raises(ValueError, match="search workers must be >= 1, got 0"):
        ServerSettings(bundles_dir=published_root, search_workers=0)
    with pytest.raises(ValueError, match="max queue must be >= 0, got -1"):
        ServerSettings(bundles_dir=published_root, max_queue=-1)
