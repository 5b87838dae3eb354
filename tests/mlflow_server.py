"""A real `mlflow server` on loopback for tests of tracking-server mode (runs, registry, artifacts over HTTP).

Fixture `mlflow_server_uri` (session-scoped; registered as a plugin in tests/conftest.py): the server's
`http://127.0.0.1:<port>` URI, SQLite backend and proxied artifacts (`--serve-artifacts`) in a temp dir; the
server is terminated at the end of the session. Tests point MLflow at it via config or $MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_mlflow_server(root: Path, timeout_s: float = START_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """Start `mlflow server` over `root` (db + artifacts) and wait, bounded, for /health; (process, uri)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"]
    # No job execution: MLflow 3 otherwise starts a job runner and seven huey consumers (GenAI evaluation jobs and
    # trace roll-ups ebr never submits), each importing MLflow and then polling: ~20 CPU-seconds at start and a
    # steady load on the cores the rest of the suite runs on.
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    proc.log_file = log  # type: ignore[attr-defined]
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_mlflow_server(proc)
            tail = (root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{tail}")
        if _healthy(uri):
            return proc, uri
        time.sleep(0.5)
    stop_mlflow_server(proc)
    raise RuntimeError(f"mlflow server not healthy on {uri} after {timeout_s:.0f} s; see {root / 'server.log'}")


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    """Terminate the server (and its workers: it runs in its own process group), then kill if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=15)
    log = getattr(proc, "log_file", None)
    if log is not None:
        log.close()


@pytest.fixture(scope="session")
def mlflow_server_uri(tmp_path_factory) -> Iterator[str]:
    """`http://127.0.0.1:<port>` of a running MLflow tracking server (SQLite backend, proxied artifacts)."""
    proc, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield uri
    finally:
        stop_mlflow_server(proc)
