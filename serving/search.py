"""The search path of one request, callable in-process: online features -> featurize -> query tower -> Faiss
-> relevance control (filter) -> optional coarse re-score, with the time of each stage.

The bundle reference is taken once per request, so a request started before a hot swap finishes on the
bundle it started with. Relevance control over-fetches (2k, then 4x more per round up to
`max(k, MAX_FETCH)` candidates) so that k docs remain when the reachable corpus allows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ebr.hybrid import ChannelHits, QuerySelection, fuse, select_channels
from ebr.hybrid.defaults import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT, DEFAULT_RETRIEVAL
from ebr.models.inputs import featurize_queries
from serving.batching import Ticket, TowerBatcher
from serving.feature_source import QU_BRAND, QU_CATEGORY, FeatureLookup, OnlineFeatureSource
from serving.loaded_bundle import LoadedBundle
from serving.metrics import STAGES, ServerMetrics
from serving.relevance_filter import Expectation, removed
from serving.schema import MAX_K, SearchRequest
from serving.synthetic import example_query_rows

MAX_FETCH = 8192
FUNNEL_CANDIDATES = 500  # the pre-rank funnel: retrieve N, coarse-rank, return the top k
FETCH_GROWTH = 4


@dataclass(frozen=True)
class RetrievalDefaults:
    """How a request retrieves when it does not say: `auto` lets query selection pick the channels, `hybrid`
    runs both, `ann` / `lexical` one; merged lists use `fusion` with the lexical channel weighted
    `lexical_weight` against the embedding channel's 1 (None: the weight the bundle's evaluation chose for this
    fusion rule, else DEFAULT_LEXICAL_WEIGHT)."""

    retrieval: str = DEFAULT_RETRIEVAL
    fusion: str = DEFAULT_FUSION
    lexical_weight: float | None = None
    selection: QuerySelection = field(default_factory=QuerySelection)
    relax: bool = False  # fill a short relevance-controlled answer without the query-understanding constraint


def first_fetch(n: int, req: SearchRequest, expect: list[Expectation]) -> int:
    """Candidates of the first search round: k, or 2k when relevance control or filters may drop some."""
    return min(n, 2 * req.k if any(e.active for e in expect) else req.k)


@dataclass(frozen=True)
class Merged:
    """One retrieval round: the merged ids, scores and channels per item, the fusion rule (None: one channel), the
    embedding channel's own ids and cosines, and how many candidates were looked at and dropped."""

    ids: np.ndarray
    scores: np.ndarray
    sources: list[tuple[str, ...]]
    fusion: str | None
    ann_ids: np.ndarray
    ann_scores: np.ndarray
    looked: int
    dropped: int


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
    channels: list[tuple[str, ...]] = field(default_factory=list)  # per item: the channels that returned it
    retrieval: str = "ann"  # the channels that ran: ann, lexical or hybrid
    fusion: str | None = None  # the merge rule when both ran
    relaxed: list[bool] = field(default_factory=list)  # per item: filled in without the QU constraint (relax)

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
        batcher: TowerBatcher | None = None,
        retrieval: RetrievalDefaults | None = None,
        filter_inside: bool = True,
        funnel_candidates: int = FUNNEL_CANDIDATES,
    ) -> None:
        self._current = current
        self.features = features
        self.metrics = metrics
        self.max_fetch = max_fetch
        self.batcher = batcher
        self.retrieval = retrieval or RetrievalDefaults()
        self.filter_inside = filter_inside  # constraints inside the ANN search (else post-filter + over-fetch)
        self.funnel_candidates = funnel_candidates  # docs retrieved and coarse-ranked for a re-rank request

    # ------------------------------------------------------------------------------------------- stages

    def _features(self, req: SearchRequest, with_user: bool) -> tuple[dict[str, Any], FeatureLookup]:
        """The request's feature row: the query's features, and the user's only `with_user` (when the query tower
        or the coarse ranker reads them: no store read for features nothing uses)."""
        row: dict[str, Any] = {"query": req.query}
        if self.features is None:
            return row, FeatureLookup(fallback="no_feature_store")
        found = self.features.fetch(req.user_id if with_user else None, req.query)
        if found.fallback is not None and self.metrics is not None:
            self.metrics.feature_fallbacks.labels(found.fallback).inc()
        if found.user_known:
            row.update(found.values)
            row["user_id"] = req.user_id
        # the query's understanding is the query's, not the user's: a logged-out request has it too, as in training
        row.update({QU_CATEGORY: found.get_text(QU_CATEGORY), QU_BRAND: found.get_text(QU_BRAND)})
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
        first: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(kept ids, kept scores, candidates looked at, dropped) after relevance control and the radius;
        `first` is the first round's (scores, ids) when the batcher already searched it."""
        n, k = bundle.ntotal, req.k
        limit = min(n, max(k, self.max_fetch))
        constrained = any(e.active for e in expect)
        if constrained and self.filter_inside:
            return self._retrieve_inside(bundle, q, req, expect, stages, first)
        fetch = first_fetch(n, req, expect)
        while True:
            if first is not None:
                (scores, ids), first = first, None
            else:
                t0 = time.perf_counter()
                scores, ids = bundle.searcher.search(q, fetch)
                stages["search"] += time.perf_counter() - t0
            scores, ids = scores[0], ids[0]
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

    def _retrieve_inside(
        self,
        bundle: LoadedBundle,
        q: np.ndarray,
        req: SearchRequest,
        expect: list[Expectation],
        stages: dict[str, float],
        first: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The top k among the docs the constraints allow, in one search (nothing to drop afterwards)."""
        if first is None:
            t0 = time.perf_counter()
            allowed = bundle.constraint(expect)
            if not len(allowed.ids):
                return np.zeros(0, np.int64), np.zeros(0, np.float32), 0, 0
            first = bundle.searcher.search(q, min(bundle.ntotal, req.k), allowed=allowed.selection)
            stages["search"] += time.perf_counter() - t0
        scores, ids = first[0][0], first[1][0]
        t0 = time.perf_counter()
        valid = ids >= 0
        scores, ids = scores[valid], ids[valid]
        if req.radius is not None:
            inside = scores >= req.radius
            scores, ids = scores[inside], ids[inside]
        stages["filter"] += time.perf_counter() - t0
        return ids[: req.k], scores[: req.k], len(ids), 0

    def channels(self, bundle: LoadedBundle, req: SearchRequest) -> tuple[str, ...]:
        """The channels this request runs: its `retrieval` (or the server's), query selection for `auto`; the
        lexical channel only when the bundle has one (an older bundle answers from the embedding alone)."""
        mode = req.retrieval or self.retrieval.retrieval
        if bundle.lexical is None:
            return ("ann",)
        if mode == "auto":
            return select_channels(req.query, bundle.lexical.tokenize, self.retrieval.selection)
        return {"hybrid": ("ann", "lexical"), "ann": ("ann",), "lexical": ("lexical",)}[mode]

    def _lexical(self, bundle: LoadedBundle, req: SearchRequest, expect: list[Expectation],
                 stages: dict[str, float]) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(kept ids, kept BM25 scores, looked at, dropped): the BM25 top k under the same constraints as the
        embedding channel, among the allowed docs (or post-filtered after a 4x over-fetch)."""
        assert bundle.lexical is not None
        t0 = time.perf_counter()
        constrained = any(e.active for e in expect)
        if constrained and self.filter_inside:
            ids, scores = bundle.lexical.search(req.query, req.k, allowed=bundle.constraint(expect).ids,
                                                allowed_sorted=True)
            keep = ids >= 0
            stages["lexical"] += time.perf_counter() - t0
            return ids[keep], scores[keep], int(keep.sum()), 0
        fetch = min(bundle.lexical.n_docs, 4 * req.k if constrained else req.k)
        ids, scores = bundle.lexical.search(req.query, max(fetch, 1))
        keep = ids >= 0
        ids, scores = ids[keep], scores[keep]
        drop = removed(ids, bundle.docs, expect) if constrained else np.zeros(len(ids), dtype=bool)
        stages["lexical"] += time.perf_counter() - t0
        return ids[~drop][: req.k], scores[~drop][: req.k], len(ids), int(drop.sum())

    def _merged(self, bundle: LoadedBundle, q: np.ndarray | None, req: SearchRequest, expect: list[Expectation],
                channels: tuple[str, ...], stages: dict[str, float],
                first: tuple[np.ndarray, np.ndarray] | None) -> Merged:
        """Each channel that runs, under `expect`, merged (`first`: the batcher's search of the first round)."""
        ids, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        looked_at = dropped = 0
        if q is not None:
            ids, scores, looked_at, dropped = self._retrieve(bundle, q, req, expect, stages, first)
        ann_ids, ann_scores = ids, scores
        sources: list[tuple[str, ...]] = [("ann",)] * len(ids)
        fusion = None
        if "lexical" in channels:
            lex_ids, lex_scores, lex_looked, lex_dropped = self._lexical(bundle, req, expect, stages)
            looked_at, dropped = looked_at + lex_looked, dropped + lex_dropped
            if "ann" in channels:
                t0 = time.perf_counter()
                fusion = req.fusion or self.retrieval.fusion
                weight = self.lexical_weight(bundle, fusion) if req.lexical_weight is None else req.lexical_weight
                fused = fuse(fusion, [ChannelHits("ann", ids, scores), ChannelHits("lexical", lex_ids, lex_scores)],
                             req.k, {"ann": 1.0, "lexical": weight})
                ids, scores, sources = fused.ids, fused.scores.astype(np.float32), fused.channels
                stages["lexical"] += time.perf_counter() - t0
            else:
                ids, scores, sources = lex_ids, lex_scores, [("lexical",)] * len(lex_ids)
        return Merged(ids, scores, sources, fusion, ann_ids, ann_scores, looked_at, dropped)

    def lexical_weight(self, bundle: LoadedBundle, fusion: str) -> float:
        """The lexical weight of a merge whose request names none: the server's setting, else the weight the
        bundle's evaluation chose for `fusion` (its manifest's info.retrieval), else DEFAULT_LEXICAL_WEIGHT."""
        if self.retrieval.lexical_weight is not None:
            return self.retrieval.lexical_weight
        tuned = bundle.retrieval_defaults
        if tuned is not None and tuned.get("fusion") == fusion and tuned.get("lexical_weight") is not None:
            return float(tuned["lexical_weight"])
        return DEFAULT_LEXICAL_WEIGHT

    def _on_the_way(self) -> contextlib.AbstractContextManager[Ticket | None]:
        return self.batcher.on_the_way() if self.batcher is not None else contextlib.nullcontext()

    # --------------------------------------------------------------------------------------------- public

    def search(self, req: SearchRequest, bundle: LoadedBundle | None = None) -> SearchResult:
        """Answer one validated request (on `bundle`, or the current one taken once)."""
        bundle = bundle if bundle is not None else self._current()
        if bundle is None:
            raise NotReady("no bundle is loaded yet")
        out_k = req.k
        reranks = req.rerank and bundle.rescorer is not None and bundle.rescorer.usable
        if reranks:  # the funnel: N -> coarse -> k
            wanted = req.candidates if req.candidates is not None else self.funnel_candidates
            req = req.model_copy(update={"k": min(MAX_K, max(req.k, wanted))})
        stages = dict.fromkeys(STAGES, 0.0)
        first: tuple[np.ndarray, np.ndarray] | None = None
        channels = self.channels(bundle, req)
        q: np.ndarray | None = None
        with self._on_the_way() as ticket:
            t0 = time.perf_counter()
            row, found = self._features(req, with_user=bundle.reads_user_features or reranks)
            stages["features"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            x = self._featurize(bundle, row, found)
            personalized = "user_id" in row and (reranks or ("ann" in channels and bundle.reads_user_features))
            stages["featurize"] = time.perf_counter() - t0

            expect = []
            if req.relevance_control:
                expect.append(Expectation(found.get_text(QU_CATEGORY), found.get_text(QU_BRAND)))
            if req.filters is not None:
                expect.append(Expectation(req.filters.category_leaf, req.filters.brand))

            t0 = time.perf_counter()
            if "ann" not in channels:
                pass
            elif self.batcher is not None:
                inside = self.filter_inside and any(e.active for e in expect)
                allowed = bundle.constraint(expect).selection if inside else None
                fetch = min(bundle.ntotal, req.k) if inside else first_fetch(bundle.ntotal, req, expect)
                out = self.batcher.run(bundle, x, fetch, ticket, allowed=allowed)
                q, first = out.vector, (out.scores, out.ids)
                stages["tower"], stages["search"] = out.tower_s, out.search_s
                stages["batch_wait"] = max(0.0, time.perf_counter() - t0 - out.tower_s - out.search_s)
            else:
                q = bundle.tower(x).numpy().astype(np.float32, copy=False)
                stages["tower"] = time.perf_counter() - t0

        m = self._merged(bundle, q, req, expect, channels, stages, first)
        ids, scores, sources, fusion, looked_at, dropped = m.ids, m.scores, m.sources, m.fusion, m.looked, m.dropped
        ann_ids, ann_scores = m.ann_ids, m.ann_scores  # the embedding channel's cosines, before any fusion
        relaxed = np.zeros(len(ids), dtype=bool)
        relax = self.retrieval.relax if req.relax is None else req.relax
        if relax and expect and req.relevance_control and expect[0].active and len(ids) < req.k:
            # query relaxation: the rest of the list from the same channels under the explicit filters alone
            loose = self._merged(bundle, q, req, expect[1:], channels, stages, None)
            take = np.flatnonzero(~np.isin(loose.ids, ids))[: req.k - len(ids)]
            ids = np.concatenate([ids, loose.ids[take]])
            scores = np.concatenate([scores, loose.scores[take]]).astype(np.float32)
            sources = [*sources, *(loose.sources[i] for i in take)]
            relaxed = np.concatenate([relaxed, np.ones(len(take), dtype=bool)])
            if self.metrics is not None and len(take):
                self.metrics.relaxed_items.inc(len(take))

        coarse: np.ndarray | None = None
        reranked = False
        if reranks:
            t0 = time.perf_counter()
            same = bundle.rescorer.featurizer == bundle.featurizer
            cos_r = None
            if bundle.rescorer.uses_retrieval_cosine:
                if q is None:  # lexical only: one query-tower pass gives the ranker its retrieval cosine
                    t1 = time.perf_counter()
                    q = bundle.tower(x).numpy().astype(np.float32, copy=False)
                    stages["tower"] += time.perf_counter() - t1
                cos_r, _ = bundle.rescorer.retrieval_cosines(bundle.searcher, q, ids, ann_ids, ann_scores)
            if bundle.rescorer.three_tower:  # its cross features read the query's understanding whoever asks
                row = {**row, QU_CATEGORY: found.get_text(QU_CATEGORY), QU_BRAND: found.get_text(QU_BRAND)}
            coarse = bundle.rescorer.score(row, ids, query_inputs=x if same else None, retrieval_cosine=cos_r)
            order = np.argsort(np.where(np.isnan(coarse), np.inf, -coarse), kind="stable")
            ids, scores, coarse, relaxed = ids[order], scores[order], coarse[order], relaxed[order]
            sources = [sources[i] for i in order]
            reranked = True
            stages["rescore"] = time.perf_counter() - t0
        elif req.rerank and self.metrics is not None:
            self.metrics.rerank_unavailable.inc()

        ids, scores, sources, relaxed = ids[:out_k], scores[:out_k], sources[:out_k], relaxed[:out_k]
        items = [
            (int(d), float(s), None if coarse is None or np.isnan(coarse[i]) else float(coarse[i]))
            for i, (d, s) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True))
        ]
        result = SearchResult(items, bundle.version, personalized, reranked, stages, looked_at, dropped,
                              found.fallback, list(sources), "hybrid" if len(channels) == 2 else channels[0], fusion,
                              relaxed.tolist())
        if self.metrics is not None:
            for stage, seconds in stages.items():
                if stage != "rescore" or reranked:
                    self.metrics.stage_seconds.labels(stage).observe(seconds)
            if dropped:
                self.metrics.relevance_dropped.inc(dropped)
            if self.filter_inside and any(e.active for e in expect):
                self.metrics.constrained.inc()
            if len(items) < out_k:
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
                    scores, ids = bundle.searcher.search(q, max(1, k))
                    scores, ids = scores[0][ids[0] >= 0], ids[0][ids[0] >= 0]
                    removed(ids, bundle.docs, [Expectation(category_leaf="warm-up")])
                    if bundle.rescorer is not None and bundle.rescorer.usable:
                        cos_r = None
                        if bundle.rescorer.uses_retrieval_cosine:  # the ANN half, then the stored-vector half
                            half = len(ids) // 2
                            cos_r, _ = bundle.rescorer.retrieval_cosines(bundle.searcher, q, ids, ids[:half],
                                                                         scores[:half], count=False)
                        bundle.rescorer.score(row, ids, retrieval_cosine=cos_r)
