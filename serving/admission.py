"""Admission of searches: compute runs on a bounded worker pool, off the event loop, behind a bounded queue.

The event loop only parses requests and writes answers, so `/healthz`, `/readyz` and `/metrics` answer at once
however busy the searches are (a liveness probe never queues behind a search). At most `workers` searches
compute at a time and at most `max_queue` more wait; a search beyond that is shed with 503 and `Retry-After`
instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from serving.metrics import ServerMetrics

T = TypeVar("T")


class Overloaded(RuntimeError):
    """Every worker is busy and the queue is full: answer 503 with Retry-After."""


class SearchAdmission:
    """A bounded pool of compute threads with a bounded wait queue; counts live in the metrics' gauges."""

    def __init__(self, workers: int, max_queue: int, metrics: ServerMetrics) -> None:
        self.workers, self.max_queue, self.metrics = workers, max_queue, metrics
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ebr-search")
        self._admitted = 0  # running + waiting; touched on the event loop only
        self._running = 0
        self._lock = threading.Lock()  # `_running` is changed by the worker threads

    @property
    def admitted(self) -> int:
        return self._admitted

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on a worker thread; raises Overloaded at once when workers + queue are full."""
        if self._admitted >= self.workers + self.max_queue:
            self.metrics.shed.inc()
            raise Overloaded(f"{self._admitted} searches admitted ({self.workers} computing, up to "
                             f"{self.max_queue} waiting): retry later")
        self._admitted += 1
        self._publish()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, fn)
        finally:
            self._admitted -= 1
            self._publish()

    def _timed(self, fn: Callable[[], T]) -> T:
        with self._lock:
            self._running += 1
        self._publish()
        try:
            return fn()
        finally:
            with self._lock:
                self._running -= 1
            self._publish()

    def _publish(self) -> None:
        running = self._running
        self.metrics.in_flight.set(running)
        self.metrics.queue_depth.set(max(0, self._admitted - running))

    def close(self) -> None:
        """Finish the searches already running, then stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=False)
