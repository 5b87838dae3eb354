"""Behaviour on the feed surface: users open popular docs of the categories they like.

Feed clicks (with likes, favorites and comments after them) fill `user_events` beside the search clicks, so
behaviour sequences carry interests that search logs alone would not show.
"""

from __future__ import annotations

import numpy as np

from ebr.simulate.clicks import Engagement, engage
from ebr.simulate.clock import traffic_times
from ebr.simulate.config import SimulateConfig
from ebr.simulate.corpus import Docs
from ebr.simulate.people import Users


def feed_events(
    cfg: SimulateConfig, rng: np.random.Generator, users: Users, docs: Docs, leaf_l1: np.ndarray, start_us: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Engagement]:
    """n feed clicks of one day: (user index, doc index, timestamp µs, engagement after the click)."""
    eligible = np.flatnonzero(users.register_ts < start_us)
    shown = np.flatnonzero(docs.valid_ts <= start_us)
    if n == 0 or len(eligible) == 0 or len(shown) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, engage(cfg, rng, np.zeros(0, bool), np.zeros(0), np.zeros(0))
    cw = np.cumsum(users.activity[eligible])
    user = eligible[np.searchsorted(cw, rng.random(n) * cw[-1], side="right").clip(max=len(eligible) - 1)]
    theta = users.theta[user].astype(np.float64)
    l1 = (np.cumsum(theta, axis=1) < rng.random(n)[:, None] * theta.sum(axis=1, keepdims=True)).sum(axis=1)
    doc_l1 = leaf_l1[docs.leaf[shown]]
    doc = np.empty(n, dtype=np.int64)
    for c in np.unique(l1):
        rows = np.flatnonzero(l1 == c)
        members = shown[doc_l1 == c]
        if len(members) == 0:
            members = shown
        pw = np.cumsum(docs.popularity[members])
        pick = np.searchsorted(pw, rng.random(len(rows)) * pw[-1], side="right").clip(max=len(members) - 1)
        doc[rows] = members[pick]
    ts = traffic_times(rng, n, start_us)
    clicked = np.ones(n, dtype=bool)
    return user, doc, ts, engage(cfg, rng, clicked, np.ones(n), docs.quality[doc].astype(np.float64))
