"""The CPU limit of this process's container (its cgroup CPU quota), and the thread pools sized to it.

Kubernetes turns a pod's CPU limit into a CFS quota, but PyTorch, OpenMP, MKL, OpenBLAS and Faiss size their
thread pools from the node's cores: a step limited to 8 CPUs on a 64-core node starts 64 threads and spends its
quota switching between them. `size_thread_pools()`, called as every pipeline step starts (components/runtime.py,
before the step imports torch), sets the pools to the quota's whole CPUs when nothing set them already and the
quota is below the cores the process sees. A value set by the user, the image or the local runner (a task's share
of the cores, pipelines/concurrent_dag.py) is kept.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

# the thread pools a step's libraries size from these (torch, OpenMP, MKL, OpenBLAS, Faiss)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us / cpu.cfs_period_us`); None
    when there is no quota or it cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text(encoding="utf-8").split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
            period_us = int((v1 / "cpu.cfs_period_us").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return _ratio(quota_us, period_us)
    return None


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None  # v1 writes -1 for "no quota"


def visible_cores() -> int:
    """The cores this process may run on (its CPU affinity), which is what the libraries size their pools from."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def size_thread_pools(root: Path = CGROUP_ROOT, environ: MutableMapping[str, str] | None = None,
                      cores: int | None = None) -> dict[str, str]:
    """Set `THREAD_ENV` to the CPU quota's whole CPUs (at least 1) when none of them is set and the quota is
    below `cores` (default: the visible cores); returns what was set (empty: nothing to do)."""
    env = os.environ if environ is None else environ
    if any(name in env for name in THREAD_ENV):
        return {}
    limit = cgroup_cpu_limit(root)
    if limit is None or limit >= (cores if cores is not None else visible_cores()):
        return {}
    added = {name: str(max(1, int(limit))) for name in THREAD_ENV}  # 2.5 CPUs: 2 threads, none throttled
    env.update(added)
    return added
