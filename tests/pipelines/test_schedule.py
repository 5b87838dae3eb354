"""`ebr pipeline schedule` through the real kfp.Client against a stub KFP API server on loopback.

The stub stands in for a Kubeflow Pipelines API server (no cluster here); it checks the requests the client
sends and answers like the v2beta1 API.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ebr.cli import main
from pipelines.compile import DEFAULT_PACKAGE


class _Stub(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, dict]] = []

    def _send(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server API
        self.requests.append(("GET", self.path, {}))
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._send({"experiments": [{"experiment_id": "exp-1", "display_name": "ebr-daily"}]})
        return self._send({})

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.requests.append(("POST", self.path, body))
        return self._send({"recurring_run_id": "rr-42", "display_name": body.get("display_name")})

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    _Stub.requests = []
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Stub.requests
    server.shutdown()


def test_schedule_creates_a_recurring_run(stub_server, capsys):
    host, seen = stub_server
    rc = main(["pipeline", "schedule", "--host", host, "--cron", "0 0 2 * * *", "--data", "gs://logs/search",
               "--workspace", "/mnt/ebr"])
    assert rc == 0
    assert "rr-42" in capsys.readouterr().out
    posts = [r for r in seen if r[0] == "POST"]
    assert [p[1] for p in posts] == ["/apis/v2beta1/recurringruns"]
    body = posts[0][2]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "ebr-daily-scheduled"
    params = body["runtime_config"]["parameters"]
    assert params["data_root"] == "gs://logs/search" and params["workspace"] == "/mnt/ebr"
    assert body["max_concurrency"] in ("1", 1)


def test_schedule_rejects_a_five_field_cron(stub_server, capsys):
    host, seen = stub_server
    rc = main(["pipeline", "schedule", "--host", host, "--cron", "0 2 * * *", "--data", "d", "--workspace", "w"])
    assert rc == 2
    assert "6-field" in capsys.readouterr().err
    assert not [r for r in seen if r[0] == "POST"]


def test_schedule_needs_a_compiled_package(stub_server, tmp_path, capsys):
    host, _ = stub_server
    rc = main(["pipeline", "schedule", "--host", host, "--package", str(tmp_path / "none.yaml"), "--data", "d",
               "--workspace", "w"])
    assert rc == 2 and "ebr pipeline compile" in capsys.readouterr().err
    assert DEFAULT_PACKAGE.is_file()
