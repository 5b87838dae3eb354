"""User and query features of one request from the Feast online store, degrading to none when it fails.

The store directory is either a features directory of `ebr.features` (it holds `store.json` or
`registry.db`; opened with `ebr.features.open_store`, never applied from here) or a Feast repository holding a
`feature_store.yaml` (e.g. a production one with a Redis online store). A store that cannot be opened or
answers with an error makes the request unpersonalized (and without query-understanding fields); the failure
is counted, and after `trip_after` consecutive failures the store is not asked again for `retry_s` seconds
(doubling per further consecutive failure, at most 4x): one slow or failed lookup costs its own request only,
an outage does not add its timeout to every request. A lookup that raised also drops the store: the next try
opens a fresh one (a new connection), so a store that was truncated, replaced or restarted under the server
comes back without a restart. A store that hangs rather than fails costs a request at most the lookup timeout:
the lookup runs on its own thread and the request goes on unpersonalized (`fallback="timeout"`); the store is
kept (slow is not broken) until the failures trip the backoff (see OnlineFeatureSource).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ebr.features import online_features
from ebr.features.definitions import SERVICES, VIEW_BY_NAME
from ebr.features.store import REGISTRY, STORE_JSON

log = logging.getLogger(__name__)

SERVICE = "query_tower_online"
ENTITY_FEATURES: dict[str, list[str]] = {}
for _view in SERVICES[SERVICE]:
    ENTITY_FEATURES.setdefault(VIEW_BY_NAME[_view].entity, []).extend(VIEW_BY_NAME[_view].feature_names)
USER_FEATURES = frozenset(ENTITY_FEATURES["user"])
LOOKUP_TIMEOUT_S = 0.1  # EBR_FEATURE_TIMEOUT_S: a lookup takes ~1 ms on SQLite, a Redis round trip far less
CONNECT_TIMEOUT_S = 1.0  # the first lookup on a freshly opened store (connection and Feast set-up)
OPEN_TIMEOUT_S = 30.0  # the warm-up lookup at start, before traffic (the first in a process pays Feast's imports)
MAX_PENDING_LOOKUPS = 4  # outstanding lookups (hung ones included) beyond which the store is skipped at once
TRIP_AFTER = 3  # EBR_FEATURE_TRIP_AFTER: consecutive failed lookups before the store is skipped for the backoff
QU_CATEGORY = "qu_category_leaf"
QU_BRAND = "qu_brand"


@dataclass
class FeatureLookup:
    """What the store gave for one request: feature values, whether the user had any, and the failure."""

    values: dict[str, Any] = field(default_factory=dict)
    user_known: bool = False
    fallback: str | None = None

    def get_text(self, name: str) -> str | None:
        """A string feature, or None when absent, null or empty."""
        value = self.values.get(name)
        return value if isinstance(value, str) and value else None


def has_user_features(values: dict[str, Any]) -> bool:
    """Whether any user-entity feature has a value (an unknown user gives only nulls and empty lists)."""
    return any(values.get(n) not in (None, []) for n in USER_FEATURES)


def open_feature_store(directory: str | Path) -> Any:
    """The Feast store of a features directory or of a Feast repository (see the module docstring)."""
    root = Path(directory)
    if (root / STORE_JSON).is_file() or (root / REGISTRY).is_file():
        from ebr.features import open_store

        return open_store(root, apply=False)
    if (root / "feature_store.yaml").is_file():
        from feast import FeatureStore

        return FeatureStore(repo_path=str(root))
    raise FileNotFoundError(f"{root} holds neither a features directory ({STORE_JSON}, {REGISTRY}) "
                            "nor a Feast repository (feature_store.yaml)")


class StoreTimeout(Exception):
    """The store did not answer a lookup within the timeout (it may still answer later)."""


class StoreBusy(StoreTimeout):
    """`max_pending` lookups are still waiting for the store: it is not asked again until one returns."""


class StoreUnavailable(Exception):
    """The store cannot be opened, or it failed recently and is backing off."""


class _OpenFailed(Exception):
    """The store could not be opened (the cause says why)."""


class _LookupThreads:
    """Daemon threads running store calls; one per outstanding call, started as needed and kept. Daemons: a call
    that never returns cannot keep the process from exiting (a ThreadPoolExecutor joins its threads at exit)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any], outstanding: int) -> Future[Any]:
        """Run `fn` on a thread; `outstanding` counts the calls not yet finished, this one included (there are
        never fewer threads, so a call never waits behind a hung one)."""
        with self._lock:
            while len(self._threads) < outstanding:
                t = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)
        future: Future[Any] = Future()
        self._calls.put((fn, future))
        return future

    def _work(self) -> None:
        while True:
            fn, future = self._calls.get()
            try:
                result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                future.set_exception(e)
            else:
                future.set_result(result)


class FeatureCache:
    """A bounded in-process cache of one entity's features (key -> values) with a time to live: repeated users
    and queries skip the store for `ttl_s` seconds (daily features change once a day). Thread-safe; least
    recently used out first beyond `max_entries`; counts hits and misses for /metrics."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        if ttl_s < 0 or max_entries < 0:
            raise ValueError(f"feature cache ttl and size must be >= 0, got {ttl_s} and {max_entries}")
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._items: OrderedDict[tuple[str, Any], tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every invalidation: values read before one are not cached after it
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self.max_entries > 0

    def get(self, entity: str, key: Any) -> dict[str, Any] | None:
        """The cached values of (entity, key), or None (a miss) when absent or expired."""
        if not self.enabled:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._items.get((entity, key))
            if hit is not None and hit[0] > now:
                self._items.move_to_end((entity, key))
                self.hits += 1
                return hit[1]
            self.misses += 1
            return None

    @property
    def generation(self) -> int:
        """Take it before reading the store and pass it to `put`: values read before an invalidation are dropped."""
        return self._generation

    def put(self, entity: str, key: Any, values: dict[str, Any], generation: int | None = None) -> None:
        """Cache the values of (entity, key), unless an invalidation happened since `generation` was taken."""
        if not self.enabled:
            return
        with self._lock:
            if generation is not None and generation != self._generation:
                return  # read before a push that the invalidation announced: possibly stale
            self._items[(entity, key)] = (time.monotonic() + self.ttl_s, values)
            self._items.move_to_end((entity, key))
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def invalidate(self, entity: str, keys: Any) -> None:
        """Forget the cached values of `keys` of one entity (their store rows just changed, e.g. pushed events);
        a lookup in flight that read the store before this does not cache its answer."""
        with self._lock:
            self._generation += 1
            for key in keys:
                self._items.pop((entity, key), None)

    def __len__(self) -> int:
        return len(self._items)


class _Cached(NamedTuple):
    values: dict[str, Any]
    missing: set[str]
    generation: int


class OnlineFeatureSource:
    """Fetches online features per request; opens the store once (thread-safe), backs off after a failure.

    Each lookup runs on a lookup thread; the request waits at most `timeout_s` for it (`connect_timeout_s` for
    the first lookup on a freshly opened store, which sets up its connection) and otherwise goes on without
    features (`fallback="timeout"`), counted as a failure. `trip_after` consecutive failures start the backoff
    (the store skipped for `retry_s`, doubling per further failure, at most 4x; the next try opens a fresh
    store). At most `max_pending` lookups may be outstanding (hung ones count); beyond that the store is skipped
    at once. A lookup that answers after its request gave up leaves the count as it is (a store slower than the
    timeout keeps failing requests, so it trips); one answered in time resets it. No lock is held while
    waiting."""

    def __init__(
        self,
        directory: str | Path,
        retry_s: float = 5.0,
        timeout_s: float = LOOKUP_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        max_pending: int = MAX_PENDING_LOOKUPS,
        opener: Callable[[Path], Any] | None = None,
        cache: FeatureCache | None = None,
        trip_after: int = TRIP_AFTER,
    ) -> None:
        if not timeout_s > 0 or not connect_timeout_s > 0:
            raise ValueError(f"feature timeouts must be > 0 seconds, got {timeout_s} and {connect_timeout_s}")
        if max_pending < 1:
            raise ValueError(f"max pending lookups must be >= 1, got {max_pending}")
        if trip_after < 1:
            raise ValueError(f"feature trip-after must be >= 1 consecutive failures, got {trip_after}")
        self.trip_after = trip_after
        self.directory = Path(directory)
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.connect_timeout_s = max(connect_timeout_s, timeout_s)
        self.max_pending = max_pending
        self._opener = opener or open_feature_store
        self._store: Any = None
        self._answered: Any = None  # the store that answered the last lookup (its connection is set up)
        self._down_until = 0.0
        self._failures = 0  # consecutive failures: from trip_after on the backoff doubles with each, up to 4x
        self._pending = 0  # lookups submitted and not finished, hung ones included
        self._lock = threading.Lock()
        self._threads = _LookupThreads("ebr-features")
        self.cache = cache if cache is not None else FeatureCache(0, 0)  # (an empty cache is falsy: it has a len)
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """The last lookup (or open) succeeded."""
        return self.last_error is None

    @property
    def pending(self) -> int:
        """Lookups outstanding now (a hung store's stay counted until they return)."""
        return self._pending

    def _fail(self, reason: str, error: BaseException | None) -> FeatureLookup:
        if error is not None:
            message = f"{type(error).__name__}: {error}"
            if message != self.last_error:
                log.warning("online feature store %s (%s): %s; serving without features", self.directory, reason,
                            message)
            self.last_error = message
            self._failures += 1
            tripped = self._failures >= self.trip_after
            if tripped:
                self._down_until = time.monotonic() + self.retry_s * min(2 ** (self._failures - self.trip_after), 4)
            if tripped or reason != "timeout":
                with self._lock:
                    self._store = None  # reconnect next time: a fresh store and connection
        return FeatureLookup(fallback=reason)

    @property
    def backing_off(self) -> bool:
        """The store is skipped now: `trip_after` consecutive failures and the backoff not yet over."""
        return time.monotonic() < self._down_until

    def _ensure_store(self) -> Any:
        store = self._store
        if store is not None:
            return store
        opened = self._opener(self.directory)  # no lock held: opening may wait on the network
        with self._lock:
            if self._store is None:
                self._store = opened
                log.info("online feature store opened from %s", self.directory)
            return self._store

    def _lookup(self, user_id: int | None, query: str, cached: _Cached | None = None) -> dict[str, Any]:
        """On a lookup thread: open the store if needed, read the features, record the success."""
        try:
            try:
                store = self._ensure_store()
            except Exception as e:
                raise _OpenFailed(f"{type(e).__name__}: {e}") from e
            values = self._read(store, user_id, query, cached)
            with self._lock:
                self._answered = store  # its connection is set up, even when this answer came too late
            return values
        finally:
            with self._lock:
                self._pending -= 1

    def _cached(self, user_id: int | None, query: str) -> _Cached:
        """What the cache holds for (user, query): the values, the entities still to read, and the cache
        generation taken before looking (values read from the store after an invalidation are not cached)."""
        generation = self.cache.generation
        values: dict[str, Any] = {}
        missing = set()
        for entity, key in (("user", user_id), ("query", query)):
            cached = self.cache.get(entity, key) if key is not None else None
            if cached is None:
                missing.add(entity)
            else:
                values.update(cached)
        return _Cached(values, missing, generation)

    def _read(self, store: Any, user_id: int | None, query: str, cached: _Cached | None = None) -> dict[str, Any]:
        """The service's features: cached entities from the cache, the rest in one store call."""
        if cached is None:
            cached = self._cached(user_id, query)
        values = cached.values  # a fresh dict of this lookup's
        if cached.missing:
            keys = {"user": user_id, "query": query}
            fresh = online_features(store, user_id=user_id, query=query, service_name=SERVICE,
                                    entities=cached.missing)
            values.update(fresh)
            for entity in cached.missing:
                if keys[entity] is not None:
                    self.cache.put(entity, keys[entity], {n: fresh[n] for n in ENTITY_FEATURES[entity]},
                                   cached.generation)
        return values

    def _reserve(self, what: str) -> tuple[int, float]:
        """Count one more outstanding call (StoreBusy when `max_pending` are outstanding): (how many are now,
        how long to wait for it: the lookup timeout once the store answered, else the connect timeout)."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise StoreBusy(f"{self._pending} {what} still waiting for the store: not asking it again")
            self._pending += 1
            set_up = self._store is not None and self._store is self._answered
            return self._pending, self.timeout_s if set_up else self.connect_timeout_s

    def _call(self, user_id: int | None, query: str, wait_s: float | None = None,
              cached: _Cached | None = None) -> dict[str, Any]:
        """The lookup on a lookup thread, waited for at most `wait_s` (default: by whether the store is set up);
        raises StoreTimeout, _OpenFailed or the store's error."""
        outstanding, default_wait_s = self._reserve("lookups")
        if wait_s is None:
            wait_s = default_wait_s
        future = self._threads.submit(lambda: self._lookup(user_id, query, cached), outstanding)
        done, _ = wait([future], timeout=wait_s)
        if not done:
            raise StoreTimeout(f"no answer within {wait_s:g} s")
        values = future.result()
        self._answered_in_time()
        return values

    def _answered_in_time(self) -> None:
        """A lookup answered within its wait: the store is healthy and the failure count starts again. (An answer
        after its request gave up is not one: a store slower than the timeout keeps failing and trips.)"""
        if self.last_error is not None:
            log.info("online feature store %s answers again", self.directory)
        self.last_error = None
        self._failures = 0
        self._down_until = 0.0

    def submit(self, fn: Callable[[Any], Any]) -> tuple[Future[Any], float]:
        """Run `fn(store)` on a lookup thread (the store opened if needed), outside the lookups' health record;
        returns its future and how long to wait for it (as a lookup would). Raises StoreUnavailable while the
        store backs off after a failure, StoreBusy when `max_pending` calls are outstanding; the future raises
        StoreUnavailable when the store cannot be opened, else `fn`'s error."""
        if self.backing_off:
            raise StoreUnavailable(self.last_error or "the online store failed recently")
        outstanding, wait_s = self._reserve("calls")

        def call() -> Any:
            try:
                try:
                    store = self._ensure_store()
                except Exception as e:
                    raise StoreUnavailable(f"{type(e).__name__}: {e}") from e
                return fn(store)
            finally:
                with self._lock:
                    self._pending -= 1

        return self._threads.submit(call, outstanding), wait_s

    def open(self) -> bool:
        """Open the store and make one lookup (start-up, before traffic: the first lookup pays Feast's set-up, so
        it may take up to OPEN_TIMEOUT_S); False, logged, when the store cannot answer."""
        try:
            self._call(1, "warm-up", OPEN_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - an unreachable store degrades, it never stops the server
            self._fail("unavailable", e.__cause__ if isinstance(e, _OpenFailed) and e.__cause__ else e)
            return False
        return True

    def fetch(self, user_id: int | None, query: str) -> FeatureLookup:
        """Features of (user, query); on a store failure or timeout an empty lookup with `fallback` set."""
        cached = self._cached(user_id, query)
        if not cached.missing:  # all cached: answered on this thread (no hop to a lookup thread, ~0.1 ms), even
            values = cached.values  # while the store is down
            return FeatureLookup(values=values, user_known=user_id is not None and has_user_features(values))
        if self.backing_off:
            return self._fail("unavailable", None)
        try:
            values = self._call(user_id, query, cached=cached)
        except StoreBusy:
            return self._fail("timeout", None)  # skipped at once: no new thread, no new failure counted
        except StoreTimeout as e:
            return self._fail("timeout", e)
        except _OpenFailed as e:
            return self._fail("unavailable", e.__cause__ or e)
        except Exception as e:  # noqa: BLE001 - store errors degrade to unpersonalized answers
            return self._fail("error", e)
        return FeatureLookup(values=values, user_known=user_id is not None and has_user_features(values))
