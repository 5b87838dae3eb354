"""Hybrid retrieval: merging the embedding and lexical channels, and choosing which channels a query runs."""

from ebr.hybrid.fusion import (
    FUSION_METHODS,
    ChannelHits,
    Fused,
    fuse,
    fuse_many,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from ebr.hybrid.selection import CHANNELS, QuerySelection, select_channels

__all__ = [
    "CHANNELS",
    "FUSION_METHODS",
    "ChannelHits",
    "Fused",
    "QuerySelection",
    "fuse",
    "fuse_many",
    "reciprocal_rank_fusion",
    "select_channels",
    "weighted_score_fusion",
]
