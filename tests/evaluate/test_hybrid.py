"""The offline hybrid system: scores of retrieved docs, per-request merges equal the server's fusion code, and
query selection routes a request to one channel's own list."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.evaluate.hybrid import HybridVariant, hybrid_ids, hybrid_systems, scores_of
from ebr.hybrid import ChannelHits, fuse


def test_scores_of_are_inner_products_and_padding_is_minus_infinity():
    rng = np.random.default_rng(0)
    doc_ids = np.array([30, 10, 20], dtype=np.int64)
    vectors = rng.standard_normal((3, 4)).astype(np.float32)
    queries = rng.standard_normal((2, 4)).astype(np.float32)
    retrieved = np.array([[10, 30, -1], [20, 10, 30]])
    got = scores_of(doc_ids, vectors, queries, retrieved)
    by_id = {30: vectors[0], 10: vectors[1], 20: vectors[2]}
    for i in range(2):
        for j in range(3):
            d = int(retrieved[i, j])
            want = -np.inf if d < 0 else float(queries[i] @ by_id[d])
            assert got[i, j] == pytest.approx(want, rel=1e-5)


def test_scores_of_scores_many_requests_in_chunks_like_one_product():
    from ebr.evaluate.hybrid import SCORE_CHUNK

    rng = np.random.default_rng(1)
    n, k = 2 * SCORE_CHUNK + 7, 5  # three chunks, the last one short
    doc_ids = rng.permutation(50).astype(np.int64) + 100
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((n, 8)).astype(np.float32)
    retrieved = rng.choice(doc_ids, size=(n, k))
    retrieved[::3, -1] = -1
    got = scores_of(doc_ids, vectors, queries, retrieved)
    row_of = {int(d): i for i, d in enumerate(doc_ids)}
    want = np.array([[queries[i] @ vectors[row_of[int(d)]] if d >= 0 else -np.inf for d in retrieved[i]]
                     for i in range(n)], dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_each_request_is_merged_as_the_server_merges_it():
    queries = ["red dress", "SKU-00123", "one two three four five six seven eight nine"]
    ann_ids = np.array([[1, 2, 3], [4, 5, 6], [7, 8, -1]])
    ann_scores = np.array([[0.9, 0.8, 0.1], [0.7, 0.6, 0.5], [0.9, 0.2, -np.inf]])
    lex_ids = np.array([[3, 9, -1], [6, -1, -1], [8, 1, 2]])
    lex_scores = np.array([[5.0, 1.0, 0.0], [2.0, 0.0, 0.0], [4.0, 3.0, 1.0]])
    variant = HybridVariant("h", "weighted", 2.0, True)
    got = hybrid_ids(queries, (ann_ids, ann_scores), (lex_ids, lex_scores), 3, variant, str.split)
    want0 = fuse("weighted", [ChannelHits("ann", ann_ids[0], ann_scores[0]),
                              ChannelHits("lexical", lex_ids[0], lex_scores[0])], 3, {"ann": 1.0, "lexical": 2.0})
    assert got[0].tolist() == want0.ids.tolist()
    assert got[1].tolist() == [6, -1, -1], "ID-like: the lexical list alone"
    assert got[2].tolist() == [7, 8, -1], "long: the embedding list alone"
    everything = hybrid_ids(queries, (ann_ids, ann_scores), (lex_ids, lex_scores), 3,
                            HybridVariant("all", "weighted", 2.0, selection=False), str.split)
    assert everything[1].tolist() != [6, -1, -1]


def test_variant_names_must_be_distinct():
    one = (np.zeros((1, 1), np.int64), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="variant names must be distinct"):
        hybrid_systems(["q"], one, one, 1, str.split, [HybridVariant("a"), HybridVariant("a")])


@pytest.mark.parametrize(("chunk", "budget"), [(1, 1 << 24), (256, 1 << 24), (256, 30)])
def test_served_channels_answer_inside_the_query_understanding_constraints(chunk, budget, monkeypatch):
    import pandas as pd

    from ebr.evaluate import hybrid
    from ebr.evaluate.hybrid import served_channels
    from ebr.judgements.corpus import Corpus

    monkeypatch.setattr(hybrid, "SCORE_CHUNK", chunk)  # one request per chunk gives the same answers
    monkeypatch.setattr(hybrid, "SCORE_BUDGET", budget)  # as does a budget smaller than one row of scores
    from ebr.judgements.evalset import EvalSet
    from ebr.lexical import LexicalIndex

    rng = np.random.default_rng(3)
    n = 60
    cats = np.array(["shoes", "dress", "lamp"])[np.arange(n) % 3]
    brands = np.array(["acme", None, "zeta", "acme"], dtype=object)[np.arange(n) % 4]
    docs = pd.DataFrame({"doc_id": np.arange(100, 100 + n), "title": [f"{c} {b or ''} item {i}" for i, (c, b) in
                                                                       enumerate(zip(cats, brands, strict=True))],
                         "category_leaf": cats, "brand": brands})
    corpus = Corpus.from_frame(docs)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    frame = pd.DataFrame({
        "request_id": ["a", "b", "c"], "user_id": pd.array([None] * 3, dtype="Int64"),
        "query": ["shoes item", "acme dress", "lamp"], "query_category_leaf": ["shoes", "dress", None],
        "query_brand": [None, "acme", None], "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
        "clicked_doc_ids": [[], [], []], "labels_complete": False, "label_doc_ids": [[], [], []],
        "label_values": [[], [], []], "label_ds": None})
    lexical = LexicalIndex.build(corpus.doc_ids, corpus.titles)
    (ann_ids, ann_sc), (lex_ids, _) = served_channels(EvalSet("2026-01-01", frame), corpus, corpus.doc_ids, vectors,
                                                      queries, lexical, 5)
    by_id = docs.set_index("doc_id")
    assert set(by_id.loc[ann_ids[0], "category_leaf"]) == {"shoes"}
    both = ann_ids[1][ann_ids[1] >= 0]
    assert len(both) == 5 and set(by_id.loc[both, "category_leaf"]) == {"dress"}
    assert set(by_id.loc[both, "brand"]) == {"acme"}
    allowed = by_id[(by_id.category_leaf == "shoes")].index.to_numpy()
    exact = allowed[np.argsort(-(queries[0] @ vectors[allowed - 100].T), kind="stable")[:5]]
    assert ann_ids[0].tolist() == exact.tolist()
    unconstrained = np.argsort(-(queries[2] @ vectors.T), kind="stable")[:5] + 100
    assert ann_ids[2].tolist() == unconstrained.tolist(), "no prediction: no constraint"
    lex = lex_ids[1][lex_ids[1] >= 0]
    assert len(lex) and set(by_id.loc[lex, "category_leaf"]) == {"dress"} and set(by_id.loc[lex, "brand"]) == {"acme"}


def test_relax_fill_keeps_the_constrained_list_and_fills_it_from_the_loose_one():
    from ebr.evaluate.hybrid import relax_fill

    constrained = np.array([[5, 6, -1, -1], [1, 2, 3, 4], [-1, -1, -1, -1]])
    loose = np.array([[6, 9, 5, 8], [9, 8, 7, 6], [7, -1, -1, -1]])
    got = relax_fill(constrained, loose)
    assert got.tolist() == [[5, 6, 9, 8], [1, 2, 3, 4], [7, -1, -1, -1]]
    with pytest.raises(ValueError, match="differ in shape"):
        relax_fill(constrained, loose[:, :3])
