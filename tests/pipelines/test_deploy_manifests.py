"""The manifests an operator applies before the first run: the workspace PVC and the credentials Secret pass
kubernetes-validate (strict, offline schemas) and agree with the compiled DAG's placement."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

from ebr.credentials import SECRET_ENV
from pipelines.cluster import ClusterOptions
from tests.chart.manifests import KUBE_VERSION

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubeflow"


def _doc(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def test_workspace_pvc_is_valid_read_write_many_and_named_as_compiled():
    pvc = _doc("workspace-pvc.yaml")
    kubernetes_validate.validate(pvc, KUBE_VERSION, strict=True)
    assert pvc["metadata"]["name"] == ClusterOptions().workspace_pvc
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_credentials_secret_is_valid_and_holds_only_keys_the_dag_maps():
    secret = _doc("credentials-secret.example.yaml")
    kubernetes_validate.validate(secret, KUBE_VERSION, strict=True)
    assert secret["metadata"]["name"] == ClusterOptions().secret
    assert set(secret["stringData"]) <= set(SECRET_ENV)
