"""What every component does around its ebr call: parse the config, point MLflow at the workspace, time it."""


import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ebr.config import EbrConfig
from ebr.workspace import Workspace

COMPONENT_IMAGE = os.environ.get("EBR_COMPONENT_IMAGE", "ghcr.io/ebr-search/ebr-components:0.1.0")


@dataclass
class StepContext:
    """The parsed config and workspace of one running step."""

    name: str
    day: str
    cfg: EbrConfig
    ws: Workspace
    info: dict


@contextmanager
def step(name: str, workspace: str, day: str, config: str) -> Iterator[StepContext]:
    """Set up one step and record its wall time in `<workspace>/reports/<day>/steps/<name>.json`."""
    ws = Workspace.at(workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ["MLFLOW_TRACKING_URI"] = os.environ.get("EBR_MLFLOW_TRACKING_URI", ws.mlflow_uri)
    ctx = StepContext(name=name, day=day, cfg=EbrConfig.from_yaml_text(config), ws=ws, info={})
    t0 = time.perf_counter()
    status = "failed"
    try:
        yield ctx
        status = "ok"
    finally:
        ws.record(day, f"steps/{name}", {"step": name, "status": status, "wall_s": round(time.perf_counter() - t0, 3),
                                         **ctx.info})
