"""JSON schema (draft-07) of the KServe InferenceService (serving.kserve.io/v1beta1) fields the chart renders.

No KServe is installed here: the schema is written down from KServe's v1beta1 API, not loaded from a cluster.

- Field names and types come from the generated models of the `kserve` Python SDK (0.21.0):
  V1beta1InferenceService (apiVersion, kind, metadata, spec), V1beta1InferenceServiceSpec (predictor, ...),
  V1beta1PredictorSpec and V1beta1ComponentExtensionSpec (their `attribute_map` gives the JSON names:
  minReplicas, maxReplicas, scaleMetric, scaleMetricType, scaleTarget, containerConcurrency, timeout,
  canaryTrafficPercent, deploymentStrategy, annotations, labels, ...).
- The enums are those of the CustomResourceDefinition's openAPIV3Schema (KServe's
  config/crd/full/serving.kserve.io_inferenceservices.yaml): scaleMetric cpu | memory | concurrency | rps,
  scaleMetricType Utilization | Value | AverageValue (the SDK's docstring names only the first and the last).
- The deployment modes of the `serving.kserve.io/deploymentMode` annotation are KServe's constants:
  Serverless and RawDeployment, renamed Knative and Standard by newer releases (the old names are still
  accepted), and ModelMesh.

V1beta1PredictorSpec inlines a core/v1 PodSpec (containers, volumes, securityContext, serviceAccountName, ...).
The schema only types those fields; `as_pod` wraps them into a Pod so that kubernetes-validate checks them in
depth (every container as a core/v1 Container), as the other chart tests check core objects.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODES = ["Serverless", "RawDeployment", "Knative", "Standard", "ModelMesh"]
SCALE_METRICS = ["cpu", "memory", "concurrency", "rps"]
SCALE_METRIC_TYPES = ["Utilization", "Value", "AverageValue"]
# KServe's IsvcNameFmt: the InferenceService name must be a DNS-1035 label.
NAME_PATTERN = "^[a-z]([-a-z0-9]*[a-z0-9])?$"

_INT = {"type": "integer"}
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}
_ARR = {"type": "array"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJ_ARR = {"type": "array", "items": {"type": "object"}}

# V1beta1ComponentExtensionSpec: how KServe deploys and scales the component. The minimums are those of KServe's
# admission webhook (ComponentExtensionSpec.Validate: replicas and containerConcurrency may not be negative).
COMPONENT_EXTENSION_FIELDS: dict[str, dict[str, Any]] = {
    "minReplicas": {**_INT32, "minimum": 0},  # "defaults to 1 but can be set to 0 to enable scale-to-zero"
    "maxReplicas": {**_INT32, "minimum": 0},
    "scaleMetric": {"type": "string", "enum": SCALE_METRICS},
    "scaleMetricType": {"type": "string", "enum": SCALE_METRIC_TYPES},
    "scaleTarget": _INT32,
    "containerConcurrency": {**_INT, "minimum": 0},
    "timeout": _INT,
    "canaryTrafficPercent": _INT,
    "autoScaling": _OBJ,
    "batcher": _OBJ,
    "logger": _OBJ,
    # K8sIoApiAppsV1DeploymentStrategy, an apps/v1 DeploymentStrategy (RawDeployment only: KServe refuses it
    # on Knative).
    "deploymentStrategy": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": ["Recreate", "RollingUpdate"]},
            "rollingUpdate": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "maxSurge": {"type": ["integer", "string"]},
                    "maxUnavailable": {"type": ["integer", "string"]},
                },
            },
        },
    },
    # "Annotations/Labels that will be added to the component pod."
    "annotations": _STRING_MAP,
    "labels": _STRING_MAP,
}

# The core/v1 PodSpec fields that V1beta1PredictorSpec inlines, with their JSON types (SDK types: int, str,
# bool, list[...], dict(str, str), V1...). Only fields present in both the SDK model and the CRD; the Pod-level
# `resources` and `hostnameOverride` are left out: they are newer than the Kubernetes version the tests
# validate against, and the chart does not set them.
POD_SPEC_FIELDS: dict[str, dict[str, Any]] = {
    "activeDeadlineSeconds": _INT,
    "affinity": _OBJ,
    "automountServiceAccountToken": _BOOL,
    "containers": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"]}},
    "dnsConfig": _OBJ,
    "dnsPolicy": _STR,
    "enableServiceLinks": _BOOL,
    "hostAliases": _OBJ_ARR,
    "hostIPC": _BOOL,
    "hostNetwork": _BOOL,
    "hostPID": _BOOL,
    "hostUsers": _BOOL,
    "hostname": _STR,
    "imagePullSecrets": _OBJ_ARR,
    "initContainers": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    "nodeName": _STR,
    "nodeSelector": _STRING_MAP,
    "os": _OBJ,
    "overhead": _OBJ,
    "preemptionPolicy": _STR,
    "priority": _INT32,
    "priorityClassName": _STR,
    "readinessGates": _OBJ_ARR,
    "resourceClaims": _OBJ_ARR,
    "restartPolicy": _STR,
    "runtimeClassName": _STR,
    "schedulerName": _STR,
    "schedulingGates": _OBJ_ARR,
    "securityContext": _OBJ,
    "serviceAccount": _STR,
    "serviceAccountName": _STR,
    "setHostnameAsFQDN": _BOOL,
    "shareProcessNamespace": _BOOL,
    "subdomain": _STR,
    "terminationGracePeriodSeconds": _INT,
    "tolerations": _OBJ_ARR,
    "topologySpreadConstraints": _OBJ_ARR,
    "volumes": {"type": "array", "items": {"type": "object", "required": ["name"]}},
}

# Predictor fields of KServe's own: the variant name, storage, and the model-server implementations
# (the chart uses none of them: it runs a custom container).
PREDICTOR_ONLY_FIELDS: dict[str, dict[str, Any]] = {
    "name": _STR,
    "storageUris": _OBJ_ARR,
    "storageContainerName": _STR,
    **{
        framework: _OBJ
        for framework in ("huggingface", "lightgbm", "model", "onnx", "paddle", "pmml", "pytorch", "sklearn",
                          "tensorflow", "triton", "xgboost", "workerSpec")
    },
}

INFERENCE_SERVICE_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "serving.kserve.io/v1beta1 InferenceService (fields of V1beta1InferenceService)",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": KIND},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
                "namespace": _STR,
                "labels": _STRING_MAP,
                "annotations": {
                    **_STRING_MAP,
                    "properties": {DEPLOYMENT_MODE_ANNOTATION: {"type": "string", "enum": DEPLOYMENT_MODES}},
                },
            },
        },
        # V1beta1InferenceServiceSpec: the predictor is required, the other components are optional.
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["predictor"],
            "properties": {
                "predictor": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {**COMPONENT_EXTENSION_FIELDS, **POD_SPEC_FIELDS, **PREDICTOR_ONLY_FIELDS},
                },
                "transformer": _OBJ,
                "explainer": _OBJ,
                "canary": _OBJ_ARR,
            },
        },
    },
}


def as_pod(predictor: dict[str, Any], name: str = "predictor") -> dict[str, Any]:
    """The predictor's inlined PodSpec fields as a core/v1 Pod, for kubernetes-validate."""
    spec = {key: value for key, value in predictor.items() if key in POD_SPEC_FIELDS}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
