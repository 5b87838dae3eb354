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
