"""Serving's relevance control is evaluation's rule (`ebr.judgements.relevance.relevance_removed`) on candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.judgements.corpus import Corpus
from ebr.judgements.relevance import relevance_removed
from serving.relevance_filter import DocFields, Expectation, removed

DOCS = pd.DataFrame({
    "doc_id": [30, 10, 20, 40, 50],
    "title": ["a", "b", "c", "d", "e"],
    "category_leaf": ["shoes", "shoes", "dress", "shoes", "dress"],
    "brand": ["acme", None, "acme", "globex", np.nan],
})  # fmt: skip


def test_hand_made_cases():
    docs = DocFields(DOCS)
    ids = np.array([10, 20, 30, 40, 50])
    assert removed(ids, docs, [Expectation("shoes", None)]).tolist() == [False, True, False, False, True]
    # a doc without a brand contradicts an expected brand
    assert removed(ids, docs, [Expectation(None, "acme")]).tolist() == [True, False, False, True, True]
    assert removed(ids, docs, [Expectation("shoes", "acme")]).tolist() == [True, True, False, True, True]
    assert not removed(ids, docs, [Expectation(None, None)]).any()
    assert not removed(ids, docs, []).any()
    # two expectations (query understanding and request filters) both apply
    both = removed(ids, docs, [Expectation("shoes", None), Expectation(None, "globex")])
    assert both.tolist() == [True, True, True, False, True]


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_evaluation_rule_on_random_candidates(seed):
    rng = np.random.default_rng(seed)
    n = 200
    cats = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, n)]
    brands = np.array(["x", "y", None], dtype=object)[rng.integers(0, 3, n)]
    frame = pd.DataFrame({"doc_id": rng.permutation(n) * 7 + 1, "title": "t", "category_leaf": cats, "brand": brands})
    docs, corpus = DocFields(frame), Corpus.from_frame(frame)
    for cat in ("a", "b", None):
        for brand in ("x", None):
            cand = rng.choice(frame["doc_id"].to_numpy(), size=40, replace=False)
            want = relevance_removed(cand[None, :], [cat], [brand], corpus)[0]
            got = removed(cand, docs, [Expectation(cat, brand)])
            assert got.tolist() == want.tolist()


def test_docs_with_duplicate_ids_are_rejected_and_missing_ids_reported():
    with pytest.raises(ValueError, match="more than once"):
        DocFields(pd.concat([DOCS, DOCS.iloc[:1]]))
    assert DocFields(DOCS).missing(np.array([10, 11, 50, 99])).tolist() == [11, 99]


def test_a_constraint_is_built_once_per_set_and_bounded(published_root):
    from serving import loaded_bundle
    from serving.loaded_bundle import LoadedBundle
    from serving.relevance_filter import Expectation

    bundle = LoadedBundle.open(published_root / "v1")
    cat = str(bundle.docs.category_leaf[0])
    a = bundle.constraint([Expectation(category_leaf=cat), Expectation()])
    b = bundle.constraint([Expectation(category_leaf=cat)])
    assert a is b, "the same active constraints, the same cached selection"
    assert set(bundle.docs.category_leaf[np.isin(bundle.docs.doc_ids, a.ids)]) == {cat}
    old = loaded_bundle.CONSTRAINT_CACHE_BYTES
    loaded_bundle.CONSTRAINT_CACHE_BYTES = 1  # one entry always stays; the rest are evicted
    try:
        for c in sorted(set(bundle.docs.category_leaf) - {None})[:3]:
            bundle.constraint([Expectation(category_leaf=str(c))])
        assert len(bundle._constraints) == 1
    finally:
        loaded_bundle.CONSTRAINT_CACHE_BYTES = old
