"""The lexical index: scores equal the BM25 formula, ranking and padding rules, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.lexical import LexicalIndex, bm25_tokens, whitespace_tokens
from tests.lexical.formula import bm25_reference

# "the" is in 4 of 6 titles (df > N/2: idf floored at 0), "red" in 3 (df = N/2: idf 0), the rest rarer.
DOC_IDS = [40, 7, 19, 3, 25, 11]
TITLES = [
    "the red dress summer",
    "the red running shoes the",
    "the blue running shoes",
    "red summer hat",
    "the wool coat long long",
    "noise cancelling headphones",
]
QUERIES = ["red dress", "running running shoes", "the summer hat", "headphones", "the", "unknown words", "long coat"]


def _index(**kw) -> LexicalIndex:
    return LexicalIndex.build(DOC_IDS, TITLES, tokenize=whitespace_tokens, **kw)


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.0), (0.9, 1.0)])
def test_scores_equal_the_bm25_formula(k1: float, b: float) -> None:
    index = _index(k1=k1, b=b)
    docs = [t.split() for t in TITLES]
    for query in QUERIES:
        pos, scores = index.scores(query)
        assert scores.dtype == np.float32
        dense = np.zeros(len(DOC_IDS))
        dense[pos] = scores
        np.testing.assert_allclose(dense, bm25_reference(docs, query.split(), k1, b), rtol=2e-6, atol=1e-6,
                                   err_msg=query)
        assert (scores > 0).all()


def test_search_best_first_ties_by_doc_id_positive_only_padded() -> None:
    index = LexicalIndex.build([7, 2, 4, 8, 11, 13], ["apple pie", "apple pie", "banana", "cherry tart", "plum cake",
                                                     "kiwi"], tokenize=str.split)  # fmt: skip
    ids, scores = index.search("apple", 3)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.tolist() == [2, 7, -1]  # equal scores: lower doc id first; nothing else shares a token
    assert scores[0] == scores[1] > 0 and scores[2] == 0
    ids, scores = index.search("cherry apple", 2)
    assert ids.tolist() == [8, 2] and scores[0] > scores[1]  # "cherry" is rarer than "apple"
    ids, scores = index.search("grape", 2)
    assert ids.tolist() == [-1, -1] and scores.tolist() == [0.0, 0.0]
    ids, _ = index.search("", 4)
    assert ids.tolist() == [-1] * 4


@pytest.mark.parametrize("allowed", [[3, 7, 19, 40], [11], [], [5, 6], [3, 7, 11, 19, 25, 40]])
def test_search_among_allowed_docs_is_the_unrestricted_ranking_filtered(allowed: list[int]) -> None:
    index = _index()
    for query in QUERIES:
        all_ids, all_scores = index.search(query, len(DOC_IDS))
        keep = np.isin(all_ids, allowed) & (all_ids >= 0)
        want_ids, want_scores = all_ids[keep][:3], all_scores[keep][:3]
        for given, is_sorted in ((allowed[::-1], False), (sorted(allowed), True)):
            ids, scores = index.search(query, 3, allowed=np.asarray(given, dtype=np.int64), allowed_sorted=is_sorted)
            found = ids >= 0
            np.testing.assert_array_equal(ids[found], want_ids, err_msg=f"{query} {given}")
            np.testing.assert_array_equal(scores[found], want_scores, err_msg=query)
            assert (ids[~found] == -1).all() and (scores[~found] == 0).all()


def test_search_many_equals_one_search_per_query() -> None:
    index = _index()
    ids, scores = index.search_many(QUERIES + QUERIES[:2], 4)
    assert ids.shape == scores.shape == (len(QUERIES) + 2, 4)
    for row, query in enumerate(QUERIES + QUERIES[:2]):
        one_ids, one_scores = index.search(query, 4)
        np.testing.assert_array_equal(ids[row], one_ids)
        np.testing.assert_array_equal(scores[row], one_scores)
    empty_ids, empty_scores = index.search_many([], 5)
    assert empty_ids.shape == empty_scores.shape == (0, 5)


def test_k_larger_than_the_corpus_pads_and_bad_k_is_refused() -> None:
    index = _index()
    ids, _ = index.search("running", 50)
    assert len(ids) == 50 and ids[:2].tolist() == [19, 7] and (ids[2:] == -1).all()  # the shorter title first
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            index.search("red", k)
    with pytest.raises(TypeError, match="query must be a string"):
        index.search(None, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one string"):
        index.search_many("red", 3)


def test_the_project_tokenizer_finds_exact_titles_and_missing_titles_are_empty() -> None:
    titles = ["红色 连衣裙 夏季 新款", "跑步鞋 男款 透气", "红色 跑步鞋", None, float("nan"), "蓝牙 耳机 降噪"]
    index = LexicalIndex.build([5, 3, 9, 14, 15, 20], titles)
    assert index.tokenizer == "words" and index.tokenize is bm25_tokens
    for doc_id, title in zip([5, 3, 9, 20], [t for t in titles if isinstance(t, str)], strict=True):
        assert index.search(title, 3)[0][0] == doc_id, title
    assert index.search("none nan", 3)[0].tolist() == [-1, -1, -1]  # a missing title indexes no token


@pytest.mark.parametrize(
    ("doc_ids", "titles", "match"),
    [
        ([], [], "corpus is empty"),
        ([1, 2], ["a"], "titles has 1 entries but doc_ids has 2"),
        ([1, 1], ["a", "b"], "more than once"),
        ([1, -1], ["a", "b"], "must be >= 0"),
        ([[1, 2]], ["a"], "1-D integer array"),
        ([1.5, 2.0], ["a", "b"], "1-D integer array"),
    ],
)
def test_bad_build_input_is_refused_naming_the_parameter(doc_ids, titles, match) -> None:
    with pytest.raises(ValueError, match=match):
        LexicalIndex.build(doc_ids, titles, tokenize=str.split)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="k1 must be > 0"):
        _index(k1=0.0)
    with pytest.raises(ValueError, match=r"b must be in \[0, 1\]"):
        _index(b=1.5)


def test_an_all_empty_corpus_builds_and_retrieves_nothing() -> None:
    index = LexicalIndex.build([1, 2], ["", "   "], tokenize=str.split)
    assert index.n_vocab == 0
    assert index.search("anything", 2)[0].tolist() == [-1, -1]
