"""Shared helpers of the training steps: MLflow runs (params, per-epoch metrics, artifacts, model registry),
training-curve plots and atomic checkpoints.

`MlflowConfig` + `mlflow_run(...)` open a run through `MlflowClient` (no global MLflow state), or yield None
when no tracking URI is configured (the caller notes it). mlflow, torch and matplotlib are imported inside
functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from ebr.artifacts.atomic import atomic_file, write_json_atomic
from ebr.settings import Section

CURVES_PNG = "curves.png"


class MlflowConfig(Section):
    """Where a training step is tracked and, optionally, which registered model gets a new version."""

    tracking_uri: str | None = Field(
        None, description="e.g. sqlite:///runs/mlflow.db; None = $MLFLOW_TRACKING_URI; neither = no tracking (noted)"
    )
    experiment: str = Field("ebr", min_length=1, description="experiment name (created when missing)")
    artifact_location: str | None = Field(
        None, description="artifact root of a new experiment; None = <folder of the sqlite db>/mlartifacts"
    )
    registered_model: str | None = Field(
        None, description="registered model that gets a new version per run; None = no registration"
    )


def resolve_tracking_uri(cfg: MlflowConfig) -> str | None:
    """The configured tracking URI, else $MLFLOW_TRACKING_URI, else None (not tracked)."""
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at `uri` for one block, with the previous setting (set or unset) restored after:
    a step must not leave a process-wide URI behind that later `models:/` lookups would resolve against."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # the pinned mlflow's own scope

    with _use_tracking_uri(uri):
        yield


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"}; lists and dicts below the leaves become JSON text."""
    out: dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_params(v, key + "."))
        else:
            out[key] = json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else str(v)
    return out


class RunLogger:
    """One MLflow run addressed through a client: params, metrics, artifacts and model versions."""

    def __init__(self, client: Any, run_id: str, artifact_uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.artifact_uri = artifact_uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened params in batches of 100 (values cut at 6000 characters)."""
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in sorted(flatten_params(params).items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Finite metrics at one step (NaN and inf are left out)."""
        from mlflow.entities import Metric

        rows = [Metric(k, float(v), 0, int(step)) for k, v in metrics.items() if v is not None and math.isfinite(v)]
        for i in range(0, len(rows), 1000):
            self.client.log_batch(self.run_id, metrics=rows[i : i + 1000])

    def log_history(self, histories: Mapping[str, Sequence[Mapping[str, float]]]) -> None:
        """Per-epoch rows as `<model>.<metric>` with step = epoch."""
        for model_name, history in histories.items():
            for row in history:
                self.log_metrics({f"{model_name}.{k}": v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        """Every file under `directory` (recursively) into the run's artifacts."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path=artifact_path)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """One file into the run's artifacts."""
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def register(self, name: str, artifact_path: str, description: str | None = None) -> str:
        """A new version of registered model `name` whose source is this run's `artifact_path`; its number."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name)
        version = self.client.create_model_version(
            name, source=f"{self.artifact_uri}/{artifact_path}", run_id=self.run_id, description=description
        )
        return str(version.version)


def _experiment_id(client: Any, cfg: MlflowConfig, uri: str) -> str:
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    location = cfg.artifact_location
    if location is None and uri.startswith("sqlite:///"):
        location = str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts")
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(cfg.experiment, artifact_location=location)
    except MlflowException as e:  # created by a task running beside this one since the lookup: use theirs
        exp = client.get_experiment_by_name(cfg.experiment)
        if exp is None:
            raise
        logging.getLogger(__name__).info("experiment %s created concurrently (%s)", cfg.experiment, e.error_code)
        return exp.experiment_id


@contextmanager
def mlflow_run(cfg: MlflowConfig, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[RunLogger | None]:
    """A run that ends FINISHED, or FAILED when the block raises; yields None without a tracking URI."""
    uri = resolve_tracking_uri(cfg)
    if uri is None:
        yield None
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(_experiment_id(client, cfg, uri), run_name=run_name,
                            tags={"ebr.step": run_name, **dict(tags or {})})
    logger = RunLogger(client, run.info.run_id, run.info.artifact_uri)
    try:
        yield logger
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")


def log_run(
    cfg: MlflowConfig,
    run_name: str,
    params: Mapping[str, Any],
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    final: Mapping[str, float],
    artifacts: Path,
    tags: Mapping[str, str] | None = None,
    after: Callable[[RunLogger], None] | None = None,
) -> str | None:
    """One finished run in one call: params, per-epoch metrics, final metrics and every file of `artifacts`;
    `after(run)` runs last inside the run (e.g. model registration).

    Returns the run id, or None without a tracking URI."""
    with mlflow_run(cfg, run_name, tags) as run:
        if run is None:
            return None
        run.log_params(params)
        run.log_history(histories)
        run.log_metrics(final)
        run.log_artifacts(artifacts)
        if after is not None:
            after(run)
        return run.run_id


def untracked_note(run_id: str | None) -> list[str]:
    """The note a step records when it ran without MLflow tracking."""
    if run_id is None:
        return ["no MLflow tracking URI (mlflow.tracking_uri or $MLFLOW_TRACKING_URI): run not tracked"]
    return []


def plot_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: Path, title: str) -> Path:
    """One panel per metric (losses, validation metrics) vs epoch, one line per model (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted({k for h in histories.values() for row in h for k in row if k != "epoch"})
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for model_name, h in histories.items():
            pts = [(row["epoch"], row[name]) for row in h if name in row and math.isfinite(row[name])]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model_name)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """torch.save of `state` through a temp file beside `path`, then rename (never a partial file)."""
    import torch

    path = Path(path)
    with atomic_file(path) as tmp:
        torch.save(dict(state), tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint` (tensors and plain values only); a missing file is named."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Pretty JSON (NaN not allowed) through a temp file, then rename."""
    path = Path(path)
    write_json_atomic(path, obj, allow_nan=False)
    return path
