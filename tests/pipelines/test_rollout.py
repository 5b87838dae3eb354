"""`ebr.rollout.rollout` and the `rollout` component through the real `kubernetes` client against a stub API.

The stub is a threaded http.server on 127.0.0.1 that stands in for a live Kubernetes API server, which cannot
run here: it answers the Deployment PATCH, the Deployment GETs (reporting a rollout in progress for a
few polls, then complete) and the pod list like apps/v1 and v1 do, and records every request. The client
reaches it through a kubeconfig file written by the test, so the kubeconfig loading path is the real one (server
start and kubeconfig: tests/kube_stub.py, shared with the PyTorchJob tests).
"""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from ebr.rollout import VERSION_ANNOTATION, RolloutConfig, RolloutError, rollout
from tests.kube_stub import StubHandler, serve, write_kubeconfig

NS, NAME, VERSION = "search", "query-tower", "2026-11-08-0123456789"
DEP_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
SELECTOR = {"app.kubernetes.io/name": "query-tower", "app.kubernetes.io/instance": "demo"}


class _Api:
    """Shared state of the stub: the scenario and what the client sent."""

    def __init__(self, *, replicas: int = 3, ready_after: int | None = 2, patch_status: int = 200):
        self.replicas = replicas
        self.ready_after = ready_after  # status GETs before the rollout is complete; None = never
        self.patch_status = patch_status
        self.generation = 1
        self.annotations: dict[str, str] = {}
        self.status_gets = 0
        self.requests: list[tuple[str, str, str, object, dict]] = []  # method, path, content type, body, query
        self.lock = threading.Lock()

    def deployment(self) -> dict:
        done = self.ready_after is not None and self.status_gets > self.ready_after
        updated = self.replicas if done else min(self.status_gets, self.replicas - 1)
        status = {"observedGeneration": self.generation if done or self.status_gets > 1 else self.generation - 1,
                  "replicas": self.replicas if done else self.replicas + 1, "updatedReplicas": updated,
                  "readyReplicas": self.replicas if done else self.replicas - 1}
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": NAME, "namespace": NS, "generation": self.generation},
                "spec": {"replicas": self.replicas, "selector": {"matchLabels": SELECTOR},
                         "template": {"metadata": {"labels": SELECTOR, "annotations": dict(self.annotations)}}},
                "status": status}

    def pods(self) -> dict:
        items = [{"metadata": {"name": f"{NAME}-{i}", "namespace": NS, "labels": SELECTOR,
                               "annotations": dict(self.annotations)},
                  "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for i in range(self.replicas)]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}


def _handler(api: _Api):
    class Handler(StubHandler):
        def _record(self, body: object = None) -> str:
            url = urlsplit(self.path)
            with api.lock:
                api.requests.append((self.command, url.path, self.headers.get("Content-Type", ""), body,
                                     parse_qs(url.query)))
            return url.path

        def do_PATCH(self):  # noqa: N802 - http.server API
            body = self.read_json()
            path = self._record(body)
            if path != DEP_PATH:
                return self.send_status(404, "NotFound", f'deployments.apps "{NAME}" not found')
            if api.patch_status == 403:
                return self.send_status(403, "Forbidden",
                                        f'deployments.apps "{NAME}" is forbidden: User '
                                        f'"system:serviceaccount:kubeflow:pipeline-runner" cannot patch resource '
                                        f'"deployments" in API group "apps" in the namespace "{NS}"')
            with api.lock:
                new = body["spec"]["template"]["metadata"]["annotations"]
                if any(api.annotations.get(k) != v for k, v in new.items()):
                    api.generation += 1
                api.annotations.update(new)
                return self.send_json(200, api.deployment())

        def do_GET(self):  # noqa: N802 - http.server API
            path = self._record()
            with api.lock:
                if path == DEP_PATH:
                    api.status_gets += 1
                    return self.send_json(200, api.deployment())
                if path == f"/api/v1/namespaces/{NS}/pods":
                    return self.send_json(200, api.pods())
            return self.send_status(404, "NotFound", "not found")

    return Handler


@pytest.fixture
def kube(tmp_path):
    """Start a stub API server with a scenario and write a kubeconfig pointing at it."""
    servers = []

    def start(**scenario) -> tuple[_Api, RolloutConfig]:
        api = _Api(**scenario)
        server = serve(_handler(api))
        servers.append(server)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server)
        cfg = RolloutConfig(enabled=True, namespace=NS, deployment=NAME, kubeconfig=str(kubeconfig),
                            poll_interval_s=0.02, timeout_s=5.0, request_timeout_s=5.0)
        return api, cfg

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _patches(api: _Api) -> list[tuple[str, str, str, object, dict]]:
    return [r for r in api.requests if r[0] == "PATCH"]


def test_rollout_annotates_the_pod_template_and_waits_until_all_replicas_serve_the_bundle(kube):
    api, cfg = kube(replicas=3, ready_after=3)
    outcome = rollout(VERSION, cfg)

    (patch,) = _patches(api)
    assert patch[1] == DEP_PATH
    assert patch[2] == "application/strategic-merge-patch+json"
    assert patch[3]["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] == VERSION
    assert outcome["bundle_version"] == VERSION and outcome["namespace"] == NS and outcome["deployment"] == NAME
    assert outcome["replicas"] == outcome["ready"] == outcome["updated"] == outcome["on_version"] == 3
    assert outcome["observed_generation"] >= outcome["generation"] == 2
    assert outcome["polls"] == 4 and api.status_gets == 4  # three in-progress polls, then complete
    pod_lists = [r for r in api.requests if r[0] == "GET" and r[1].endswith("/pods")]
    assert len(pod_lists) == 1
    assert pod_lists[0][4]["labelSelector"] == [",".join(f"{k}={v}" for k, v in sorted(SELECTOR.items()))]
    assert {r[1] for r in api.requests} == {DEP_PATH, f"/api/v1/namespaces/{NS}/pods"}


def test_rollout_times_out_with_the_replica_count_in_the_message(kube):
    api, cfg = kube(replicas=3, ready_after=None)
    cfg.timeout_s = 0.3
    with pytest.raises(RolloutError) as err:
        rollout(VERSION, cfg)
    msg = str(err.value)
    assert msg.startswith(f"deployment {NS}/{NAME}: 2/3 replicas ready on bundle {VERSION} after 0.3 s")
    assert 2 <= api.status_gets <= 0.3 / cfg.poll_interval_s + 2
    assert len(_patches(api)) == 1


def test_rollout_forbidden_names_the_namespace_and_the_fix(kube):
    api, cfg = kube(patch_status=403)
    with pytest.raises(RolloutError) as err:
        rollout(VERSION, cfg)
    msg = str(err.value)
    assert msg.startswith(f"forbidden: the pipeline's service account cannot patch deployments in {NS}; grant")
    assert "docs/deploy.md" in msg and "rollout.rbac.create" in msg
    assert "system:serviceaccount:kubeflow:pipeline-runner" in msg  # the API server's own message is kept
    (patch,) = _patches(api)
    assert patch[3]["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] == VERSION
    assert api.status_gets == 0


def test_rollout_missing_deployment_is_a_clear_404(kube):
    api, cfg = kube()
    cfg.deployment = "no-such-tower"
    with pytest.raises(RolloutError, match=r"deployment search/no-such-tower not found"):
        rollout(VERSION, cfg)


def test_component_skips_when_disabled_and_rolls_out_when_enabled(kube, tmp_path):
    from components.rollout import rollout as component
    from ebr.config import EbrConfig

    bundle = str(tmp_path / "ws" / "bundles" / VERSION)
    skipped = json.loads(component.python_func(day="2026-11-08", workspace=str(tmp_path / "ws"), config="",
                                               bundle=bundle))
    assert skipped == {"skipped": "rollout.enabled is false", "bundle_version": VERSION}

    api, cfg = kube(replicas=2, ready_after=1)
    config = EbrConfig(rollout=cfg).to_yaml()
    outcome = json.loads(component.python_func(day="2026-11-08", workspace=str(tmp_path / "ws"), config=config,
                                               bundle=bundle))
    assert outcome["bundle_version"] == VERSION and outcome["ready"] == 2
    assert _patches(api)[0][3]["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] == VERSION
    step = json.loads((tmp_path / "ws" / "reports" / "2026-11-08" / "steps" / "rollout.json").read_text())
    assert step["status"] == "ok" and step["bundle_version"] == VERSION
