"""A JSON schema of the kubeflow.org/v1 PyTorchJob fields the two-tower job uses, for offline validation.

Derived from the Kubeflow Training Operator v1 API (the `PyTorchJob` CRD's types, as published in the
kubeflow-training 1.9.4 SDK's generated models: KubeflowOrgV1PyTorchJobSpec, KubeflowOrgV1ReplicaSpec,
KubeflowOrgV1RunPolicy, KubeflowOrgV1SchedulingPolicy, KubeflowOrgV1ElasticPolicy, KubeflowOrgV1RDZVConf) and
the operator's admission checks of a PyTorchJob:

- spec: `pytorchReplicaSpecs` (required; keys Master and Worker, values ReplicaSpec), `runPolicy`,
  `elasticPolicy` (optional), `nprocPerNode` (optional string: auto, cpu, gpu or an integer);
- ReplicaSpec: `replicas` (int32), `restartPolicy` (one of Always, OnFailure, Never, ExitCode), `template` (a
  core/v1 PodTemplateSpec: checked here for what the operator needs, a container named `pytorch` with an image,
  and in full by kubernetes-validate in the tests); the operator allows one Master replica only;
- RunPolicy: `cleanPodPolicy` (All, Running, None), `ttlSecondsAfterFinished` (int32), `activeDeadlineSeconds`
  (int64, positive), `backoffLimit` (int32), `schedulingPolicy`, `suspend`, `managedBy`;
- the job's name is a DNS-1035 label (the operator names the replicas' Services after it).

Unknown fields are errors here (the API server would prune them silently, which would hide a typo).
"""

from __future__ import annotations

from typing import Any

DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
INT32: dict[str, Any] = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
NON_NEGATIVE_INT32: dict[str, Any] = {**INT32, "minimum": 0}
STRING: dict[str, Any] = {"type": "string"}

POD_TEMPLATE_FOR_OPERATOR: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "minItems": 1,
                    "contains": {
                        "type": "object",
                        "required": ["name", "image"],
                        "properties": {"name": {"const": "pytorch"}, "image": {"type": "string", "minLength": 1}},
                    },
                },
            },
        },
    },
}

REPLICA_SPEC: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["template"],
    "properties": {
        "replicas": NON_NEGATIVE_INT32,
        "restartPolicy": {"type": "string", "enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": POD_TEMPLATE_FOR_OPERATOR,
    },
}

SCHEDULING_POLICY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "minAvailable": INT32,
        "minResources": {"type": "object", "additionalProperties": {"type": ["string", "integer", "number"]}},
        "priorityClass": STRING,
        "queue": STRING,
        "scheduleTimeoutSeconds": INT32,
    },
}

RUN_POLICY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cleanPodPolicy": {"type": "string", "enum": ["All", "Running", "None"]},
        "ttlSecondsAfterFinished": NON_NEGATIVE_INT32,
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "backoffLimit": NON_NEGATIVE_INT32,
        "schedulingPolicy": SCHEDULING_POLICY,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string", "enum": ["", "kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"]},
    },
}

ELASTIC_POLICY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "minReplicas": INT32,
        "maxReplicas": INT32,
        "rdzvBackend": {"type": "string", "enum": ["c10d", "etcd", "etcd-v2"]},
        "rdzvPort": INT32,
        "rdzvHost": STRING,
        "rdzvId": STRING,
        "rdzvConf": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                "properties": {"key": STRING, "value": STRING}}},
        "standalone": {"type": "boolean"},
        "nProcPerNode": INT32,
        "maxRestarts": INT32,
        "metrics": {"type": "array", "items": {"type": "object"}},
    },
}

PYTORCHJOB_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "kubeflow.org/v1 PyTorchJob (fields used by ebr.train.pytorchjob)",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"},
        "kind": {"const": "PyTorchJob"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 63, "pattern": DNS_1035_LABEL},
                "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_1123_LABEL},
                "labels": {"type": "object", "additionalProperties": STRING},
                "annotations": {"type": "object", "additionalProperties": STRING},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["pytorchReplicaSpecs"],
            "properties": {
                "pytorchReplicaSpecs": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "Master": {"allOf": [REPLICA_SPEC, {"properties": {"replicas": {"const": 1}}}]},
                        "Worker": REPLICA_SPEC,
                    },
                },
                "runPolicy": RUN_POLICY,
                "elasticPolicy": ELASTIC_POLICY,
                "nprocPerNode": {"type": "string", "pattern": r"^(auto|cpu|gpu|[1-9][0-9]*)$"},
            },
        },
        "status": {"type": "object"},
    },
}
