"""Popularity and BM25 baselines: hand-checked rankings, BM25 scores equal to the formula, no look-ahead."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from ebr.contract import load
from ebr.evaluate import (
    BM25Retriever,
    Corpus,
    EvaluateConfig,
    PopularityRetriever,
    baseline_systems,
    bm25_tokens,
    build_evalset,
    load_corpus,
)
from ebr.evaluate.baselines import training_days
from ebr.lexical import LexicalIndex
from tests.evaluate.handmade import make_evalset
from tests.lexical.formula import bm25_reference


def _corpus(ids: list[int], titles: list[str], cats: list[str] | None = None) -> Corpus:
    cats = cats or ["c"] * len(ids)
    df = pd.DataFrame({"doc_id": ids, "title": titles, "category_leaf": cats, "brand": [None] * len(ids)})
    return Corpus.from_frame(df)


TITLES = {
    5: "红色 连衣裙 夏季 新款",
    3: "跑步鞋 男款 透气",
    9: "红色 跑步鞋",
    12: "连衣裙 长款 显瘦 红色 夏季 连衣裙",
    20: "蓝牙 耳机 降噪",
    31: "夏季 防晒衣",
}


def test_bm25_ranks_an_exact_title_match_first() -> None:
    corpus = _corpus(list(TITLES), list(TITLES.values()))
    bm25 = BM25Retriever(corpus)
    for doc_id, title in TITLES.items():
        assert bm25.search(title, 3)[0] == doc_id, title


def test_bm25_scores_equal_the_bm25_formula() -> None:
    corpus = _corpus(list(TITLES), list(TITLES.values()))
    bm25 = BM25Retriever(corpus, k1=1.2, b=0.6)
    docs = [bm25_tokens(t) for t in corpus.titles]
    # "红色" and "夏季" are in 3 of the 6 titles: idf log(3.5 / 3.5) = 0, so they alone retrieve nothing
    for query in ("红色 连衣裙", "夏季 夏季 跑步鞋", "耳机", "手机 壳", "红色连衣裙夏季", "红色 夏季"):
        pos, scores = bm25.scores(query)
        assert scores.dtype == np.float32 and (scores > 0).all()
        dense = np.zeros(len(corpus))
        dense[pos] = scores
        want = bm25_reference(docs, bm25_tokens(query), k1=1.2, b=0.6)
        np.testing.assert_allclose(dense, want, rtol=2e-6, atol=1e-6, err_msg=query)
    assert bm25.search("红色 夏季", 3).tolist() == [-1, -1, -1]


def test_bm25_over_a_saved_index_retrieves_the_same(tmp_path) -> None:
    from ebr.lexical import load_lexical_index, save_lexical_index

    corpus = _corpus(list(TITLES), list(TITLES.values()))
    built = BM25Retriever(corpus)
    save_lexical_index(built.index, tmp_path / "lexical")
    loaded = BM25Retriever.from_index(load_lexical_index(tmp_path / "lexical"))
    es = make_evalset(["红色 连衣裙", "跑步鞋", "耳机 降噪", "手机"])
    np.testing.assert_array_equal(loaded.retrieve(es, 4), built.retrieve(es, 4))
    assert isinstance(loaded.index, LexicalIndex) and loaded.retrieve(es, 4)[0, 0] == 12


def test_bm25_search_order_ties_and_padding() -> None:
    corpus = _corpus([7, 2, 4, 8, 11, 13], ["apple pie", "apple pie", "banana", "cherry tart", "plum cake", "kiwi"])
    bm25 = BM25Retriever(corpus, tokenize=str.split)
    assert bm25.search("apple", 3).tolist() == [2, 7, -1]  # equal scores: lower doc id first
    assert bm25.search("grape", 2).tolist() == [-1, -1]  # no shared token: nothing retrieved
    es = make_evalset(["banana", "apple", "banana"])
    np.testing.assert_array_equal(bm25.retrieve(es, 2), [[4, -1], [2, 7], [4, -1]])
    with pytest.raises(ValueError, match="corpus is empty"):
        BM25Retriever(_corpus([], []))


def test_popularity_by_category_with_global_fallback() -> None:
    corpus = _corpus([1, 2, 3, 4, 5], ["t"] * 5, ["a", "a", "b", "b", "c"])
    exposures = [1, 1, 1, 2, 3, 3, 5, 5, 5, 5, 5]
    impressions = pd.DataFrame(
        {
            "doc_id": exposures + [4, 4, 4, 4, 4, 4],
            "stage": ["exposed"] * len(exposures) + ["preranked"] * 3 + ["ranked"] * 3,
        }
    )
    pop = PopularityRetriever.fit(impressions, corpus)
    # exposures: doc 5 x5, doc 1 x3, doc 3 x2, doc 2 x1; doc 4 was never exposed
    assert pop.global_ids.tolist() == [5, 1, 3, 2]
    es = make_evalset(["q"] * 4, categories=["a", "b", None, "unseen"])
    got = pop.retrieve(es, 3)
    np.testing.assert_array_equal(
        got,
        [
            [1, 2, 5],  # category a, padded with the most exposed other doc
            [3, 5, 1],  # category b has one exposed doc
            [5, 1, 3],  # null category: global popularity
            [5, 1, 3],  # category never seen in training: global popularity
        ],
    )
    assert pop.ranked(None, 6).tolist() == [5, 1, 3, 2, -1, -1]


def test_popularity_uses_only_days_before_the_evaluation_day(tiny_data, tiny_days) -> None:
    day = tiny_days[-1]
    pop = PopularityRetriever.from_logs(tiny_data, day)
    counts: Counter[int] = Counter()
    for d in tiny_days[:-1]:
        imp = load(tiny_data, "impressions", [d])
        counts.update(imp.loc[imp["stage"] == "exposed", "doc_id"].tolist())
    expected = [doc for doc, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    assert pop.global_ids.tolist() == expected
    today = load(tiny_data, "impressions", [day])
    only_today = set(today.loc[today["stage"] == "exposed", "doc_id"]) - set(counts)
    assert only_today, "the tiny data should expose some docs for the first time on its last day"
    assert not only_today & set(pop.global_ids.tolist())
    assert training_days(tiny_data, day, window_days=2) == tiny_days[-3:-1]
    with pytest.raises(ValueError, match="needs training days"):
        PopularityRetriever.from_logs(tiny_data, tiny_days[0])


def test_baseline_systems_on_the_tiny_data(tiny_data, tiny_days) -> None:
    day = tiny_days[-1]
    corpus = load_corpus(tiny_data, day)
    es = build_evalset(tiny_data, day, corpus=corpus)
    got = baseline_systems(tiny_data, es, 20, corpus, EvaluateConfig(bm25_k1=1.2))
    assert set(got) == {"popularity", "bm25"}
    assert all(ids.shape == (es.n_requests, 20) for ids in got.values())
    cat = dict(zip(corpus.doc_ids.tolist(), corpus.category_leaf.tolist(), strict=True))
    title = dict(zip(corpus.doc_ids.tolist(), corpus.titles.tolist(), strict=True))
    pop = PopularityRetriever.from_logs(tiny_data, day)
    for query, qcat, pop_row, bm25_row in zip(
        es.frame["query"], es.frame["query_category_leaf"], got["popularity"], got["bm25"], strict=True
    ):
        if qcat in pop.by_category:
            assert cat[int(pop_row[0])] == qcat
        top = int(bm25_row[0])
        if top != -1:
            assert set(bm25_tokens(query)) & set(bm25_tokens(title[top]))
