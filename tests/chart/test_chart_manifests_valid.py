"""Every rendered manifest passes kubernetes-validate in strict mode (unknown fields are errors) against
the Kubernetes KUBE_VERSION schemas it ships offline.

kubernetes-validate has no schemas for custom resources: the ServiceMonitor (monitoring.coreos.com/v1,
a Prometheus Operator CRD) is checked field by field in test_chart_render.py instead, and here we only
assert that it is the one and only manifest without a schema.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.chart.manifests import ALL_ON, ALL_ON_GCS, KUBE_VERSION, deep_merge, render

CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

VARIANTS = {
    "defaults": {},
    "all-on-s3": ALL_ON,
    "all-on-gcs": ALL_ON_GCS,
    "pvc-subpath-existing-secret-no-prestop": {
        "bundles": {"pvc": {"claimName": "shared-bundles", "subPath": "ebr/bundles", "readOnly": False}},
        "adminToken": {"existingSecret": "ebr-admin", "secretKey": "token"},
        "preStopSleepSeconds": 0,
        "serviceAccount": {"create": False, "name": "search-sa"},
        "podDisruptionBudget": {"enabled": True, "minAvailable": None, "maxUnavailable": "25%"},
    },
    "object-store-init-only-no-admin-token": {
        "bundles": {"source": "objectStore", "objectStore": {"uri": "s3://b/bundles"}},
        "adminToken": {"create": False},
        "featureStore": {"enabled": False},
    },
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_manifest_is_valid_in_strict_mode(chart, name):
    rendered = render(chart, VARIANTS[name])
    assert rendered.manifests
    without_schema = []
    for m in rendered.manifests:
        key = (m.doc["apiVersion"], m.doc["kind"])
        if key in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(m.doc, KUBE_VERSION, strict=True)
            without_schema.append(key)
            continue
        try:
            version = kubernetes_validate.validate(m.doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{m.template}: {m.doc['kind']} invalid at {path}: {e.message}")
        assert version == "1.30"
    expected_crds = 1 if VARIANTS[name].get("metrics", {}).get("serviceMonitor", {}).get("enabled") else 0
    assert len(without_schema) == expected_crds


def test_all_on_renders_every_kind(all_on_render):
    assert set(all_on_render.kinds()) == {
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "Pod",
        "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "ServiceMonitor",
    }


def test_defaults_render_only_the_core(default_render):
    assert default_render.kinds() == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "Pod", "Secret", "Service", "ServiceAccount"]
    )


def test_strict_validation_catches_a_misspelt_field(default_render):
    """The validator is real and strict: one typo in the Deployment is rejected."""
    broken = deep_merge(default_render.deployment, {})
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)
    # and a wrong type too
    broken = deep_merge(default_render.deployment, {"spec": {"replicas": "two"}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)
