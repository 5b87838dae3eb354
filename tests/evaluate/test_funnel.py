"""The served funnel offline: candidates ordered by the coarse ranker's exported scorer (a real export), unknown
docs and padding last, the top M kept; survival per channel; a three-tower ranker scores with the requests' cross
features exactly as the server does; a ranker that needs the retrieval cosine is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebr.evaluate.funnel import CoarseScorer, funnel_ids, survival
from ebr.models.inputs import featurize_queries
from ebr.models.rankers.config import CoarseRankerConfig
from serving.coarse_rescorer import CoarseRescorer
from serving.synthetic import build_coarse_ranker, synthetic_docs

DIM = 32


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> CoarseScorer:
    rng = np.random.default_rng(3)
    ids = np.arange(10, 60, dtype=np.int64)
    vecs = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    out = build_coarse_ranker(tmp_path_factory.mktemp("funnel") / "coarse", pd.DataFrame({"doc_id": ids}),
                              CoarseRankerConfig(), doc_vectors=vecs)
    loaded = CoarseScorer.load(out)
    assert loaded is not None
    return loaded


def test_candidates_are_ordered_by_the_coarse_score_and_cut_to_m(scorer):
    rng = np.random.default_rng(4)
    q = rng.standard_normal((3, DIM)).astype(np.float32)
    cand = np.array([[12, 40, 33, 57, 21, -1],
                     [999, 15, 16, -1, -1, -1],  # 999: not in the doc matrix
                     [-1, -1, -1, -1, -1, -1]])
    top = funnel_ids(scorer, q, cand, 4)
    assert top.shape == (3, 4)
    # the two-tower student scores s * <q, d> + b with s > 0: the order of the inner products
    pos = np.searchsorted(scorer.doc_ids, cand[0])
    want = cand[0][:5][np.argsort(-(scorer.doc_vectors[pos[:5]] @ q[0]), kind="stable")][:4]
    assert top[0].tolist() == want.tolist()
    second = cand[1][1:3][np.argsort(-(scorer.doc_vectors[np.searchsorted(scorer.doc_ids, cand[1][1:3])] @ q[1]))]
    assert top[1].tolist() == [*second.tolist(), 999, -1], "an unknown doc after the scored ones, padding last"
    assert top[2].tolist() == [-1] * 4
    scores = scorer.scores(q, cand)
    assert np.isnan(scores[1, 0]) and np.isnan(scores[2]).all() and np.isfinite(scores[0, :5]).all()
    with pytest.raises(ValueError, match="m must be >= 1"):
        funnel_ids(scorer, q, cand, 0)


def test_survival_counts_each_channels_candidates_kept_in_the_top_m():
    cand = np.array([[1, 2, 3, 4], [5, 6, 7, -1]])
    kept = np.array([[3, 1], [7, 5]])
    channels = {"ann": np.array([[1, 2, 9], [5, 6, -1]]), "lexical": np.array([[3, 4, -1], [7, -1, -1]])}
    assert survival(cand, kept, channels) == {"ann": 0.5, "lexical": 0.6667}


def test_a_ranker_that_needs_the_retrieval_cosine_gives_no_funnel(tmp_path):
    ids = np.arange(1, 5, dtype=np.int64)
    out = build_coarse_ranker(tmp_path / "coarse", pd.DataFrame({"doc_id": ids}),
                              CoarseRankerConfig(retrieval_cosine=True),
                              doc_vectors=np.eye(4, DIM, dtype=np.float32))
    assert CoarseScorer.load(out) is None
    assert CoarseScorer.load(tmp_path / "missing") is None


@pytest.fixture(scope="module")
def three_tower(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """A three-tower coarse ranker over 40 synthetic docs (read-only: the tests score with it)."""
    docs = synthetic_docs(40, seed=5, id_offset=1)
    return docs, build_coarse_ranker(tmp_path_factory.mktemp("three-tower") / "coarse", docs,
                                     CoarseRankerConfig(kind="three_tower"))


@pytest.mark.parametrize("chunk", [5, 200_000])  # pairs per scorer call: chunks that split a request's list too
def test_a_three_tower_ranker_scores_with_the_requests_cross_features_as_the_server_does(three_tower, monkeypatch,
                                                                                         chunk):
    from ebr.evaluate import funnel

    monkeypatch.setattr(funnel, "PAIR_CHUNK", chunk)
    docs, out = three_tower
    scorer = CoarseScorer.load(out)
    assert scorer is not None and scorer.three_tower
    cat, brand, seen = docs["category_leaf"].iloc[0], docs["brand"].dropna().iloc[0], int(docs["doc_id"].iloc[1])
    requests = pd.DataFrame({
        "query": [f"{brand} {cat}", "red case"], "query_category_leaf": [cat, None], "query_brand": [brand, None],
        "seq_rt_doc_ids": [[seen], []], "seq_rt_categories": [[docs["category_leaf"].iloc[1]], []],
        "seq_rt_authors": [[int(docs["author_id"].iloc[1])], []], "seq_rt_event_types": [["click"], []],
    })  # fmt: skip
    cand = np.array([docs["doc_id"].to_numpy()[:12], np.r_[docs["doc_id"].to_numpy()[20:31], 999]])
    q = scorer.bundle["query_tower"](featurize_queries(requests, scorer.bundle.featurizer)).numpy()
    scores = scorer.scores(q, cand, requests)
    assert np.isfinite(scores[0]).all() and np.isnan(scores[1, -1]), "a doc without a doc row scores NaN"
    server = CoarseRescorer.open(out)  # the server's re-rank path on the same files
    for i, row in enumerate(requests.to_dict("records")):
        np.testing.assert_allclose(scores[i], server.score(row, cand[i]), rtol=1e-5, atol=1e-5)
    # the cross features matter: the same pairs scored with the first request's fields blanked differ
    blank = requests.assign(query_category_leaf=None, query_brand=None, seq_rt_doc_ids=[[], []])
    assert np.abs(scorer.scores(q, cand, blank)[0] - scores[0]).max() > 1e-4
    with pytest.raises(ValueError, match="request row"):
        scorer.scores(q, cand)
