"""What every component does around its ebr call: parse the config, point MLflow at the workspace, time it."""


import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ebr.config import EbrConfig
from ebr.cpu_limit import size_thread_pools
from ebr.features import feast_import
from ebr.images import COMPONENT_IMAGE
from ebr.models import export_cache
from ebr.workspace import Workspace

# Every step process, before anything imports Feast: also the steps that reach it only through MLflow (its client
# loads Feast's request-header plugin on the first call to a tracking server, e.g. publish).
feast_import.install()
# Thread pools sized to the pod's CPU limit, not the node's cores, before the step imports torch (ebr/cpu_limit.py).
THREAD_POOLS = size_thread_pools()

__all__ = ["COMPONENT_IMAGE", "StepContext", "peak_rss_mb", "step"]  # COMPONENT_IMAGE: see ebr/images.py


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
    """Set up one step and record it in `<workspace>/reports/<day>/steps/<name>.json`: `running` as it starts
    (what the live progress of a local run watches), then its status, wall/CPU time and peak RSS."""
    ws = Workspace.at(workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ["MLFLOW_TRACKING_URI"] = ws.tracking_uri
    # traced export graphs are kept in the workspace for the next day's exports (unless set elsewhere); restored
    # on exit so a caller running steps in-process keeps its own setting
    cache_env = os.environ.get(export_cache.CACHE_ENV)
    os.environ.setdefault(export_cache.CACHE_ENV, str(ws.export_graphs))
    ctx = StepContext(name=name, day=day, cfg=EbrConfig.from_yaml_text(config), ws=ws, info={})
    started_at = time.time()
    ws.record(day, f"steps/{name}", {"step": name, "status": "running", "started_at": started_at})
    t0, c0 = time.perf_counter(), time.process_time()
    status = "failed"
    profiler = _profiler()
    try:
        yield ctx
        status = "ok"
    finally:
        if cache_env is None:
            os.environ.pop(export_cache.CACHE_ENV, None)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.path.join(os.environ[PROFILE_ENV], f"{day}-{name}.prof"))
        ws.record(day, f"steps/{name}", {"step": name, "status": status, "started_at": started_at,
                                         "wall_s": round(time.perf_counter() - t0, 3),
                                         "cpu_s": round(time.process_time() - c0, 3), "peak_rss_mb": peak_rss_mb(),
                                         **_export_graphs(), **_thread_pools(), **ctx.info})


def _export_graphs() -> dict:
    """How the step's exports got their graphs (traced, or reused from this process / the workspace cache)."""
    counts = export_cache.stats()
    return {"export_graphs": counts} if any(counts.values()) else {}


def _thread_pools() -> dict:
    """The thread count set from the container's CPU limit as this process started, when it set one."""
    return {"threads_from_cpu_limit": int(THREAD_POOLS["OMP_NUM_THREADS"])} if THREAD_POOLS else {}


PROFILE_ENV = "EBR_PROFILE_DIR"


def _profiler():
    """With $EBR_PROFILE_DIR set, a running cProfile of the step (dumped to `<dir>/<day>-<step>.prof`, read with
    `python -m pstats`): where a step's time goes, without changing how it runs."""
    if not os.environ.get(PROFILE_ENV):
        return None
    import cProfile

    os.makedirs(os.environ[PROFILE_ENV], exist_ok=True)
    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def peak_rss_mb() -> float:
    """Peak resident memory of this step's process and its finished children, in MiB (Linux reports KiB)."""
    import resource

    usage = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    kib = max(usage)
    return round(kib / 1024, 1)
