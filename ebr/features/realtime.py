"""Real-time views between daily builds: the rule that folds a new event into a user's row, and the push.

`user_realtime` (the user's sequence events since the last 00:00 UTC, newest first, at most `realtime_max_len`)
and `user_queries` (the user's distinct recent queries, newest first, at most `recent_queries_max_len`) are
derived per event from the logs by `ebr.features.sequences`; the daily build materializes them into the online
store. Between builds, events arrive one at a time (the query-tower server's `/events`): `push_events` reads the
users' current online rows, folds the events in with `apply_events` (the same rule as the offline derivation)
and writes the new rows through the views' Feast PushSources, each row at its newest event + 1 us (a row at t
holds the facts before t, as offline).

The rule, per user, events in time order:

- a click (when `click` is a sequence event type) is prepended to the real-time sequence with the doc's leaf
  category and author from the online `doc_profile` (unknown doc: `UNKNOWN_CATEGORY`, `UNKNOWN_AUTHOR`), the
  sequence first emptied when the row is from before the event's day (the 00:00 reset);
- a search moves its query to the front of the recent queries (distinct, newest first);
- an event older than the user's row of its view (row time - 1 us) is stale: it is counted and not applied
  (a sequence newest first cannot take it in its place).

Row times are compared as the online store keeps them: Feast's SQLite store returns whole seconds, so two
events of one user within the same second may be applied out of order, and a row written in the first second
of a day counts as that day's.

What the push cannot reproduce: the 30-day expiry of a recent query is applied by the next daily build (the
online row holds the queries, not their times).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ebr.features.definitions import (
    ENTITIES,
    PUSH_VIEWS,
    SEQ_FIELDS,
    TIMESTAMP,
    UNKNOWN_AUTHOR,
    UNKNOWN_CATEGORY,
    VIEW_BY_NAME,
    push_source_name,
)
from ebr.features.encoding import decode_list, encode_list
from ebr.features.history import DAY_US

if TYPE_CHECKING:
    from feast import FeatureStore

EventKind = Literal["search", "click"]
EVENT_KINDS: tuple[str, ...] = ("search", "click")
REALTIME_VIEW, QUERIES_VIEW = "user_realtime", "user_queries"
RT_FEATURES: tuple[str, ...] = tuple(f"seq_rt_{k}" for k in SEQ_FIELDS)
QUERIES_FEATURE = "recent_queries"
REALTIME_FEATURES: tuple[str, ...] = (*RT_FEATURES, QUERIES_FEATURE)  # every feature a push can change
_VIEW_OF = {"click": REALTIME_VIEW, "search": QUERIES_VIEW}
assert set(PUSH_VIEWS) == {REALTIME_VIEW, QUERIES_VIEW}
assert VIEW_BY_NAME[REALTIME_VIEW].feature_names == list(RT_FEATURES)
assert VIEW_BY_NAME[QUERIES_VIEW].feature_names == [QUERIES_FEATURE]


@dataclass(frozen=True)
class RealtimeRules:
    """The lengths and event types of the real-time views (the `FeaturesConfig` the directory was built with)."""

    realtime_max_len: int = 50
    recent_queries_max_len: int = 20
    sequence_event_types: tuple[str, ...] = ("click", "like", "favorite", "comment", "purchase")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RealtimeRules:
        """The rules recorded in a feature directory's settings (`ebr.features.store.store_settings`)."""
        return cls(int(settings["realtime_max_len"]), int(settings["recent_queries_max_len"]),
                   tuple(settings["sequence_event_types"]))


@dataclass(frozen=True)
class RealtimeEvent:
    """One event of a user: a search (its query) or a click (its doc), at `ts_us` (microseconds, UTC)."""

    kind: EventKind
    user_id: int
    ts_us: int
    query: str | None = None
    doc_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {list(EVENT_KINDS)}, got {self.kind!r}")
        if self.kind == "search" and not self.query:
            raise ValueError("a search event needs its query")
        if self.kind == "click" and self.doc_id is None:
            raise ValueError("a click event needs its doc_id")


@dataclass
class RealtimeState:
    """A user's rows of the push views as the online store holds them: values and row times (None: no row)."""

    sequence: dict[str, list] = field(default_factory=lambda: {k: [] for k in SEQ_FIELDS})
    sequence_ts_us: int | None = None
    queries: list[str] = field(default_factory=list)
    queries_ts_us: int | None = None

    def features(self) -> dict[str, list]:
        """Feature name -> value of both views (as `online_features` returns them)."""
        return {**{f"seq_rt_{k}": list(v) for k, v in self.sequence.items()}, QUERIES_FEATURE: list(self.queries)}


@dataclass
class Applied:
    """What `apply_events` did: the new state, the views it changed and the events applied, stale or ignored."""

    state: RealtimeState
    changed: set[str] = field(default_factory=set)
    applied: int = 0
    stale: int = 0
    ignored: int = 0


def day_start(ts_us: int) -> int:
    """The 00:00 UTC at or before `ts_us` (microseconds)."""
    return ts_us - ts_us % DAY_US


def _stale(ts_us: int, row_ts_us: int | None) -> bool:
    """An event older than the row it would update (a row at t holds the facts before t)."""
    return row_ts_us is not None and ts_us + 1 < row_ts_us


def apply_events(
    state: RealtimeState,
    events: Iterable[RealtimeEvent],
    docs: Mapping[int, tuple[str, int]],
    rules: RealtimeRules,
) -> Applied:
    """Fold one user's events (any order; applied in time order) into their state, by the rule of the module
    docstring; `docs` maps a clicked doc id to its (leaf category, author). The input state is not modified."""
    seq = {k: list(v) for k, v in state.sequence.items()}
    out = Applied(RealtimeState(seq, state.sequence_ts_us, list(state.queries), state.queries_ts_us))
    new = out.state
    ordered = sorted(events, key=lambda e: (e.ts_us, e.doc_id if e.doc_id is not None else -1, e.kind, e.query or ""))
    for e in ordered:
        if e.kind == "click":
            if "click" not in rules.sequence_event_types:
                out.ignored += 1
                continue
            if _stale(e.ts_us, new.sequence_ts_us):
                out.stale += 1
                continue
            if new.sequence_ts_us is None or new.sequence_ts_us < day_start(e.ts_us):  # the 00:00 reset
                new.sequence = {k: [] for k in SEQ_FIELDS}
            assert e.doc_id is not None
            category, author = docs.get(e.doc_id, (UNKNOWN_CATEGORY, UNKNOWN_AUTHOR))
            for k, v in zip(SEQ_FIELDS, (e.doc_id, category, author, "click"), strict=True):
                new.sequence[k] = [v, *new.sequence[k]][: rules.realtime_max_len]
            new.sequence_ts_us = max(new.sequence_ts_us or 0, e.ts_us + 1)
        else:
            if _stale(e.ts_us, new.queries_ts_us):
                out.stale += 1
                continue
            assert e.query is not None
            new.queries = [e.query, *(q for q in new.queries if q != e.query)][: rules.recent_queries_max_len]
            new.queries_ts_us = max(new.queries_ts_us or 0, e.ts_us + 1)
        out.applied += 1
        out.changed.add(_VIEW_OF[e.kind])
    return out


def _row_times(response: Any, name: str) -> list[int | None]:
    """Row time (us) per entity row of one feature of an online response; None where the store has no row."""
    names = list(response.proto.metadata.feature_names.val)
    result = response.proto.results[names.index(name)]
    out: list[int | None] = []
    for ts in result.event_timestamps:
        us = ts.seconds * 1_000_000 + ts.nanos // 1000
        out.append(us if us > 0 else None)
    return out


def read_states(store: FeatureStore, user_ids: Iterable[int]) -> dict[int, RealtimeState]:
    """The users' current rows of the push views, in one `get_online_features` call."""
    users = sorted({int(u) for u in user_ids})
    if not users:
        return {}
    refs = [f"{v}:{n}" for v in PUSH_VIEWS for n in VIEW_BY_NAME[v].feature_names]
    key = ENTITIES["user"].join_key
    resp = store.get_online_features(features=refs, entity_rows=[{key: u} for u in users])
    values = resp.to_dict()
    seq_ts, q_ts = _row_times(resp, RT_FEATURES[0]), _row_times(resp, QUERIES_FEATURE)
    states = {}
    for i, u in enumerate(users):
        sequence = {k: decode_list(values[f"seq_rt_{k}"][i]) for k in SEQ_FIELDS}
        states[u] = RealtimeState(sequence, seq_ts[i], [str(q) for q in decode_list(values[QUERIES_FEATURE][i])],
                                  q_ts[i])
    return states


def doc_side(store: FeatureStore, doc_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """(leaf category, author) of docs from the online `doc_profile`; unknown docs are left out."""
    docs = sorted({int(d) for d in doc_ids})
    if not docs:
        return {}
    key = ENTITIES["doc"].join_key
    got = store.get_online_features(features=["doc_profile:category_leaf", "doc_profile:author_id"],
                                    entity_rows=[{key: d} for d in docs]).to_dict()
    out = {}
    for d, category, author in zip(docs, got["category_leaf"], got["author_id"], strict=True):
        if category is None and author is None:
            continue
        out[d] = (category if isinstance(category, str) else UNKNOWN_CATEGORY,
                  int(author) if author is not None else UNKNOWN_AUTHOR)
    return out


def _rows(view: str, states: Mapping[int, RealtimeState]) -> pd.DataFrame:
    """The push frame of one view: user_id, event_timestamp (the row time) and the features as JSON text."""
    users = sorted(states)
    if view == REALTIME_VIEW:
        ts = [states[u].sequence_ts_us for u in users]
        cols = {f"seq_rt_{k}": [encode_list(states[u].sequence[k]) for u in users] for k in SEQ_FIELDS}
    else:
        ts = [states[u].queries_ts_us for u in users]
        cols = {QUERIES_FEATURE: [encode_list(states[u].queries) for u in users]}
    return pd.DataFrame({
        ENTITIES["user"].join_key: pd.array(users, dtype="int64"),
        TIMESTAMP: pd.to_datetime(pd.Series(ts, dtype="int64"), unit="us", utc=True),
        **cols,
    })  # fmt: skip


@dataclass
class PushReport:
    """A pushed batch: events applied / stale / ignored, the users whose rows changed and their new features."""

    applied: int = 0
    stale: int = 0
    ignored: int = 0
    features: dict[int, dict[str, list]] = field(default_factory=dict)

    @property
    def users(self) -> list[int]:
        """The users whose rows were pushed."""
        return sorted(self.features)


def push_events(store: FeatureStore, events: Iterable[RealtimeEvent], rules: RealtimeRules) -> PushReport:
    """Fold `events` into their users' online rows and push the changed rows (Feast `push`, online store).

    Everything is read and computed before the first write. Not safe against a concurrent push for the same user
    from another process (read, then write): callers serialize pushes per store."""
    from feast.data_source import PushMode

    by_user: dict[int, list[RealtimeEvent]] = {}
    for e in events:
        by_user.setdefault(int(e.user_id), []).append(e)
    report = PushReport()
    if not by_user:
        return report
    states = read_states(store, by_user)
    docs = doc_side(store, (e.doc_id for es in by_user.values() for e in es if e.kind == "click"))
    changed: dict[str, dict[int, RealtimeState]] = {v: {} for v in PUSH_VIEWS}
    for user, evs in by_user.items():
        done = apply_events(states[user], evs, docs, rules)
        report.applied += done.applied
        report.stale += done.stale
        report.ignored += done.ignored
        for view in done.changed:
            changed[view][user] = done.state
        if done.changed:
            report.features[user] = done.state.features()
    frames = {view: _rows(view, rows) for view, rows in changed.items() if rows}
    for view, frame in frames.items():
        store.push(push_source_name(view), frame, to=PushMode.ONLINE)
    return report
