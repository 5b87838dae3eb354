"""Simulated datasets shared by the simulator tests (module-independent, built once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ebr.simulate import SimulateConfig, simulate

TABLE_NAMES = ("docs", "authors", "users", "search_requests", "impressions", "user_events", "relevance_labels")


@dataclass
class Run:
    """A finished simulation: its folder, config and returned summary."""

    root: Path
    cfg: SimulateConfig
    summary: dict

    def table(self, name: str) -> pd.DataFrame:
        """All partitions of a table with a `ds` column (plain strings)."""
        df = pd.read_parquet(self.root / name)
        return df.assign(ds=df["ds"].astype(str))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Run:
    """3 days at the `tiny` scale, default knobs."""
    cfg = SimulateConfig(scale="tiny", days=3, seed=3)
    root = tmp_path_factory.mktemp("sim_tiny") / "data"
    return Run(root, cfg, simulate(root, cfg, progress=False))


@pytest.fixture(scope="session")
def stats_run(tmp_path_factory) -> Run:
    """A tiny corpus with more traffic and ambiguity, for statistical checks of the logging policy."""
    cfg = SimulateConfig(
        scale="tiny", days=2, seed=5, requests_per_day=1500, ambiguous_query_share=0.3, qu_error_rate=0.3,
        label_queries_per_day=80,
    )
    root = tmp_path_factory.mktemp("sim_stats") / "data"
    return Run(root, cfg, simulate(root, cfg, progress=False))
