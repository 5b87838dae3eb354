"""Exact top-K, ann_recall@K (shared/spec/metrics.md) and single-thread one-query-at-a-time latency."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

import faiss
import numpy as np

from ebr.index.threads import faiss_threads


class Searcher(Protocol):
    """Anything that answers top-k with doc ids: ShardedSearcher, or a wrapped Faiss index."""

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def merge_topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k highest scores per row of [nq, m] candidates (ties: earlier column first); pads -inf/-1."""
    nq, m = scores.shape
    if m < k:
        scores = np.concatenate([scores, np.full((nq, k - m), -np.inf, np.float32)], axis=1)
        ids = np.concatenate([ids, np.full((nq, k - m), -1, np.int64)], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def exact_search(
    query_vectors: np.ndarray, chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k over (doc_ids, vectors) chunks, merged chunk by chunk (memory: one chunk)."""
    q = np.ascontiguousarray(query_vectors, dtype=np.float32)
    best_s = np.full((q.shape[0], k), -np.inf, np.float32)
    best_i = np.full((q.shape[0], k), -1, np.int64)
    for doc_ids, vectors in chunks:
        if len(doc_ids) == 0:
            continue
        kk = min(k, len(doc_ids))
        s, pos = faiss.knn(
            q, np.ascontiguousarray(vectors, dtype=np.float32), kk, metric=faiss.METRIC_INNER_PRODUCT
        )
        ids = np.asarray(doc_ids)[pos]
        best_s, best_i = merge_topk(np.concatenate([best_s, s], 1), np.concatenate([best_i, ids], 1), k)
    return best_s, best_i


def ann_recall(ann_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |ANN top-k ∩ exact top-k| / k (-1 padding never counts)."""
    if ann_ids.shape[0] != exact_ids.shape[0]:
        raise ValueError(f"ann_ids has {ann_ids.shape[0]} rows but exact_ids has {exact_ids.shape[0]}")
    if ann_ids.shape[0] == 0:
        raise ValueError("ann_recall needs at least one query")
    hits = 0
    for a, e in zip(ann_ids[:, :k], exact_ids[:, :k], strict=True):
        hits += np.intersect1d(a[a >= 0], e[e >= 0]).size
    return hits / (k * ann_ids.shape[0])


def measure_latency(
    searcher: Searcher, query_vectors: np.ndarray, k: int, *, warmup: int = 10, repeats: int = 1
) -> tuple[float, float]:
    """p50 and p99 in ms of one-query searches on one Faiss thread (restored afterwards).

    With repeats > 1 each query's time is the minimum of its runs, which filters out preemption by
    other processes on a shared host while keeping the per-query cost spread.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    q = np.ascontiguousarray(query_vectors, dtype=np.float32)
    times = np.full(q.shape[0], np.inf, dtype=np.float64)
    with faiss_threads(1):
        for i in range(min(warmup, q.shape[0])):
            searcher.search(q[i : i + 1], k)
        for _ in range(repeats):
            for i in range(q.shape[0]):
                t0 = time.perf_counter_ns()
                searcher.search(q[i : i + 1], k)
                times[i] = min(times[i], (time.perf_counter_ns() - t0) / 1e6)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


@dataclass(frozen=True)
class Evaluation:
    """ann_recall@k over the eval queries and single-thread latency percentiles."""

    k: int
    ann_recall: float
    latency_p50_ms: float
    latency_p99_ms: float
    num_queries: int
    latency_queries: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate(
    searcher: Searcher,
    query_vectors: np.ndarray,
    exact_ids: np.ndarray,
    k: int,
    *,
    latency_queries: int = 300,
    latency_repeats: int = 1,
) -> Evaluation:
    """Batched-search recall against `exact_ids`, then latency of the first `latency_queries` queries."""
    _, ids = searcher.search(query_vectors, k)
    recall = ann_recall(ids, exact_ids, k)
    lat_q = query_vectors[: max(1, min(latency_queries, query_vectors.shape[0]))]
    p50, p99 = measure_latency(searcher, lat_q, k, repeats=latency_repeats)
    return Evaluation(k, recall, p50, p99, int(query_vectors.shape[0]), int(lat_q.shape[0]))
