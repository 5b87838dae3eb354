"""Fusion of channel lists: reciprocal-rank fusion and weighted score fusion computed by hand on small lists,
their tie-breaking, weights, padding and duplicate handling, and the errors for bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebr.hybrid import ChannelHits, fuse, fuse_many, reciprocal_rank_fusion, weighted_score_fusion


def _hits(name: str, ids: list[int], scores: list[float] | None = None) -> ChannelHits:
    return ChannelHits(name, np.array(ids, dtype=np.int64), None if scores is None else np.array(scores))


def test_rrf_sums_reciprocal_ranks_by_hand():
    ann = _hits("ann", [10, 20, 30])
    lex = _hits("lexical", [30, 40, -1])  # -1 pads
    out = reciprocal_rank_fusion([ann, lex], k=10, rrf_k=60)
    want = {10: 1 / 61, 20: 1 / 62, 30: 1 / 63 + 1 / 61, 40: 1 / 62}
    assert out.ids.tolist() == [30, 10, 20, 40]  # 20 and 40 tie on score and best rank (2): doc id decides
    np.testing.assert_allclose(out.scores, [want[d] for d in out.ids.tolist()])
    assert out.channels == [("ann", "lexical"), ("ann",), ("ann",), ("lexical",)]


def test_rrf_weights_and_k():
    ann = _hits("ann", [1, 2])
    lex = _hits("lexical", [3, 4])
    out = reciprocal_rank_fusion([ann, lex], k=3, weights={"lexical": 2.0})
    assert out.ids.tolist() == [3, 4, 1]
    zero = reciprocal_rank_fusion([ann, lex], k=4, weights={"lexical": 0.0})
    assert zero.ids.tolist()[:2] == [1, 2] and zero.scores[2:].tolist() == [0.0, 0.0]


def test_weighted_fusion_normalizes_each_channel():
    ann = _hits("ann", [1, 2, 3], [0.9, 0.5, 0.1])  # normalized 1, 0.5, 0
    lex = _hits("lexical", [3, 4], [12.0, 2.0])  # normalized 1, 0
    out = weighted_score_fusion([ann, lex], k=4, weights={"ann": 1.0, "lexical": 0.5})
    want = {1: 1.0, 2: 0.5, 3: 0.0 + 0.5, 4: 0.0}
    assert out.ids.tolist() == [1, 3, 2, 4]  # 3 and 2 tie at 0.5: best rank (0 in lexical) first
    np.testing.assert_allclose(out.scores, [want[d] for d in out.ids.tolist()])


def test_a_channel_with_one_doc_or_equal_scores_gives_it_full_weight():
    out = weighted_score_fusion([_hits("ann", [5], [0.3]), _hits("lexical", [6, 7], [1.0, 1.0])], k=3)
    assert out.ids.tolist() == [5, 6, 7] and out.scores.tolist() == [1.0, 1.0, 1.0]


def test_duplicates_inside_a_channel_count_once_and_empty_input_is_empty():
    out = reciprocal_rank_fusion([_hits("ann", [7, 7, 8])], k=5)
    assert out.ids.tolist() == [7, 8]
    np.testing.assert_allclose(out.scores, [1 / 61, 1 / 62])
    empty = fuse("rrf", [_hits("ann", [-1, -1]), _hits("lexical", [])], k=5)
    assert empty.ids.size == 0 and empty.channels == []


@pytest.mark.parametrize(("call", "message"), [
    (lambda: fuse("max", [_hits("ann", [1])], 5), "fusion method must be one of"),
    (lambda: fuse("rrf", [_hits("ann", [1])], 0), "k must be >= 1, got 0"),
    (lambda: fuse("rrf", [_hits("ann", [1]), _hits("ann", [2])], 5), "channel names must be distinct"),
    (lambda: fuse("rrf", [_hits("ann", [1])], 5, {"ann": -1.0}), "weight of channel 'ann' must be"),
    (lambda: fuse("weighted", [_hits("ann", [1])], 5), "needs the scores of channel 'ann'"),
    (lambda: fuse("weighted", [_hits("ann", [1], [np.nan])], 5), "non-finite scores"),
])
def test_bad_parameters_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 30), max_size=15), st.lists(st.integers(0, 30), max_size=15),
       st.integers(1, 40), st.sampled_from(["rrf", "weighted"]))
def test_fused_list_is_the_union_ranked_without_repeats(a, b, k, method):
    ann = _hits("ann", a, list(np.linspace(1, 0, len(a))))
    lex = _hits("lexical", b, list(np.linspace(5, 1, len(b))))
    out = fuse(method, [ann, lex], k)
    union = set(a) | set(b)
    assert len(out.ids) == min(k, len(union)) and len(set(out.ids.tolist())) == len(out.ids)
    assert set(out.ids.tolist()) <= union
    assert (np.diff(out.scores) <= 1e-12).all(), "best first"
    for d, chans in zip(out.ids.tolist(), out.channels, strict=True):
        assert chans == tuple(n for n, lst in (("ann", a), ("lexical", b)) if d in lst)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.integers(-1, 30), max_size=15), st.lists(st.integers(-1, 30), max_size=15),
       st.integers(1, 40), st.sampled_from(["rrf", "weighted"]),
       st.lists(st.floats(0, 8), min_size=1, max_size=5))
def test_fuse_many_is_one_fuse_per_weight_set(a, b, k, method, lexical_weights):
    ann = _hits("ann", a, list(np.linspace(1, 0, len(a))))
    lex = _hits("lexical", b, list(np.linspace(5, 1, len(b))))
    sets = [{"ann": 1.0, "lexical": w} for w in lexical_weights]
    for got, weights in zip(fuse_many(method, [ann, lex], k, sets), sets, strict=True):
        want = fuse(method, [ann, lex], k, weights)
        assert got.ids.tolist() == want.ids.tolist() and got.channels == want.channels
        assert got.scores.tolist() == want.scores.tolist()  # to the bit
