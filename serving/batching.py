"""Cross-request micro-batching of the query tower and the first Faiss search (dynamic batching).

Search workers run the per-request stages (online features, featurize) in parallel, then hand their tower
inputs to `TowerBatcher.run`. The first caller that finds the batcher idle becomes the batch's leader: it waits
for the requests still on their way (those past admission but not yet featurized) up to `max_wait_s` or
`max_batch` rows, runs one tower forward pass over all of them and one Faiss search per distinct fetch size,
and hands each caller its rows. Nobody waits when nobody else is on the way, so a lone request pays no delay.

One batch computes at a time; requests of different bundles (a hot swap in the middle) never share a batch.
The tower's rows are independent and Faiss answers each query on its own, so a batched answer equals the
unbatched one (the test checks top-K and scores within 1e-5).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from serving.metrics import ServerMetrics


@dataclass(eq=False)
class _Job:
    bundle: Any
    inputs: dict[str, torch.Tensor]
    fetch: int
    allowed: Any = None  # an AllowedSet of the bundle's searcher: the request's own constrained search
    done: bool = False
    taken: bool = False
    result: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    error: BaseException | None = None
    rows: int = 1
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Ticket:
    """A request on its way to the batcher; `arrived` once `run` has counted it."""

    arrived: bool = False


@dataclass
class BatchOutput:
    """One request's share of a batch: its query vector [1, d], scores and ids [1, fetch], and batch facts."""

    vector: np.ndarray
    scores: np.ndarray
    ids: np.ndarray
    batch_size: int
    tower_s: float
    search_s: float


class TowerBatcher:
    """Coalesces concurrent (tower forward + first search) calls; `max_batch=1` turns batching off."""

    def __init__(self, max_batch: int = 16, max_wait_s: float = 0.002, metrics: ServerMetrics | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max batch wait must be >= 0 seconds, got {max_wait_s}")
        self.max_batch, self.max_wait_s, self.metrics = max_batch, max_wait_s, metrics
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._upstream = 0  # requests admitted to the search path that have not reached the batcher yet
        self._busy = False

    @contextmanager
    def on_the_way(self) -> Iterator[Ticket]:
        """Mark a request as heading for the batcher (features, featurize), so a leader may wait for it; pass
        the ticket to `run`, which counts the arrival (a request that fails on the way is uncounted on exit)."""
        ticket = Ticket()
        with self._cond:
            self._upstream += 1
        try:
            yield ticket
        finally:
            if not ticket.arrived:
                with self._cond:
                    self._upstream -= 1
                    self._cond.notify_all()

    def run(self, bundle: Any, inputs: dict[str, torch.Tensor], fetch: int, ticket: Ticket | None = None,
            allowed: Any = None) -> BatchOutput:
        """The tower output and top-`fetch` search of one request (among `allowed` doc ids when given: its own
        constrained search), computed in a batch with its neighbours."""
        job = _Job(bundle, inputs, fetch, allowed)
        with self._cond:
            if ticket is not None and not ticket.arrived:
                ticket.arrived = True
                self._upstream -= 1
            self._pending.append(job)
            self._cond.notify_all()
            while True:
                if job.done:
                    return self._output(job)
                if not self._busy and not job.taken:
                    batch = self._lead(job)
                    break
                self._cond.wait()
        try:
            self._compute(batch)
        finally:  # whatever happened, every caller of the batch is answered and the next batch may start
            with self._cond:
                for j in batch:
                    if j.result is None and j.error is None:
                        j.error = RuntimeError("the batch was aborted")
                    j.rows, j.done = len(batch), True
                self._busy = False
                self._cond.notify_all()
        return self._output(job)

    # ----------------------------------------------------------------------------------------- internals

    def _same(self, job: _Job) -> list[_Job]:
        return [j for j in self._pending if j.bundle is job.bundle and not j.taken]

    def _lead(self, job: _Job) -> list[_Job]:
        """With the lock held: wait for the requests on their way (bounded), then take this bundle's batch."""
        self._busy = True
        deadline = time.monotonic() + self.max_wait_s
        while self.max_batch > 1 and len(self._same(job)) < self.max_batch:
            # `_upstream` counts requests inside `on_the_way`; the ones already pending have left it
            on_the_way = self._upstream
            left = deadline - time.monotonic()
            if on_the_way <= 0 or left <= 0:
                break
            self._cond.wait(left)
        batch = [job] + [j for j in self._same(job) if j is not job][: self.max_batch - 1]
        for j in batch:
            j.taken = True
            self._pending.remove(j)
        return batch

    def _compute(self, batch: list[_Job]) -> None:
        """One tower pass over the batch, one Faiss search per fetch size. If the batch fails, each request is
        computed alone, so one bad request cannot fail its neighbours; each gets its own result or error."""
        try:
            self._forward(batch)
        except Exception as e:  # noqa: BLE001 - retried one by one below (or handed to the lone caller)
            if len(batch) == 1:
                batch[0].error = e
            else:
                for j in batch:
                    try:
                        self._forward([j])
                    except Exception as one:  # noqa: BLE001 - this request's own failure
                        j.error = one
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))

    @staticmethod
    def _forward(batch: list[_Job]) -> None:
        bundle = batch[0].bundle
        t0 = time.perf_counter()
        x = {key: torch.cat([j.inputs[key] for j in batch]) for key in batch[0].inputs}
        vectors = bundle.tower(x).numpy().astype(np.float32, copy=False)
        tower_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = {}
        for fetch in sorted({j.fetch for j in batch if j.allowed is None}):
            rows = [i for i, j in enumerate(batch) if j.fetch == fetch and j.allowed is None]
            scores, ids = bundle.searcher.search(vectors[rows], fetch)
            for r, i in enumerate(rows):
                results[i] = (vectors[i : i + 1], scores[r : r + 1], ids[r : r + 1])
        for i, j in enumerate(batch):  # constrained requests: each its own selector
            if j.allowed is not None:
                scores, ids = bundle.searcher.search(vectors[i : i + 1], j.fetch, allowed=j.allowed)
                results[i] = (vectors[i : i + 1], scores, ids)
        search_s = time.perf_counter() - t0
        for i, j in enumerate(batch):
            j.result, j.error = results[i], None
            j.extra = {"tower": tower_s, "search": search_s}

    @staticmethod
    def _output(job: _Job) -> BatchOutput:
        if job.error is not None:
            raise job.error
        assert job.result is not None
        vector, scores, ids = job.result
        return BatchOutput(vector, scores, ids, job.rows, job.extra.get("tower", 0.0), job.extra.get("search", 0.0))
