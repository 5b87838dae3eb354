"""The credentials every cluster task reads from the `ebr-credentials` Secret: Secret key -> environment variable.

All optional: S3 (or S3-compatible) and MLflow credentials. GCS uses the pod's workload identity (the service
account), so it needs no key here. The DAG's steps (pipelines/cluster.py) and the PyTorchJob's ranks
(ebr/train/pytorchjob.py) both map it.
"""

from __future__ import annotations

SECRET_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_S3": "AWS_ENDPOINT_URL_S3",
    "AWS_REGION": "AWS_REGION",
    "EBR_MLFLOW_TRACKING_URI": "EBR_MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN": "MLFLOW_TRACKING_TOKEN",
}
