"""How each task of the daily DAG is placed on a Kubeflow cluster: the workspace PVC, the credentials Secret,
CPU/memory requests and limits, timeouts, retries and display names.

The steps share state through the workspace (Feast registry and online store, MLflow's store, `bundles/CURRENT`,
reports), so every task mounts the same ReadWriteMany PVC at `mount_path` and the pipeline's `workspace`
parameter defaults to a directory on it. Object-store and MLflow credentials come from one Kubernetes Secret as
optional environment variables: a missing key leaves the variable unset, so one Secret serves S3, GCS and a
local MinIO alike. The resource table is sized from the measured peak RSS of each step (docs/deploy.md,
"Resources"); change it per cluster with `ebr pipeline compile --resources FILE.yaml`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

from ebr.credentials import SECRET_ENV
from ebr.images import COMPONENT_IMAGE


@dataclass(frozen=True)
class StepResources:
    """What one task asks the scheduler for, and how long and how often it may run."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    timeout_s: int
    retries: int = 0  # retried with exponential backoff (I/O steps only: a validation failure is not transient)


# step -> resources. Memory requests are ~1.5x the peak RSS measured at `small`, limits leave room for a `medium`
# day (docs/deploy.md, "Resources", has the measurements); CPU limits let PyTorch use its threads.
RESOURCES: dict[str, StepResources] = {
    "data-fingerprint": StepResources("100m", "500m", "256Mi", "1Gi", 600, retries=3),
    "validate-data": StepResources("500m", "2", "2Gi", "8Gi", 3600),
    "build-features": StepResources("1", "4", "4Gi", "16Gi", 3 * 3600, retries=2),
    "build-samples": StepResources("1", "4", "6Gi", "24Gi", 4 * 3600, retries=2),
    "validate-samples": StepResources("500m", "2", "2Gi", "12Gi", 3600),
    "train-two-tower": StepResources("2", "8", "6Gi", "16Gi", 6 * 3600),
    "train-fine-ranker": StepResources("2", "8", "8Gi", "16Gi", 6 * 3600),
    "distill-coarse-ranker": StepResources("2", "8", "8Gi", "16Gi", 6 * 3600),
    "plan-export-shards": StepResources("250m", "1", "1Gi", "4Gi", 600, retries=2),
    "export-embedding-shard": StepResources("1", "4", "3Gi", "12Gi", 2 * 3600, retries=2),
    "finalize-embeddings": StepResources("250m", "1", "1Gi", "8Gi", 1800, retries=2),
    "build-index": StepResources("2", "8", "4Gi", "16Gi", 3 * 3600),
    "evaluate": StepResources("1", "4", "6Gi", "16Gi", 3 * 3600),
    "publish": StepResources("250m", "1", "1Gi", "4Gi", 1800, retries=3),
    "keep-champion": StepResources("100m", "500m", "512Mi", "1Gi", 600, retries=3),
    "rollout": StepResources("100m", "500m", "256Mi", "1Gi", 1800),
    "record-run-status": StepResources("100m", "500m", "256Mi", "1Gi", 600, retries=3),
    "resolve-day": StepResources("100m", "500m", "128Mi", "512Mi", 300, retries=3),
}

DISPLAY_NAMES: dict[str, str] = {
    "data-fingerprint": "Fingerprint raw partitions",
    "validate-data": "Validate raw logs (Great Expectations)",
    "build-features": "Build features (Feast apply + materialize)",
    "build-samples": "Build exposure-aware samples",
    "validate-samples": "Validate samples (Great Expectations)",
    "train-two-tower": "Train two-tower retrieval model",
    "train-fine-ranker": "Train fine ranker (teacher)",
    "distill-coarse-ranker": "Distill coarse ranker",
    "plan-export-shards": "Plan doc-embedding shards",
    "export-embedding-shard": "Export doc embeddings (one shard)",
    "finalize-embeddings": "Gather doc-embedding shards",
    "build-index": "Build Faiss index",
    "evaluate": "Evaluate and gate",
    "publish": "Publish bundle (champion)",
    "keep-champion": "Keep champion",
    "rollout": "Roll out query-tower server",
    "record-run-status": "Record run status",
    "resolve-day": "Resolve day (D-1 of the schedule)",
}


BACKOFF = "60s"  # first retry after a minute, then x2, at most 10 minutes apart
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = "600s"


@dataclass(frozen=True)
class ClusterOptions:
    """Compile-time placement and shape of the DAG. `workspace_pvc=None` compiles without volumes or secrets (a
    DAG for the local runner only); the committed pipelines/daily.yaml uses the defaults below.

    `coarse_reads_retrieval_model` wires the day's two-tower model into the distillation, which then waits for
    the two-tower training: needed when `coarse_ranker.model.retrieval_cosine` is on. Off (the default, like
    the flag), the distillation starts as soon as the fine ranker is trained, beside the two-tower training."""

    workspace_pvc: str | None = "ebr-workspace"
    mount_path: str = "/mnt/ebr"
    secret: str | None = "ebr-credentials"
    image: str = COMPONENT_IMAGE
    resources: dict[str, StepResources] = field(default_factory=lambda: dict(RESOURCES))
    coarse_reads_retrieval_model: bool = False

    @property
    def workspace(self) -> str:
        """The default `workspace` parameter: a directory on the mounted PVC."""
        return f"{self.mount_path.rstrip('/')}/workspace"

    def with_resources_file(self, path: str | Path) -> ClusterOptions:
        """These options with the steps named in a YAML file (`step: {cpu_request: ..., ...}`) overridden."""
        import yaml

        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of step name -> resources, got {type(raw).__name__}")
        table = dict(self.resources)
        for name, over in raw.items():
            if name not in table:
                raise ValueError(f"{path}: unknown step {name!r}; steps: {', '.join(sorted(table))}")
            if not isinstance(over, dict):
                raise ValueError(f"{path}: {name}: expected a mapping of fields, got {over!r}")
            bad = set(over) - set(StepResources.__dataclass_fields__)
            if bad:
                raise ValueError(f"{path}: {name}: unknown field(s) {sorted(bad)}; fields: "
                                 f"{', '.join(StepResources.__dataclass_fields__)}")
            table[name] = replace(table[name], **over)
        return replace(self, resources=table)


def _frames(context: int = 1) -> list[tuple]:
    """`inspect.stack()` without source lookups: (frame, file, line, function) from the caller outwards."""
    frames, f = [], sys._getframe(1)
    while f is not None:
        frames.append((f, f.f_code.co_filename, f.f_lineno, f.f_code.co_name))
        f = f.f_back
    return frames


@contextmanager
def cheap_task_checks() -> Iterator[None]:
    """While pipelines are built, KFP's container-spec check (run by every `set_cpu_request`-style call) names its
    caller with `inspect.stack()`, which reads the source of every frame on the stack: ~28 ms a call, 7.7 of
    the 9.5 s a compile took. Inside this block that module sees a stack of frames with names only (the one
    field it reads); it is restored on exit."""
    from kfp.dsl import pipeline_task

    real = pipeline_task.inspect
    pipeline_task.inspect = SimpleNamespace(stack=_frames)
    try:
        yield
    finally:
        pipeline_task.inspect = real


def place(task, name: str, opts: ClusterOptions):
    """Apply `opts` to `task` (the `dsl.PipelineTask` of step `name`); returns the task."""
    from kfp import kubernetes

    res = opts.resources[name]
    task.set_display_name(DISPLAY_NAMES[name])
    task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory_request).set_memory_limit(res.memory_limit)
    if res.retries:
        task.set_retry(num_retries=res.retries, backoff_duration=BACKOFF, backoff_factor=BACKOFF_FACTOR,
                       backoff_max_duration=BACKOFF_MAX)
    if opts.workspace_pvc:
        kubernetes.set_timeout(task, res.timeout_s)
        kubernetes.mount_pvc(task, pvc_name=opts.workspace_pvc, mount_path=opts.mount_path)
    if opts.secret:
        kubernetes.use_secret_as_env(task, secret_name=opts.secret, secret_key_to_env=SECRET_ENV, optional=True)
    return task
