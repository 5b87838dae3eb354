"""What the chart renders (real Helm engine, offline): probes, hardening, wiring between the objects."""

from __future__ import annotations

import base64
import hashlib

import helm_python
import pytest

from tests.chart.manifests import ALL_ON, ALL_ON_GCS, NAMESPACE, RELEASE, render

FULLNAME = f"{RELEASE}-query-tower"


def _selector(rendered) -> dict[str, str]:
    return rendered.deployment["spec"]["selector"]["matchLabels"]


def _pod_labels(rendered) -> dict[str, str]:
    return rendered.deployment["spec"]["template"]["metadata"]["labels"]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _all_containers(rendered) -> list[dict]:
    spec = rendered.pod_spec
    return spec.get("initContainers", []) + spec["containers"]


def _env(container) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ---- probes and ports -------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["default_render", "all_on_render"])
def test_probes_hit_health_endpoints_on_the_named_port(request, fixture):
    server = request.getfixturevalue(fixture).container("server")
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_startup_probe_allows_slow_bundle_loading(default_render):
    startup = default_render.container("server")["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_custom_port_flows_to_container_args_config_and_probes(chart):
    r = render(chart, {"server": {"port": 9090}, "service": {"port": 80}})
    server = r.container("server")
    assert server["ports"][0]["containerPort"] == 9090
    args = server["args"]
    assert args[args.index("--port") + 1] == "9090"
    assert r.server_config_map["data"]["EBR_PORT"] == "9090"
    svc = r.one("Service")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    test_pod = r.one("Pod")
    assert test_pod["spec"]["containers"][0]["args"][-1] == f"http://{FULLNAME}:80/readyz"


def test_server_args_run_ebr_serve_on_all_interfaces(default_render):
    args = default_render.container("server")["args"]
    assert args[0] == "serve"
    assert args[args.index("--bundles") + 1] == "/bundles"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert "--feature-repo" not in args, "EBR_FEATURE_REPO (ConfigMap) names the feature store"
    assert "command" not in default_render.container("server"), "the image's ENTRYPOINT (ebr) is kept"


# ---- security -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["default_render", "all_on_render"])
def test_pod_and_every_container_are_hardened(request, fixture):
    r = request.getfixturevalue(fixture)
    pod_sc = r.pod_spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert r.pod_spec["automountServiceAccountToken"] is False
    containers = _all_containers(r)
    assert len(containers) == (1 if fixture == "default_render" else 3)
    for c in containers:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["privileged"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert sc["runAsUser"] > 0, c["name"]
        # resources are bounded
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        assert set(c["resources"]["limits"]) >= {"cpu", "memory"}, c["name"]
        # a writable /tmp on the read-only root filesystem
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts["/tmp"] == "tmp", c["name"]
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert "emptyDir" in volumes["tmp"] and volumes["tmp"]["emptyDir"]["sizeLimit"]


def test_run_as_user_follows_values(chart):
    r = render(chart, {"securityContext": {"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 3000}})
    assert r.pod_spec["securityContext"]["runAsUser"] == 2000
    assert r.container("server")["securityContext"]["runAsGroup"] == 3000


def test_test_pod_is_hardened_and_not_selected_by_the_service(default_render):
    pod = default_render.one("Pod")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] > 0
    c = pod["spec"]["containers"][0]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    svc_selector = default_render.one("Service")["spec"]["selector"]
    assert not _matches(svc_selector, pod["metadata"]["labels"])


# ---- wiring between objects ----------------------------------------------------------------------------


def test_service_selects_the_pods_on_the_named_port(default_render):
    svc = default_render.one("Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == _selector(default_render)
    assert _matches(svc["spec"]["selector"], _pod_labels(default_render))
    assert svc["spec"]["ports"][0]["name"] == "http"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_hpa_targets_the_deployment_and_owns_the_replica_count(all_on_render, default_render):
    hpa = all_on_render.one("HorizontalPodAutoscaler")
    dep = all_on_render.deployment
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": dep["apiVersion"], "kind": "Deployment", "name": dep["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] == 12
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource",
         "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    assert "replicas" not in dep["spec"], "with an HPA the Deployment must not pin replicas"
    assert default_render.deployment["spec"]["replicas"] == 2
    # CPU utilization is measured against the request: there must be one
    assert all_on_render.container("server")["resources"]["requests"]["cpu"]


def test_hpa_rejects_min_above_max(chart):
    with pytest.raises(helm_python.HelmRenderError, match="minReplicas must not exceed"):
        render(chart, {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}})


def test_pdb_selector_matches_the_pods(all_on_render):
    pdb = all_on_render.one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == _selector(all_on_render)
    assert _matches(pdb["spec"]["selector"]["matchLabels"], _pod_labels(all_on_render))
    assert not _matches(pdb["spec"]["selector"]["matchLabels"], all_on_render.one("Pod")["metadata"]["labels"])
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]


def test_pdb_max_unavailable_replaces_min_available(chart):
    r = render(chart, {"podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"}})
    spec = r.one("PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == "25%" and "minAvailable" not in spec


def test_topology_spread_selects_the_pods(all_on_render, default_render):
    (tsc,) = all_on_render.pod_spec["topologySpreadConstraints"]
    assert tsc["labelSelector"]["matchLabels"] == _selector(all_on_render)
    assert tsc["topologyKey"] == "topology.kubernetes.io/zone"
    assert tsc["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topologySpreadConstraints" not in default_render.pod_spec


def test_config_map_feeds_the_server_env(default_render):
    cm = default_render.server_config_map
    assert cm["data"] == {
        "EBR_BUNDLES_DIR": "/bundles",
        "EBR_PORT": "8080",
        "EBR_LOG_LEVEL": "INFO",
        "EBR_WATCH_INTERVAL_S": "5",
        "EBR_MAX_QUERY_CHARS": "256",
        "EBR_SEARCH_WORKERS": "1",
        "EBR_MAX_QUEUE": "32",
        "EBR_ENABLE_DOCS": "false",
        "EBR_RETRIEVAL": "auto",
        "EBR_FUSION": "weighted",
        "EBR_LEXICAL_WEIGHT": "",
        "EBR_RELAX": "false",
        "EBR_FEATURE_REPO": "/etc/ebr/feature-store",
    }
    server = default_render.container("server")
    assert server["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]


def test_retrieval_values_reach_the_server_settings(chart, default_render):
    from serving.settings import ServerSettings

    default = ServerSettings.resolve({}, env=default_render.server_config_map["data"])
    assert (default.retrieval, default.fusion, default.lexical_weight, default.relax) == ("auto", "weighted", None,
                                                                                          False)
    r = render(chart, {"server": {"retrieval": {"mode": "hybrid", "fusion": "rrf", "lexicalWeight": 1.5,
                                                "relax": True}}})
    got = ServerSettings.resolve({}, env=r.server_config_map["data"])
    assert (got.retrieval, got.fusion, got.lexical_weight, got.relax) == ("hybrid", "rrf", 1.5, True)


def test_service_account_is_used_by_the_pods(default_render, chart):
    sa = default_render.one("ServiceAccount")
    assert default_render.pod_spec["serviceAccountName"] == sa["metadata"]["name"] == FULLNAME
    assert sa["automountServiceAccountToken"] is False
    r = render(chart, {"serviceAccount": {"create": False, "name": "search-sa"}})
    assert r.of_kind("ServiceAccount") == []
    assert r.pod_spec["serviceAccountName"] == "search-sa"


# ---- admin token --------------------------------------------------------------------------------------


def test_chart_created_secret_is_referenced_by_admin_token_env(all_on_render):
    secret = all_on_render.one("Secret")
    ref = _env(all_on_render.container("server"))["EBR_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["data"]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "s3cr3t-admin-token"
    # the token never appears in clear text in the pod spec
    assert "s3cr3t-admin-token" not in all_on_render.text("deployment.yaml")


def test_generated_token_is_long_and_random(chart):
    tokens = set()
    for _ in range(2):
        secret = render(chart).one("Secret")
        tokens.add(base64.b64decode(secret["data"]["admin-token"]).decode())
    assert len(tokens) == 2
    assert all(len(t) >= 32 and t.isalnum() for t in tokens)


def test_existing_secret_is_referenced_and_not_created(chart):
    r = render(chart, {"adminToken": {"existingSecret": "ebr-admin", "secretKey": "token"}})
    assert r.of_kind("Secret") == []
    ref = _env(r.container("server"))["EBR_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "ebr-admin", "key": "token"}


def test_no_token_configured_means_no_admin_env(chart):
    r = render(chart, {"adminToken": {"create": False}})
    assert r.of_kind("Secret") == []
    assert "EBR_ADMIN_TOKEN" not in _env(r.container("server"))
    assert "/admin/reload is refused" in r.notes


# ---- rollouts -----------------------------------------------------------------------------------------


def _checksum(rendered) -> str:
    return rendered.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_config_checksum_is_the_hash_of_the_config_map(default_render):
    expected = hashlib.sha256(default_render.text("configmap.yaml").encode()).hexdigest()
    assert _checksum(default_render) == expected


def test_config_checksum_changes_with_server_config_only(chart, default_render):
    base = _checksum(default_render)
    assert _checksum(render(chart)) == base, "stable across renders"
    assert _checksum(render(chart, {"server": {"logLevel": "DEBUG"}})) != base
    assert _checksum(render(chart, {"server": {"maxQueryChars": 512}})) != base
    assert _checksum(render(chart, {"bundles": {"mountPath": "/data/bundles"}})) != base
    assert _checksum(render(chart, {"replicaCount": 7})) == base, "scaling does not restart pods"


def test_rolling_update_keeps_capacity(default_render):
    strategy = default_render.deployment["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    server = default_render.container("server")
    assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert default_render.pod_spec["terminationGracePeriodSeconds"] > 5


def test_prestop_hook_can_be_disabled(chart):
    assert "lifecycle" not in render(chart, {"preStopSleepSeconds": 0}).container("server")


# ---- image --------------------------------------------------------------------------------------------


def test_image_tag_defaults_to_app_version_and_digest_wins(chart, default_render, all_on_render):
    app_version = chart.metadata["appVersion"]
    assert default_render.container("server")["image"] == f"registry.example.com/ebr/query-tower:{app_version}"
    assert all_on_render.container("server")["image"] == "registry.example.com/ebr/query-tower@sha256:" + "ab" * 32
    assert all_on_render.container("server")["imagePullPolicy"] == "Always"
    assert all_on_render.pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
    r = render(chart, {"image": {"tag": "2026.11.02"}})
    assert r.container("server")["image"].endswith(":2026.11.02")


# ---- bundle volume ------------------------------------------------------------------------------------


def test_pvc_source_mounts_the_claim_read_only(default_render, chart):
    volumes = {v["name"]: v for v in default_render.pod_spec["volumes"]}
    assert volumes["bundles"]["persistentVolumeClaim"] == {"claimName": "ebr-bundles", "readOnly": True}
    mount = next(m for m in default_render.container("server")["volumeMounts"] if m["name"] == "bundles")
    assert mount == {"name": "bundles", "mountPath": "/bundles", "readOnly": True}
    assert "initContainers" not in default_render.pod_spec
    r = render(chart, {"bundles": {"pvc": {"claimName": "shared", "subPath": "ebr/bundles"}}})
    mount = next(m for m in r.container("server")["volumeMounts"] if m["name"] == "bundles")
    assert mount["subPath"] == "ebr/bundles"


def test_object_store_source_syncs_into_an_empty_dir(all_on_render):
    volumes = {v["name"]: v for v in all_on_render.pod_spec["volumes"]}
    assert volumes["bundles"] == {"name": "bundles", "emptyDir": {"sizeLimit": "20Gi"}}
    init = all_on_render.container("bundle-sync-init")
    sidecar = all_on_render.container("bundle-sync")
    assert [c["name"] for c in all_on_render.pod_spec["initContainers"]] == ["bundle-sync-init"]
    assert [c["name"] for c in all_on_render.pod_spec["containers"]] == ["server", "bundle-sync"]
    for c in (init, sidecar):
        assert c["image"] == "amazon/aws-cli:2.17.0"
        assert c["command"] == ["/bin/sh", "-ec"]
        env = _env(c)
        assert env["BUNDLES_URI"]["value"] == "s3://ebr-artifacts/bundles"
        assert env["S3_ENDPOINT"]["value"] == "http://minio.kubeflow:9000"
        assert env["AWS_REGION"]["value"] == "us-east-1"
        assert c["envFrom"] == [{"secretRef": {"name": "ebr-bundle-reader"}}]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "bundles")
        assert mount["mountPath"] == "/bundles" and not mount.get("readOnly")
    assert "while true" not in init["args"][0]
    assert "while true" in sidecar["args"][0]
    assert _env(sidecar)["SYNC_INTERVAL_S"]["value"] == "30"
    server_mount = next(m for m in all_on_render.container("server")["volumeMounts"] if m["name"] == "bundles")
    assert server_mount["readOnly"] is True


def test_object_store_without_sidecar_has_only_the_init_container(chart):
    r = render(chart, {"bundles": {"source": "objectStore", "objectStore": {"uri": "s3://b/p"}}})
    assert [c["name"] for c in r.pod_spec["containers"]] == ["server"]
    assert [c["name"] for c in r.pod_spec["initContainers"]] == ["bundle-sync-init"]
    assert "S3_ENDPOINT" not in _env(r.container("bundle-sync-init"))
    assert "once at pod start" in r.notes


def test_gcs_provider_uses_gcloud(chart):
    r = render(chart, ALL_ON_GCS)
    init = r.container("bundle-sync-init")
    assert init["image"] == "google/cloud-sdk:502.0.0-slim"
    assert "gcloud storage rsync" in init["args"][0] and "aws " not in init["args"][0]
    assert _env(init)["CLOUDSDK_CONFIG"]["value"] == "/tmp/gcloud"


def test_object_store_requires_a_uri(chart):
    with pytest.raises(helm_python.HelmRenderError, match="bundles.objectStore.uri is required"):
        render(chart, {"bundles": {"source": "objectStore"}})


def test_pvc_requires_a_claim_name(chart):
    with pytest.raises(helm_python.HelmRenderError, match="bundles.pvc.claimName is required"):
        render(chart, {"bundles": {"pvc": {"claimName": ""}}})


def test_feature_store_config_map_is_mounted_at_the_feature_repo(all_on_render):
    volumes = {v["name"]: v for v in all_on_render.pod_spec["volumes"]}
    assert volumes["feature-store"]["configMap"]["name"] == "ebr-feature-store"
    mount = next(m for m in all_on_render.container("server")["volumeMounts"] if m["name"] == "feature-store")
    assert mount == {"name": "feature-store", "mountPath": "/etc/ebr/feature-store", "readOnly": True}
    assert all_on_render.server_config_map["data"]["EBR_FEATURE_REPO"] == "/etc/ebr/feature-store"


# ---- optional objects ---------------------------------------------------------------------------------


def test_service_monitor_structure(all_on_render):
    """kubernetes-validate has no schema for this CRD: its structure is checked here by hand."""
    sm = all_on_render.one("ServiceMonitor")
    svc = all_on_render.one("Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    assert sm["metadata"]["name"] == FULLNAME
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert set(sm["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    assert _matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "scheme": "http", "interval": "30s",
                        "scrapeTimeout": "10s"}
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}


def test_ingress_routes_search_only_to_the_service(all_on_render):
    ing = all_on_render.one("Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    (rule,) = ing["spec"]["rules"]
    paths = rule["http"]["paths"]
    assert [p["path"] for p in paths] == ["/search"], "admin and metrics are not exposed"
    assert paths[0]["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    assert ing["spec"]["tls"] == [{"secretName": "query-tower-tls", "hosts": ["query-tower.example.com"]}]


def test_scheduling_values_pass_through(all_on_render):
    spec = all_on_render.pod_spec
    assert spec["nodeSelector"] == ALL_ON["nodeSelector"]
    assert spec["tolerations"] == ALL_ON["tolerations"]
    assert spec["affinity"] == ALL_ON["affinity"]
    assert spec["priorityClassName"] == "search-critical"
    meta = all_on_render.deployment["spec"]["template"]["metadata"]
    assert meta["labels"]["tier"] == "online" and meta["annotations"]["team"] == "search"
    assert _env(all_on_render.container("server"))["OMP_NUM_THREADS"]["value"] == "2"


# ---- helm test and NOTES ------------------------------------------------------------------------------


def test_chart_test_pod_curls_readyz_through_the_service(default_render):
    pod = default_render.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["curl"]
    assert "--fail" in c["args"]
    assert c["args"][-1] == f"http://{FULLNAME}:8080/readyz"
    assert default_render.one("Service")["metadata"]["name"] == FULLNAME


def test_notes_explain_port_forward_and_search(default_render):
    notes = default_render.notes
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{FULLNAME} 8080:8080" in notes
    assert "curl -fsS -X POST http://127.0.0.1:8080/search" in notes
    assert f"get secret {FULLNAME}-admin" in notes


def test_release_name_containing_chart_name_is_not_repeated(chart):
    r = render(chart, name="query-tower-canary")
    assert r.deployment["metadata"]["name"] == "query-tower-canary"
    r = render(chart, {"fullnameOverride": "qt"})
    assert r.one("Service")["metadata"]["name"] == "qt"
