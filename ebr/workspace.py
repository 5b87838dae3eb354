"""The persistent workspace of daily runs: what survives from one day to the next.

    <workspace>/features/          Feast registry, SQLite online store and derived offline tables
    <workspace>/mlflow.db          MLflow tracking (SQLite) and <workspace>/mlartifacts/
    <workspace>/bundles/           published serving bundles and the CURRENT pointer
    <workspace>/reports/<day>/     the day's evaluation report, gate decision and step timings
    <workspace>/kfp/               KFP local pipeline root (step artifacts), when run locally
On a cluster the workspace is a shared volume or bucket mount; everything else passes as KFP artifacts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebr.artifacts.atomic import write_json_atomic


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace root."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Workspace:
        return cls(Path(root).resolve())

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def tracking_uri(self) -> str:
        """Where the steps track: $EBR_MLFLOW_TRACKING_URI (a tracking server) when set, else the workspace's
        SQLite database."""
        return os.environ.get("EBR_MLFLOW_TRACKING_URI", self.mlflow_uri)

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def kfp_root(self) -> Path:
        return self.root / "kfp"

    @property
    def featurized(self) -> Path:
        """The two-tower trainer's featurization cache: one place per workspace, so a retried or rerun train
        step reuses the day's entry and old entries are pruned (instead of one copy per KFP output folder)."""
        return self.root / "cache" / "featurized"

    @property
    def ranking_rows(self) -> Path:
        """The rankers' joined training rows of a day, written by the fine ranker step and read by the
        distillation (`ebr.train.ranking_rows_cache`)."""
        return self.root / "cache" / "ranking_rows"

    @property
    def export_graphs(self) -> Path:
        """Traced `torch.export` graphs reused by the next day's exports of the same architecture
        (`ebr.models.export_cache`)."""
        return self.root / "cache" / "exports"

    def reports(self, day: str) -> Path:
        return self.root / "reports" / day

    def record(self, day: str, name: str, payload: dict[str, Any]) -> Path:
        """Write `<reports>/<day>/<name>.json` atomically (step timings, gate decision, run report)."""
        path = self.reports(day) / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(path, payload, default=str)

    def read(self, day: str, name: str) -> dict[str, Any] | None:
        path = self.reports(day) / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
