"""Render the query-tower chart with the real Helm engine (helm_python, Helm v4) and parse its manifests.

No cluster is involved: rendering is offline (the template `lookup` returns nothing), exactly what
`helm template` does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "query-tower"
# A Kubernetes version kubernetes-validate ships schemas for (offline), and the one lint targets.
KUBE_VERSION = "1.30.0"
RELEASE = "demo"
NAMESPACE = "search"


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a mapping with the same key twice (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass
class Manifest:
    template: str
    doc: dict[str, Any]


@dataclass
class Rendered:
    files: dict[str, str]
    manifests: list[Manifest]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m.doc for m in self.manifests if m.doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        docs = self.of_kind(kind)
        assert len(docs) == 1, f"expected one {kind}, got {len(docs)}"
        return docs[0]

    def kinds(self) -> list[str]:
        return sorted(m.doc["kind"] for m in self.manifests)

    @property
    def notes(self) -> str:
        return next(text for path, text in self.files.items() if path.endswith("NOTES.txt"))

    def from_template(self, template: str) -> list[dict[str, Any]]:
        return [m.doc for m in self.manifests if m.template == f"query-tower/templates/{template}"]

    @property
    def server_config_map(self) -> dict[str, Any]:
        """The ConfigMap of the server's EBR_* settings (configmap.yaml; the feature store has its own)."""
        (doc,) = self.from_template("configmap.yaml")
        return doc

    def text(self, template: str) -> str:
        return self.files[f"query-tower/templates/{template}"]

    # Frequently used parts of the Deployment.
    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    def container(self, name: str) -> dict[str, Any]:
        spec = self.pod_spec
        for c in spec["containers"] + spec.get("initContainers", []):
            if c["name"] == name:
                return c
        raise KeyError(name)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(chart, values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> Rendered:
    files = chart.render(values or {}, name=name, namespace=namespace)
    manifests = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.load_all(text, Loader=UniqueKeyLoader):
            if doc:
                manifests.append(Manifest(path, doc))
    return Rendered(files, manifests)


# Every optional feature of the chart switched on (s3 object-store flavour).
ALL_ON: dict[str, Any] = {
    "replicaCount": 3,
    "image": {"digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ebr"}},
    "podAnnotations": {"team": "search"},
    "podLabels": {"tier": "online"},
    "server": {"logLevel": "DEBUG", "extraEnv": [{"name": "OMP_NUM_THREADS", "value": "2"}]},
    "featureStore": {
        "existingConfigMap": "ebr-feature-store",
        "onlineStore": {"redis": {"existingSecret": "ebr-redis", "secretKey": "connection"}},
    },
    "adminToken": {"create": True, "value": "s3cr3t-admin-token"},
    "bundles": {
        "source": "objectStore",
        "objectStore": {
            "provider": "s3",
            "uri": "s3://ebr-artifacts/bundles",
            "endpointUrl": "http://minio.kubeflow:9000",
            "credentialsSecret": "ebr-bundle-reader",
            "env": [{"name": "AWS_REGION", "value": "us-east-1"}],
            "syncSidecar": {"enabled": True, "intervalSeconds": 30},
        },
    },
    "service": {"annotations": {"prometheus.io/scrape": "true"}},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "5"},
        "tls": [{"secretName": "query-tower-tls", "hosts": ["query-tower.example.com"]}],
    },
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12, "targetCPUUtilizationPercentage": 60},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "topologySpread": {"enabled": True, "whenUnsatisfiable": "DoNotSchedule"},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "search", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "query-tower"}},
                    },
                }
            ]
        }
    },
    "priorityClassName": "search-critical",
}

# The same with the Google Cloud Storage flavour of the object-store source.
ALL_ON_GCS: dict[str, Any] = deep_merge(
    ALL_ON,
    {
        "bundles": {
            "objectStore": {
                "provider": "gcs",
                "uri": "gs://ebr-artifacts/bundles",
                "endpointUrl": "",
                "image": {"repository": "google/cloud-sdk", "tag": "502.0.0-slim"},
            }
        }
    },
)
