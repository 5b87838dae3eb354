"""Offline hard negatives from a real Faiss index: rank band, exclusions and the easy:hard ratio."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest

from ebr.samples.config import HardNegativesConfig
from ebr.samples.hard_negatives import HARD_NEGATIVE_COLUMNS, hard_negative_quota, mine_hard_negatives

DIM = 16
N_DOCS = 600
N_REQ = 40


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(5)
    doc_vecs = rng.normal(size=(N_DOCS, DIM)).astype("float32")
    doc_vecs /= np.linalg.norm(doc_vecs, axis=1, keepdims=True)
    doc_ids = np.arange(1000, 1000 + N_DOCS, dtype="int64")
    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    index.add_with_ids(doc_vecs, doc_ids)
    q_vecs = rng.normal(size=(N_REQ, DIM)).astype("float32")
    requests = pd.DataFrame({
        "request_id": [f"q{i:03d}" for i in range(N_REQ)],
        "user_id": pd.array(rng.integers(0, 5, N_REQ), dtype="Int64"),
        "query": [f"query {i % 25}" for i in range(N_REQ)],
        "query_category_leaf": ["leaf"] * N_REQ,
        "query_brand": [None] * N_REQ,
        "event_timestamp": pd.Timestamp("2026-11-02T00:00:00Z") + pd.to_timedelta(np.arange(N_REQ), unit="min"),
    })
    vec_of = dict(zip(requests["request_id"], q_vecs, strict=True))

    def encode_queries(frame: pd.DataFrame) -> np.ndarray:
        return np.stack([vec_of[r] for r in frame["request_id"]])

    # exact ranks of every doc per request (1-based), computed independently of the miner
    order = np.argsort(-(q_vecs @ doc_vecs.T), axis=1, kind="stable")
    ranks = {(requests["request_id"][i], int(doc_ids[j])): r + 1 for i in range(N_REQ) for r, j in enumerate(order[i])}
    # positives: requests 0..29 click their exact rank-120 doc (inside the band: must be excluded)
    pos_req = requests.iloc[:30]
    pos_docs = [int(doc_ids[order[i, 119]]) for i in range(30)]
    positives = pos_req.assign(doc_id=pos_docs, author_id=0, weight=1.0, kind="click")
    clicks = positives[["request_id", "query", "doc_id"]]
    corpus = pd.DataFrame({"doc_id": doc_ids, "author_id": doc_ids % 7, "category_leaf": "leaf"})
    return requests, positives, clicks, corpus, index, encode_queries, ranks


def _cfg(**fields) -> HardNegativesConfig:
    """The miner's config with the relevance filter off: these tests check the band, quota and exclusions alone."""
    return HardNegativesConfig(**{"relevance_filter": "none", **fields})


def _mine(world, cfg: HardNegativesConfig, quota: int, seed: int = 0) -> pd.DataFrame:
    requests, positives, clicks, corpus, index, encode, _ = world
    return mine_hard_negatives(requests, positives, clicks, corpus, index, encode, quota, cfg,
                               np.random.default_rng(seed))


def test_hard_negatives_come_from_the_rank_band(world):
    cfg = _cfg(rank_min=101, rank_max=500, batch_size=7)
    hard = _mine(world, cfg, quota=300)
    ranks = world[6]
    assert list(hard.columns) == HARD_NEGATIVE_COLUMNS and len(hard) == 300
    exact = np.array([ranks[(r, d)] for r, d in zip(hard["request_id"], hard["doc_id"], strict=True)])
    assert exact.min() >= 101 and exact.max() <= 500
    assert (hard["ann_rank"].to_numpy() == exact).all()
    # only training requests (with a positive) are mined, and never one of their positives
    positives, clicks = world[1], world[2]
    assert set(hard["request_id"]) <= set(positives["request_id"])
    assert hard.merge(positives, on=["request_id", "doc_id"]).empty
    # nor a doc clicked for the same query text by another request
    assert hard.merge(clicks, on=["query", "doc_id"]).empty
    assert not hard.duplicated(["request_id", "doc_id"]).any()


def test_narrow_band_and_spread_over_requests(world):
    cfg = _cfg(rank_min=11, rank_max=20, exclude_query_clicks=False)
    hard = _mine(world, cfg, quota=60)
    ranks = world[6]
    exact = [ranks[(r, d)] for r, d in zip(hard["request_id"], hard["doc_id"], strict=True)]
    assert min(exact) >= 11 and max(exact) <= 20
    per_req = hard.groupby("request_id").size()
    assert len(per_req) == 30 and per_req.max() - per_req.min() <= 1


def test_per_request_defines_the_quota(world):
    positives = world[1]
    cfg = _cfg(rank_min=101, rank_max=500, per_request=12)
    n_req = positives["request_id"].nunique()
    quota = hard_negative_quota(n_req, cfg)
    assert quota == n_req * 12
    hard = _mine(world, cfg, quota)
    assert len(hard) == quota
    assert (hard.groupby("request_id").size() == 12).all()
    # a band narrower than per_request gives what is there: fewer, never repeats
    narrow = _cfg(rank_min=101, rank_max=104, per_request=12, exclude_query_clicks=False)
    few = _mine(world, narrow, hard_negative_quota(n_req, narrow))
    assert few.groupby("request_id").size().max() <= 4 and not few.duplicated(["request_id", "doc_id"]).any()


def test_the_encoder_sees_every_column_of_the_requests(world):
    requests, positives, clicks, corpus, index, encode, _ = world
    seen: list[list[str]] = []

    def spy(frame: pd.DataFrame) -> np.ndarray:
        seen.append(list(frame.columns))
        return encode(frame)

    rich = requests.assign(user_gender="f", recent_queries=[["a"]] * len(requests))
    mine_hard_negatives(rich, positives, clicks, corpus, index, spy, 30, _cfg(),
                        np.random.default_rng(0))
    assert seen and all({"user_gender", "recent_queries", "user_id", "query"} <= set(c) for c in seen)


def test_deterministic_and_seed_sensitive(world):
    cfg = _cfg(rank_min=101, rank_max=500)
    a, b, c = _mine(world, cfg, 50, seed=1), _mine(world, cfg, 50, seed=1), _mine(world, cfg, 50, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["request_id", "doc_id"]].equals(c[["request_id", "doc_id"]])


def test_bad_encoder_output_is_a_clear_error(world):
    requests, positives, clicks, corpus, index, _, _ = world
    with pytest.raises(ValueError, match="encode_queries returned shape"):
        mine_hard_negatives(requests, positives, clicks, corpus, index, lambda f: np.zeros((1, DIM)), 10,
                            _cfg(), np.random.default_rng(0))


def test_band_config_is_validated():
    with pytest.raises(ValueError, match="rank_max"):
        HardNegativesConfig(rank_min=500, rank_max=101)


def test_control_filter_keeps_only_docs_the_relevance_control_removes(world):
    requests, positives, clicks, corpus, index, encode, ranks = world
    doc_ids = corpus["doc_id"].to_numpy()
    # a third of the docs sit in the requests' understood leaf; requests 0..9 also understand a brand "b1" that
    # half of those carry; requests 20..29 understand nothing
    fields = pd.DataFrame({
        "doc_id": doc_ids,
        "category_leaf": np.where(doc_ids % 3 == 0, "leaf", "other"),
        "brand": np.where(doc_ids % 2 == 0, "b1", None),
    })
    reqs = requests.copy()
    reqs.loc[:9, "query_brand"] = "b1"
    reqs.loc[20:29, "query_category_leaf"] = None
    cfg = HardNegativesConfig(rank_min=101, rank_max=500, relevance_filter="control")
    quota = hard_negative_quota(30, cfg)
    hard = mine_hard_negatives(reqs, positives, clicks, corpus, index, encode, quota, cfg,
                               np.random.default_rng(0), fields)
    plain = mine_hard_negatives(reqs, positives, clicks, corpus, index, encode, quota,
                                _cfg(rank_min=101, rank_max=500), np.random.default_rng(0))
    leaf = dict(zip(fields["doc_id"], fields["category_leaf"], strict=True))
    brand = dict(zip(fields["doc_id"], fields["brand"], strict=True))
    req_brand = dict(zip(reqs["request_id"], reqs["query_brand"], strict=True))
    req_leaf = dict(zip(reqs["request_id"], reqs["query_category_leaf"], strict=True))
    for r, d in zip(hard["request_id"], hard["doc_id"], strict=True):
        off_leaf = req_leaf[r] is not None and leaf[d] != req_leaf[r]
        off_brand = req_brand[r] is not None and brand[d] != req_brand[r]
        assert off_leaf or off_brand, (r, d)
    # requests without understanding get none; the others still fill their quota from the band
    assert not set(hard["request_id"]) & set(reqs["request_id"][20:30])
    assert hard.attrs["requests_not_understood"] == 10
    per_req = hard.groupby("request_id").size()
    assert len(per_req) == 20 and (per_req == cfg.per_request).all()
    # without the filter, docs inside the understood leaf are mined too: the filter is what removed them
    assert any(leaf[d] == "leaf" for d in plain["doc_id"])
    assert hard.attrs["relevance_filtered"] > 0
    exact = np.array([ranks[(r, d)] for r, d in zip(hard["request_id"], hard["doc_id"], strict=True)])
    assert exact.min() >= 101 and exact.max() <= 500


def test_category_filter_keeps_same_leaf_docs_of_another_brand_out_of_the_negatives(world):
    requests, positives, clicks, corpus, index, encode, _ = world
    doc_ids = corpus["doc_id"].to_numpy()
    fields = pd.DataFrame({"doc_id": doc_ids, "category_leaf": np.where(doc_ids % 3 == 0, "leaf", "other"),
                           "brand": np.where(doc_ids % 2 == 0, "b1", None)})
    reqs = requests.assign(query_brand="b1")  # every request understands leaf "leaf" and brand "b1"
    quota = hard_negative_quota(30, HardNegativesConfig())

    def mine(mode: str) -> pd.DataFrame:
        cfg = HardNegativesConfig(rank_min=101, rank_max=500, relevance_filter=mode)
        return mine_hard_negatives(reqs, positives, clicks, corpus, index, encode, quota, cfg,
                                   np.random.default_rng(0), fields)

    leaf = dict(zip(fields["doc_id"], fields["category_leaf"], strict=True))
    brand = dict(zip(fields["doc_id"], fields["brand"], strict=True))
    by_category, by_control = mine("category"), mine("control")
    # `category`: only other leaves, whatever the brand
    assert len(by_category) == quota and all(leaf[d] == "other" for d in by_category["doc_id"])
    # `control`: also same-leaf docs without the understood brand (the partial matches `category` keeps out)
    assert all(leaf[d] == "other" or brand[d] != "b1" for d in by_control["doc_id"])
    assert any(leaf[d] == "leaf" and brand[d] is None for d in by_control["doc_id"])
    assert by_category.attrs["relevance_filtered"] > by_control.attrs["relevance_filtered"]


def test_relevance_filter_needs_the_docs_fields(world):
    requests, positives, clicks, corpus, index, encode, _ = world
    cfg = HardNegativesConfig(relevance_filter="category")
    with pytest.raises(ValueError, match="relevance_filter needs the docs table"):
        mine_hard_negatives(requests, positives, clicks, corpus, index, encode, 30, cfg, np.random.default_rng(0))


def test_relevance_filter_values():
    from ebr.config import load_ebr_config

    assert HardNegativesConfig().relevance_filter == "category"
    for text in ("off", "false", "none"):  # YAML reads off / false as False: no filter
        cfg = load_ebr_config(None, [f"samples.hard_negatives.relevance_filter={text}"])
        assert cfg.samples.hard_negatives.relevance_filter == "none"
    with pytest.raises(ValueError, match="relevance_filter"):
        load_ebr_config(None, ["samples.hard_negatives.relevance_filter=brand"])
