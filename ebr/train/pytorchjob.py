"""Train the two-tower model as a Kubeflow Training Operator PyTorchJob: data-parallel ranks on several pods.

`run_two_tower_job(samples, features, out, train_cfg, job_cfg, day=..., staging_dir=...)` is the cluster
counterpart of `train_two_tower`: it stages what the job's pods cannot see on the workspace volume, builds a
`kubeflow.org/v1` PyTorchJob (`build_manifest`: one Master and `workers` Worker replicas, each pod one `pytorch`
container of the components image running `torchrun ... -m ebr.train.ddp_main`, the workspace PVC mounted and
the credentials Secret as optional environment variables, as the DAG's steps get them), creates it (`submit`),
polls its conditions until Succeeded or Failed (`wait`), and copies the model directory rank 0 wrote back to
`out`. A failed or timed-out job raises `PyTorchJobError` with the job's condition, every pod's failure reasons
(OOMKilled, exit codes, image pull errors, evictions) and the last lines of each pod's log (`pod_reports`).

The Training Operator sets MASTER_ADDR, MASTER_PORT and RANK (the replica's node rank: Master 0, Worker i + 1)
in every container; the container's arguments hand them to torchrun (`$(RANK)` is expanded by the kubelet), and
torchrun sets each process's global RANK, WORLD_SIZE and LOCAL_RANK for `ebr.train.distributed`.

The Kubernetes API is reached with the `kubernetes` client, as `ebr.rollout` does (in-cluster service account,
else a kubeconfig). The service account needs create/get/delete on pytorchjobs.kubeflow.org and list on pods and
get on pods/log in `namespace` (docs/deploy.md, "Distributed two-tower training"). Off by default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ebr.credentials import SECRET_ENV
from ebr.images import COMPONENT_IMAGE
from ebr.settings import Section

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
CONTAINER = "pytorch"  # the container name the Training Operator looks for
PORT_NAME = "pytorchjob-port"  # the container port the operator reads MASTER_PORT from
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
VOLUME_NAME = "workspace"
_DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")


class PyTorchJobConfig(Section):
    """Where and how the two-tower step runs as a PyTorchJob; off by default (the step trains in its own pod)."""

    enabled: bool = Field(False, description="train the two-tower model as a PyTorchJob instead of in the step's pod")
    namespace: str = Field("kubeflow", min_length=1, description="namespace of the PyTorchJob (and of the PVC)")
    name_prefix: str = Field(
        "ebr-two-tower", max_length=40, pattern=_DNS_LABEL,
        description="job name = <prefix>-<day>-<8 hex>; a DNS-1035 label (the operator names Services after it)",
    )
    image: str = Field(COMPONENT_IMAGE, min_length=1, description="image of the pods (the components image)")
    workers: int = Field(1, ge=0, description="Worker replicas besides the Master; nodes = 1 + workers")
    nproc_per_node: int = Field(1, ge=1, description="torchrun processes (ranks) per pod")
    cpu_request: str = Field("2", description="CPU request of each pod")
    cpu_limit: str = Field("8", description="CPU limit of each pod")
    memory_request: str = Field("4Gi", description="memory request of each pod (every rank loads the whole data)")
    memory_limit: str = Field("16Gi", description="memory limit of each pod")
    workspace_pvc: str = Field(
        "ebr-workspace", min_length=1,
        description="ReadWriteMany claim of the workspace, mounted at mount_path as in the DAG's steps",
    )
    mount_path: str = Field("/mnt/ebr", description="where the PVC is mounted (the same path as in the DAG's steps)")
    secret: str | None = Field(
        "ebr-credentials", description="Secret whose keys become optional environment variables; None = none"
    )
    service_account: str = Field("", description="service account of the pods; empty = the namespace's default")
    restart_policy: Literal["Never", "OnFailure", "ExitCode", "Always"] = Field(
        "Never", description="restart policy of the replicas (Never: a failed rank fails the job, its log kept)"
    )
    backoff_limit: int = Field(0, ge=0, description="runPolicy.backoffLimit: retries before the job is Failed")
    clean_pod_policy: Literal["None", "Running", "All"] = Field(
        "None", description="runPolicy.cleanPodPolicy: None keeps finished pods, so their logs can be read"
    )
    active_deadline_s: int | None = Field(
        6 * 3600, ge=1, description="runPolicy.activeDeadlineSeconds: the operator fails a job running longer"
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="runPolicy.ttlSecondsAfterFinished: delete the finished job after this; None = keep"
    )
    master_port: int = Field(23456, ge=1, le=65535, description="port of the Master's rendezvous (torchrun)")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "gloo", description="process-group backend of the ranks (the trainer's batches are CPU tensors: gloo)"
    )
    collective_timeout_s: float = Field(1800.0, gt=0, description="seconds a collective may wait for a rank")
    kubeconfig: str = Field(
        "", description="kubeconfig file; empty = in-cluster service account, else $KUBECONFIG / ~/.kube/config"
    )
    context: str = Field("", description="kubeconfig context; empty = the current context")
    timeout_s: float = Field(
        6 * 3600 + 600, gt=0, description="give up waiting for the job after this many seconds (then see below)"
    )
    delete_on_timeout: bool = Field(True, description="delete the job (and its pods) when waiting for it times out")
    poll_interval_s: float = Field(15.0, gt=0, description="seconds between two status polls")
    request_timeout_s: float = Field(30.0, gt=0, description="timeout of one Kubernetes API request")
    log_tail_lines: int = Field(40, ge=0, description="last log lines of each pod in a failure message")

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
        return value

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"mount_path must be absolute, got {value!r}")
        return value.rstrip("/") or "/"


class PyTorchJobError(RuntimeError):
    """The PyTorchJob could not be created, failed or did not finish in time; the message says why."""


# ----------------------------------------------------------------------------------------------- manifest


def job_name(prefix: str, day: str, suffix: str | None = None) -> str:
    """`<prefix>-<day>-<8 hex>`: a DNS-1035 label of at most 63 characters."""
    name = f"{prefix}-{day}-{suffix or uuid.uuid4().hex[:8]}".lower()
    if len(name) > 63 or not re.match(_DNS_LABEL, name):
        raise PyTorchJobError(f"job name {name!r} is not a DNS-1035 label of at most 63 characters "
                              "(two_tower_job.name_prefix, day)")
    return name


def torchrun_args(cfg: PyTorchJobConfig) -> list[str]:
    """torchrun's arguments: static rendezvous at the Master, node rank from the operator's RANK."""
    return ["--nnodes", str(1 + cfg.workers), "--nproc_per_node", str(cfg.nproc_per_node),
            "--node_rank", "$(RANK)", "--master_addr", "$(MASTER_ADDR)", "--master_port", "$(MASTER_PORT)"]


def build_manifest(
    name: str,
    cfg: PyTorchJobConfig,
    trainer_args: list[str],
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The PyTorchJob object: Master (1) + Worker (`cfg.workers`) replicas running `torchrun -m ebr.train.ddp_main`
    with `trainer_args`, plus `env` (name -> value) and the Secret's keys as optional variables."""
    from kubernetes import client

    if not re.match(_DNS_LABEL, name) or len(name) > 63:
        raise PyTorchJobError(f"job name {name!r} is not a DNS-1035 label of at most 63 characters")
    env_vars = [client.V1EnvVar(name=k, value=str(v)) for k, v in (env or {}).items()]
    if cfg.secret:
        env_vars += [client.V1EnvVar(name=var, value_from=client.V1EnvVarSource(
            secret_key_ref=client.V1SecretKeySelector(name=cfg.secret, key=key, optional=True)))
            for key, var in SECRET_ENV.items() if var not in (env or {})]
    container = client.V1Container(
        name=CONTAINER,
        image=cfg.image,
        command=["torchrun"],
        args=[*torchrun_args(cfg), "-m", "ebr.train.ddp_main", *trainer_args],
        env=env_vars or None,
        ports=[client.V1ContainerPort(name=PORT_NAME, container_port=cfg.master_port, protocol="TCP")],
        resources=client.V1ResourceRequirements(
            requests={"cpu": cfg.cpu_request, "memory": cfg.memory_request},
            limits={"cpu": cfg.cpu_limit, "memory": cfg.memory_limit},
        ),
        volume_mounts=[client.V1VolumeMount(name=VOLUME_NAME, mount_path=cfg.mount_path)],
    )
    pod = client.V1PodSpec(
        containers=[container],
        volumes=[client.V1Volume(name=VOLUME_NAME, persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
            claim_name=cfg.workspace_pvc))],
        service_account_name=cfg.service_account or None,
    )
    meta_labels = {"app.kubernetes.io/name": "ebr", "app.kubernetes.io/component": "train-two-tower",
                   **(labels or {})}
    template = client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=meta_labels), spec=pod)
    template_obj = client.ApiClient().sanitize_for_serialization(template)

    def replica(replicas: int) -> dict[str, Any]:
        return {"replicas": replicas, "restartPolicy": cfg.restart_policy, "template": template_obj}

    specs = {"Master": replica(1)}
    if cfg.workers:
        specs["Worker"] = replica(cfg.workers)
    run_policy: dict[str, Any] = {"cleanPodPolicy": cfg.clean_pod_policy, "backoffLimit": cfg.backoff_limit}
    if cfg.active_deadline_s is not None:
        run_policy["activeDeadlineSeconds"] = cfg.active_deadline_s
    if cfg.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = cfg.ttl_seconds_after_finished
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": meta_labels},
        "spec": {"pytorchReplicaSpecs": specs, "runPolicy": run_policy},
    }


# --------------------------------------------------------------------------------------------- API calls


def api_client(cfg: PyTorchJobConfig) -> Any:
    """An ApiClient from the in-cluster service account or a kubeconfig (as `ebr.rollout.api_client`)."""
    from ebr.rollout import RolloutConfig, RolloutError
    from ebr.rollout import api_client as rollout_api_client

    try:
        return rollout_api_client(RolloutConfig(kubeconfig=cfg.kubeconfig, context=cfg.context))
    except RolloutError as e:
        raise PyTorchJobError(str(e)) from e


def _status_message(e: Any) -> str:
    try:
        return json.loads(e.body).get("message") or e.reason
    except (TypeError, ValueError, AttributeError):
        return str(getattr(e, "reason", e))


def _api_error(e: Any, cfg: PyTorchJobConfig, verb: str, what: str) -> PyTorchJobError:
    ns, detail = cfg.namespace, _status_message(e)
    if e.status == 403:
        return PyTorchJobError(
            f"forbidden: the service account cannot {verb} {what} in {ns}; grant it create/get/delete on "
            f"pytorchjobs.kubeflow.org, list on pods and get on pods/log in {ns} (docs/deploy.md, Distributed "
            f"two-tower training) [{detail}]")
    if e.status == 404 and what == "pytorchjobs" and verb == "create":
        return PyTorchJobError(
            f"cannot create a PyTorchJob in {ns}: {GROUP}/{VERSION} {PLURAL} not found: is the Kubeflow Training "
            f"Operator installed and the namespace {ns} there (two_tower_job.namespace)? [{detail}]")
    return PyTorchJobError(f"{verb} {what} in {ns} failed with HTTP {e.status}: {detail}")


def submit(manifest: dict[str, Any], cfg: PyTorchJobConfig, api: Any = None) -> dict[str, Any]:
    """Create the PyTorchJob; returns the object the API server stored."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    custom = client.CustomObjectsApi(api or api_client(cfg))
    try:
        return custom.create_namespaced_custom_object(GROUP, VERSION, cfg.namespace, PLURAL, manifest,
                                                      _request_timeout=cfg.request_timeout_s)
    except ApiException as e:
        if e.status == 409:
            raise PyTorchJobError(f"PyTorchJob {cfg.namespace}/{manifest['metadata']['name']} already exists "
                                  f"[{_status_message(e)}]") from e
        raise _api_error(e, cfg, "create", "pytorchjobs") from e
    except HTTPError as e:
        raise PyTorchJobError(f"Kubernetes API server unreachable: {e}") from e


def job_phase(job: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """("Succeeded" | "Failed", its condition) once the job finished, else (None, the newest true condition)."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for c in reversed(conditions):
        if c.get("type") in ("Succeeded", "Failed"):
            return c["type"], c
    return None, conditions[-1] if conditions else None


def _describe(condition: dict[str, Any] | None) -> str:
    if condition is None:
        return "no condition yet"
    parts = [condition.get("type", "?")]
    if condition.get("reason"):
        parts.append(f"reason {condition['reason']}")
    if condition.get("message"):
        parts.append(condition["message"])
    return ": ".join(parts)


def _container_reasons(statuses: list[Any] | None, kind: str) -> list[str]:
    out = []
    for cs in statuses or []:
        state = cs.state
        if state is None:
            continue
        if state.terminated is not None and (state.terminated.exit_code or state.terminated.reason != "Completed"):
            t = state.terminated
            msg = f"{kind} {cs.name} terminated: {t.reason or 'Error'} (exit code {t.exit_code})"
            out.append(msg + (f": {t.message.strip()}" if t.message else ""))
        elif state.waiting is not None and state.waiting.reason not in (None, "ContainerCreating", "PodInitializing"):
            w = state.waiting
            out.append(f"{kind} {cs.name} waiting: {w.reason}" + (f": {w.message.strip()}" if w.message else ""))
        if cs.restart_count:
            out.append(f"{kind} {cs.name} restarted {cs.restart_count} time(s)")
    return out


def pod_reports(name: str, cfg: PyTorchJobConfig, api: Any = None, tail_lines: int | None = None) -> list[dict]:
    """Each pod of the job (Master first): name, replica, phase, failure reasons and the tail of its log."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core = client.CoreV1Api(api or api_client(cfg))
    tail = cfg.log_tail_lines if tail_lines is None else tail_lines
    try:
        pods = core.list_namespaced_pod(cfg.namespace, label_selector=f"{JOB_NAME_LABEL}={name}",
                                        _request_timeout=cfg.request_timeout_s).items
    except ApiException as e:
        return [{"error": f"pods of {cfg.namespace}/{name} not listed: HTTP {e.status}: {_status_message(e)}"}]
    except HTTPError as e:
        return [{"error": f"pods of {cfg.namespace}/{name} not listed: {e}"}]

    def order(pod: Any) -> tuple[int, int, str]:
        labels = pod.metadata.labels or {}
        rtype = labels.get(REPLICA_TYPE_LABEL, "")
        index = labels.get(REPLICA_INDEX_LABEL, "0")
        return (0 if rtype == "master" else 1, int(index) if index.isdigit() else 0, pod.metadata.name)

    reports = []
    for pod in sorted(pods, key=order):
        labels = pod.metadata.labels or {}
        st = pod.status
        reasons = []
        if st is not None and (st.reason or st.message):
            reasons.append(f"pod {st.reason or ''}: {st.message or ''}".strip(": "))
        if st is not None:
            reasons += _container_reasons(st.init_container_statuses, "init container")
            reasons += _container_reasons(st.container_statuses, "container")
        report: dict[str, Any] = {"name": pod.metadata.name, "replica_type": labels.get(REPLICA_TYPE_LABEL),
                                  "replica_index": labels.get(REPLICA_INDEX_LABEL),
                                  "phase": st.phase if st is not None else None, "reasons": reasons}
        if tail:
            try:
                resp = core.read_namespaced_pod_log(pod.metadata.name, cfg.namespace, container=CONTAINER,
                                                    tail_lines=tail, _preload_content=False,
                                                    _request_timeout=cfg.request_timeout_s)
                report["log_tail"] = resp.data.decode("utf-8", errors="replace")
            except ApiException as e:
                report["log_tail"] = f"(log unavailable: HTTP {e.status}: {_status_message(e)})"
            except HTTPError as e:
                report["log_tail"] = f"(log unavailable: {e})"
        reports.append(report)
    return reports


def render_reports(reports: list[dict]) -> str:
    """Pod reports as text: one line per pod with its reasons, then each log tail."""
    lines = []
    for r in reports:
        if "error" in r:
            lines.append(r["error"])
            continue
        lines.append(f"pod {r['name']} ({r['replica_type']} {r['replica_index']}): {r['phase']}"
                     + (f"; {'; '.join(r['reasons'])}" if r["reasons"] else ""))
    for r in reports:
        if r.get("log_tail"):
            lines.append(f"--- last log lines of {r['name']} ---")
            lines.append(r["log_tail"].rstrip("\n"))
    return "\n".join(lines)


def delete(name: str, cfg: PyTorchJobConfig, api: Any = None) -> bool:
    """Delete the job (the operator deletes its pods); False when it was not there or could not be deleted."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        client.CustomObjectsApi(api or api_client(cfg)).delete_namespaced_custom_object(
            GROUP, VERSION, cfg.namespace, PLURAL, name, propagation_policy="Background",
            _request_timeout=cfg.request_timeout_s)
        return True
    except (ApiException, HTTPError) as e:
        log.warning("PyTorchJob %s/%s not deleted: %s", cfg.namespace, name, e)
        return False


def wait(
    name: str,
    cfg: PyTorchJobConfig,
    api: Any = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the job until its Succeeded condition; returns {phase, condition, replica_statuses, waited_s, polls}.

    Raises PyTorchJobError when it fails (its condition, the pods' reasons and log tails) or after
    `cfg.timeout_s` (deleting the job when `cfg.delete_on_timeout`)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = api or api_client(cfg)
    custom = client.CustomObjectsApi(api)
    ns = cfg.namespace
    t0, polls = clock(), 0
    while True:
        polls += 1
        try:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name,
                                                      _request_timeout=cfg.request_timeout_s)
        except ApiException as e:
            if e.status == 404:
                raise PyTorchJobError(f"PyTorchJob {ns}/{name} disappeared while waiting for it (deleted, or "
                                      f"removed by runPolicy.ttlSecondsAfterFinished) [{_status_message(e)}]") from e
            raise _api_error(e, cfg, "get", "pytorchjobs") from e
        except HTTPError as e:
            raise PyTorchJobError(f"PyTorchJob {ns}/{name}: Kubernetes API server unreachable: {e}") from e
        phase, condition = job_phase(job)
        waited = clock() - t0
        state = {"phase": phase, "condition": condition, "waited_s": round(waited, 3), "polls": polls,
                 "replica_statuses": (job.get("status") or {}).get("replicaStatuses") or {}}
        if phase == "Succeeded":
            return state
        if phase == "Failed":
            reports = pod_reports(name, cfg, api)
            raise PyTorchJobError(f"PyTorchJob {ns}/{name} failed ({_describe(condition)})\n"
                                  + render_reports(reports))
        if waited >= cfg.timeout_s:
            reports = pod_reports(name, cfg, api)
            deleted = delete(name, cfg, api) if cfg.delete_on_timeout else False
            raise PyTorchJobError(
                f"PyTorchJob {ns}/{name} not finished after {cfg.timeout_s:g} s (last: {_describe(condition)}; "
                f"replicas {json.dumps(state['replica_statuses'], sort_keys=True)}); "
                + ("the job was deleted" if deleted else f"see `kubectl -n {ns} describe pytorchjob {name}`")
                + "\n" + render_reports(reports))
        sleep(min(cfg.poll_interval_s, max(cfg.timeout_s - waited, 0.0)))


# ------------------------------------------------------------------------------------------ the step


def _on_volume(path: str | Path, cfg: PyTorchJobConfig) -> bool:
    mount = Path(cfg.mount_path)
    return Path(os.path.abspath(path)).is_relative_to(mount)


def _copy_dir(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True)


def run_two_tower_job(
    samples_dir: str | Path,
    features_dir: str | Path,
    out_dir: str | Path,
    train_cfg: Any,
    job_cfg: PyTorchJobConfig,
    *,
    day: str,
    staging_dir: str | Path,
    warm_start: str | Path | None = None,
    name: str | None = None,
    api: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Train as a PyTorchJob and leave the model directory in `out_dir`; returns rank 0's result plus `job`.

    `features_dir`, `staging_dir` and `warm_start` must be on the workspace volume (under `job_cfg.mount_path`);
    `samples_dir` and `out_dir` may be elsewhere (a step's artifact paths): the samples are copied into
    `<staging_dir>/<job>/samples` and the model comes back from `<staging_dir>/<job>/model`."""
    import yaml

    from ebr.artifacts.atomic import atomic_output_dir
    from ebr.train.tracking import resolve_tracking_uri
    from ebr.train.two_tower import EXPORT_DIR, MANIFEST
    from ebr.train.two_tower_config import TEMPERATURE_FIELDS, TwoTowerTrainConfig

    if not isinstance(train_cfg, TwoTowerTrainConfig):
        raise TypeError(f"train_cfg must be a TwoTowerTrainConfig, got {type(train_cfg).__name__}")
    for label, path in (("staging_dir", staging_dir), ("features_dir", features_dir), ("warm_start", warm_start)):
        if path is not None and not _on_volume(path, job_cfg):
            raise PyTorchJobError(f"{label} {path} is not on the workspace volume ({job_cfg.mount_path}, "
                                  "two_tower_job.mount_path): the job's pods cannot read it")
    name = name or job_name(job_cfg.name_prefix, day)
    stage = Path(os.path.abspath(staging_dir)) / name
    stage.mkdir(parents=True, exist_ok=False)
    samples = Path(samples_dir)
    if not _on_volume(samples, job_cfg):
        _copy_dir(samples, stage / "samples")
        samples = stage / "samples"
    out = Path(out_dir)
    job_out = out if _on_volume(out, job_cfg) else stage / "model"
    config_path, result_path = stage / "two_tower.yaml", stage / "result.json"
    config_path.write_text(yaml.safe_dump(train_cfg.model_dump(mode="json", exclude={"loss": set(TEMPERATURE_FIELDS)}),
                                          sort_keys=False, allow_unicode=True), encoding="utf-8")
    args = ["--samples", str(samples), "--features", str(Path(os.path.abspath(features_dir))),
            "--out", str(job_out), "--config", str(config_path), "--backend", job_cfg.backend,
            "--timeout-s", f"{job_cfg.collective_timeout_s:g}", "--result", str(result_path)]
    if warm_start is not None:
        args += ["--warm-start", str(Path(os.path.abspath(warm_start)))]
    env = {"GX_ANALYTICS_ENABLED": "false"}
    uri = resolve_tracking_uri(train_cfg.mlflow)
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    manifest = build_manifest(name, job_cfg, args, env, labels={"ebr.io/day": day})
    api = api or api_client(job_cfg)
    submit(manifest, job_cfg, api)
    log.info("PyTorchJob %s/%s created: %d node(s) x %d rank(s)", job_cfg.namespace, name, 1 + job_cfg.workers,
             job_cfg.nproc_per_node)
    state = wait(name, job_cfg, api, clock=clock, sleep=sleep)
    reports = pod_reports(name, job_cfg, api)
    log.info("PyTorchJob %s/%s succeeded after %.0f s\n%s", job_cfg.namespace, name, state["waited_s"],
             render_reports(reports))
    if not result_path.is_file():
        raise PyTorchJobError(f"PyTorchJob {job_cfg.namespace}/{name} succeeded but rank 0 wrote no {result_path}\n"
                              + render_reports(reports))
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if job_out != out:
        with atomic_output_dir(out, marker=MANIFEST) as tmp:
            _copy_dir(job_out, tmp)
        result.update(model_dir=str(out), export_dir=str(out / EXPORT_DIR))
        shutil.rmtree(job_out, ignore_errors=True)  # copied back; the staged config and result stay
    shutil.rmtree(stage / "samples", ignore_errors=True)  # the samples' copy, if one was made
    result["job"] = {"name": name, "namespace": job_cfg.namespace, "waited_s": state["waited_s"],
                     "polls": state["polls"], "replica_statuses": state["replica_statuses"],
                     "pods": [{k: r.get(k) for k in ("name", "phase", "reasons")} for r in reports],
                     "staging_dir": str(stage)}
    return result
