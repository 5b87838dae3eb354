"""Shared fixtures: a tiny simulated dataset made once per test session (read-only for tests)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

pytest_plugins = ["tests.objectstore", "tests.mlflow_server"]  # s3_*: moto stands in for S3; mlflow_server_uri

TINY_DAYS = 6


@pytest.fixture(autouse=True)
def _no_ambient_mlflow_server():
    """Tests track only where they say: no $MLFLOW_TRACKING_URI from the shell, none leaked by a component run
    in-process (components set it to their workspace's database)."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved

TINY_SEED = 11


SHARED_PIPELINE = "tests.train.test_two_tower_pipeline"


@functools.cache
def _files_sharing_the_tiny_pipeline() -> frozenset[str]:
    """Test files (rootdir-relative) that import the session-cached tiny two-tower pipeline, and its own file."""
    root = Path(__file__).resolve().parent
    users = {p for p in root.rglob("test_*.py") if f"from {SHARED_PIPELINE} import" in p.read_text(encoding="utf-8")}
    return frozenset(str(p.relative_to(root.parent)) for p in {root / "train" / "test_two_tower_pipeline.py", *users})


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under `-p no:xdist`
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, except that the files importing the tiny two-tower pipeline (cached per process,
    tests/train/test_two_tower_pipeline.py) form one unit: one worker builds the pipeline and its models once.
    (xdist's own `xdist_group` marks do not reach the scheduler under pytest 9, which ignores the node id it sets.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesSharingThePipeline(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return SHARED_PIPELINE if file in _files_sharing_the_tiny_pipeline() else file

    return FilesSharingThePipeline(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, so the test processes finish together: `make test` hands whole files (or the group above)
    to the workers in collection order (`--dist loadfile --no-loadscope-reorder`), and a long file handed out
    last would run alone at the end. The two-day DAG (marked `longest`) goes first, then the other `slow` files,
    then the rest."""
    def rank(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("longest") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: the files keep their order within a rank, and their tests theirs


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A `tiny` simulated dataset of TINY_DAYS days; do not modify it (copy it first).

    Simulated once per test run: under xdist the first worker to get here writes it in the run's temp root
    (the parent of the workers' own), the others wait on a file lock and read the same files (`simulate` writes a
    temp folder and renames it, so the folder is complete once it exists)."""
    from filelock import FileLock

    from ebr.simulate import simulate
    from ebr.simulate.config import SimulateConfig

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    out = root / "tiny-shared" / "data"
    with FileLock(str(root / "tiny-shared.lock")):
        if not out.is_dir():
            simulate(out, SimulateConfig(scale="tiny", days=TINY_DAYS, seed=TINY_SEED))
    return out


@pytest.fixture(scope="session")
def tiny_days(tiny_data) -> list[str]:
    """The days of the tiny dataset, oldest first."""
    from ebr.contract import list_days

    return list_days(tiny_data, "search_requests")
