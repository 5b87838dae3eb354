"""Prometheus metrics of one server instance, on their own registry (several apps can live in one process).

With `ebr serve --workers N` the worker processes share the directory EBR_METRICS_MULTIPROC_DIR names (the
command also points prometheus_client's PROMETHEUS_MULTIPROC_DIR at it before anything imports the client):
every value is written there and `/metrics`, whichever worker answers, aggregates all of them (prometheus_client's
multiprocess mode): counters and histograms are summed, the in-flight and queue gauges summed over live
workers, readiness and store health are the minimum over live workers, bundle gauges the maximum.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# Our own variable: Feast sets PROMETHEUS_MULTIPROC_DIR to a temp dir of its own when it is imported, so that
# variable alone does not mean this server runs several workers.
MULTIPROC_ENV = "EBR_METRICS_MULTIPROC_DIR"


def multiprocess() -> bool:
    """Whether metrics are shared between `ebr serve --workers` processes (EBR_METRICS_MULTIPROC_DIR is set)."""
    return bool(os.environ.get(MULTIPROC_ENV))

EVENT_OUTCOMES = ("pushed", "stale", "ignored", "rejected", "failed")
STAGES = ("features", "featurize", "batch_wait", "tower", "search", "filter", "lexical", "rescore")
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class ServerMetrics:
    """Request, stage, bundle and degradation metrics (names prefixed `ebr_serve_`)."""

    def __init__(self) -> None:
        disable_created_metrics()  # no `_created` series: they double the exposition for no use here
        self._served: str | None = None
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ebr_serve_requests", "HTTP requests by route and status code",
                                ["route", "code"], registry=r)
        self.errors = Counter("ebr_serve_errors", "HTTP answers with status >= 400 by route and code",
                              ["route", "code"], registry=r)
        self.request_seconds = Histogram("ebr_serve_request_seconds", "HTTP request latency in the server",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("ebr_serve_stage_seconds", "time per search stage",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.bundle_info = Gauge("ebr_serve_bundle_info", "1 for the bundle version being served",
                                 ["version"], registry=r, multiprocess_mode="max")
        self.bundle_docs = Gauge("ebr_serve_bundle_docs", "docs in the served index", registry=r,
                                 multiprocess_mode="max")
        self.bundle_loaded = Gauge("ebr_serve_bundle_loaded_timestamp_seconds",
                                   "when the served bundle was switched in (unix time)", registry=r,
                                   multiprocess_mode="max")
        self.bundle_loads = Counter("ebr_serve_bundle_loads", "bundle load attempts by outcome (ok, refused)",
                                    ["outcome"], registry=r)
        self.bundle_refusals = Counter("ebr_serve_bundle_refusals",
                                       "bundles refused by reason (checksum, missing_file, dimension, invalid)",
                                       ["version", "reason"], registry=r)
        self.ready = Gauge("ebr_serve_ready", "1 once a bundle is loaded and warmed", registry=r,
                           multiprocess_mode="livemin")
        self.bundle_fallback = Gauge("ebr_serve_bundle_fallback",
                                     "1 while a last known good bundle serves because CURRENT names a refused one",
                                     registry=r, multiprocess_mode="livemax")
        self.feature_store_up = Gauge("ebr_serve_feature_store_up",
                                      "1 while the last online-store lookup succeeded (0: serving unpersonalized)",
                                      registry=r, multiprocess_mode="livemin")
        self.feature_cache = Gauge("ebr_serve_feature_cache_lookups",
                                   "online-feature cache lookups since start by result (hit, miss)", ["result"],
                                   registry=r, multiprocess_mode="livesum")
        self.feature_fallbacks = Counter("ebr_serve_feature_fallbacks",
                                         "requests answered without online features, by reason",
                                         ["reason"], registry=r)
        self.events = Counter("ebr_serve_events",
                              "events of POST /events by outcome: pushed (folded into real-time features), stale, "
                              "ignored, rejected (a bad batch: nothing pushed), failed (the store did not take it)",
                              ["outcome"], registry=r)
        self.relevance_dropped = Counter("ebr_serve_relevance_dropped",
                                         "candidates dropped by relevance control and filters", registry=r)
        self.constrained = Counter("ebr_serve_constrained_searches",
                                   "searches whose constraints (filters, query understanding) ran inside the ANN "
                                   "and lexical search", registry=r)
        self.short_results = Counter("ebr_serve_short_results",
                                     "answers with fewer than k items (corpus, radius or fetch bound)", registry=r)
        self.relaxed_items = Counter("ebr_serve_relaxed_items",
                                     "items filled in without the query-understanding constraint (relax)", registry=r)
        self.rerank_unavailable = Counter("ebr_serve_rerank_unavailable",
                                          "re-rank requests answered in ANN order (no usable coarse ranker)",
                                          registry=r)
        self.in_flight = Gauge("ebr_serve_searches_in_flight", "searches computing on a worker now", registry=r,
                               multiprocess_mode="livesum")
        self.queue_depth = Gauge("ebr_serve_search_queue_depth", "searches admitted and waiting for a worker",
                                 registry=r, multiprocess_mode="livesum")
        self.shed = Counter("ebr_serve_searches_shed", "searches answered 503 because workers and queue were full",
                            registry=r)
        self.batch_size = Histogram("ebr_serve_batch_size", "requests per query-tower batch (micro-batching)",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64), registry=r)
        self.worker = Gauge("ebr_serve_worker", "1 per live server process (one series per pid with --workers)",
                            registry=r, multiprocess_mode="liveall")
        self.worker.set(1)
        if not multiprocess():  # RSS, CPU and open fds of this process (per worker only in multiprocess mode)
            ProcessCollector(registry=r)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for outcome in ("ok", "refused"):
            self.bundle_loads.labels(outcome)
        for outcome in EVENT_OUTCOMES:
            self.events.labels(outcome)

    def set_bundle(self, version: str, docs: int, loaded_at: float) -> None:
        """Point the bundle gauges at the version now served."""
        if self._served is not None and self._served != version:
            self.bundle_info.labels(self._served).set(0)  # multiprocess files keep a removed series: zero it first
            self.bundle_info.remove(self._served)
        self._served = version
        self.bundle_info.labels(version).set(1)
        self.bundle_docs.set(docs)
        self.bundle_loaded.set(loaded_at)
        self.ready.set(1)

    def render(self) -> bytes:
        """The text exposition format: this registry, or every worker's values in multiprocess mode."""
        if multiprocess():
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=os.environ[MULTIPROC_ENV])
            return generate_latest(merged)
        return generate_latest(self.registry)

    @staticmethod
    def worker_exit() -> None:
        """Drop this process's live gauges from the multiprocess aggregate (a stopped worker is not in flight)."""
        if multiprocess():
            mark_process_dead(os.getpid(), path=os.environ[MULTIPROC_ENV])
