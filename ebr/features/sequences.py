"""User sequence views for one day: real-time, short-term and long-term behaviour, and recent queries.

Windows follow Taobao MGDSPR (seed 001), made disjoint by the daily snapshot boundary B (00:00 UTC):
real-time = the user's events in [B, t) (at most 50), short-term = [B - 10 days, B) (at most 100),
long-term = [B - 30 days, B - 10 days) (at most 100), all newest first. A row is written only when the
user's value changes (and once when the user appears), so these views need no TTL.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebr.features.config import FeaturesConfig
from ebr.features.history import DAY_US, History

SEQ_KEYS = ("doc_ids", "categories", "authors", "event_types")


@dataclass
class _Timeline:
    """Rows of one kind (events or requests) sorted by (user_id, ts), with each user's segment."""

    ts: np.ndarray
    payload: dict[str, np.ndarray]
    segments: dict[int, tuple[int, int]]

    @classmethod
    def build(cls, users: np.ndarray, ts: np.ndarray, payload: dict[str, np.ndarray]) -> _Timeline:
        if len(users) and not (np.all(np.diff(users) >= 0)):
            raise ValueError("timeline rows must be sorted by user_id")
        uniq, first = np.unique(users, return_index=True)
        ends = np.append(first[1:], len(users))
        segs = {int(u): (int(s), int(e)) for u, s, e in zip(uniq, first, ends, strict=True)}
        return cls(ts, payload, segs)

    def range(self, user: int, lo_us: int, hi_us: int) -> tuple[int, int]:
        """Global row positions [a, b) of the user's rows with lo_us <= ts < hi_us."""
        seg = self.segments.get(user)
        if seg is None or hi_us <= lo_us:
            return (0, 0)
        s, e = seg
        t = self.ts[s:e]
        return (s + int(np.searchsorted(t, lo_us, "left")), s + int(np.searchsorted(t, hi_us, "left")))

    def users_between(self, lo_us: int, hi_us: int) -> set[int]:
        """Users with at least one row in [lo_us, hi_us)."""
        return {u for u in self.segments if self.range(u, lo_us, hi_us)[1] > self.range(u, lo_us, hi_us)[0]}


def _newest(r: tuple[int, int], max_len: int) -> tuple[int, int]:
    """The newest `max_len` rows of a range; every empty range is (0, 0) so equal states compare equal."""
    a, b = r
    return (max(a, b - max_len), b) if b > a else (0, 0)


def _seq_lists(tl: _Timeline, r: tuple[int, int]) -> dict[str, list]:
    a, b = r
    return {k: tl.payload[k][a:b][::-1].tolist() for k in SEQ_KEYS}


def event_timeline(h: History, cfg: FeaturesConfig) -> _Timeline:
    """The sequence events (configured event types) of every user."""
    ev = h.events[h.events["event_type"].isin(cfg.sequence_event_types)]
    payload = {
        "doc_ids": ev["doc_id"].to_numpy(dtype=np.int64),
        "categories": ev["category"].to_numpy(dtype=object),
        "authors": ev["author_id"].to_numpy(dtype=np.int64),
        "event_types": ev["event_type"].to_numpy(dtype=object),
    }
    return _Timeline.build(ev["user_id"].to_numpy(dtype=np.int64), ev["ts"].to_numpy(dtype=np.int64), payload)


def request_timeline(h: History) -> _Timeline:
    """The logged-in requests of every user (their queries)."""
    req = h.requests[h.requests["user_id"].notna()]
    users = req["user_id"].to_numpy(dtype=np.int64)
    order = np.lexsort((req["ts"].to_numpy(), users))
    return _Timeline.build(
        users[order], req["ts"].to_numpy(dtype=np.int64)[order], {"query": req["query"].to_numpy(dtype=object)[order]}
    )


def first_seen(h: History) -> pd.Series:
    """Earliest time each user shows up: first users row, first request or first event (in the history read)."""
    parts = [h.users[["user_id", "ts"]], h.events[["user_id", "ts"]]]
    req = h.requests[h.requests["user_id"].notna()]
    parts.append(pd.DataFrame({"user_id": req["user_id"].to_numpy(dtype=np.int64), "ts": req["ts"].to_numpy()}))
    allp = pd.concat([p.astype({"user_id": np.int64, "ts": np.int64}) for p in parts], ignore_index=True)
    return allp.groupby("user_id")["ts"].min()


def _emit(
    users: list[int],
    points: dict[int, list[int]],
    forced: dict[int, int],
    state: Callable[[int, int], Hashable],
    reference: Callable[[int], Hashable],
) -> list[tuple[int, int, Hashable]]:
    """Rows (user, ts, state) where a user's state changes, in time order; a user's forced point always emits.

    A user not forced this day starts from `reference(user)`, the state its earlier rows already hold."""
    rows: list[tuple[int, int, Hashable]] = []
    for u in users:
        f = forced.get(u)
        times = sorted(set(points.get(u, [])) | ({f} if f is not None else set()))
        prev: Hashable = object() if f is not None else reference(u)
        for t in times:
            if f is not None and t < f:
                continue
            s = state(u, t)
            if t == f or s != prev:
                rows.append((u, t, s))
            prev = s
    return rows


def _forced(seen: pd.Series, start_us: int) -> dict[int, int]:
    hit = seen[(seen >= start_us) & (seen < start_us + DAY_US)]
    return {int(u): int(t) for u, t in hit.items()}


def user_sequences(h: History, start_us: int, cfg: FeaturesConfig, tl: _Timeline, seen: pd.Series) -> pd.DataFrame:
    """user_sequences rows (short- and long-term) of the day starting at `start_us`."""
    end_us = start_us + DAY_US
    st, lt = cfg.short_term_days * DAY_US, cfg.long_term_days * DAY_US

    def state(u: int, t: int) -> tuple:
        b = start_us if t < end_us else end_us  # the latest boundary at or before t
        return (_newest(tl.range(u, b - st, b), cfg.short_term_max_len),
                _newest(tl.range(u, b - lt, b - st), cfg.long_term_max_len))  # fmt: skip

    forced = _forced(seen, start_us)
    cand = tl.users_between(start_us - lt, end_us)
    users = sorted(cand | set(forced))
    rows = _emit(users, {u: [end_us] for u in cand}, forced, state, lambda u: state(u, start_us))
    out: dict[str, list] = {"user_id": [], "ts": []}
    for w in ("st", "lt"):
        for k in SEQ_KEYS:
            out[f"seq_{w}_{k}"] = []
    for u, t, (rs, rl) in rows:
        out["user_id"].append(u)
        out["ts"].append(t)
        for w, r in (("st", rs), ("lt", rl)):
            for k, v in _seq_lists(tl, r).items():
                out[f"seq_{w}_{k}"].append(v)
    return pd.DataFrame(out)


def _visible(cfg: FeaturesConfig, start_us: int) -> Callable[[int], int]:
    """Rows at time t include facts before this instant: t itself, or the start of t's time bucket."""
    b = cfg.realtime_bucket_seconds * 1_000_000
    if b == 0:
        return lambda t: t
    return lambda t: t if t >= start_us + DAY_US else start_us + ((t - start_us) // b) * b


def _change_points(ts: np.ndarray, cfg: FeaturesConfig, start_us: int) -> list[int]:
    """Times a fact at `ts` becomes visible: ts + 1 us, or the end of its bucket; only inside the day."""
    end_us = start_us + DAY_US
    b = cfg.realtime_bucket_seconds * 1_000_000
    vis = ts + 1 if b == 0 else start_us + ((ts - start_us) // b + 1) * b
    return sorted({int(t) for t in vis if t < end_us})


def user_realtime(h: History, start_us: int, cfg: FeaturesConfig, tl: _Timeline, seen: pd.Series) -> pd.DataFrame:
    """user_realtime rows of the day starting at `start_us`: the day's events so far, reset at the next 00:00."""
    end_us = start_us + DAY_US
    visible = _visible(cfg, start_us)

    def state(u: int, t: int) -> tuple[int, int]:
        b = start_us if t < end_us else end_us
        return _newest(tl.range(u, b, visible(t)), cfg.realtime_max_len)

    forced = _forced(seen, start_us)
    points: dict[int, list[int]] = {}
    for u in tl.users_between(start_us, end_us):
        a, b = tl.range(u, start_us, end_us)
        points[u] = [*_change_points(tl.ts[a:b], cfg, start_us), end_us]
    users = sorted(set(points) | set(forced))
    rows = _emit(users, points, forced, state, lambda u: (0, 0))
    out: dict[str, list] = {"user_id": [u for u, _, _ in rows], "ts": [t for _, t, _ in rows]}
    for k in SEQ_KEYS:
        out[f"seq_rt_{k}"] = []
    for _, _, r in rows:
        for k, v in _seq_lists(tl, r).items():
            out[f"seq_rt_{k}"].append(v)
    return pd.DataFrame(out)


def user_queries(h: History, start_us: int, cfg: FeaturesConfig, tl: _Timeline, seen: pd.Series) -> pd.DataFrame:
    """user_queries rows of the day starting at `start_us`: distinct recent queries, newest first."""
    end_us = start_us + DAY_US
    window = cfg.recent_queries_days * DAY_US
    visible = _visible(cfg, start_us)
    queries = tl.payload["query"]

    def state(u: int, t: int) -> tuple[str, ...]:
        a, b = tl.range(u, t - window, visible(t))
        out: list[str] = []
        for q in queries[a:b][::-1]:
            if q not in out:
                out.append(q)
                if len(out) == cfg.recent_queries_max_len:
                    break
        return tuple(out)

    forced = _forced(seen, start_us)
    points: dict[int, list[int]] = {u: [end_us] for u in tl.users_between(start_us - window, end_us)}
    for u in tl.users_between(start_us, end_us):
        a, b = tl.range(u, start_us, end_us)
        points[u] = [*_change_points(tl.ts[a:b], cfg, start_us), end_us]
    users = sorted(set(points) | set(forced))
    rows = _emit(users, points, forced, state, lambda u: state(u, start_us))
    return pd.DataFrame({
        "user_id": [u for u, _, _ in rows],
        "ts": [t for _, t, _ in rows],
        "recent_queries": [list(s) for _, _, s in rows],
    })
