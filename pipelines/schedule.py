"""Create the daily recurring run on a Kubeflow Pipelines cluster through `kfp.Client`.

Without a host, `kfp.Client()` finds the API itself: $KF_PIPELINES_ENDPOINT if set; else, inside a pod, the
in-cluster service `ml-pipeline.kubeflow.svc.cluster.local:8888` with the projected service-account token
($KF_PIPELINES_SA_TOKEN_PATH, default /var/run/secrets/kubeflow/pipelines/token); else the current kubeconfig
context through the Kubernetes API server's service proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class Scheduled(NamedTuple):
    """The created recurring run and the KFP API endpoint it was created on."""

    recurring_run_id: str
    endpoint: str
    source: str  # how the endpoint was found: --host, $KF_PIPELINES_ENDPOINT, in-cluster service, kubeconfig proxy


def _client(host: str | None, namespace: str | None = None):
    """kfp.Client for `host`, or kfp's own endpoint resolution when `host` is None; with the endpoint used.
    `namespace` is the user's profile namespace in multi-user Kubeflow (None: standalone KFP)."""
    import os

    import kfp

    if not host and not os.environ.get("KF_PIPELINES_ENDPOINT") and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubeconfigs = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)
        if not any(Path(p).expanduser().is_file() for p in kubeconfigs if p):
            raise ValueError("no --host given and no way to find the KFP API: not in a pod, $KF_PIPELINES_ENDPOINT "
                             "unset and no kubeconfig; pass --host")
    client = kfp.Client(host=host or None, namespace=namespace or "kubeflow")
    config = getattr(client, "_existing_config", None)  # kfp keeps the resolved API configuration here
    endpoint = str(getattr(config, "host", "") or host or "")
    if host:
        return client, endpoint, "--host"
    if os.environ.get("KF_PIPELINES_ENDPOINT"):
        return client, endpoint, "$KF_PIPELINES_ENDPOINT"
    if endpoint == kfp.Client._IN_CLUSTER_DNS_NAME.format("kubeflow"):
        return client, endpoint, "in-cluster service, service-account token"
    if "/services/ml-pipeline:http/proxy" in endpoint:
        return client, endpoint, "kubeconfig, API server proxy"
    raise ValueError("no --host given and kfp found no endpoint: not in a cluster, $KF_PIPELINES_ENDPOINT unset "
                     f"and no usable kubeconfig (kfp fell back to {endpoint or 'nothing'}); pass --host")


def create_daily_schedule(host: str | None, package: str | Path, cron: str = "0 0 2 * * *",
                          experiment: str = "ebr-daily", job_name: str = "ebr-daily",
                          params: dict | None = None, max_concurrency: int = 1,
                          namespace: str | None = None) -> Scheduled:
    """Register a recurring run of the compiled pipeline `package` with a 6-field cron (seconds first).

    `host=None` lets kfp resolve the endpoint (see the module docstring). Returns the recurring run id and the
    endpoint used. The run's `day` defaults to the scheduled time (the pipeline derives D-1)."""
    fields = cron.split()
    if len(fields) != 6:
        raise ValueError(f"--cron {cron!r}: KFP takes a 6-field cron expression (seconds first), got {len(fields)}")
    if not Path(package).is_file():
        raise FileNotFoundError(f"compiled pipeline {package} does not exist; run `ebr pipeline compile` first")
    client, endpoint, source = _client(host, namespace)
    try:
        exp = client.get_experiment(experiment_name=experiment, namespace=namespace)
    except ValueError:
        exp = client.create_experiment(name=experiment, namespace=namespace)
    run = client.create_recurring_run(
        experiment_id=exp.experiment_id,
        job_name=job_name,
        pipeline_package_path=str(package),
        cron_expression=cron,
        params=params or {},
        max_concurrency=max_concurrency,
        enable_caching=None,  # keep the compiled per-task caching options (only validation is cacheable)
    )
    return Scheduled(run.recurring_run_id, endpoint, source)
