"""`POST /events`: search and click events of users, folded into their real-time online features.

A validated batch (`serving.schema.EventsRequest`) is converted to `ebr.features.realtime.RealtimeEvent`s and
pushed by `ebr.features.realtime.push_events` (read the users' current rows, apply the events with the offline
rule, write the new rows through the views' Feast PushSources) on one of the feature source's lookup threads,
never on the event loop; the request waits at most `PUSH_TIMEOUT_S` for it. Pushes of this process run one at a
time (a push reads, then writes, a user's row), and each ends by invalidating its users' entries in the
server's feature cache, so the next search of such a user reads the pushed row.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ebr.features.realtime import PushReport, RealtimeEvent, RealtimeRules, push_events
from ebr.features.store import STORE_JSON, store_settings
from serving.feature_source import OnlineFeatureSource, StoreBusy, StoreUnavailable
from serving.schema import EventsRequest

PUSH_TIMEOUT_S = 1.0  # a push is one store read and one write per view: ms on SQLite or Redis
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PushFailed(Exception):
    """The store did not take the batch (unavailable, busy, failed or too slow); `retry` says whether resending it
    is safe (False when a timed-out push may still be applied)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class PushOutcome:
    """Counts of one accepted batch."""

    received: int
    applied: int
    stale: int
    ignored: int
    users: int


def rules_of(directory: str | Path) -> RealtimeRules:
    """The real-time rules a feature directory was built with (store.json); the defaults for a Feast repository."""
    root = Path(directory)
    return RealtimeRules.from_settings(store_settings(root)) if (root / STORE_JSON).is_file() else RealtimeRules()


def to_events(req: EventsRequest) -> list[RealtimeEvent]:
    """The request's events with times in microseconds since the epoch (UTC)."""
    out = []
    for e in req.events:
        delta = e.event_timestamp - _EPOCH
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        out.append(RealtimeEvent(e.type, e.user_id, us, query=e.query, doc_id=e.doc_id))
    return out


class EventPusher:
    """Pushes event batches through a feature source's store, one at a time, and invalidates the users' cache."""

    def __init__(self, features: OnlineFeatureSource, rules: RealtimeRules | None = None,
                 timeout_s: float = PUSH_TIMEOUT_S) -> None:
        self.features = features
        self._rules = rules
        self.timeout_s = timeout_s
        self._serial = threading.Lock()

    @property
    def rules(self) -> RealtimeRules:
        """The sequence rules the feature directory was built with, read on the first push (a server whose
        store is not reachable yet still starts)."""
        if self._rules is None:
            self._rules = rules_of(self.features.directory)
        return self._rules

    def _push(self, store: Any, events: list[RealtimeEvent]) -> PushReport:
        """On a lookup thread: push, then drop the users' cached features (before the answer is sent)."""
        with self._serial:
            try:
                return push_events(store, events, self.rules)
            finally:  # a failed push may have written one view: the cache must not hide it either
                self.features.cache.invalidate("user", {e.user_id for e in events})

    async def push(self, req: EventsRequest) -> PushOutcome:
        """Push a validated batch off the event loop; PushFailed when the store does not take it in time."""
        events = to_events(req)
        try:
            future, wait_s = self.features.submit(lambda store: self._push(store, events))
        except StoreBusy as e:
            raise PushFailed(f"the online store is busy: {e}") from e
        except StoreUnavailable as e:
            raise PushFailed(f"the online store is unavailable: {e}") from e
        try:
            # shielded: a timeout must not cancel the call itself (its thread finishes it and records it)
            report = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                            max(self.timeout_s, wait_s))
        except TimeoutError as e:
            raise PushFailed(f"the online store did not confirm the push within {max(self.timeout_s, wait_s):g} s; "
                             "it may still be applied", retry=False) from e
        except StoreUnavailable as e:
            raise PushFailed(f"the online store is unavailable: {e}") from e
        except Exception as e:  # noqa: BLE001 - any store error is the store's, reported as a 503
            raise PushFailed(f"the online store failed the push: {type(e).__name__}: {e}") from e
        return PushOutcome(received=len(events), applied=report.applied, stale=report.stale,
                           ignored=report.ignored, users=len(report.users))
