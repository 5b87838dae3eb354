"""Cross-request micro-batching: concurrent requests share one query-tower pass and one Faiss search, and each
answer equals the unbatched one (same top-K, scores within 1e-5) on a real bundle. Threads are lined up with
barriers so the batches are formed deterministically; every wait is bounded."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from ebr.models.inputs import featurize_queries
from serving.batching import TowerBatcher
from serving.loaded_bundle import LoadedBundle
from serving.metrics import ServerMetrics
from serving.schema import SearchRequest
from serving.search import SearchEngine
from serving.settings import ServerSettings
from tests.serving.conftest import publish

QUERIES = ["红色 连衣裙", "手机 壳", "运动 鞋 男", "儿童 玩具", "cotton shirt", "咖啡", "书包 学生", "耳机 蓝牙"]


@pytest.fixture(scope="module")
def bundle(published_root: Path) -> LoadedBundle:
    return LoadedBundle.open(published_root / "v1")


def _inputs(bundle: LoadedBundle, query: str) -> dict[str, torch.Tensor]:
    return featurize_queries([{"query": query}], bundle.featurizer)


def _batched(batcher: TowerBatcher, bundle: LoadedBundle, jobs: list[tuple[str, int]]) -> list:
    """Run every (query, fetch) job on its own thread; all are on their way before any reaches the batcher."""
    lined_up = threading.Barrier(len(jobs), timeout=30)

    def one(job: tuple[str, int]):
        query, fetch = job
        with batcher.on_the_way() as ticket:
            x = _inputs(bundle, query)
            lined_up.wait()
            return batcher.run(bundle, x, fetch, ticket)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs, timeout=60))


def test_a_batch_answers_exactly_what_each_request_gets_alone(bundle: LoadedBundle):
    metrics = ServerMetrics()
    batcher = TowerBatcher(max_batch=16, max_wait_s=30.0, metrics=metrics)  # waits only for those on their way
    jobs = [(q, fetch) for q, fetch in zip(QUERIES, [10, 10, 20, 10, 20, 10, 5, 10], strict=True)]
    outs = _batched(batcher, bundle, jobs)
    assert {o.batch_size for o in outs} == {len(jobs)}, "all eight lined-up requests shared one batch"
    for (query, fetch), out in zip(jobs, outs, strict=True):
        alone = bundle.tower(_inputs(bundle, query)).numpy()
        scores, ids = bundle.searcher.search(alone, fetch)
        np.testing.assert_allclose(out.vector, alone, atol=1e-5)
        assert out.ids.tolist() == ids.tolist(), query
        np.testing.assert_allclose(out.scores, scores, atol=1e-5)
    text = metrics.render().decode()
    assert "ebr_serve_batch_size_count 1.0" in text and "ebr_serve_batch_size_sum 8.0" in text


def test_max_batch_splits_the_line_and_a_lone_request_is_not_held(bundle: LoadedBundle):
    batcher = TowerBatcher(max_batch=3, max_wait_s=30.0)
    outs = _batched(batcher, bundle, [(q, 10) for q in QUERIES[:7]])
    assert sorted(o.batch_size for o in outs) == [1, 3, 3, 3, 3, 3, 3], "batches of at most 3 rows"
    # nobody else is on the way: the leader does not sit out its 30 s wait (bounded join, not a timing check)
    done = []
    lone = threading.Thread(target=lambda: done.append(batcher.run(bundle, _inputs(bundle, QUERIES[0]), 10)))
    lone.start()
    lone.join(timeout=20)
    assert done and done[0].batch_size == 1


def test_requests_of_two_bundles_never_share_a_batch(bundle: LoadedBundle, parts, tmp_path: Path):
    other = LoadedBundle.open(publish(parts, tmp_path / "bundles", "v2", docs="v2"))
    batcher = TowerBatcher(max_batch=16, max_wait_s=30.0)
    lined_up = threading.Barrier(4, timeout=30)

    def one(i: int):
        b = bundle if i % 2 == 0 else other
        with batcher.on_the_way() as ticket:
            x = _inputs(b, QUERIES[i])
            lined_up.wait()
            return i, b, batcher.run(b, x, 10, ticket)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4), timeout=60))
    for i, b, out in results:
        assert out.batch_size == 2, "two per bundle"
        assert set(out.ids[0].tolist()) <= set(b.docs.doc_ids.tolist()), "answered from its own bundle's docs"
        alone_ids = b.searcher.search(b.tower(_inputs(b, QUERIES[i])).numpy(), 10)[1]
        assert out.ids.tolist() == alone_ids.tolist()


def test_one_bad_request_does_not_fail_its_neighbours(bundle: LoadedBundle):
    batcher = TowerBatcher(max_batch=16, max_wait_s=30.0)
    lined_up = threading.Barrier(3, timeout=30)

    def one(i: int):
        with batcher.on_the_way() as ticket:
            x = _inputs(bundle, QUERIES[i])
            if i == 1:
                x = {k: v[:, :1] if v.dim() > 1 else v for k, v in x.items()}  # wrong shapes: the tower refuses
            lined_up.wait()
            try:
                return batcher.run(bundle, x, 10, ticket)
            except ValueError as e:
                return e

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, range(3), timeout=60))
    assert isinstance(results[1], ValueError) and "must have shape" in str(results[1])
    for i in (0, 2):
        alone_ids = bundle.searcher.search(bundle.tower(_inputs(bundle, QUERIES[i])).numpy(), 10)[1]
        assert results[i].ids.tolist() == alone_ids.tolist()


def test_the_engine_answers_the_same_batched_or_not(bundle: LoadedBundle):
    """Whole requests (relevance control, filters, coarse re-score, different k) through the engine."""
    requests = [
        SearchRequest(query=q, k=k, rerank=bool(i % 2), relevance_control=bool(i % 3),
                      filters={"category_leaf": str(bundle.docs.category_leaf[i])} if i == 4 else None)
        for i, (q, k) in enumerate(zip(QUERIES, [5, 10, 10, 20, 10, 5, 10, 10], strict=True))
    ]
    plain = SearchEngine(lambda: bundle)
    expected = [plain.search(r) for r in requests]
    metrics = ServerMetrics()
    batcher = TowerBatcher(max_batch=16, max_wait_s=5.0, metrics=metrics)
    engine = SearchEngine(lambda: bundle, batcher=batcher)
    lined_up = threading.Barrier(len(requests), timeout=30)
    real_featurize = engine._featurize

    def featurize_then_line_up(b, row, found):
        x = real_featurize(b, row, found)
        lined_up.wait()  # every request is on its way before any reaches the batcher
        return x

    engine._featurize = featurize_then_line_up
    with ThreadPoolExecutor(len(requests)) as pool:
        got = list(pool.map(engine.search, requests, timeout=60))
    for want, have in zip(expected, got, strict=True):
        assert [d for d, _, _ in have.items] == [d for d, _, _ in want.items]
        np.testing.assert_allclose([s for _, s, _ in have.items], [s for _, s, _ in want.items], atol=1e-5)
        np.testing.assert_allclose([c if c is not None else np.nan for _, _, c in have.items],
                                   [c if c is not None else np.nan for _, _, c in want.items], atol=1e-5)
        assert have.reranked == want.reranked
    text = metrics.render().decode()
    assert "ebr_serve_batch_size_count 1.0" in text and "ebr_serve_batch_size_sum 8.0" in text, "one batch of 8"


def test_bad_batch_settings_are_refused_by_name(published_root: Path):
    with pytest.raises(ValueError, match=r"max batch \(EBR_MAX_BATCH\) must be >= 1, got 0"):
        ServerSettings(bundles_dir=published_root, max_batch=0)
    with pytest.raises(ValueError, match=r"batch wait \(EBR_BATCH_WAIT_MS\) must be in 0..100 ms, got 500"):
        ServerSettings(bundles_dir=published_root, batch_wait_ms=500)
