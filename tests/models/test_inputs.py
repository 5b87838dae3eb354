"""The featurizer: one path from rows (DataFrame or request dicts) to fixed-shape int64 tensors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ebr.models.config import FeaturizerConfig, NumericFeature
from ebr.models.inputs import (
    EVENT_TYPE_IDS,
    OTHER_EVENT_TYPE_ID,
    doc_tensor_keys,
    featurize_docs,
    featurize_queries,
    query_tensor_keys,
    vocabularies,
)
from ebr.text import TextAnalyzer
from tests.models.rows import doc_row, doc_rows, logged_in_row, logged_out_row, small_featurizer


@pytest.fixture(scope="module")
def cfg() -> FeaturizerConfig:
    return small_featurizer()


def test_query_tensors_have_fixed_shapes_and_int64(cfg):
    x = featurize_queries([logged_in_row(), logged_out_row()], cfg)
    assert list(x) == query_tensor_keys(cfg)
    ml = cfg.max_len
    assert x["query_unigrams"].shape == (2, ml.query_unigrams)
    assert x["query_words"].shape == (2, ml.query_words)
    assert x["recent_query_words"].shape == (2, ml.recent_queries, ml.query_words)
    assert x["user_numeric"].shape == (2, 1)
    assert x["seq_rt_doc_ids"].shape == (2, ml.seq_rt)
    assert x["seq_st_event_types"].shape == (2, ml.seq_st)
    assert x["seq_lt_authors"].shape == (2, ml.seq_lt)
    assert all(t.dtype == torch.int64 for t in x.values())


def test_dataframe_and_request_dicts_give_identical_tensors(cfg):
    rows = [logged_in_row(), logged_out_row()]
    a = featurize_queries(rows, cfg)
    b = featurize_queries(pd.DataFrame(rows), cfg)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_large_batches_match_one_request_at_a_time(cfg):
    # batches above the small-input threshold take the vectorized pandas path; requests the plain one
    rows = [logged_in_row(), logged_out_row(), logged_in_row("Apple iPhone case")] * 30
    rows = [
        {**r, "query": f"{r['query']} {i}", "user_id": 1000 + i if "user_id" in r else None}
        for i, r in enumerate(rows)
    ]
    rows[4] = {**rows[4], "user_id": None, "user_age": None}
    batch = featurize_queries(pd.DataFrame(rows), cfg)
    for i in (0, 1, 2, 4, 89):
        one = featurize_queries([rows[i]], cfg)
        for k in batch:
            assert torch.equal(batch[k][i], one[k][0]), (i, k)
    docs = doc_rows() * 30
    d_batch = featurize_docs(docs, cfg)
    for i in (0, 1, 2):
        one = featurize_docs([docs[i]], cfg)
        for k in d_batch:
            assert torch.equal(d_batch[k][i], one[k][0]), (i, k)


def test_texts_analyzed_in_chunks_give_the_same_ids(cfg, monkeypatch):
    from ebr.models import inputs

    rows = [{**logged_in_row(), "query": f"红色 连衣裙 {i % 7} dress"} for i in range(90)]
    docs = [{**d, "title": f"{d['title']} {i}"} for i, d in enumerate(doc_rows() * 30)]
    whole_q, whole_d = featurize_queries(pd.DataFrame(rows), cfg), featurize_docs(docs, cfg)
    monkeypatch.setattr(inputs, "_TEXT_CHUNK", 4)  # many chunks, the last one short
    chunked_q, chunked_d = featurize_queries(pd.DataFrame(rows), cfg), featurize_docs(docs, cfg)
    for whole, chunked in ((whole_q, chunked_q), (whole_d, chunked_d)):
        assert whole.keys() == chunked.keys()
        for k in whole:
            assert torch.equal(whole[k], chunked[k]), k
    assert len(set(map(tuple, whole_d["title_words"].tolist()))) > 4  # more distinct titles than one chunk


def test_one_request_with_numpy_ids_and_nulls_matches_the_batch_path(cfg):
    # a request hashes through a per-vocabulary memo: numpy ids, ints and nulls must give the batch's ids
    row = {**logged_in_row(), "seq_st_doc_ids": np.arange(21, 31), "seq_rt_event_types": ["click", None, "like"],
           "seq_rt_authors": [np.int64(501), 502, None]}
    rows = [row] + [logged_out_row(f"q {i}") for i in range(80)]
    batch = featurize_queries(pd.DataFrame(rows), cfg)
    for _ in range(2):  # the second pass reads the memo
        one = featurize_queries([row], cfg)
        for k in batch:
            assert torch.equal(batch[k][0], one[k][0]), k
    assert one["seq_rt_event_types"][0, 1] == 0 and one["seq_rt_authors"][0, 2] == 0


def test_a_bool_id_is_refused_after_the_equal_int_was_seen(cfg):
    featurize_queries([{**logged_in_row(), "user_id": 1}], cfg)  # memoizes the int 1 (True == 1 in a dict)
    with pytest.raises(ValueError, match="user_id.*bool"):
        featurize_queries([{**logged_in_row(), "user_id": True}], cfg)


def test_an_unhashable_event_type_is_named(cfg):
    with pytest.raises(ValueError, match="seq_rt_event_types"):
        featurize_queries([{**logged_in_row(), "seq_rt_event_types": [["click"], "like", "click"]}], cfg)


def test_logged_out_request_has_only_query_ids(cfg):
    x = featurize_queries([logged_out_row()], cfg)
    assert x["query_words"][0].gt(0).any()
    for k in ["user_id", "user_gender", "user_age", "user_city", "user_profile_tags", "user_numeric",
              "recent_query_words", "seq_rt_doc_ids", "seq_st_categories", "seq_lt_event_types"]:  # fmt: skip
        assert x[k].eq(0).all(), k


def test_query_and_title_words_share_ids(cfg):
    q = featurize_queries([{"query": "红色连衣裙"}], cfg)
    d = featurize_docs([doc_row(title="夏季 红色 连衣裙")], cfg)
    assert set(q["query_words"][0][q["query_words"][0] > 0].tolist()) <= set(d["title_words"][0].tolist())


def test_words_follow_the_analyzer_and_pad_with_zero(cfg):
    x = featurize_queries([{"query": "红色连衣裙"}], cfg)
    words = TextAnalyzer(cfg.text).analyze("红色连衣裙").words
    expected = vocabularies(cfg)["word"].ids(words, cfg.max_len.query_words)
    assert x["query_words"][0].tolist() == expected
    assert x["query_words"][0, len(words) :].eq(0).all()


def test_sequences_keep_the_newest_entries_and_align_side_info(cfg):
    row = logged_in_row()
    x = featurize_queries([row], cfg)
    n = cfg.max_len.seq_st  # 8 of the 10 short-term behaviours fit
    vocab = vocabularies(cfg)["doc_id"]
    assert x["seq_st_doc_ids"][0].tolist() == [vocab.id(str(d)) for d in row["seq_st_doc_ids"][:n]]
    assert x["seq_rt_event_types"][0, :3].tolist() == [EVENT_TYPE_IDS[e] for e in row["seq_rt_event_types"]]
    assert x["seq_rt_event_types"][0, 3:].eq(0).all()
    y = featurize_queries([{**row, "seq_rt_event_types": ["click", "share", "like"]}], cfg)
    assert y["seq_rt_event_types"][0, 1].item() == OTHER_EVENT_TYPE_ID


def test_null_or_missing_lists_are_empty(cfg):
    a = featurize_queries([{"query": "x", "seq_rt_doc_ids": None, "user_profile_tags": float("nan")}], cfg)
    assert a["seq_rt_doc_ids"].eq(0).all() and a["user_profile_tags"].eq(0).all()


def test_numpy_list_values_from_parquet_work(cfg):
    row = logged_in_row()
    as_arrays = {k: np.asarray(v) if isinstance(v, list) else v for k, v in row.items()}
    a = featurize_queries([row], cfg)
    b = featurize_queries(pd.DataFrame([as_arrays]), cfg)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_doc_tensors_and_null_statistics(cfg):
    x = featurize_docs(doc_rows(), cfg)
    assert list(x) == doc_tensor_keys(cfg)
    assert x["doc_numeric"].shape == (3, len(cfg.doc_numeric))
    assert x["doc_numeric"][2].eq(0).all()  # all statistics null -> bucket 0
    assert x["doc_numeric"][0].gt(0).all()
    assert x["brand"][2].item() == 0 and x["brand"][0].item() > 0
    assert x["attributes"][2].eq(0).all() and x["tags"][1].eq(0).all()
    assert x["title_words"].shape == (3, cfg.max_len.title_words)


def test_bucketization_matches_fixed_log_scale_boundaries():
    f = NumericFeature(name="doc_clicks_30d", low=1, high=1000, num_boundaries=4)  # edges 0, 1, 10, 100, 1000
    assert f.edges() == pytest.approx([0, 1, 10, 100, 1000])
    cfg = FeaturizerConfig(doc_numeric=[f])
    values = [None, -5, 0, 0.5, 1, 9.9, 10, 99, 5000, float("nan")]
    rows = [doc_row(doc_id=i, doc_clicks_30d=v) for i, v in enumerate(values)]
    got = featurize_docs(rows, cfg)["doc_numeric"][:, 0].tolist()
    assert got == [0, 1, 2, 2, 3, 3, 4, 4, 6, 0]
    assert got == [f.bucket(v) for v in values]
    assert f.num_ids == 7 and max(got) < f.num_ids


def test_ids_stay_in_range_for_any_input(cfg):
    x = featurize_docs(doc_rows(), cfg)
    v = cfg.vocab
    assert x["doc_id"].max() <= v.doc_id and x["title_words"].max() <= v.word
    assert x["category_leaf"].min() >= 1 and x["author_id"].max() <= v.author_id


def test_missing_statistic_column_is_named(cfg):
    row = doc_row()
    del row["doc_ctr_30d"]
    with pytest.raises(ValueError, match="doc_ctr_30d"):
        featurize_docs([row], cfg)


def test_absent_user_numeric_column_reads_as_null(cfg):
    x = featurize_queries([{"query": "x"}, {"query": "x", "user_search_count_30d": 3}], cfg)
    assert x["user_numeric"][:, 0].tolist() == [0, cfg.user_numeric[0].bucket(3)]
    assert cfg.user_numeric[0].bucket(3) > 0


@pytest.mark.parametrize("column", ["doc_id", "title", "category_leaf", "author_id"])
def test_null_required_doc_column_is_named(cfg, column):
    with pytest.raises(ValueError, match=column):
        featurize_docs([doc_row(), doc_row(**{column: None})], cfg)


def test_missing_required_doc_column_is_named(cfg):
    row = doc_row()
    del row["category_l2"]
    with pytest.raises(ValueError, match="category_l2"):
        featurize_docs([row], cfg)


@pytest.mark.parametrize(
    ("patch", "name"),
    [
        ({"user_gender": "x"}, "user_gender"),
        ({"user_profile_tags": "fashion"}, "user_profile_tags"),
        ({"seq_rt_categories": ["a"]}, "seq_rt_categories"),
        ({"user_age": "old"}, "user_age"),
        ({"query": None}, "query"),
        ({"query": 42}, "query"),
        ({"user_id": 1.5}, "user_id"),
    ],
)
def test_bad_query_values_are_named(cfg, patch, name):
    with pytest.raises(ValueError, match=name):
        featurize_queries([{**logged_in_row(), **patch}], cfg)


def test_a_single_dict_must_be_wrapped(cfg):
    with pytest.raises(TypeError, match="wrap it"):
        featurize_queries(logged_in_row(), cfg)  # type: ignore[arg-type]


def test_numeric_feature_validation():
    with pytest.raises(ValueError, match="strictly increasing"):
        NumericFeature(name="a", boundaries=[1, 1, 2])
    with pytest.raises(ValueError, match="high"):
        NumericFeature(name="a", low=10, high=5)
    with pytest.raises(ValueError, match="unique"):
        FeaturizerConfig(doc_numeric=[NumericFeature(name="a"), NumericFeature(name="a")])
    assert math.isclose(NumericFeature(name="a", low=1, high=100, num_boundaries=3).edges()[2], 10.0)


def test_query_understanding_is_hashed_in_the_doc_category_and_brand_vocabularies(cfg):
    rows = [logged_in_row(), logged_out_row(), {**logged_in_row(), "qu_brand": None}]
    x = featurize_queries(rows, cfg)
    v = vocabularies(cfg)
    assert x["query_category"].tolist() == [v["category"].id("连衣裙"), 0, v["category"].id("连衣裙")]
    assert x["query_brand"].tolist() == [v["brand"].id("某品牌"), 0, 0]
    docs = featurize_docs([doc_row()], cfg)  # the same category and brand on the doc side get the same ids
    assert docs["category_leaf"].item() == x["query_category"][0].item()
    assert docs["brand"].item() == x["query_brand"][0].item()
