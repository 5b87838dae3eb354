"""Merging ranked lists of several retrieval channels (embedding ANN, BM25 lexical) into one list.

Two rules, the same code offline (the holdout evaluation) and online (the server):
- reciprocal-rank fusion (Cormack et al. 2009): score(d) = sum over channels c of w_c / (rrf_k + rank_c(d)),
  rank from 1; it needs no score calibration between channels;
- weighted score fusion: each channel's scores are min-max normalized per query to [0, 1] and summed with
  weights; a doc a channel did not return gets 0 from it.
Ties are broken by the best rank in any channel, then by doc id, so the merge is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FUSION_METHODS = ("rrf", "weighted")
RRF_K = 60.0  # Cormack et al.'s constant; it damps the head of each list


@dataclass(frozen=True)
class ChannelHits:
    """One channel's answer to one query: doc ids best first (-1 = padding, ignored) and their scores."""

    name: str
    ids: np.ndarray
    scores: np.ndarray | None = None

    def valid(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Ids and scores without padding, first occurrence of each id kept."""
        ids = np.asarray(self.ids, dtype=np.int64)
        keep = ids >= 0
        ids = ids[keep]
        scores = None if self.scores is None else np.asarray(self.scores, dtype=np.float64)[keep]
        _, first = np.unique(ids, return_index=True)
        first.sort()
        return ids[first], None if scores is None else scores[first]


@dataclass(frozen=True)
class Fused:
    """The merged list: doc ids best first, fused scores and the channels that returned each doc."""

    ids: np.ndarray
    scores: np.ndarray
    channels: list[tuple[str, ...]]


def _check(channels: Sequence[ChannelHits], k: int, weights: Mapping[str, float] | None) -> dict[str, float]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be distinct, got {names}")
    w = {n: 1.0 for n in names}
    for name, value in (weights or {}).items():
        if name not in w:
            continue  # a weight for a channel that did not run (query selection skipped it)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"fusion weight of channel {name!r} must be a finite number >= 0, got {value}")
        w[name] = float(value)
    return w


def _merge(channels: Sequence[ChannelHits], contributions: list[np.ndarray], k: int) -> Fused:
    """Sum per-doc contributions over channels and keep the top k (ties: best rank, then doc id)."""
    all_ids, all_scores, all_ranks, all_channel = [], [], [], []
    for ci, (c, contrib) in enumerate(zip(channels, contributions, strict=True)):
        ids, _ = c.valid()
        all_ids.append(ids)
        all_scores.append(contrib)
        all_ranks.append(np.arange(len(ids), dtype=np.int64))
        all_channel.append(np.full(len(ids), ci, dtype=np.int64))
    if not all_ids or sum(len(x) for x in all_ids) == 0:
        return Fused(np.zeros(0, np.int64), np.zeros(0, np.float64), [])
    ids = np.concatenate(all_ids)
    uniq, inv = np.unique(ids, return_inverse=True)
    fused = np.zeros(len(uniq))
    np.add.at(fused, inv, np.concatenate(all_scores))
    best_rank = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(best_rank, inv, np.concatenate(all_ranks))
    order = np.lexsort((uniq, best_rank, -fused))[:k]
    # which channels returned each doc, as a bit mask per doc: one tuple of names per distinct mask
    member = np.zeros(len(uniq), dtype=np.int64)
    np.bitwise_or.at(member, inv, np.left_shift(1, np.concatenate(all_channel)))
    names = [c.name for c in channels]
    masks = member[order].tolist()
    tuples = {m: tuple(n for j, n in enumerate(names) if m >> j & 1) for m in set(masks)}
    return Fused(uniq[order], fused[order], [tuples[m] for m in masks])


def reciprocal_rank_fusion(channels: Sequence[ChannelHits], k: int, weights: Mapping[str, float] | None = None,
                           rrf_k: float = RRF_K) -> Fused:
    """Top k by weighted reciprocal-rank fusion of the channels' lists."""
    w = _check(channels, k, weights)
    if rrf_k < 0:
        raise ValueError(f"rrf_k must be >= 0, got {rrf_k}")
    contributions = [w[c.name] / (rrf_k + 1.0 + np.arange(len(c.valid()[0]))) for c in channels]
    return _merge(channels, contributions, k)


def weighted_score_fusion(channels: Sequence[ChannelHits], k: int,
                          weights: Mapping[str, float] | None = None) -> Fused:
    """Top k by the weighted sum of per-query min-max normalized scores (a channel with one doc gives it 1)."""
    w = _check(channels, k, weights)
    contributions = []
    for c in channels:
        ids, scores = c.valid()
        if scores is None:
            raise ValueError(f"weighted fusion needs the scores of channel {c.name!r}")
        if not np.isfinite(scores).all():
            raise ValueError(f"channel {c.name!r} returned non-finite scores")
        span = scores.max() - scores.min() if len(scores) else 0.0
        norm = (scores - scores.min()) / span if span > 0 else np.ones(len(scores))
        contributions.append(w[c.name] * norm)
    return _merge(channels, contributions, k)


def fuse(method: str, channels: Sequence[ChannelHits], k: int, weights: Mapping[str, float] | None = None,
         rrf_k: float = RRF_K) -> Fused:
    """Merge by `method` ("rrf" or "weighted")."""
    if method == "rrf":
        return reciprocal_rank_fusion(channels, k, weights, rrf_k)
    if method == "weighted":
        return weighted_score_fusion(channels, k, weights)
    raise ValueError(f"fusion method must be one of {FUSION_METHODS}, got {method!r}")
