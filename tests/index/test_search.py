"""ShardedSearcher: merged Flat shards equal exact search; range search; input checks; shard rule."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ebr.index import ShardedSearcher, make_index, shard_of

from .conftest import exact_topk_ids


def _flat_shards(ids: np.ndarray, vectors: np.ndarray, num_shards: int) -> ShardedSearcher:
    owner = shard_of(ids, num_shards)
    indexes, id_arrays = [], []
    for s in range(num_shards):
        index = make_index("Flat", vectors.shape[1])
        index.add(vectors[owner == s])
        indexes.append(index)
        id_arrays.append(ids[owner == s])
    return ShardedSearcher(indexes, id_arrays)


@pytest.mark.parametrize("num_shards", [1, 2, 5])
def test_sharded_flat_equals_exact_topk(corpus, num_shards):
    ids, vectors, queries = corpus
    searcher = _flat_shards(ids, vectors, num_shards)
    scores, found = searcher.search(queries[:50], 30)
    expected = exact_topk_ids(queries[:50], ids, vectors, 30)
    np.testing.assert_array_equal(found, expected)
    exact_scores = np.take_along_axis(
        queries[:50] @ vectors.T, np.argsort(-(queries[:50] @ vectors.T), axis=1)[:, :30], axis=1
    )
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_shard_rule_is_stable_balanced_and_order_free():
    ids = np.arange(100_000, dtype=np.int64) * 3
    owner = shard_of(ids, 4)
    assert owner.min() == 0 and owner.max() == 3
    counts = np.bincount(owner, minlength=4)
    assert counts.min() > 0.95 * len(ids) / 4
    perm = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(shard_of(ids[perm], 4), owner[perm])
    np.testing.assert_array_equal(shard_of(ids, 1), 0)


def test_k_larger_than_corpus_pads_with_minus_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    searcher = _flat_shards(np.arange(7) + 100, x, 2)
    scores, found = searcher.search(x[:2], 10)
    assert (found[:, :7] >= 100).all() and (found[:, 7:] == -1).all()
    assert np.isneginf(scores[:, 7:]).all()
    assert sorted(found[0, :7].tolist()) == list(range(100, 107))


@pytest.mark.parametrize("method", ["auto", "native", "emulate"])
@pytest.mark.parametrize("num_shards", [1, 3])
def test_range_search_returns_all_docs_above_radius(corpus, method, num_shards):
    ids, vectors, queries = corpus
    searcher = _flat_shards(ids, vectors, num_shards)
    radius = 0.55
    results = searcher.range_search(queries[:20], radius, method=method)
    all_scores = queries[:20] @ vectors.T
    for (scores, found), row in zip(results, all_scores, strict=True):
        expected = set(ids[row >= radius].tolist())
        assert set(found.tolist()) == expected
        assert (scores >= radius).all() and np.all(np.diff(scores) <= 0)
    assert any(len(r[1]) > 64 for r in results)  # emulation must have grown k past its start


def test_range_search_on_ivf_emulation_agrees_with_native(corpus):
    ids, vectors, queries = corpus
    index = make_index("IVF32,Flat", vectors.shape[1])
    index.train(vectors)
    index.add(vectors)
    searcher = ShardedSearcher([index], [ids], search_params={"nprobe": 32})
    native = searcher.range_search(queries[:10], 0.6, method="native")
    emulated = searcher.range_search(queries[:10], 0.6, method="emulate")
    for (_, a), (_, b) in zip(native, emulated, strict=True):
        assert set(a.tolist()) == set(b.tolist())


def test_search_params_apply_to_every_shard(corpus):
    ids, vectors, _ = corpus
    indexes = []
    for part in np.array_split(np.arange(len(ids)), 2):
        index = make_index("IVF16,Flat", vectors.shape[1])
        index.train(vectors[part])
        index.add(vectors[part])
        indexes.append(index)
    searcher = ShardedSearcher(indexes, [ids[p] for p in np.array_split(np.arange(len(ids)), 2)])
    searcher.set_search_params({"nprobe": 5})
    assert [faiss.extract_index_ivf(ix).nprobe for ix in indexes] == [5, 5]
    with pytest.raises(ValueError, match="efSearch=8 does not apply"):
        searcher.set_search_params({"efSearch": 8})


def test_bad_queries_and_k(corpus):
    ids, vectors, queries = corpus
    searcher = _flat_shards(ids, vectors, 2)
    with pytest.raises(ValueError, match=r"expects \[nq, 32\]"):
        searcher.search(np.ones((2, 31), np.float32), 5)
    bad = queries[:2].copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        searcher.search(bad, 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        searcher.search(queries[:2], 0)
    scores, found = searcher.search(queries[0], 3)  # one [d] row is one query
    assert found.shape == (1, 3)


def test_shards_must_be_consistent():
    a, b = make_index("Flat", 4), make_index("Flat", 8)
    with pytest.raises(ValueError, match="different dimensions"):
        ShardedSearcher([a, b], [np.empty(0, np.int64)] * 2)
    a.add(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="holds 4 vectors but 3 doc ids"):
        ShardedSearcher([a], [np.arange(3)])
