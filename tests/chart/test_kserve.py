"""`kserve.enabled`: the chart renders a KServe InferenceService (serving.kserve.io/v1beta1) instead of the
Deployment, the Service and the HPA, with the server container and pod spec of the Deployment.

No cluster, no KServe controller and no Knative run here: the InferenceService is checked against a JSON schema
of the CRD's v1beta1 fields (tests/chart/kserve_inferenceservice_schema.py, written down from KServe's API), and
its inlined PodSpec (containers included) with kubernetes-validate wrapped into a Pod. What KServe's and
Knative's admission webhooks refuse beyond the schema (scale metric of the mode, Knative's disallowed fields,
reserved ports) is checked by the chart when rendering, and tested here as render failures. Whether KServe
reconciles the InferenceService into ready pods needs a real cluster.
"""

from __future__ import annotations

import copy
import hashlib
import re

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from tests.chart.kserve_inferenceservice_schema import (
    API_VERSION,
    COMPONENT_EXTENSION_FIELDS,
    DEPLOYMENT_MODE_ANNOTATION,
    INFERENCE_SERVICE_SCHEMA,
    POD_SPEC_FIELDS,
    as_pod,
)
from tests.chart.manifests import ALL_ON, ALL_ON_GCS, CHART_DIR, KUBE_VERSION, NAMESPACE, RELEASE, deep_merge, render

FULLNAME = f"{RELEASE}-query-tower"
SERVERLESS = {"kserve": {"enabled": True}}
RAW = {"kserve": {"enabled": True, "deploymentMode": "RawDeployment", "scaleMetric": "cpu", "scaleTarget": 70}}
MODES = {"serverless": SERVERLESS, "raw": RAW}
# Every option of the chart that still applies with KServe (ALL_ON without the Ingress, the HPA and the
# ServiceMonitor, which point at the Deployment or its Service and are refused with kserve.enabled).
NOT_WITH_KSERVE = {"ingress": {"enabled": False}, "autoscaling": {"enabled": False},
                   "metrics": {"serviceMonitor": {"enabled": False}}}
BASES = {
    "defaults": {},
    "all-on-s3": deep_merge(ALL_ON, NOT_WITH_KSERVE),
    "all-on-gcs": deep_merge(ALL_ON_GCS, NOT_WITH_KSERVE),
    "pvc-subpath-no-prestop": {"bundles": {"pvc": {"claimName": "shared", "subPath": "ebr/bundles"}},
                               "preStopSleepSeconds": 0, "adminToken": {"existingSecret": "ebr-admin"}},
}
# Knative's queue-proxy and its metrics own these ports in the pod (knative.dev/serving, k8s_validation.go).
KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091}

_cache: dict[tuple[str, str], object] = {}


def _render(chart, base: str, mode: str | None):
    """Render BASES[base] with KServe in `mode` (None: KServe off, the Deployment), cached per module."""
    key = (base, mode or "off")
    if key not in _cache:
        values = BASES[base] if mode is None else deep_merge(BASES[base], MODES[mode])
        _cache[key] = render(chart, values)
    return _cache[key]


def _predictor(rendered) -> dict:
    return rendered.one("InferenceService")["spec"]["predictor"]


def _container(spec: dict, name: str) -> dict:
    (container,) = [c for c in spec["containers"] if c["name"] == name]
    return container


def _kserve_form(deployment_pod_spec: dict, *, knative: bool) -> dict:
    """The Deployment's pod spec as the chart documents it for the predictor: container `server` becomes
    `kserve-container`, its port `http` becomes `http1` (probes included) and, on Knative, `lifecycle` and
    `terminationGracePeriodSeconds` are left out (Knative refuses them). Nothing else may differ."""
    spec = copy.deepcopy(deployment_pod_spec)
    if knative:
        spec.pop("terminationGracePeriodSeconds", None)
    server = _container(spec, "server")
    server["name"] = "kserve-container"
    for port in server["ports"]:
        assert port["name"] == "http"
        port["name"] = "http1"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["port"] == "http"
        server[probe]["httpGet"]["port"] = "http1"
    if knative:
        server.pop("lifecycle", None)
    return spec


# ---- what renders ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("base", ["defaults", "all-on-s3"])
def test_one_inference_service_replaces_deployment_service_and_hpa(chart, base, mode):
    r = _render(chart, base, mode)
    assert len(r.of_kind("InferenceService")) == 1
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"):
        assert r.of_kind(kind) == [], kind
    expected = {"ConfigMap", "InferenceService", "Pod", "Secret", "ServiceAccount"}
    if mode == "raw":
        expected.add("NetworkPolicy")
    if base == "all-on-s3":
        expected.add("PodDisruptionBudget")
    assert set(r.kinds()) == expected
    isvc = r.one("InferenceService")
    assert isvc["apiVersion"] == API_VERSION
    assert isvc["metadata"]["name"] == FULLNAME


def test_off_by_default(default_render, all_on_render):
    assert default_render.of_kind("InferenceService") == []
    assert all_on_render.of_kind("InferenceService") == []
    assert default_render.text("inferenceservice.yaml").strip() == ""


# ---- one definition of the container and the pod --------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("base", list(BASES))
def test_predictor_container_equals_the_deployment_container(chart, base, mode):
    """Same values, KServe off and on: the server container is the same one, field by field."""
    deployment = _render(chart, base, None).container("server")
    predictor = _container(_predictor(_render(chart, base, mode)), "kserve-container")
    for field in ("image", "imagePullPolicy", "args", "env", "envFrom", "resources", "securityContext",
                  "volumeMounts"):
        assert predictor[field] == deployment[field], field
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        expected = copy.deepcopy(deployment[probe])
        expected["httpGet"]["port"] = "http1"  # the container port's name under KServe
        assert predictor[probe] == expected, probe
    assert predictor["ports"] == [{"name": "http1", "containerPort": deployment["ports"][0]["containerPort"],
                                   "protocol": "TCP"}]
    if mode == "raw":
        assert predictor.get("lifecycle") == deployment.get("lifecycle")
    else:
        assert "lifecycle" not in predictor, "Knative refuses lifecycle and installs its own drain hook"


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("base", list(BASES))
def test_predictor_pod_spec_equals_the_deployment_pod_spec(chart, base, mode):
    """The whole pod (init container, sidecar, volumes, identity, security context, scheduling) too, and the
    pod labels and annotations, up to the documented KServe/Knative differences (_kserve_form)."""
    deployment = _render(chart, base, None).deployment["spec"]["template"]
    predictor = _predictor(_render(chart, base, mode))
    pod_fields = {k: v for k, v in predictor.items() if k in POD_SPEC_FIELDS}
    assert pod_fields == _kserve_form(deployment["spec"], knative=mode == "serverless")
    assert predictor["labels"] == deployment["metadata"]["labels"]
    assert predictor["annotations"] == deployment["metadata"]["annotations"]


def test_the_container_and_pod_spec_are_written_once():
    """The Deployment and the InferenceService both include the pod spec from _helpers.tpl; no template
    spells the server container or the pod spec out by itself."""
    templates = {p.relative_to(CHART_DIR / "templates").as_posix(): p.read_text()
                 for p in (CHART_DIR / "templates").rglob("*") if p.is_file()}
    assert '{{- include "query-tower.podSpec" . | nindent 6 }}' in templates["deployment.yaml"]
    assert '{{- include "query-tower.podSpec" . | nindent 4 }}' in templates["inferenceservice.yaml"]
    for marker in ("readinessProbe:", "livenessProbe:", "startupProbe:", "--bundles", "envFrom:",
                   "volumeMounts:", "initContainers:", "topologySpreadConstraints:", "checksum/config:"):
        where = {name: text.count(marker) for name, text in templates.items() if marker in text}
        assert list(where) == ["_helpers.tpl"], (marker, where)


# ---- the InferenceService against the v1beta1 API ---------------------------------------------------------------


def _validate_inference_service(isvc: dict) -> None:
    jsonschema.Draft7Validator(INFERENCE_SERVICE_SCHEMA).validate(isvc)
    predictor = isvc["spec"]["predictor"]
    # The inlined PodSpec, every container as a core/v1 Container, in strict mode (unknown fields are errors).
    assert kubernetes_validate.validate(as_pod(predictor), KUBE_VERSION, strict=True) == "1.30"
    # KServe's webhook: minReplicas may not exceed maxReplicas (unless maxReplicas is 0, i.e. unset).
    if predictor.get("maxReplicas"):
        assert predictor.get("minReplicas", 1) <= predictor["maxReplicas"]


def test_the_schema_itself_is_valid_draft7():
    jsonschema.Draft7Validator.check_schema(INFERENCE_SERVICE_SCHEMA)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("base", list(BASES))
def test_inference_service_matches_the_v1beta1_schema(chart, base, mode):
    r = _render(chart, base, mode)
    isvc = r.one("InferenceService")
    _validate_inference_service(isvc)
    # Only the component-extension fields and the PodSpec are used: no model-server implementation, no storage.
    assert set(isvc["spec"]["predictor"]) <= set(COMPONENT_EXTENSION_FIELDS) | set(POD_SPEC_FIELDS)
    # The other objects still pass the Kubernetes 1.30 schemas in strict mode.
    for m in r.manifests:
        if m.doc["kind"] != "InferenceService":
            assert kubernetes_validate.validate(m.doc, KUBE_VERSION, strict=True) == "1.30", m.template


BROKEN = [
    ("unknown scale metric", lambda i: i["spec"]["predictor"].update(scaleMetric="foo"), "'foo' is not one of"),
    ("misspelt predictor field", lambda i: i["spec"]["predictor"].update(replicas=3), "'replicas' was unexpected"),
    ("scale target as text", lambda i: i["spec"]["predictor"].update(scaleTarget="16"), "is not of type 'integer'"),
    ("negative min replicas", lambda i: i["spec"]["predictor"].update(minReplicas=-1), "less than the minimum"),
    ("negative container concurrency", lambda i: i["spec"]["predictor"].update(containerConcurrency=-1),
     "less than the minimum"),
    ("unknown deployment mode", lambda i: i["metadata"]["annotations"].update(
        {DEPLOYMENT_MODE_ANNOTATION: "Kubernetes"}), "'Kubernetes' is not one of"),
    ("name not a DNS-1035 label", lambda i: i["metadata"].update(name="1-query-tower"), "does not match"),
    ("wrong API group", lambda i: i.update(apiVersion="serving.knative.dev/v1"), "was expected"),
    ("no predictor", lambda i: i["spec"].pop("predictor"), "'predictor' is a required property"),
    ("status in a manifest", lambda i: i.update(status={}), "'status' was unexpected"),
]


@pytest.mark.parametrize(("breaks", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_the_schema_rejects_a_broken_inference_service(chart, breaks, message):
    """The schema is real: one wrong field in the rendered manifest is rejected."""
    isvc = copy.deepcopy(_render(chart, "defaults", "serverless").one("InferenceService"))
    breaks(isvc)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        jsonschema.Draft7Validator(INFERENCE_SERVICE_SCHEMA).validate(isvc)


def test_a_broken_container_is_rejected_through_the_pod_wrapper(chart):
    isvc = copy.deepcopy(_render(chart, "defaults", "serverless").one("InferenceService"))
    container = _container(isvc["spec"]["predictor"], "kserve-container")
    container["readinessprobe"] = container.pop("readinessProbe")
    jsonschema.Draft7Validator(INFERENCE_SERVICE_SCHEMA).validate(isvc)  # containers are only typed there ...
    with pytest.raises(kubernetes_validate.ValidationError):  # ... and checked field by field as a Pod
        kubernetes_validate.validate(as_pod(isvc["spec"]["predictor"]), KUBE_VERSION, strict=True)


# ---- predictor settings -------------------------------------------------------------------------------------------


def test_serverless_defaults_scale_on_concurrency(chart):
    r = _render(chart, "defaults", "serverless")
    isvc = r.one("InferenceService")
    assert isvc["metadata"]["annotations"] == {DEPLOYMENT_MODE_ANNOTATION: "Serverless"}
    predictor = isvc["spec"]["predictor"]
    assert {k: predictor[k] for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")} == {
        "minReplicas": 2, "maxReplicas": 10, "scaleMetric": "concurrency", "scaleTarget": 16}
    assert "containerConcurrency" not in predictor, "0 leaves it unset (no hard limit)"
    assert "deploymentStrategy" not in predictor, "KServe refuses deploymentStrategy on Knative"
    # A default pod admits searchWorkers + maxQueue = 33 searches before shedding: the target stays below.
    cm = r.server_config_map["data"]
    assert predictor["scaleTarget"] < int(cm["EBR_SEARCH_WORKERS"]) + int(cm["EBR_MAX_QUEUE"])


def test_knative_accepts_the_predictor_pod(chart):
    """The rules of Knative Serving's webhook (fieldmask.go, k8s_validation.go) the chart follows."""
    for base in BASES:
        predictor = _predictor(_render(chart, base, "serverless"))
        assert "terminationGracePeriodSeconds" not in predictor
        with_ports = [c for c in predictor["containers"] if c.get("ports")]
        assert [c["name"] for c in with_ports] == ["kserve-container"], "exactly one container serves"
        (port,) = with_ports[0]["ports"]
        assert port["name"] in {"http1", "h2c"} and port["containerPort"] not in KNATIVE_RESERVED_PORTS
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert with_ports[0][probe]["httpGet"]["port"] == port["name"], "probe port must match"
        for c in predictor["containers"] + predictor.get("initContainers", []):
            assert "lifecycle" not in c, c["name"]
            assert c["securityContext"]["privileged"] is False, "only privileged: false is allowed"
        assert predictor["automountServiceAccountToken"] is False, "only false is allowed"
        volumes = {v["name"]: v for v in predictor["volumes"]}
        for m in _container(predictor, "kserve-container")["volumeMounts"]:
            if "configMap" in volumes[m["name"]]:
                assert m["readOnly"] is True, "configMap volumes must be mounted read-only"


def test_raw_deployment_rolls_out_like_the_deployment(chart):
    deployment = _render(chart, "defaults", None).deployment
    isvc = _render(chart, "defaults", "raw").one("InferenceService")
    assert isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] == "RawDeployment"
    predictor = isvc["spec"]["predictor"]
    assert predictor["deploymentStrategy"] == deployment["spec"]["strategy"]
    assert predictor["scaleMetric"] == "cpu" and predictor["scaleTarget"] == 70
    assert predictor["terminationGracePeriodSeconds"] == 30
    assert _container(predictor, "kserve-container")["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]


@pytest.mark.parametrize(("mode", "like"), [("Knative", "serverless"), ("Standard", "raw")])
def test_newer_mode_names_behave_like_the_old_ones(chart, mode, like):
    values = deep_merge(MODES[like], {"kserve": {"deploymentMode": mode}})
    r = render(chart, values)
    isvc = r.one("InferenceService")
    assert isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] == mode
    _validate_inference_service(isvc)
    assert ("deploymentStrategy" in isvc["spec"]["predictor"]) == (like == "raw")
    assert bool(r.of_kind("NetworkPolicy")) == (like == "raw")


def test_values_reach_the_predictor(chart):
    r = render(chart, deep_merge(SERVERLESS, {"kserve": {
        "minReplicas": 3, "maxReplicas": 30, "scaleMetric": "rps", "scaleTarget": 200, "containerConcurrency": 33,
        "annotations": {"networking.kserve.io/visibility": "cluster-local"}, "labels": {"team": "search"}}}))
    isvc = r.one("InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (3, 30)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("rps", 200)
    assert predictor["containerConcurrency"] == 33
    assert isvc["metadata"]["annotations"] == {DEPLOYMENT_MODE_ANNOTATION: "Serverless",
                                               "networking.kserve.io/visibility": "cluster-local"}
    assert isvc["metadata"]["labels"]["team"] == "search"
    assert "team" not in predictor["labels"], "InferenceService labels, not pod labels"
    _validate_inference_service(isvc)


# ---- the objects around it --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_config_map_secret_and_service_account_are_wired_to_the_predictor(chart, mode):
    r = _render(chart, "all-on-s3", mode)
    predictor = _predictor(r)
    server = _container(predictor, "kserve-container")
    assert server["envFrom"] == [{"configMapRef": {"name": r.one("ConfigMap")["metadata"]["name"]}}]
    secret = r.one("Secret")
    ref = {e["name"]: e for e in server["env"]}["EBR_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "admin-token"}
    assert predictor["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]
    assert "s3cr3t-admin-token" not in r.text("inferenceservice.yaml")
    expected = hashlib.sha256(r.text("configmap.yaml").encode()).hexdigest()
    assert predictor["annotations"]["checksum/config"] == expected, "a config change rolls the predictor"


@pytest.mark.parametrize("mode", list(MODES))
def test_selectors_of_pdb_spread_and_network_policy_match_the_predictor_pods(chart, mode):
    r = _render(chart, "all-on-s3", mode)
    predictor = _predictor(r)
    pod_labels = predictor["labels"]
    pdb = r.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= pod_labels.items()
    (tsc,) = predictor["topologySpreadConstraints"]
    assert tsc["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    test_pod_labels = r.one("Pod")["metadata"]["labels"]
    assert not pdb.items() <= test_pod_labels.items()
    if mode == "raw":
        policy = r.one("NetworkPolicy")["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["ingress"][0]["ports"] == [{"port": "http1", "protocol": "TCP"}]
        peers = [p["podSelector"]["matchLabels"] for p in policy["ingress"][0]["from"] if "podSelector" in p]
        assert any(p.items() <= test_pod_labels.items() for p in peers), "helm test can reach /readyz"
    else:
        assert r.of_kind("NetworkPolicy") == [], "on Knative the activator and queue-proxy carry the requests"
        assert "NetworkPolicy: not rendered on Knative" in r.notes


@pytest.mark.parametrize("mode", list(MODES))
def test_helm_test_pod_and_notes_use_the_predictor(chart, mode):
    r = _render(chart, "defaults", mode)
    (c,) = r.one("Pod")["spec"]["containers"]
    assert c["args"][-1] == f"http://{FULLNAME}-predictor.{NAMESPACE}.svc.cluster.local/readyz"
    notes = r.notes
    assert f"KServe InferenceService {FULLNAME}" in notes
    assert f"wait --for=condition=Ready inferenceservice/{FULLNAME}" in notes
    assert "rollout status deployment/" not in notes and "port-forward service/" not in notes
    assert "Autoscaling (KServe): 2..10 replicas" in notes


# ---- refused combinations ----------------------------------------------------------------------------------------

REFUSED = [
    ("raw with concurrency", {"kserve": {"deploymentMode": "RawDeployment"}}, "needs deploymentMode Serverless"),
    ("serverless with cpu", {"kserve": {"scaleMetric": "cpu"}}, "needs deploymentMode RawDeployment"),
    ("raw cpu above 100%", deep_merge(RAW, {"kserve": {"scaleTarget": 150}}), "1 to 100"),
    ("raw with containerConcurrency", deep_merge(RAW, {"kserve": {"containerConcurrency": 8}}),
     "containerConcurrency is a Knative setting"),
    ("target above what a pod admits", {"kserve": {"scaleTarget": 40}}, "exceeds what a pod admits"),
    ("min above max", {"kserve": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed"),
    ("port reserved by Knative", {"server": {"port": 9090}}, "reserved by Knative"),
    ("mode in annotations", {"kserve": {"annotations": {DEPLOYMENT_MODE_ANNOTATION: "RawDeployment"}}},
     "kserve.deploymentMode"),
    ("name not a DNS-1035 label", {"fullnameOverride": "1qt"}, "starts with a letter"),
    ("ingress", {"ingress": {"enabled": True}}, "ingress.enabled cannot be combined"),
    ("hpa", {"autoscaling": {"enabled": True}}, "autoscaling.enabled (the HPA of the Deployment)"),
    ("service monitor", {"metrics": {"serviceMonitor": {"enabled": True}}}, "metrics.serviceMonitor.enabled"),
    ("rollout rbac", {"rollout": {"rbac": {"create": True}}}, "rollout.rbac.create"),
    ("bundle source checks still apply", {"bundles": {"pvc": {"claimName": ""}}}, "claimName is required"),
]


@pytest.mark.parametrize(("values", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_combinations_fail_with_a_message(chart, values, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render(chart, deep_merge(SERVERLESS, values))


def test_knative_reserved_port_is_fine_in_raw_deployment(chart):
    predictor = _predictor(render(chart, deep_merge(RAW, {"server": {"port": 9090}})))
    assert _container(predictor, "kserve-container")["ports"][0]["containerPort"] == 9090


# ---- helm lint and values.schema.json --------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["defaults", "all-on-s3"])
@pytest.mark.parametrize("mode", list(MODES))
def test_lint_with_kserve_has_no_errors_or_warnings(base, mode):
    from tests.chart.test_chart_lint import WARNING, _lint

    report = _lint(deep_merge(BASES[base], MODES[mode]), strict=True)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= WARNING] == []


def test_lint_reports_a_bad_kserve_value():
    from tests.chart.test_chart_lint import ERROR, _lint

    report = _lint({"kserve": {"enabled": True, "scaleMetric": "foo"}})
    errors = [m for m in report["messages"] if m["severity"] == ERROR]
    assert any("/kserve/scaleMetric" in m["error"] for m in errors), report


BAD_VALUES = [
    ("unknown scale metric", {"scaleMetric": "foo"}, "/kserve/scaleMetric", "concurrency"),
    ("unknown deployment mode", {"deploymentMode": "Kubernetes"}, "/kserve/deploymentMode", "Serverless"),
    ("negative min replicas", {"minReplicas": -1}, "/kserve/minReplicas", "minimum"),
    ("max replicas 0", {"maxReplicas": 0}, "/kserve/maxReplicas", "minimum"),
    ("scale target 0", {"scaleTarget": 0}, "/kserve/scaleTarget", "minimum"),
    ("scale target as text", {"scaleTarget": "16"}, "/kserve/scaleTarget", "want integer"),
    ("container concurrency above Knative's maximum", {"containerConcurrency": 2000},
     "/kserve/containerConcurrency", "maximum"),
    ("enabled as text", {"enabled": "yes"}, "/kserve/enabled", "want boolean"),
    ("typo", {"enable": True}, "/kserve", "'enable' not allowed"),
    ("annotation value not a string", {"annotations": {"a": 1}}, "/kserve/annotations/a", "want string"),
]


@pytest.mark.parametrize(("values", "field", "detail"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_values_schema_rejects_bad_kserve_values(chart, values, field, detail):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(chart.merge_values({"kserve": values}))
    message = str(err.value)
    assert field in message
    assert detail in message


def test_values_schema_accepts_every_mode_and_metric(chart):
    for mode in ("Serverless", "RawDeployment", "Knative", "Standard"):
        for metric in ("concurrency", "rps", "cpu", "memory"):
            chart.validate_schema(chart.merge_values({"kserve": {"deploymentMode": mode, "scaleMetric": metric}}))
