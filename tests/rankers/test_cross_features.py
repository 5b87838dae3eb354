"""Cross features on hand-made rows: text match, QU match, user-doc counts; online and batch pairing agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.models.rankers.cross_features import (
    CROSS_FEATURE_NAMES,
    bucketize,
    check_names,
    compute_cross_features,
    num_buckets,
    prepare_docs,
)

REQUESTS = [
    {
        "query": "red dress", "query_category_leaf": "dresses", "query_brand": "acme",
        "user_profile_tags": ["fashion"],
        "seq_st_doc_ids": [100, 200, 101], "seq_st_categories": ["dresses", "shoes", "dresses"],
        "seq_st_authors": [7, 8, 7],
        "seq_lt_doc_ids": [300], "seq_lt_categories": ["dresses"], "seq_lt_authors": [9],
    },
    {"query": "blue shoes", "query_category_leaf": None, "query_brand": None},  # logged out, no QU
]
DOCS = [
    {"doc_id": 100, "title": "Red summer dress", "category_l1": "fashion", "category_l2": "women",
     "category_leaf": "dresses", "brand": "acme", "attributes": ["color=red", "size=m"], "tags": ["summer"],
     "author_id": 7},
    {"doc_id": 555, "title": "blue shoes", "category_l1": "fashion", "category_l2": "men",
     "category_leaf": "shoes", "brand": None, "attributes": [], "tags": [], "author_id": 8},
]


def _by_name(values: np.ndarray, row: int) -> dict[str, float]:
    return dict(zip(CROSS_FEATURE_NAMES, values[row].tolist(), strict=True))


def test_values_of_a_matching_and_a_non_matching_doc():
    x = compute_cross_features(REQUESTS[:1], DOCS)
    assert x.dtype == np.float32 and x.shape == (2, len(CROSS_FEATURE_NAMES))
    a, b = _by_name(x, 0), _by_name(x, 1)
    assert a["qd_shared_words"] == 2 and a["qd_word_jaccard"] == pytest.approx(2 / 3)
    assert a["qd_word_coverage"] == 1.0 and a["qd_bigram_coverage"] == 0.0  # "red dress" is not a title bigram
    assert (a["qd_category_match"], a["qd_brand_match"], a["qd_attribute_matches"]) == (1.0, 1.0, 1.0)
    assert a["ud_category_events"] == 3 and a["ud_category_share"] == pytest.approx(0.75)
    assert (a["ud_author_events"], a["ud_doc_events"], a["ud_profile_tag_matches"]) == (2.0, 1.0, 1.0)
    assert b["qd_shared_words"] == 0 and b["qd_word_jaccard"] == 0 and b["qd_word_coverage"] == 0
    assert (b["qd_category_match"], b["qd_brand_match"], b["qd_attribute_matches"]) == (0.0, 0.0, 0.0)
    assert b["ud_category_events"] == 1 and b["ud_category_share"] == pytest.approx(0.25)
    assert (b["ud_author_events"], b["ud_doc_events"], b["ud_profile_tag_matches"]) == (1.0, 0.0, 1.0)


def test_unknown_query_understanding_and_logged_out_user():
    x = _by_name(compute_cross_features(REQUESTS[1:], DOCS[1:]), 0)
    assert x["qd_category_match"] == -1.0 and x["qd_brand_match"] == -1.0
    assert x["qd_bigram_coverage"] == 1.0 and x["qd_word_coverage"] == 1.0
    assert all(x[n] == 0.0 for n in CROSS_FEATURE_NAMES if n.startswith("ud_"))


def test_batch_pairs_equal_the_online_one_request_calls():
    pairs = (np.array([1, 0, 0, 1]), np.array([0, 1, 0, 1]))
    batch = compute_cross_features(pd.DataFrame(REQUESTS), pd.DataFrame(DOCS), pairs)
    for k, (r, d) in enumerate(zip(*pairs, strict=True)):
        online = compute_cross_features([REQUESTS[r]], DOCS)[d]
        np.testing.assert_array_equal(batch[k], online)


def test_prepared_docs_give_the_same_values_for_any_pairing():
    prepared = prepare_docs(DOCS)
    assert len(prepared) == 2
    np.testing.assert_array_equal(compute_cross_features(REQUESTS[:1], prepared),
                                  compute_cross_features(REQUESTS[:1], DOCS))
    pairs = (np.array([0, 1, 1]), np.array([1, 1, 0]))
    np.testing.assert_array_equal(compute_cross_features(REQUESTS, prepared, pairs),
                                  compute_cross_features(REQUESTS, DOCS, pairs))


def test_subset_of_names_keeps_their_order():
    names = ["ud_doc_events", "qd_shared_words"]
    x = compute_cross_features(REQUESTS[:1], DOCS, names=names)
    np.testing.assert_array_equal(x[:, 0], [1.0, 0.0])
    np.testing.assert_array_equal(x[:, 1], [2.0, 0.0])


def test_bucketize_follows_the_fixed_edges():
    names = ["qd_category_match", "qd_shared_words", "qd_word_jaccard"]
    ids = bucketize(np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [1.0, 100.0, 1.0], [np.nan, np.nan, np.nan]]), names)
    assert ids[:, 0].tolist() == [1, 2, 3, 0]  # unknown, mismatch, match, null
    assert ids[0, 1] < ids[1, 1] < ids[2, 1] and ids[2, 1] == num_buckets(names)[1] - 1
    assert ids[0, 2] < ids[1, 2] < ids[2, 2]
    assert (ids >= 0).all() and (ids < np.array(num_buckets(names))).all()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown cross feature"):
        check_names(["qd_shared_words", "nope"])
    with pytest.raises(ValueError, match="one request"):
        compute_cross_features(REQUESTS, DOCS)
    with pytest.raises(ValueError, match="title"):
        compute_cross_features(REQUESTS[:1], [{"doc_id": 1, "category_leaf": "x", "author_id": 1}])
    with pytest.raises(ValueError, match=r"pairs\[1\]"):
        compute_cross_features(REQUESTS, DOCS, (np.array([0]), np.array([5])))
