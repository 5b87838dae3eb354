"""values.schema.json: a valid draft-07 schema that covers every value and rejects bad ones, naming the field.

Helm checks it on install/upgrade/template/lint; here through the real engine (validate_schema and render).
"""

from __future__ import annotations

import json

import helm_python
import jsonschema
import pytest
import yaml

from tests.chart.manifests import ALL_ON, ALL_ON_GCS, CHART_DIR

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def test_schema_is_a_valid_draft7_schema():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].split("/")[-1]]
    return node


def _leaves(tree, path=()):
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path, tree


def _schema_for(path: tuple[str, ...]) -> dict:
    node = _resolve(SCHEMA)
    for key in path:
        props = node.get("properties", {})
        assert key in props, f"values key {'.'.join(path)} is not declared in values.schema.json"
        node = _resolve(props[key])
    return node


def test_schema_declares_every_value_with_a_type():
    for path, _ in _leaves(VALUES):
        node = _schema_for(path)
        typed = "type" in node or "enum" in node or "oneOf" in node
        assert typed, f"{'.'.join(path)} has no type in values.schema.json"


def test_every_object_is_closed_unless_free_form():
    """Typos like `replicas:` or `autoscaling.enable:` are rejected instead of silently ignored."""
    free_form = {"global", "affinity", "tolerations"}

    def walk(node, where):
        node = _resolve(node)
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for k, child in node["properties"].items():
                if k not in free_form:
                    walk(child, f"{where}.{k}")

    walk(SCHEMA, "values")


@pytest.mark.parametrize("values", [{}, ALL_ON, ALL_ON_GCS], ids=["defaults", "all-on-s3", "all-on-gcs"])
def test_good_values_pass(chart, values):
    chart.validate_schema(chart.merge_values(values))


BAD = [
    ("negative replicas", {"replicaCount": -1}, "/replicaCount", "minimum"),
    ("replicas as text", {"replicaCount": "two"}, "/replicaCount", "want integer"),
    ("replicas as float", {"replicaCount": 1.5}, "/replicaCount", "want integer"),
    ("server port 0", {"server": {"port": 0}}, "/server/port", "minimum"),
    ("service port too high", {"service": {"port": 70000}}, "/service/port", "maximum"),
    ("unknown pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "IfNotPresent"),
    ("unknown bundle source", {"bundles": {"source": "nfs"}}, "/bundles/source", "objectStore"),
    ("unknown provider", {"bundles": {"objectStore": {"provider": "azure"}}}, "/bundles/objectStore/provider",
     "s3"),
    ("bad bucket uri", {"bundles": {"objectStore": {"uri": "http://bucket"}}}, "/bundles/objectStore/uri",
     "pattern"),
    ("relative mount path", {"bundles": {"mountPath": "bundles"}}, "/bundles/mountPath", "pattern"),
    ("log level", {"server": {"logLevel": "verbose"}}, "/server/logLevel", "INFO"),
    ("watch interval 0", {"server": {"watchIntervalSeconds": 0}}, "/server/watchIntervalSeconds", "exclusiveMinimum"),
    ("cpu target 150%", {"autoscaling": {"targetCPUUtilizationPercentage": 150}},
     "/autoscaling/targetCPUUtilizationPercentage", "maximum"),
    ("hpa min 0", {"autoscaling": {"minReplicas": 0}}, "/autoscaling/minReplicas", "minimum"),
    ("enabled as string", {"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled", "want boolean"),
    ("pdb garbage", {"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable", "pattern"),
    ("root uid", {"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser", "minimum"),
    ("bad memory quantity", {"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory", "pattern"),
    ("probe threshold 0", {"probes": {"readiness": {"failureThreshold": 0}}},
     "/probes/readiness/failureThreshold", "minimum"),
    ("spread policy", {"topologySpread": {"whenUnsatisfiable": "Maybe"}}, "/topologySpread/whenUnsatisfiable",
     "ScheduleAnyway"),
    ("service type", {"service": {"type": "ExternalName"}}, "/service/type", "ClusterIP"),
    ("short digest", {"image": {"digest": "sha256:abc"}}, "/image/digest", "pattern"),
    ("scrape interval", {"metrics": {"serviceMonitor": {"interval": "often"}}},
     "/metrics/serviceMonitor/interval", "pattern"),
    ("sidecar interval", {"bundles": {"objectStore": {"syncSidecar": {"intervalSeconds": 1}}}},
     "/bundles/objectStore/syncSidecar/intervalSeconds", "minimum"),
    ("typo at top level", {"replicas": 3}, "at ''", "'replicas' not allowed"),
    ("typo nested", {"autoscaling": {"enable": True}}, "/autoscaling", "'enable' not allowed"),
    ("env without name", {"server": {"extraEnv": [{"value": "x"}]}}, "/server/extraEnv/0", "missing property 'name'"),
]


@pytest.mark.parametrize(("values", "field", "detail"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_are_rejected_naming_the_field(chart, values, field, detail):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(chart.merge_values(values))
    message = str(err.value)
    assert field in message
    assert detail in message


def test_install_path_rejects_bad_values_before_rendering(chart):
    """`helm install/template` runs the same check: render refuses, and names the field."""
    with pytest.raises(helm_python.HelmValuesError, match="/replicaCount"):
        chart.render({"replicaCount": -1}, name="demo")
    with pytest.raises(helm_python.HelmValuesError, match="/server/port"):
        chart.render({"server": {"port": 0}}, name="demo")
