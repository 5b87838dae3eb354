"""Shared fixtures: a tiny simulated dataset made once per test session (read-only for tests)."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A `tiny` simulated dataset of TINY_DAYS days; do not modify it (copy it first)."""
    from ebr.simulate import simulate
    from ebr.simulate.config import SimulateConfig

    out = tmp_path_factory.mktemp("tiny") / "data"
    simulate(out, SimulateConfig(scale="tiny", days=TINY_DAYS, seed=TINY_SEED))
    return out


@pytest.fixture(scope="session")
def tiny_days(tiny_data) -> list[str]:
    """The days of the tiny dataset, oldest first."""
    from ebr.contract import list_days

    return list_days(tiny_data, "search_requests")
