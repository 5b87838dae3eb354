"""Roll the query-tower Deployment onto a newly published bundle and wait until it serves it.

After `publish` switched `bundles/CURRENT`, `rollout(version, cfg)` patches the Deployment's pod template with
the annotation `ebr.io/bundle-version: <version>`. A changed pod template is a rolling restart: the new pods
load the new CURRENT at start (needed with `bundles.source: objectStore` without the sync sidecar, where a
running pod never sees a new bundle), and the Deployment's rolling-update settings keep serving capacity.
It then polls the Deployment (and its pods) until every replica is updated, ready and annotated with the
version, or raises `RolloutError` after `timeout_s`.

The Kubernetes API is reached with the `kubernetes` client: the in-cluster service account when running in a
pod (a pipeline step), else a kubeconfig (`kubeconfig` or $KUBECONFIG / ~/.kube/config). The service account
needs get/patch on the Deployment and list on pods in the serving namespace (docs/deploy.md, "Rollout").
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from ebr.settings import Section

VERSION_ANNOTATION = "ebr.io/bundle-version"
RESTARTED_ANNOTATION = "ebr.io/rolled-out-at"


class RolloutConfig(Section):
    """Where the query-tower Deployment is and how long to wait for it; off by default."""

    enabled: bool = Field(False, description="roll the query-tower Deployment after a publish")
    mode: Literal["annotate"] = Field(
        "annotate",
        description="annotate: patch the pod template with ebr.io/bundle-version (a rolling restart)",
    )
    namespace: str = Field("search", min_length=1, description="namespace of the query-tower Deployment")
    deployment: str = Field("query-tower", min_length=1, description="name of the query-tower Deployment")
    kubeconfig: str = Field(
        "", description="kubeconfig file; empty = in-cluster service account, else $KUBECONFIG / ~/.kube/config"
    )
    context: str = Field("", description="kubeconfig context; empty = the current context")
    timeout_s: float = Field(600.0, gt=0, description="give up waiting for the rollout after this many seconds")
    poll_interval_s: float = Field(5.0, gt=0, description="seconds between two status polls")
    request_timeout_s: float = Field(30.0, gt=0, description="timeout of one Kubernetes API request")
    check_pods: bool = Field(
        True, description="also require the ready pods to carry the version annotation (needs list on pods)"
    )


class RolloutError(RuntimeError):
    """The rollout could not be started or did not finish in time; the message says what to do."""


def api_client(cfg: RolloutConfig):
    """An ApiClient from the in-cluster service account or a kubeconfig (see RolloutConfig.kubeconfig)."""
    from kubernetes import client, config

    conf = client.Configuration()
    path = cfg.kubeconfig or None
    if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=conf)
            return client.ApiClient(conf)
        except config.ConfigException:
            pass  # a pod without a mounted token: fall back to a kubeconfig
    try:
        config.load_kube_config(config_file=path, context=cfg.context or None, client_configuration=conf)
    except (config.ConfigException, OSError) as e:
        where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise RolloutError(f"no Kubernetes credentials: not in a cluster and kubeconfig {where} "
                           f"could not be loaded ({e})") from e
    return client.ApiClient(conf)


def _status_message(e) -> str:
    try:
        return json.loads(e.body).get("message") or e.reason
    except (TypeError, ValueError, AttributeError):
        return str(getattr(e, "reason", e))


def _api_error(e, cfg: RolloutConfig, verb: str, resource: str) -> RolloutError:
    ns, name = cfg.namespace, cfg.deployment
    detail = _status_message(e)
    if e.status == 403:
        return RolloutError(
            f"forbidden: the pipeline's service account cannot {verb} {resource} in {ns}; grant it a Role with "
            f"get/patch on deployments and list on pods in {ns} (helm value rollout.rbac.create=true, "
            f"see docs/deploy.md, Rollout) [{detail}]")
    if e.status == 404:
        return RolloutError(f"deployment {ns}/{name} not found (rollout.namespace / rollout.deployment) [{detail}]")
    return RolloutError(f"deployment {ns}/{name}: {verb} {resource} failed with HTTP {e.status}: {detail}")


def _pods_on_version(core, cfg: RolloutConfig, selector: dict[str, str], version: str) -> tuple[int, int]:
    """(ready pods annotated with `version`, ready pods) among the Deployment's pods not being deleted."""
    from kubernetes.client.exceptions import ApiException

    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    try:
        pods = core.list_namespaced_pod(cfg.namespace, label_selector=label_selector,
                                        _request_timeout=cfg.request_timeout_s)
    except ApiException as e:
        raise _api_error(e, cfg, "list", "pods") from e
    on_version = ready = 0
    for pod in pods.items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        conditions = (pod.status.conditions if pod.status else None) or []
        if not any(c.type == "Ready" and c.status == "True" for c in conditions):
            continue
        ready += 1
        if (pod.metadata.annotations or {}).get(VERSION_ANNOTATION) == version:
            on_version += 1
    return on_version, ready


def rollout(bundle_version: str, cfg: RolloutConfig, *, clock=time.monotonic, sleep=time.sleep) -> dict[str, Any]:
    """Patch the Deployment's pod template with the bundle version and wait until all replicas serve it.

    Returns the outcome (namespace, deployment, version, replicas, ready, updated, waited_s, polls). Raises
    RolloutError on 403/404 and when the rollout is not complete after `cfg.timeout_s`."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if not bundle_version:
        raise RolloutError("rollout needs a bundle version")
    ns, name = cfg.namespace, cfg.deployment
    api = api_client(cfg)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    body = {"spec": {"template": {"metadata": {"annotations": {
        VERSION_ANNOTATION: bundle_version,
        RESTARTED_ANNOTATION: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }}}}}
    t0 = clock()
    try:
        patched = apps.patch_namespaced_deployment(name, ns, body, _request_timeout=cfg.request_timeout_s)
    except ApiException as e:
        raise _api_error(e, cfg, "patch", "deployments") from e
    except HTTPError as e:
        raise RolloutError(f"deployment {ns}/{name}: Kubernetes API server unreachable: {e}") from e
    selector = dict(patched.spec.selector.match_labels or {})

    polls = 0
    state: dict[str, Any] = {}
    while True:
        polls += 1
        try:
            dep = apps.read_namespaced_deployment(name, ns, _request_timeout=cfg.request_timeout_s)
        except ApiException as e:
            raise _api_error(e, cfg, "get", "deployments") from e
        except HTTPError as e:
            raise RolloutError(f"deployment {ns}/{name}: Kubernetes API server unreachable: {e}") from e
        st = dep.status
        want = dep.spec.replicas if dep.spec.replicas is not None else 1
        state = {
            "replicas": want,
            "updated": st.updated_replicas or 0,
            "ready": st.ready_replicas or 0,
            "current": st.replicas or 0,
            "observed_generation": st.observed_generation or 0,
            "generation": dep.metadata.generation or 0,
        }
        done = (state["observed_generation"] >= state["generation"] and state["updated"] == want
                and state["ready"] == want and state["current"] == want)
        if done and cfg.check_pods and selector:
            state["on_version"], _ = _pods_on_version(core, cfg, selector, bundle_version)
            done = state["on_version"] >= want
        waited = clock() - t0
        if done:
            return {"namespace": ns, "deployment": name, "bundle_version": bundle_version, "mode": cfg.mode,
                    **state, "waited_s": round(waited, 3), "polls": polls}
        if waited >= cfg.timeout_s:
            ready = min(state["ready"], state["updated"], state.get("on_version", state["updated"]))
            raise RolloutError(
                f"deployment {ns}/{name}: {ready}/{want} replicas ready on bundle {bundle_version} after "
                f"{cfg.timeout_s:g} s (updated {state['updated']}, ready {state['ready']}, "
                f"observed generation {state['observed_generation']}/{state['generation']}); "
                f"see `kubectl -n {ns} rollout status deployment/{name}`")
        sleep(min(cfg.poll_interval_s, cfg.timeout_s - waited))
