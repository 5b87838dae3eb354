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


def _merge(channels: Sequence[ChannelHits], valid: list[np.ndarray], contributions: list[list[np.ndarray]],
           k: int) -> list[Fused]:
    """Sum per-doc contributions over channels and keep the top k (ties: best rank, then doc id), once per set of
    contributions: the union of the channels' docs, their best ranks and channel masks are shared."""
    if sum(len(x) for x in valid) == 0:
        return [Fused(np.zeros(0, np.int64), np.zeros(0, np.float64), []) for _ in contributions]
    ids = np.concatenate(valid)
    uniq, inv = np.unique(ids, return_inverse=True)
    best_rank = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(best_rank, inv, np.concatenate([np.arange(len(x), dtype=np.int64) for x in valid]))
    # which channels returned each doc, as a bit mask per doc: one tuple of names per distinct mask
    member = np.zeros(len(uniq), dtype=np.int64)
    np.bitwise_or.at(member, inv, np.concatenate([np.full(len(x), 1 << ci, dtype=np.int64)
                                                  for ci, x in enumerate(valid)]))
    names = [c.name for c in channels]
    out = []
    for contrib in contributions:
        fused = np.bincount(inv, weights=np.concatenate(contrib), minlength=len(uniq))
        order = np.lexsort((uniq, best_rank, -fused))[:k]
        masks = member[order].tolist()
        tuples = {m: tuple(n for j, n in enumerate(names) if m >> j & 1) for m in set(masks)}
        out.append(Fused(uniq[order], fused[order], [tuples[m] for m in masks]))
    return out


def fuse_many(method: str, channels: Sequence[ChannelHits], k: int,
              weight_sets: Sequence[Mapping[str, float] | None], rrf_k: float = RRF_K) -> list[Fused]:
    """`fuse` under each of several weight sets, equal to one `fuse` call per set: the channels' lists are
    de-duplicated, normalized and unioned once (an evaluation tuning the weights merges each request many times)."""
    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method must be one of {FUSION_METHODS}, got {method!r}")
    ws = [_check(channels, k, w) for w in weight_sets]
    hits = [c.valid() for c in channels]
    if method == "rrf":
        if rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, got {rrf_k}")
        ranks = [rrf_k + 1.0 + np.arange(len(ids)) for ids, _ in hits]
        contributions = [[w[c.name] / r for c, r in zip(channels, ranks, strict=True)] for w in ws]
        return _merge(channels, [ids for ids, _ in hits], contributions, k)
    base = []
    for c, (_, scores) in zip(channels, hits, strict=True):
        if scores is None:
            raise ValueError(f"weighted fusion needs the scores of channel {c.name!r}")
        if not np.isfinite(scores).all():
            raise ValueError(f"channel {c.name!r} returned non-finite scores")
        span = scores.max() - scores.min() if len(scores) else 0.0
        base.append((scores - scores.min()) / span if span > 0 else np.ones(len(scores)))
    contributions = [[w[c.name] * b for c, b in zip(channels, base, strict=True)] for w in ws]
    return _merge(channels, [ids for ids, _ in hits], contributions, k)


def reciprocal_rank_fusion(channels: Sequence[ChannelHits], k: int, weights: Mapping[str, float] | None = None,
                           rrf_k: float = RRF_K) -> Fused:
    """Top k by weighted reciprocal-rank fusion of the channels' lists."""
    return fuse_many("rrf", channels, k, [weights], rrf_k)[0]


def weighted_score_fusion(channels: Sequence[ChannelHits], k: int,
                          weights: Mapping[str, float] | None = None) -> Fused:
    """Top k by the weighted sum of per-query min-max normalized scores (a channel with one doc gives it 1)."""
    return fuse_many("weighted", channels, k, [weights])[0]


def fuse(method: str, channels: Sequence[ChannelHits], k: int, weights: Mapping[str, float] | None = None,
         rrf_k: float = RRF_K) -> Fused:
    """Merge by `method` ("rrf" or "weighted")."""
    return fuse_many(method, channels, k, [weights], rrf_k)[0]

