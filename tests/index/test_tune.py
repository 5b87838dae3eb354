"""tune(): sweeps reach the target recall on clustered data, and report the recall one can recompute."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ebr.index import ShardedSearcher, make_index, tune
from ebr.index.evaluate import ann_recall, exact_search, measure_latency
from ebr.index.factory import prepare_index
from ebr.index.tune import PLATEAU_GAIN

from .conftest import exact_topk_ids, recall_of

K = 50


def _trained(factory: str, vectors: np.ndarray) -> faiss.Index:
    index = make_index(factory, vectors.shape[1])
    prepare_index(index, seed=0)
    index.train(vectors)
    index.add(vectors)
    return index


@pytest.mark.parametrize(("factory", "parameter"), [("IVF64,Flat", "nprobe"), ("HNSW8", "efSearch")])
def test_tune_reaches_target_and_reports_true_recall(corpus, factory, parameter):
    _, vectors, queries = corpus
    index = _trained(factory, vectors)
    result = tune(index, vectors, queries, target_recall=0.97, k=K, latency_queries=20, progress=False)
    assert result.parameter == parameter and result.target_reached
    assert result.ann_recall >= 0.97
    values = [p.value for p in result.curve]
    assert values == sorted(values) and values[-1] == result.value
    assert all(p.ann_recall < 0.97 for p in result.curve[:-1])
    # the index is left at the chosen value; recompute recall without Faiss's exact search
    positions = np.arange(len(vectors))
    _, found = index.search(queries, K)
    independent = recall_of(found, exact_topk_ids(queries, positions, vectors, K), K)
    assert result.ann_recall == pytest.approx(independent, abs=1e-3)
    assert result.latency_p99_ms >= result.latency_p50_ms > 0


def test_unreachable_target_picks_the_cheapest_near_best_point(corpus):
    _, vectors, queries = corpus
    index = _trained("IVF16,PQ4", vectors)
    result = tune(index, vectors, queries[:100], target_recall=0.999, k=K, latency_queries=10, progress=False)
    assert not result.target_reached
    best = max(p.ann_recall for p in result.curve)
    assert best - PLATEAU_GAIN <= result.ann_recall < 0.999
    earlier = [p for p in result.curve if p.value < result.value]
    assert all(p.ann_recall < best - PLATEAU_GAIN for p in earlier)
    assert faiss.extract_index_ivf(index).nprobe == result.value


def test_flat_has_one_point_with_full_recall(corpus):
    _, vectors, queries = corpus
    result = tune(_trained("Flat", vectors), vectors, queries[:50], k=K, latency_queries=5, progress=False)
    assert result.parameter is None and len(result.curve) == 1
    assert result.ann_recall == pytest.approx(1.0, abs=1e-3) and result.search_params == {}


def test_tune_through_sharded_searcher_with_given_ground_truth(corpus):
    ids, vectors, queries = corpus
    halves = np.array_split(np.arange(len(ids)), 2)
    searcher = ShardedSearcher([_trained("IVF32,Flat", vectors[h]) for h in halves], [ids[h] for h in halves])
    exact = exact_search(queries, [(ids, vectors)], K)[1]
    result = tune(searcher, None, queries, 0.95, K, exact_ids=exact, latency_queries=10, progress=False)
    assert result.target_reached and searcher.search_params == {"nprobe": result.value}
    _, found = searcher.search(queries, K)
    assert recall_of(found, exact_topk_ids(queries, ids, vectors, K), K) == pytest.approx(
        result.ann_recall, abs=1e-3
    )


def test_tune_input_errors(corpus):
    _, vectors, queries = corpus
    index = _trained("Flat", vectors[:100])
    with pytest.raises(ValueError, match="target_recall"):
        tune(index, vectors[:100], queries, target_recall=1.5)
    with pytest.raises(ValueError, match="base_vectors or exact_ids"):
        tune(index, None, queries)
    with pytest.raises(ValueError, match=r"need \[nq >= 1, 32\]"):
        tune(index, vectors[:100], queries[:, :8])


def test_ann_recall_counts_overlap_and_ignores_padding():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    ann = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert ann_recall(ann, exact, 4) == pytest.approx((2 / 4 + 1) / 2)


def test_latency_measurement_restores_thread_count(corpus):
    _, vectors, queries = corpus
    before = faiss.omp_get_max_threads()
    p50, p99 = measure_latency(
        ShardedSearcher([_trained("Flat", vectors)], [np.arange(len(vectors))]), queries[:5], 10
    )
    assert 0 < p50 <= p99
    assert faiss.omp_get_max_threads() == before
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_latency(
            ShardedSearcher([_trained("Flat", vectors[:10])], [np.arange(10)]), queries[:2], 1, repeats=0
        )
