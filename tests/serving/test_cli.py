"""`ebr serve`: settings from arguments and the chart's environment variables, and a real server process."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.cli import register
from serving.settings import ServerSettings
from tests.serving.clients import metric_value, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_arguments_win_over_the_environment_and_defaults_fill_the_rest(tmp_path):
    env = {"EBR_BUNDLES_DIR": "/from/env", "EBR_PORT": "9090", "EBR_LOG_LEVEL": "debug",
           "EBR_WATCH_INTERVAL_S": "0.5", "EBR_MAX_QUERY_CHARS": "32", "EBR_ADMIN_TOKEN": "t",
           "EBR_FEATURE_REPO": "/app/feature_repo", "EBR_MAX_BODY_BYTES": "1024"}
    s = ServerSettings.resolve({"bundles_dir": tmp_path, "port": None}, env)
    assert s.bundles_dir == tmp_path and s.port == 9090 and s.log_level == "DEBUG"
    assert s.watch_interval_s == 0.5 and s.max_query_chars == 32 and s.admin_token == "t"
    assert s.feature_repo == Path("/app/feature_repo") and s.max_body_bytes == 1024
    d = ServerSettings.resolve({}, {"EBR_BUNDLES_DIR": "/b", "EBR_ADMIN_TOKEN": ""})
    assert (d.port, d.host, d.admin_token, d.feature_repo, d.max_query_chars) == (8080, "127.0.0.1", None, None, 256)


@pytest.mark.parametrize(("given", "env", "message"), [
    ({}, {}, "EBR_BUNDLES_DIR"),
    ({"bundles_dir": "/b"}, {"EBR_PORT": "eighty"}, "EBR_PORT='eighty'"),
    ({"bundles_dir": "/b", "port": 70000}, {}, "port must be in 1..65535"),
    ({"bundles_dir": "/b"}, {"EBR_LOG_LEVEL": "loud"}, "log level"),
    ({"bundles_dir": "/b"}, {"EBR_WATCH_INTERVAL_S": "0"}, "watch interval"),
    ({"bundles_dir": "/b"}, {"EBR_MAX_QUERY_CHARS": "0"}, "max query chars"),
])  # fmt: skip
def test_bad_settings_are_errors_naming_them(given, env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ServerSettings.resolve(given, env)


def test_register_adds_serve_with_its_options():
    parser = argparse.ArgumentParser(prog="ebr")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--bundles", "/b", "--feature-repo", "/f", "--port", "9000", "--host", "::1"])
    assert (args.bundles, args.feature_repo, args.port, args.host) == (Path("/b"), Path("/f"), 9000, "::1")
    assert callable(args.func)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_runs_a_real_server_process_until_sigterm(published_root, tmp_path):
    port = _free_port()
    env = {**os.environ, "EBR_ADMIN_TOKEN": "tok", "EBR_WATCH_INTERVAL_S": "0.2", "EBR_MAX_QUERY_CHARS": "16",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "serve", "--bundles", str(published_root), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return httpx.get(url + "/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=180, interval=0.5)
        r = httpx.post(url + "/search", json={"query": "red dress", "k": 4})
        assert r.status_code == 200 and len(r.json()["items"]) == 4 and r.json()["bundle_version"] == "v1"
        assert httpx.post(url + "/search", json={"query": "x" * 17}).status_code == 422  # EBR_MAX_QUERY_CHARS
        r = httpx.post(url + "/admin/reload", headers={"Authorization": "Bearer tok"}, timeout=60)
        assert r.status_code == 200 and r.json()["version"] == "v1"
        assert metric_value(httpx.get(url + "/metrics").text, 'ebr_serve_bundle_info{version="v1"}') == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says what stopped it
    text = (tmp_path / "server.log").read_text()
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in text, text
