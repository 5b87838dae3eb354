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
    authorization: list[str | None] = []

    def _send(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server API
        self.requests.append(("GET", self.path, {}))
        self.authorization.append(self.headers.get("Authorization"))
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
    _Stub.authorization = []
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
    spec = body["pipeline_spec"]["pipeline_spec"]  # with the Kubernetes platform spec next to it
    assert spec["pipelineInfo"]["name"] == "ebr-daily-scheduled"
    executors = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train-two-tower"]["pvcMount"][0]["constant"] == "ebr-workspace"
    params = body["runtime_config"]["parameters"]
    assert params["data_root"] == "gs://logs/search" and params["workspace"] == "/mnt/ebr"
    assert body["max_concurrency"] in ("1", 1)
    # the recurring run keeps the compiled caching options: only the validations may come from the cache
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert tasks["validate-data"]["cachingOptions"] == {"enableCache": True}
    assert not tasks["train-two-tower"]["cachingOptions"].get("enableCache")
    assert not tasks["build-features"]["cachingOptions"].get("enableCache")


def test_schedule_in_a_profile_namespace(stub_server, capsys):
    host, seen = stub_server
    assert main(["pipeline", "schedule", "--host", host, "--data", "s3://logs/search",
                 "--namespace", "kubeflow-user-example-com"]) == 0
    gets = [r[1] for r in seen if r[0] == "GET" and "experiments" in r[1]]
    assert gets and all("namespace=kubeflow-user-example-com" in g for g in gets), gets
    body = [r for r in seen if r[0] == "POST"][0][2]
    assert body["runtime_config"]["parameters"]["workspace"] == "/mnt/ebr/workspace"


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


def test_schedule_without_host_uses_kfps_in_cluster_service_and_token(stub_server, tmp_path, monkeypatch, capsys):
    """No --host: kfp.Client(host=None) takes its in-cluster path. Only what a pod would provide is faked: the
    in-cluster kube config loads, the service DNS name resolves to the stub, the projected token file exists."""
    import kfp
    import kubernetes

    host, seen = stub_server
    built_with = []
    real_init = kfp.Client.__init__

    def spy_init(self, host=None, **kwargs):
        built_with.append(host)
        real_init(self, host=host, **kwargs)

    token = tmp_path / "token"
    token.write_text("sa-token-123")
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda *a, **k: None)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    # kfp formats the name with the namespace (ml-pipeline.{}.svc...); a name without `{}` ignores it
    monkeypatch.setattr(kfp.Client, "_IN_CLUSTER_DNS_NAME", host.removeprefix("http://"))
    monkeypatch.setattr(kfp.Client, "__init__", spy_init)
    rc = main(["pipeline", "schedule", "--data", "gs://logs/search", "--workspace", "/mnt/ebr"])
    assert rc == 0
    assert built_with == [None]
    out = capsys.readouterr().out
    assert "rr-42" in out and "in-cluster service" in out
    assert [p[1] for p in seen if p[0] == "POST"] == ["/apis/v2beta1/recurringruns"]
    assert _Stub.authorization and set(_Stub.authorization) == {"Bearer sa-token-123"}


def test_schedule_without_host_follows_kf_pipelines_endpoint(stub_server, monkeypatch, capsys):
    host, seen = stub_server
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", host)
    rc = main(["pipeline", "schedule", "--data", "d", "--workspace", "w"])
    assert rc == 0
    assert f"created on {host} ($KF_PIPELINES_ENDPOINT)" in capsys.readouterr().out
    assert [p[1] for p in seen if p[0] == "POST"] == ["/apis/v2beta1/recurringruns"]


def test_schedule_without_host_outside_a_cluster_says_to_pass_host(tmp_path, monkeypatch, capsys):
    for var in ("KF_PIPELINES_ENDPOINT", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    rc = main(["pipeline", "schedule", "--data", "d", "--workspace", "w"])
    assert rc == 2 and "pass --host" in capsys.readouterr().err
