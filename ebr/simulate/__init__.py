"""Search-log simulator: writes the raw-log contract tables with ground-truth relevance and exposure bias.

`simulate(out, cfg)` writes `cfg.days` days of docs, authors, users, search_requests, impressions,
user_events and relevance_labels under `out` (plus side files in `out/_meta/`) and returns a summary.
"""

from ebr.simulate.config import SCALES, ScaleSizes, SimulateConfig
from ebr.simulate.run import simulate
from ebr.simulate.world import World, build_world

__all__ = ["SCALES", "ScaleSizes", "SimulateConfig", "World", "build_world", "simulate"]
