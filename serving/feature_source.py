"""User and query features of one request from the Feast online store, degrading to none when it fails.

The store directory is either a features directory of `ebr.features` (it holds `store.json` or
`registry.db`; opened with `ebr.features.open_store`, never applied from here) or a Feast repository holding a
`feature_store.yaml` (e.g. a production one with a Redis online store). A store that cannot be opened or
answers with an error makes the request unpersonalized (and without query-understanding fields); the failure
is counted and the store is not asked again for `retry_s` seconds (doubling per consecutive failure, at most
4x). A failed lookup also drops the store: the next try opens a fresh one (a new connection), so a store that
was truncated, replaced or restarted under the server comes back without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebr.features import online_features
from ebr.features.definitions import SERVICES, VIEW_BY_NAME
from ebr.features.store import REGISTRY, STORE_JSON

log = logging.getLogger(__name__)

SERVICE = "query_tower_online"
USER_FEATURES = frozenset(
    name for v in SERVICES[SERVICE] if VIEW_BY_NAME[v].entity == "user" for name in VIEW_BY_NAME[v].feature_names
)
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


class OnlineFeatureSource:
    """Fetches online features per request; opens the store once (thread-safe), backs off after a failure."""

    def __init__(self, directory: str | Path, retry_s: float = 5.0) -> None:
        self.directory = Path(directory)
        self.retry_s = retry_s
        self._store: Any = None
        self._down_until = 0.0
        self._failures = 0  # consecutive failures: the backoff doubles with each, up to 4x retry_s
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """The last lookup (or open) succeeded."""
        return self.last_error is None

    def _fail(self, reason: str, error: BaseException | None) -> FeatureLookup:
        if error is not None:
            message = f"{type(error).__name__}: {error}"
            if message != self.last_error:
                log.warning("online feature store %s (%s): %s; serving without features", self.directory, reason,
                            message)
            self.last_error = message
            self._failures += 1
            self._down_until = time.monotonic() + self.retry_s * min(2 ** (self._failures - 1), 4)
            with self._lock:
                self._store = None  # reconnect next time: a fresh store and connection
        return FeatureLookup(fallback=reason)

    def _ensure_store(self) -> Any:
        with self._lock:
            if self._store is None:
                self._store = open_feature_store(self.directory)
                log.info("online feature store opened from %s", self.directory)
            return self._store

    def open(self) -> bool:
        """Open the store and make one lookup (start-up, before traffic: the first lookup pays Feast's set-up);
        False, logged, when the store cannot answer."""
        try:
            online_features(self._ensure_store(), user_id=1, query="warm-up", service_name=SERVICE)
        except Exception as e:  # noqa: BLE001 - an unreachable store degrades, it never stops the server
            self._fail("unavailable", e)
            return False
        return True

    def fetch(self, user_id: int | None, query: str) -> FeatureLookup:
        """Features of (user, query); on any store failure an empty lookup with `fallback` set."""
        if time.monotonic() < self._down_until:
            return self._fail("unavailable", None)
        try:
            store = self._ensure_store()
        except Exception as e:  # noqa: BLE001
            return self._fail("unavailable", e)
        try:
            values = online_features(store, user_id=user_id, query=query, service_name=SERVICE)
        except Exception as e:  # noqa: BLE001 - store errors degrade to unpersonalized answers
            return self._fail("error", e)
        if self.last_error is not None:
            log.info("online feature store %s answers again", self.directory)
        self.last_error = None
        self._failures = 0
        return FeatureLookup(values=values, user_known=user_id is not None and has_user_features(values))
