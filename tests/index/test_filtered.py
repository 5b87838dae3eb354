"""Constraints inside the ANN search: every index kind index_factory builds answers only allowed docs, the
probe count grows as the filter gets selective, and filtered recall against exact filtered search stays high
at 1%, 10% and 50% of the corpus (clustered vectors, seeded)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ebr.index.filtered import AllowedPositions, filtered_params, list_assignment, list_aware_nprobe
from ebr.index.search import ShardedSearcher

N, D, NQ, K = 6000, 16, 40, 20


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((60, D)).astype(np.float32)
    x = centres[rng.integers(0, 60, N)] + 0.4 * rng.standard_normal((N, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(N, NQ, replace=False)] + 0.1 * rng.standard_normal((NQ, D)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    doc_ids = rng.permutation(np.arange(100_000, 100_000 + N)).astype(np.int64)
    return x, q, doc_ids


def _searcher(x: np.ndarray, doc_ids: np.ndarray, factory: str, params: dict, shards: int = 1) -> ShardedSearcher:
    faiss.omp_set_num_threads(1)
    indexes, ids = [], []
    for part in np.array_split(np.arange(N), shards):
        ix = faiss.index_factory(D, factory, faiss.METRIC_INNER_PRODUCT)
        ix.train(x)
        ix.add(x[part])
        indexes.append(ix)
        ids.append(doc_ids[part])
    return ShardedSearcher(indexes, ids, search_params=params)


def _exact(x: np.ndarray, doc_ids: np.ndarray, q: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    keep = np.isin(doc_ids, allowed)
    scores = q @ x[keep].T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return doc_ids[keep][top]


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g[g >= 0]) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


@pytest.mark.parametrize(("factory", "params"), [
    ("Flat", {}),
    ("IVF64,Flat", {"nprobe": 4}),
    ("IVF64,PQ8x4,RFlat", {"nprobe": 4, "k_factor_rf": 4}),
    ("OPQ4,IVF64,PQ4x4,Refine(SQ8)", {"nprobe": 4, "k_factor_rf": 8}),
    ("HNSW16", {"efSearch": 32}),
])
def test_filtered_search_answers_allowed_docs_with_high_recall(data, factory, params):
    x, q, doc_ids = data
    searcher = _searcher(x, doc_ids, factory, params, shards=2)
    for share in (0.01, 0.10, 0.50):
        allowed = np.random.default_rng(int(share * 100)).choice(doc_ids, int(share * N), replace=False)
        scores, ids = searcher.search(q, K, allowed=allowed)
        assert np.isin(ids[ids >= 0], allowed).all(), "only allowed docs"
        assert (ids >= 0).all(), "k allowed docs exist, so k come back"
        assert (np.diff(scores, axis=1) <= 1e-6).all()
        recall = _recall(ids, _exact(x, doc_ids, q, allowed, K))
        floor = 0.999 if factory in ("Flat", "IVF64,Flat") and share <= 0.01 else 0.85
        assert recall >= floor, f"{factory} at {share:.0%}: filtered recall@{K} {recall:.3f}"


def test_probe_count_scales_with_selectivity_and_is_capped():
    ix = faiss.index_factory(D, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    ix.train(np.random.default_rng(0).standard_normal((2000, D)).astype(np.float32))
    wide, narrow, tiny = np.zeros(1000, bool), np.zeros(1000, bool), np.zeros(1000, bool)
    wide[:500], narrow[:100], tiny[:5] = True, True, True
    assert filtered_params(ix, AllowedPositions(wide), {"nprobe": 4}).nprobe == 8
    assert filtered_params(ix, AllowedPositions(narrow), {"nprobe": 4}).nprobe == 40
    assert filtered_params(ix, AllowedPositions(tiny), {"nprobe": 4}).nprobe == 64, "capped at nlist: exact"


def test_no_allowed_doc_gives_padding_and_unknown_ids_are_ignored(data):
    x, q, doc_ids = data
    searcher = _searcher(x, doc_ids, "IVF64,Flat", {"nprobe": 4})
    scores, ids = searcher.search(q[:3], 5, allowed=np.array([-5, 7], dtype=np.int64))
    assert (ids == -1).all() and np.isneginf(scores).all()
    few = doc_ids[:3]
    _, ids = searcher.search(q[:2], 5, allowed=np.concatenate([few, [1, 2]]))
    assert set(ids[0][ids[0] >= 0]) == set(few) and (ids[:, 3:] == -1).all()


def test_a_prepared_set_answers_as_the_ids_do_and_belongs_to_its_searcher(data):
    x, q, doc_ids = data
    searcher = _searcher(x, doc_ids, "IVF64,Flat", {"nprobe": 4}, shards=2)
    allowed = np.sort(doc_ids[::7])
    prepared = searcher.prepare(allowed)
    assert prepared.count == len(allowed) and prepared.nbytes > 0
    a = searcher.search(q, K, allowed=allowed)
    b = searcher.search(q, K, allowed=prepared)
    assert a[1].tolist() == b[1].tolist()
    other = _searcher(x, doc_ids, "Flat", {})
    with pytest.raises(ValueError, match="prepared by another searcher"):
        other.search(q, K, allowed=prepared)


def test_allowed_docs_that_cluster_need_fewer_lists_at_the_same_recall():
    """A category occupies a region of embedding space: the list-aware probe stops once the probed lists
    hold as many allowed docs as an unfiltered probe scores, far below 1 / selectivity, at the same recall;
    allowed docs spread evenly get about the 1 / selectivity count; a handful of allowed docs is exact."""
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(3)
    n, clusters = 20_000, 200
    centres = rng.standard_normal((clusters, D)).astype(np.float32)
    label = rng.integers(0, clusters, n)
    x = centres[label] + 0.3 * rng.standard_normal((n, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64) + 5
    ix = faiss.index_factory(D, "IVF128,Flat", faiss.METRIC_INNER_PRODUCT)
    ix.train(x)
    ix.add(x)
    assert list_assignment(ix).shape == (n,)
    searcher = ShardedSearcher([ix], [ids], search_params={"nprobe": 6})
    region = np.argsort(-(centres @ centres[0]))[:20]  # the 20 clusters around one point: ~10% of the corpus
    category = np.isin(label, region)
    near = rng.choice(np.flatnonzero(category), 30, replace=False)
    q = x[near] + 0.05 * rng.standard_normal((30, D)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    clustered = searcher.prepare(ids[category])
    spread_ids = np.sort(rng.choice(ids, int(category.sum()), replace=False))
    spread = searcher.prepare(spread_ids)
    for allowed, label_ in ((clustered, "clustered"), (spread, "spread")):
        sel = allowed.shards[0]
        scaled = filtered_params(ix, sel, {"nprobe": 6}).nprobe  # the 1 / selectivity rule (no queries)
        aware = [list_aware_nprobe(ix, sel, q[i : i + 1], 6) for i in range(len(q))]
        assert max(aware) <= scaled
        if label_ == "clustered":
            assert np.mean(aware) <= scaled / 2, (np.mean(aware), scaled)
        else:
            assert np.mean(aware) >= 0.8 * scaled, (np.mean(aware), scaled)
        got = np.concatenate([ids[ix.search(q[i : i + 1], K, params=filtered_params(ix, sel, {"nprobe": 6},
                                                                                 q[i : i + 1]))[1]]
                              for i in range(len(q))])  # the probe itself (the searcher scores so few exactly)
        want = _exact_over(x, ids, q, ids[category] if label_ == "clustered" else spread_ids, K)
        assert _recall(got, want) >= 0.95, (label_, _recall(got, want))

    few = np.sort(ids[np.flatnonzero(category)[:8]])
    _, got = searcher.search(q[:5], K, allowed=few)
    for row in got:
        assert set(row[row >= 0]) == set(few), "every allowed doc is found when fewer than k are allowed"


def _exact_over(x: np.ndarray, ids: np.ndarray, q: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    keep = np.isin(ids, allowed)
    top = np.argsort(-(q @ x[keep].T), axis=1, kind="stable")[:, :k]
    return ids[keep][top]


@pytest.mark.parametrize("factory", ["IVF64,Flat", "Flat"])
def test_a_narrow_constraint_is_scored_exactly_over_its_own_vectors(data, factory):
    """Fewer allowed docs than the scaled probe would walk: the searcher gathers their vectors once and answers
    exactly what exact filtered search answers; a wide constraint keeps the probe."""
    x, q, doc_ids = data
    searcher = _searcher(x, doc_ids, factory, {"nprobe": 4} if factory != "Flat" else {}, shards=2)
    narrow = np.sort(np.random.default_rng(1).choice(doc_ids, 300, replace=False))
    wide = np.sort(np.random.default_rng(2).choice(doc_ids, N // 2, replace=False))
    prepared = searcher.prepare(narrow)
    assert all(s.exact is not None for s in prepared.shards)
    assert prepared.nbytes >= 300 * D * 4, "the gathered vectors count against the constraint cache"
    scores, got = searcher.search(q, K, allowed=prepared)
    want = _exact(x, doc_ids, q, narrow, K)
    assert got.tolist() == want.tolist()
    np.testing.assert_allclose(scores, np.sort(q @ x[np.isin(doc_ids, narrow)].T, axis=1)[:, ::-1][:, :K],
                               rtol=1e-5, atol=1e-6)
    if factory != "Flat":
        assert all(s.exact is None for s in searcher.prepare(wide).shards), "half the corpus: the probe is cheaper"
    _, few = searcher.search(q[:2], K, allowed=narrow[:5])
    assert (few[:, 5:] == -1).all() and set(few[0][:5]) == set(narrow[:5])


@pytest.mark.parametrize(("factory", "exact"), [("Flat", True), ("IVF64,Flat", True), ("IVF64,SQ8", False)])
def test_stored_vectors_read_back_exactly_where_the_index_keeps_them(data, factory, exact):
    x, _, doc_ids = data
    searcher = _searcher(x, doc_ids, factory, {"nprobe": 4} if factory != "Flat" else {}, shards=2)
    assert searcher.stores_exact_vectors is exact
    want = np.concatenate([doc_ids[[5, 4000, 17]], [-3]])
    if not exact:
        with pytest.raises(ValueError, match="does not store exact vectors"):
            searcher.stored_vectors(want)
        return
    vecs, found = searcher.stored_vectors(want)
    assert found.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(vecs[:3], x[[5, 4000, 17]])
    assert (vecs[3] == 0).all()
