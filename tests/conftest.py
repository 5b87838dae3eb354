"""Shared fixtures: a tiny simulated dataset made once per test session (read-only for tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

TINY_DAYS = 6
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
