"""Which bundle is served, and hot swaps: a watcher thread follows `<bundles>/CURRENT`; a reload loads and
verifies the new bundle beside the old one, warms it, then switches with one reference assignment.

A refused bundle (bad checksum, missing file, wrong dimension, unloadable) is logged and counted in
`ebr_serve_bundle_refusals_total`; the old bundle keeps serving and the watcher does not retry that version
until CURRENT changes again (`POST /admin/reload` retries it at once). A server that starts while CURRENT names
a refused bundle serves the last known good one instead (the newest earlier version that verifies), says so in
`/readyz` and `ebr_serve_bundle_fallback`, and switches as soon as CURRENT names a bundle that verifies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ebr.bundle import current_version
from serving.loaded_bundle import BundleRefused, LoadedBundle
from serving.metrics import ServerMetrics

log = logging.getLogger(__name__)


class NoBundle(Exception):
    """Nothing is published yet (CURRENT is missing or empty)."""


@dataclass(frozen=True)
class ReloadOutcome:
    """The served version after a reload, the one before it, and whether it changed."""

    version: str
    previous: str | None
    changed: bool


class BundleManager:
    """Holds the served `LoadedBundle`; loads, verifies, warms and swaps; optionally watches CURRENT."""

    def __init__(
        self,
        root: str | Path,
        *,
        warm: Callable[[LoadedBundle], None] | None = None,
        metrics: ServerMetrics | None = None,
        interval_s: float = 5.0,
        before_first_load: Callable[[], object] | None = None,
    ) -> None:
        self.root = Path(root)
        self.interval_s = interval_s
        self._warm = warm
        self._metrics = metrics
        self._before_first_load = before_first_load
        self._current: LoadedBundle | None = None
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[str] = set()
        self.last_error: str | None = None
        self.fallback_from: str | None = None  # the refused version CURRENT names while a last good one serves

    @property
    def current(self) -> LoadedBundle | None:
        """The bundle to serve; read once per request."""
        return self._current

    def reload(self, force: bool = False) -> ReloadOutcome:
        """Switch to the version CURRENT names unless it is served; `force` retries a refused one. Raises NoBundle
        when nothing is published, BundleRefused when the bundle is refused."""
        with self._load_lock:
            version = current_version(self.root)
            if version is None:
                raise NoBundle(f"no bundle published yet: {self.root / 'CURRENT'} is missing or empty")
            served = self._current.version if self._current is not None else None
            if version == served:
                return ReloadOutcome(version, served, False)
            if version in self._refused and not force:
                raise BundleRefused(version, "known", "refused before; waiting for CURRENT to change")
            if self._current is None and self._before_first_load is not None:
                self._before_first_load()
                self._before_first_load = None
            t0 = time.perf_counter()
            try:
                bundle = self._load(version)
            except BundleRefused as e:
                if self._current is None:  # nothing serves yet: start on the last known good bundle instead
                    fallback = self._last_known_good(version)
                    if fallback is not None:
                        self._switch(fallback, None, t0, fallback_from=version)
                        self.last_error = (f"{e}; serving last known good bundle {fallback.version} until CURRENT "
                                           "names a bundle that verifies")
                        return ReloadOutcome(fallback.version, None, True)
                raise
            self._switch(bundle, served, t0)
            return ReloadOutcome(version, served, True)

    def _load(self, version: str) -> LoadedBundle:
        """Open, verify and warm one version; a refusal is recorded (log, metrics, refused set) and raised."""
        try:
            bundle = LoadedBundle.open(self.root / version, version)
            if self._warm is not None:
                self._warm(bundle)
            return bundle
        except BundleRefused as e:
            self._refuse(e)
            raise
        except Exception as e:  # noqa: BLE001 - a warm-up crash refuses the bundle, never the server
            refused = BundleRefused(version, "invalid", f"warm-up failed: {type(e).__name__}: {e}")
            self._refuse(refused)
            raise refused from e

    def _switch(self, bundle: LoadedBundle, served: str | None, t0: float, fallback_from: str | None = None) -> None:
        self._current = bundle  # the swap: one reference assignment
        self._refused.discard(bundle.version)
        self.last_error = None
        self.fallback_from = fallback_from
        if self._metrics is not None:
            self._metrics.bundle_loads.labels("ok").inc()
            self._metrics.set_bundle(bundle.version, bundle.ntotal, bundle.loaded_at)
            self._metrics.bundle_fallback.set(1 if fallback_from else 0)
        log.info("serving bundle %s (%d docs, previous %s%s), loaded and warmed in %.2fs", bundle.version,
                 bundle.ntotal, served, f"; CURRENT names refused {fallback_from}" if fallback_from else "",
                 time.perf_counter() - t0)

    def _last_known_good(self, refused: str) -> LoadedBundle | None:
        """The newest published version before `refused` (by name: versions start with their day) that loads,
        verifies and warms; None when there is none."""
        versions = sorted((p.name for p in self.root.iterdir()
                           if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()
                           and p.name < refused), reverse=True) if self.root.is_dir() else []
        for version in versions:
            if version in self._refused:
                continue
            try:
                return self._load(version)
            except BundleRefused:
                continue
        return None

    def _refuse(self, e: BundleRefused) -> None:
        self._refused.add(e.version)
        self.last_error = str(e)
        log.error("%s; still serving %s", e, self._current.version if self._current else "nothing")
        if self._metrics is not None:
            self._metrics.bundle_loads.labels("refused").inc()
            self._metrics.bundle_refusals.labels(e.version, e.reason).inc()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.reload()
            except NoBundle as e:
                if self.last_error != str(e):
                    log.warning("%s; waiting", e)
                self.last_error = str(e)
            except BundleRefused:
                pass  # logged and counted when it was refused
            except Exception:  # noqa: BLE001 - the watcher must outlive any error
                log.exception("bundle watcher error")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start the watcher thread (it loads the first bundle at once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="bundle-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watcher thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
