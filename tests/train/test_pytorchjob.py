"""The two-tower PyTorchJob: its manifest against the PyTorchJob schema (tests/train/pytorchjob_schema.py) and
kubernetes-validate, and submit / wait / logs / failure through the real `kubernetes` client against a stub API.

The stub (tests/kube_stub.py, shared with the rollout tests) is a threaded http.server on 127.0.0.1 that stands
in for a live Kubernetes API server with the Training Operator installed, which cannot run here: it stores the
created PyTorchJob, reports its conditions as the operator would (Created, Running, then Succeeded or Failed),
lists the job's pods with the operator's labels and serves their logs. On creation it plays the job's rank 0:
it writes a model directory and the result file at the paths the container's arguments name.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ebr.credentials import SECRET_ENV
from ebr.images import COMPONENT_IMAGE
from ebr.train.pytorchjob import (
    PyTorchJobConfig,
    PyTorchJobError,
    build_manifest,
    job_name,
    run_two_tower_job,
    submit,
    wait,
)
from ebr.train.two_tower_config import TwoTowerTrainConfig
from tests.chart.manifests import KUBE_VERSION
from tests.kube_stub import StubHandler, serve, write_kubeconfig
from tests.train.pytorchjob_schema import PYTORCHJOB_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
NS, DAY = "training", "2026-11-08"
JOBS = f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"
ARGS = ["--samples", "/mnt/ebr/s", "--features", "/mnt/ebr/f", "--out", "/mnt/ebr/o"]


def _validate(manifest: dict) -> None:
    """The PyTorchJob schema, then every replica's pod template as a core/v1 PodTemplate (strict)."""
    jsonschema.Draft202012Validator(PYTORCHJOB_SCHEMA).validate(manifest)
    for rtype, spec in manifest["spec"]["pytorchReplicaSpecs"].items():
        doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"t-{rtype.lower()}"},
               "template": spec["template"]}
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_is_a_valid_pytorchjob_with_a_valid_pod_template():
    cfg = PyTorchJobConfig(enabled=True, namespace=NS, workers=3, nproc_per_node=2, ttl_seconds_after_finished=600)
    name = job_name(cfg.name_prefix, DAY, "0123abcd")
    manifest = build_manifest(name, cfg, ARGS, env={"MLFLOW_TRACKING_URI": "sqlite:////mnt/ebr/ws/mlflow.db"})
    _validate(manifest)

    assert name == "ebr-two-tower-2026-11-08-0123abcd"
    assert manifest["metadata"] == {"name": name, "namespace": NS, "labels": {
        "app.kubernetes.io/name": "ebr", "app.kubernetes.io/component": "train-two-tower"}}
    specs = manifest["spec"]["pytorchReplicaSpecs"]
    assert {k: (v["replicas"], v["restartPolicy"]) for k, v in specs.items()} == {
        "Master": (1, "Never"), "Worker": (3, "Never")}
    assert manifest["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "backoffLimit": 0,
                                             "activeDeadlineSeconds": 6 * 3600, "ttlSecondsAfterFinished": 600}
    pod = specs["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["image"] == COMPONENT_IMAGE
    assert container["command"] == ["torchrun"]
    assert container["args"] == ["--nnodes", "4", "--nproc_per_node", "2", "--node_rank", "$(RANK)",
                                 "--master_addr", "$(MASTER_ADDR)", "--master_port", "$(MASTER_PORT)",
                                 "-m", "ebr.train.ddp_main", *ARGS]
    assert container["ports"] == [{"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                                      "limits": {"cpu": "8", "memory": "16Gi"}}
    assert container["volumeMounts"] == [{"name": "workspace", "mountPath": "/mnt/ebr"}]
    assert pod["volumes"] == [{"name": "workspace", "persistentVolumeClaim": {"claimName": "ebr-workspace"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": "sqlite:////mnt/ebr/ws/mlflow.db"}
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {k: (v["name"], v["key"], v["optional"]) for k, v in secret_refs.items()} == {
        var: ("ebr-credentials", key, True) for key, var in SECRET_ENV.items()}
    assert specs["Master"]["template"] == specs["Worker"]["template"]


def test_volume_secret_and_image_match_the_dag_placement():
    from pipelines.cluster import ClusterOptions

    cfg, opts = PyTorchJobConfig(), ClusterOptions()
    assert (cfg.workspace_pvc, cfg.mount_path, cfg.secret, cfg.image) == (opts.workspace_pvc, opts.mount_path,
                                                                          opts.secret, opts.image)


def test_master_only_job_without_secret_or_deadline_is_valid():
    cfg = PyTorchJobConfig(workers=0, secret=None, active_deadline_s=None, service_account="ebr-trainer",
                           restart_policy="OnFailure", backoff_limit=2, clean_pod_policy="Running")
    manifest = build_manifest("ebr-two-tower-x", cfg, ARGS)
    _validate(manifest)
    assert list(manifest["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    pod = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ebr-trainer" and "env" not in pod["containers"][0]
    assert pod["containers"][0]["args"][:4] == ["--nnodes", "1", "--nproc_per_node", "1"]
    assert manifest["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 2}


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "pytorchReplicaSpecs", "Master", "restartPolicy"), "Sometimes"),
    (("spec", "pytorchReplicaSpecs", "Master", "replicas"), 2),
    (("spec", "runPolicy", "cleanPodPolicy"), "Finished"),
    (("spec", "runPolicy", "backofLimit"), 3),
    (("spec", "pytorchReplicaSpecs", "Chief"), {"replicas": 1}),
    (("spec", "pytorchReplicaSpecs", "Worker", "template", "spec", "containers", 0, "name"), "trainer"),
    (("metadata", "name"), "Ebr_Two_Tower"),
    (("spec", "elasticPolicy"), {"rdzvBackend": "zookeeper"}),
])
def test_schema_rejects_what_the_operator_would_not_run(path, value):
    manifest = build_manifest("ebr-two-tower-x", PyTorchJobConfig(), ARGS)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(PYTORCHJOB_SCHEMA).validate(manifest)


def test_pod_template_check_is_strict():
    manifest = build_manifest("ebr-two-tower-x", PyTorchJobConfig(), ARGS)
    manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "x"
    jsonschema.Draft202012Validator(PYTORCHJOB_SCHEMA).validate(manifest)  # the job schema leaves pods to k8s
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(manifest)


def test_schema_accepts_an_elastic_policy():
    manifest = build_manifest("ebr-two-tower-x", PyTorchJobConfig(), ARGS)
    manifest["spec"]["elasticPolicy"] = {"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 3,
                                         "maxRestarts": 2, "rdzvConf": [{"key": "timeout", "value": "900"}]}
    manifest["spec"]["nprocPerNode"] = "2"
    jsonschema.Draft202012Validator(PYTORCHJOB_SCHEMA).validate(manifest)


@pytest.mark.parametrize(("field", "value"), [("cpu_request", "two"), ("memory_limit", "16 GB"),
                                              ("name_prefix", "EBR"), ("mount_path", "mnt/ebr"), ("workers", -1)])
def test_bad_config_names_the_field(field, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        PyTorchJobConfig(**{field: value})


def test_too_long_job_name_is_refused():
    with pytest.raises(PyTorchJobError, match="DNS-1035"):
        job_name("e" * 40, DAY + "-and-a-long-suffix")


# -------------------------------------------------------------------------------------------- stub API


class _Cluster:
    """The stub's state: the scenario, the stored job and every request the client made."""

    def __init__(self, *, outcome: str = "Succeeded", running_polls: int = 2, create_status: int = 201,
                 logs: dict[str, str] | None = None):
        self.outcome = outcome  # Succeeded, Failed or "never"
        self.running_polls = running_polls
        self.create_status = create_status
        self.logs = logs or {}
        self.job: dict | None = None
        self.samples_seen: str | None = None  # the samples manifest as the job's pods would read it
        self.gets = 0
        self.requests: list[tuple[str, str, object, dict]] = []  # method, path, body, query
        self.lock = threading.Lock()

    def status(self) -> dict:
        conditions = [{"type": "Created", "status": "True", "reason": "PyTorchJobCreated",
                       "message": "PyTorchJob is created."}]
        if self.gets > 1:
            conditions[-1]["status"] = "False"
            conditions.append({"type": "Running", "status": "True", "reason": "PyTorchJobRunning",
                               "message": "PyTorchJob is running."})
        done = self.outcome != "never" and self.gets > self.running_polls
        if done:
            conditions[-1]["status"] = "False"
            reason = "PyTorchJobSucceeded" if self.outcome == "Succeeded" else "PyTorchJobFailed"
            message = ("PyTorchJob is successfully completed." if self.outcome == "Succeeded"
                       else "PyTorchJob is failed because 1 Master replica(s) failed.")
            conditions.append({"type": self.outcome, "status": "True", "reason": reason, "message": message})
        replicas = {"Master": {"active": 0 if done else 1}, "Worker": {"active": 0 if done else 1}}
        if done:
            key = "succeeded" if self.outcome == "Succeeded" else "failed"
            replicas["Master"][key] = 1
        return {"conditions": conditions, "replicaStatuses": replicas}

    def pods(self) -> dict:
        name = self.job["metadata"]["name"]
        failed = self.outcome == "Failed" and self.gets > self.running_polls
        items = []
        for rtype, index in (("worker", 0), ("master", 0)):
            terminated = ({"exitCode": 137, "reason": "OOMKilled", "startedAt": None}
                          if failed and rtype == "master" else {"exitCode": 0, "reason": "Completed"})
            items.append({
                "metadata": {"name": f"{name}-{rtype}-{index}", "namespace": NS,
                             "labels": {"training.kubeflow.org/job-name": name,
                                        "training.kubeflow.org/replica-type": rtype,
                                        "training.kubeflow.org/replica-index": str(index)}},
                "status": {"phase": "Failed" if failed and rtype == "master" else "Succeeded",
                           "containerStatuses": [{"name": "pytorch", "image": COMPONENT_IMAGE, "imageID": "",
                                                  "ready": False, "restartCount": 0,
                                                  "state": {"terminated": terminated}}]},
            })
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    def play_rank0(self, manifest: dict) -> None:
        """What rank 0 of the job leaves behind: the model directory and the result file."""
        args = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
        out, result = Path(args[args.index("--out") + 1]), Path(args[args.index("--result") + 1])
        self.samples_seen = (Path(args[args.index("--samples") + 1]) / "manifest.json").read_text()
        (out / "export").mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps({"model_version": f"{DAY}.abcdef12"}))
        (out / "checkpoint.pt").write_bytes(b"weights")
        result.write_text(json.dumps({"model_dir": str(out), "model_version": f"{DAY}.abcdef12",
                                      "metrics": {"valid_click_recall_at_100": 0.5},
                                      "summary": {"distributed": {"world_size": 4, "backend": "gloo"}}}))


def _handler(cluster: _Cluster):
    class Handler(StubHandler):
        def _record(self, body: object = None) -> tuple[str, dict]:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with cluster.lock:
                cluster.requests.append((self.command, url.path, body, query))
            return url.path, query

        def do_POST(self):  # noqa: N802 - http.server API
            body = self.read_json()
            path, _ = self._record(body)
            if path != JOBS:
                return self.send_status(404, "NotFound", "the server could not find the requested resource")
            if cluster.create_status == 403:
                return self.send_status(403, "Forbidden", 'pytorchjobs.kubeflow.org is forbidden: User '
                                        '"system:serviceaccount:kubeflow:pipeline-runner" cannot create resource '
                                        f'"pytorchjobs" in API group "kubeflow.org" in the namespace "{NS}"')
            if cluster.create_status == 404:
                return self.send_status(404, "NotFound", "the server could not find the requested resource")
            with cluster.lock:
                cluster.job = body
            if cluster.outcome == "Succeeded":
                cluster.play_rank0(body)
            return self.send_json(201, body)

        def do_GET(self):  # noqa: N802 - http.server API
            path, query = self._record()
            with cluster.lock:
                job = cluster.job
                if job is not None and path == f"{JOBS}/{job['metadata']['name']}":
                    cluster.gets += 1
                    return self.send_json(200, {**job, "status": cluster.status()})
                if job is not None and path == f"/api/v1/namespaces/{NS}/pods":
                    return self.send_json(200, cluster.pods())
                m = re.fullmatch(rf"/api/v1/namespaces/{NS}/pods/([^/]+)/log", path)
                if m:
                    tail = int(query.get("tailLines", ["0"])[0])
                    lines = cluster.logs.get(m.group(1), f"{m.group(1)}: done\n").splitlines(keepends=True)
                    return self.send_text(200, "".join(lines[-tail:]))
            return self.send_status(404, "NotFound", "not found")

        def do_DELETE(self):  # noqa: N802 - http.server API
            path, _ = self._record()
            with cluster.lock:
                if cluster.job is not None and path == f"{JOBS}/{cluster.job['metadata']['name']}":
                    cluster.job = None
                    return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
            return self.send_status(404, "NotFound", "not found")

    return Handler


@pytest.fixture
def kube(tmp_path):
    """Start a stub API server with a scenario; returns (cluster state, job config pointing at it)."""
    servers = []

    def start(**scenario) -> tuple[_Cluster, PyTorchJobConfig]:
        cluster = _Cluster(**scenario)
        server = serve(_handler(cluster))
        servers.append(server)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server)
        cfg = PyTorchJobConfig(enabled=True, namespace=NS, workers=1, nproc_per_node=2,
                               mount_path=str(tmp_path / "vol"), kubeconfig=str(kubeconfig), poll_interval_s=0.02,
                               timeout_s=5.0, request_timeout_s=5.0, log_tail_lines=3)
        return cluster, cfg

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _layout(tmp_path: Path) -> dict[str, Path]:
    """A workspace volume (features, staging) and a step's artifact paths off it (samples, model)."""
    paths = {"features": tmp_path / "vol" / "ws" / "features", "staging": tmp_path / "vol" / "ws" / "jobs",
             "samples": tmp_path / "kfp" / "samples", "out": tmp_path / "kfp" / "model"}
    paths["features"].mkdir(parents=True)
    paths["samples"].mkdir(parents=True)
    (paths["samples"] / "manifest.json").write_text('{"day": "2026-11-08"}')
    return paths


def _run(cfg: PyTorchJobConfig, paths: dict[str, Path], name: str = "ebr-two-tower-2026-11-08-0123abcd", **kw):
    return run_two_tower_job(paths["samples"], paths["features"], paths["out"], TwoTowerTrainConfig(), cfg,
                             day=DAY, staging_dir=paths["staging"], name=name, **kw)


def test_job_is_created_awaited_and_its_model_copied_back(kube, tmp_path):
    cluster, cfg = kube(outcome="Succeeded", running_polls=2)
    paths = _layout(tmp_path)
    result = _run(cfg, paths, warm_start=tmp_path / "vol" / "ws" / "bundles" / "v1" / "model")

    (create,) = [r for r in cluster.requests if r[0] == "POST"]
    assert create[1] == JOBS
    manifest = create[2]
    _validate(manifest)
    args = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    trainer = dict(zip(args[args.index("ebr.train.ddp_main") + 1 :: 2], args[args.index("ebr.train.ddp_main") + 2 :: 2],
                       strict=True))
    stage = paths["staging"] / "ebr-two-tower-2026-11-08-0123abcd"
    assert trainer["--samples"] == str(stage / "samples")  # off the volume: copied onto it (removed after)
    assert cluster.samples_seen == '{"day": "2026-11-08"}'
    assert trainer["--features"] == str(paths["features"])
    assert trainer["--out"] == str(stage / "model") and trainer["--result"] == str(stage / "result.json")
    assert trainer["--warm-start"] == str(tmp_path / "vol" / "ws" / "bundles" / "v1" / "model")
    assert trainer["--backend"] == "gloo" and trainer["--timeout-s"] == "1800"
    written = TwoTowerTrainConfig.model_validate(yaml.safe_load(Path(trainer["--config"]).read_text()))
    assert written == TwoTowerTrainConfig()
    assert manifest["metadata"]["labels"]["ebr.io/day"] == DAY

    assert (paths["out"] / "checkpoint.pt").read_bytes() == b"weights"  # the model came back to the step's path
    assert sorted(p.name for p in stage.iterdir()) == ["result.json", "two_tower.yaml"]  # the copies are gone
    assert result["model_dir"] == str(paths["out"]) and result["model_version"] == f"{DAY}.abcdef12"
    assert result["summary"]["distributed"]["world_size"] == 4
    job = result["job"]
    assert job["name"] == "ebr-two-tower-2026-11-08-0123abcd" and job["namespace"] == NS
    assert job["polls"] == 3 and cluster.gets == 3  # Created, Running, Succeeded
    assert [p["name"] for p in job["pods"]] == ["ebr-two-tower-2026-11-08-0123abcd-master-0",
                                                "ebr-two-tower-2026-11-08-0123abcd-worker-0"]
    log_reads = [r for r in cluster.requests if r[1].endswith("/log")]
    assert {r[3]["container"][0] for r in log_reads} == {"pytorch"} and {r[3]["tailLines"][0] for r in log_reads} == {
        "3"}
    pod_lists = [r for r in cluster.requests if r[1].endswith("/pods")]
    assert pod_lists[0][3]["labelSelector"] == ["training.kubeflow.org/job-name=ebr-two-tower-2026-11-08-0123abcd"]


def test_failed_job_raises_with_the_condition_pod_reasons_and_log_tail(kube, tmp_path):
    name = "ebr-two-tower-2026-11-08-0123abcd"
    log = "loading samples\nepoch 1/1\nTraceback (most recent call last):\nMemoryError: cannot allocate\n"
    cluster, cfg = kube(outcome="Failed", running_polls=1, logs={f"{name}-master-0": log})
    with pytest.raises(PyTorchJobError) as err:
        _run(cfg, _layout(tmp_path))
    msg = str(err.value)
    assert msg.startswith(f"PyTorchJob {NS}/{name} failed (Failed: reason PyTorchJobFailed: PyTorchJob is failed "
                          "because 1 Master replica(s) failed.)")
    assert f"pod {name}-master-0 (master 0): Failed; container pytorch terminated: OOMKilled (exit code 137)" in msg
    assert f"pod {name}-worker-0 (worker 0): Succeeded" in msg
    # the last 3 lines (log_tail_lines) of each pod's log, master first
    assert f"--- last log lines of {name}-master-0 ---\nepoch 1/1\nTraceback (most recent call last):\n" \
           "MemoryError: cannot allocate" in msg
    assert "loading samples" not in msg
    assert not (tmp_path / "kfp" / "model").exists()


def test_job_that_never_finishes_times_out_and_is_deleted(kube, tmp_path):
    cluster, cfg = kube(outcome="never")
    cfg.timeout_s = 0.3
    with pytest.raises(PyTorchJobError, match=r"not finished after 0.3 s \(last: Running: reason PyTorchJobRunning"):
        _run(cfg, _layout(tmp_path))
    deletes = [r for r in cluster.requests if r[0] == "DELETE"]
    assert [r[1] for r in deletes] == [f"{JOBS}/ebr-two-tower-2026-11-08-0123abcd"]
    assert 2 <= cluster.gets <= 0.3 / cfg.poll_interval_s + 2


@pytest.mark.parametrize(("status", "expected"), [
    (403, r"forbidden: the service account cannot create pytorchjobs in training; grant it create/get/delete"),
    (404, r"pytorchjobs not found: is the Kubeflow Training Operator installed"),
])
def test_create_errors_say_what_to_fix(kube, status, expected):
    cluster, cfg = kube(create_status=status)
    with pytest.raises(PyTorchJobError, match=expected):
        submit(build_manifest("ebr-two-tower-x", cfg, ARGS), cfg)
    assert [r[0] for r in cluster.requests] == ["POST"]


def test_wait_reports_a_job_deleted_under_it(kube):
    cluster, cfg = kube()
    with pytest.raises(PyTorchJobError, match="disappeared while waiting"):
        wait("ebr-two-tower-gone", cfg)


def test_paths_the_pods_cannot_see_are_refused_before_anything_is_created(kube, tmp_path):
    cluster, cfg = kube()
    paths = _layout(tmp_path)
    paths["features"] = tmp_path / "elsewhere" / "features"
    with pytest.raises(PyTorchJobError, match=r"features_dir .* is not on the workspace volume"):
        _run(cfg, paths)
    assert cluster.requests == []


def test_component_submits_a_job_when_enabled(kube, tmp_path):
    from kfp import dsl

    from components.train import train_two_tower as component
    from ebr.config import EbrConfig

    cluster, cfg = kube(outcome="Succeeded", running_polls=0)
    paths = _layout(tmp_path)
    workspace = tmp_path / "vol" / "ws"
    model = dsl.Model(uri=str(paths["out"]))
    component.python_func(day=DAY, workspace=str(workspace), config=EbrConfig(two_tower_job=cfg).to_yaml(),
                          samples=dsl.Dataset(uri=str(paths["samples"])),
                          features=dsl.Artifact(uri=str(tmp_path / "f"),
                                                metadata={"features_dir": str(paths["features"])}),
                          model=model)
    assert model.metadata["model_version"] == f"{DAY}.abcdef12"
    assert (paths["out"] / "manifest.json").is_file()
    (create,) = [r for r in cluster.requests if r[0] == "POST"]
    env = {e["name"]: e.get("value") for e in
           create[2]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{workspace}/mlflow.db"
    step = json.loads((workspace / "reports" / DAY / "steps" / "train_two_tower.json").read_text())
    assert step["status"] == "ok" and step["pytorchjob"] == create[2]["metadata"]["name"]
    assert create[2]["metadata"]["name"].startswith(f"ebr-two-tower-{DAY}-")


def test_rbac_manifest_is_valid_and_grants_what_the_step_calls(kube, tmp_path):
    """deploy/kubeflow/pytorchjob-rbac.yaml: strict against the Kubernetes schemas, and its rules cover every
    request a successful and a timed-out job make (resource, verb)."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubeflow" / "pytorchjob-rbac.yaml").read_text()))
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    role = next(d for d in docs if d["kind"] == "Role")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}

    made = set()
    paths = _layout(tmp_path)
    for outcome in ("Succeeded", "never"):
        cluster, cfg = kube(outcome=outcome, running_polls=0)
        cfg.timeout_s = 0.2
        try:
            _run(cfg, {**paths, "out": tmp_path / outcome / "model"}, name=f"ebr-two-tower-{outcome.lower()}")
        except PyTorchJobError:
            pass
        for method, path, _, _ in cluster.requests:
            resource = ("pods/log" if path.endswith("/log") else "pods" if path.endswith("/pods")
                        else "pytorchjobs")
            verb = {"POST": "create", "DELETE": "delete"}.get(method) or ("list" if resource == "pods" else "get")
            made.add((resource, verb))
    assert made == granted
