"""The search path of one request, callable in-process: online features -> featurize -> query tower -> Faiss
-> relevance control (filter) -> optional coarse re-score, with the time of each stage.

The bundle reference is taken once per request, so a request started before a hot swap finishes on the
bundle it started with. Relevance control over-fetches (2k, then 4x more per round up to
`max(k, MAX_FETCH)` candidates) so that k docs remain when the reachable corpus allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ebr.models.inputs import featurize_queries
from serving.feature_source import QU_BRAND, QU_CATEGORY, FeatureLookup, OnlineFeatureSource
from serving.loaded_bundle import LoadedBundle
from serving.metrics import STAGES, ServerMetrics
from serving.relevance_filter import Expectation, removed
from serving.schema import SearchRequest
from serving.synthetic import example_query_rows

MAX_FETCH = 8192
FETCH_GROWTH = 4


class NotReady(Exception):
    """No bundle has been loaded yet."""


@dataclass
class SearchResult:
    """Items as (doc_id, score, coarse_score or None), the bundle version and per-stage seconds."""

    items: list[tuple[int, float, float | None]]
    version: str
    personalized: bool
    reranked: bool
    stages: dict[str, float] = field(default_factory=dict)
    candidates: int = 0
    dropped: int = 0
    fallback: str | None = None

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())


class SearchEngine:
    """Runs requests against whatever bundle `current()` returns at the start of each request."""

    def __init__(
        self,
        current: Callable[[], LoadedBundle | None],
        features: OnlineFeatureSource | None = None,
        metrics: ServerMetrics | None = None,
        max_fetch: int = MAX_FETCH,
    ) -> None:
        self._current = current
        self.features = features
        self.metrics = metrics
        self.max_fetch = max_fetch

    # ------------------------------------------------------------------------------------------- stages

    def _features(self, req: SearchRequest) -> tuple[dict[str, Any], FeatureLookup]:
        row: dict[str, Any] = {"query": req.query}
        if self.features is None:
            return row, FeatureLookup(fallback="no_feature_store")
        found = self.features.fetch(req.user_id, req.query)
        if found.fallback is not None and self.metrics is not None:
            self.metrics.feature_fallbacks.labels(found.fallback).inc()
        if found.user_known:
            row.update(found.values)
            row["user_id"] = req.user_id
        return row, found

    def _featurize(self, bundle: LoadedBundle, row: dict[str, Any], found: FeatureLookup) -> dict[str, Any]:
        """Query-tower inputs; a row the featurizer rejects (bad store values) falls back to the query alone."""
        try:
            return featurize_queries([row], bundle.featurizer)
        except ValueError:
            found.fallback = "bad_features"
            if self.metrics is not None:
                self.metrics.feature_fallbacks.labels("bad_features").inc()
            query = row["query"]
            row.clear()
            row["query"] = query
            return featurize_queries([row], bundle.featurizer)

    def _retrieve(
        self,
        bundle: LoadedBundle,
        q: np.ndarray,
        req: SearchRequest,
        expect: list[Expectation],
        stages: dict[str, float],
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(kept ids, kept scores, candidates looked at, dropped) after relevance control and the radius."""
        n, k = bundle.ntotal, req.k
        constrained = any(e.active for e in expect)
        limit = min(n, max(k, self.max_fetch))
        fetch = min(n, 2 * k if constrained else k)
        while True:
            t0 = time.perf_counter()
            scores, ids = bundle.searcher.search(q, fetch)
            scores, ids = scores[0], ids[0]
            stages["search"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            valid = ids >= 0
            exhausted = int(valid.sum()) < fetch or fetch >= n
            scores, ids = scores[valid], ids[valid]
            beyond_radius = False
            if req.radius is not None:
                inside = scores >= req.radius
                beyond_radius = not bool(inside.all())
                scores, ids = scores[inside], ids[inside]
            drop = removed(ids, bundle.docs, expect) if constrained else np.zeros(len(ids), dtype=bool)
            kept_ids, kept_scores = ids[~drop][:k], scores[~drop][:k]
            stages["filter"] += time.perf_counter() - t0
            if len(kept_ids) >= k or exhausted or beyond_radius or fetch >= limit:
                return kept_ids, kept_scores, len(ids), int(drop.sum())
            fetch = min(limit, fetch * FETCH_GROWTH)

    # --------------------------------------------------------------------------------------------- public

    def search(self, req: SearchRequest, bundle: LoadedBundle | None = None) -> SearchResult:
        """Answer one validated request (on `bundle`, or the current one taken once)."""
        bundle = bundle if bundle is not None else self._current()
        if bundle is None:
            raise NotReady("no bundle is loaded yet")
        stages = dict.fromkeys(STAGES, 0.0)
        t0 = time.perf_counter()
        row, found = self._features(req)
        stages["features"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        x = self._featurize(bundle, row, found)
        personalized = "user_id" in row
        stages["featurize"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q = bundle.tower(x).numpy().astype(np.float32, copy=False)
        stages["tower"] = time.perf_counter() - t0

        expect = []
        if req.relevance_control:
            expect.append(Expectation(found.get_text(QU_CATEGORY), found.get_text(QU_BRAND)))
        if req.filters is not None:
            expect.append(Expectation(req.filters.category_leaf, req.filters.brand))
        ids, scores, looked_at, dropped = self._retrieve(bundle, q, req, expect, stages)

        coarse: np.ndarray | None = None
        reranked = False
        if req.rerank and bundle.rescorer is not None and bundle.rescorer.usable:
            t0 = time.perf_counter()
            same = bundle.rescorer.featurizer == bundle.featurizer
            coarse = bundle.rescorer.score(row, ids, query_inputs=x if same else None)
            order = np.argsort(np.where(np.isnan(coarse), np.inf, -coarse), kind="stable")
            ids, scores, coarse = ids[order], scores[order], coarse[order]
            reranked = True
            stages["rescore"] = time.perf_counter() - t0
        elif req.rerank and self.metrics is not None:
            self.metrics.rerank_unavailable.inc()

        items = [
            (int(d), float(s), None if coarse is None or np.isnan(coarse[i]) else float(coarse[i]))
            for i, (d, s) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True))
        ]
        result = SearchResult(items, bundle.version, personalized, reranked, stages, looked_at, dropped,
                              found.fallback)
        if self.metrics is not None:
            for stage, seconds in stages.items():
                if stage != "rescore" or reranked:
                    self.metrics.stage_seconds.labels(stage).observe(seconds)
            if dropped:
                self.metrics.relevance_dropped.inc(dropped)
            if len(items) < req.k:
                self.metrics.short_results.inc()
        return result

    def warm(self, bundle: LoadedBundle, rounds: int = 3) -> None:
        """Run the search path on `bundle` (never the store) so first-call costs are paid before it serves."""
        rows = example_query_rows()
        for _ in range(rounds):
            for row in rows:
                x = featurize_queries([row], bundle.featurizer)
                q = bundle.tower(x).numpy()
                for k in (10, min(bundle.ntotal, 100)):
                    _, ids = bundle.searcher.search(q, max(1, k))
                    ids = ids[0][ids[0] >= 0]
                    removed(ids, bundle.docs, [Expectation(category_leaf="warm-up")])
                    if bundle.rescorer is not None and bundle.rescorer.usable:
                        bundle.rescorer.score(row, ids)
