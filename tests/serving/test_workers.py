"""`ebr serve --workers 2`: two real server processes on one socket; `/metrics`, whichever worker answers,
aggregates both (Prometheus multiprocess mode), readiness is the minimum over live workers, and SIGTERM stops
both and exits 0 (loopback, bounded waits)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serving.clients import wait_for
from tests.serving.test_shutdown import REPO, _free_port

REQUESTS = 40


def _value(text: str, pattern: str) -> float:
    match = re.search(pattern + r" ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{pattern} not in /metrics"
    return float(match.group(1))


@pytest.mark.slow
def test_two_workers_share_one_port_and_their_metrics(published_root: Path, tmp_path: Path):
    port = _free_port()
    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "EBR_WATCH_INTERVAL_S": "0.5", "EBR_METRICS_MULTIPROC_DIR": str(metrics_dir),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve", "--workers", "2", "--bundles", str(published_root),
             "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                text = httpx.get(f"{url}/metrics", timeout=5).text
            except httpx.TransportError:
                return False
            workers = len(re.findall(r"^ebr_serve_worker\{", text, re.MULTILINE))
            return workers == 2 and _value(text, "ebr_serve_ready") == 1  # the minimum over live workers

        wait_for(ready, timeout=240, interval=0.5)

        def one(i: int) -> int:  # a new connection each time, so both workers take some
            with httpx.Client(base_url=url, timeout=60, headers={"Connection": "close"}) as c:
                return c.post("/search", json={"query": f"red dress {i}", "k": 5}).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(REQUESTS), timeout=300))
        assert codes == [200] * REQUESTS
        for _ in range(4):  # each scrape may hit either worker: all of them see both workers' counts
            text = httpx.get(f"{url}/metrics", timeout=10).text
            assert _value(text, r'ebr_serve_requests_total\{code="200",route="/search"\}') == REQUESTS
            assert len(re.findall(r"^ebr_serve_worker\{pid=", text, re.MULTILINE)) == 2
            assert _value(text, "ebr_serve_ready") == 1
        assert any(metrics_dir.glob("*.db")), "values live in the shared directory"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    text = log_path.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
