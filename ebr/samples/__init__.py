"""Sample construction for retrieval (two-tower) and ranking (fine and coarse rankers) from the raw-log contract."""

from ebr.samples.build import build_samples
from ebr.samples.config import (
    HardNegativesConfig,
    NegativesConfig,
    PositivesConfig,
    RankingConfig,
    RewritesConfig,
    SamplesConfig,
)
from ebr.samples.feature_join import join_features
from ebr.samples.hard_negatives import hard_negative_quota, mine_hard_negatives
from ebr.samples.negatives import draw_random_negatives, request_negatives, sampling_table
from ebr.samples.rewrites import load_dictionary
from ebr.samples.window import load_window, training_days

__all__ = [
    "HardNegativesConfig",
    "NegativesConfig",
    "PositivesConfig",
    "RankingConfig",
    "RewritesConfig",
    "SamplesConfig",
    "build_samples",
    "draw_random_negatives",
    "hard_negative_quota",
    "join_features",
    "load_dictionary",
    "load_window",
    "mine_hard_negatives",
    "request_negatives",
    "sampling_table",
    "training_days",
]
