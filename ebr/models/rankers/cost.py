"""Scoring cost of a ranker: milliseconds to score N candidates of one request, median of repeats.

Inputs are featurized and cross features computed beforehand (both models need them alike). The teacher
embeds the query side once and runs its interaction tower per candidate; the coarse ranker runs its query
tower once and, per candidate, an inner product with a precomputed doc vector (plus, with three towers, the
cross tower and the post-interaction MLP). Timings are reported, never asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ebr.models.rankers.coarse_ranker import CoarseRanker
from ebr.models.rankers.fine_ranker import FineRanker
from ebr.models.rankers.tensors import RankingTensors


def candidate_slice(t: RankingTensors, n: int, seed: int = 0) -> dict[str, object]:
    """One request (row 0) and `n` candidate pairs drawn with replacement from all pairs."""
    if n < 1 or t.n_pairs < 1:
        raise ValueError(f"need n >= 1 and at least one pair, got n={n}, pairs={t.n_pairs}")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, t.n_pairs, (n,), generator=g)
    docs = t.doc_row[pick]
    return {
        "query": {k: v[:1] for k, v in t.query.items()},
        "doc": {k: v[docs] for k, v in t.doc.items()},
        "cross": t.cross[pick],
        "cross_buckets": t.cross_buckets[pick],
        "retrieval_cosine": t.retrieval_cosine[pick] if t.retrieval_cosine is not None else None,
    }


def _median_ms(fn: Callable[[], object], repeats: int, threads: int) -> float:
    if repeats < 1 or threads < 1:
        raise ValueError(f"repeats and threads must be >= 1, got {repeats}, {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            fn()
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(before)
    return float(statistics.median(times))


def teacher_cost_ms(
    model: FineRanker, t: RankingTensors, n: int = 1000, repeats: int = 15, threads: int = 1
) -> float:
    """Median ms for the fine ranker to score `n` candidates of one request."""
    x = candidate_slice(t, n)
    pair_request = torch.zeros(n, dtype=torch.int64)
    was = model.training
    model.eval()
    try:
        return _median_ms(lambda: model(x["query"], x["doc"], x["cross"], x["cross_buckets"], pair_request),
                          repeats, threads)
    finally:
        model.train(was)


def student_cost_ms(
    model: CoarseRanker, t: RankingTensors, n: int = 1000, repeats: int = 15, threads: int = 1
) -> float:
    """Median ms for the coarse ranker to score `n` candidates of one request, doc vectors precomputed."""
    x = candidate_slice(t, n)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            doc_vecs = model.encode_docs(x["doc"])  # offline: the shipped doc matrix
        cross = x["cross"] if model.three_tower else None
        buckets = x["cross_buckets"] if model.three_tower else None
        rc = x["retrieval_cosine"] if model.uses_retrieval_cosine else None
        if model.uses_retrieval_cosine and rc is None:
            raise ValueError("student_cost_ms: the coarse ranker reads retrieval_cosine, the tensors carry none")

        def run() -> torch.Tensor:
            q = model.encode_queries(x["query"]).expand(n, -1)
            return model.score_pairs(q, doc_vecs, cross, buckets, rc)

        return _median_ms(run, repeats, threads)
    finally:
        model.train(was)
