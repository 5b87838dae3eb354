"""The three-tower coarse ranker served end to end over real HTTP: the bundle ships the doc rows its cross tower
needs, the server computes each candidate's query-doc and user-doc cross features from the request and the
store's user and query rows (the function training uses), and the scores equal the eager student's (real
uvicorn on loopback, a real Feast store, real bundles; the ranker is untrained, which the parity does not need)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from ebr.features import open_store
from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.rankers.coarse_ranker import CoarseRanker
from ebr.models.rankers.config import CoarseRankerConfig
from ebr.models.rankers.cross_features import bucketize, compute_cross_features
from ebr.train.rankers import DOC_ROWS
from serving.app import create_app
from serving.coarse_rescorer import CoarseRescorer
from serving.settings import ServerSettings
from serving.synthetic import build_bundle, build_coarse_ranker
from tests.serving.clients import LiveServer
from tests.serving.conftest import Parts
from tests.serving.online_rows import write_online_row

USER = 5
AT = pd.Timestamp("2024-03-01", tz="UTC")


@pytest.fixture(scope="module")
def tt_config(parts: Parts) -> CoarseRankerConfig:
    return parts.coarse_config.model_copy(update={"kind": "three_tower", "seed": 11})


@pytest.fixture(scope="module")
def tt_coarse_dir(parts, tt_config, tmp_path_factory) -> Path:
    return build_coarse_ranker(tmp_path_factory.mktemp("coarse-3t") / "coarse", parts.docs_v1, tt_config)


@pytest.fixture(scope="module")
def case(parts: Parts) -> dict:
    """A query naming a doc's brand and category, and a user whose sequences hold some docs of that category."""
    docs = parts.docs_v1
    branded = docs[docs["brand"].notna()].iloc[0]
    same_cat = docs[docs["category_leaf"] == branded["category_leaf"]]
    seen = same_cat["doc_id"].tolist()[:3]
    return {"query": f"{branded['brand']} {branded['category_leaf']}", "category": branded["category_leaf"],
            "brand": branded["brand"], "seen": seen,
            "seen_categories": same_cat["category_leaf"].tolist()[:3],
            "seen_authors": [int(a) for a in same_cat["author_id"].tolist()[:3]]}


@pytest.fixture(scope="module")
def store_dir(case, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store-3t") / "features"
    out.mkdir()
    store = open_store(out)
    n = len(case["seen"])
    write_online_row(store, "user_realtime", USER, {
        "seq_rt_doc_ids": case["seen"], "seq_rt_categories": case["seen_categories"],
        "seq_rt_authors": case["seen_authors"], "seq_rt_event_types": ["click"] * n}, AT)
    write_online_row(store, "user_profile", USER, {"user_profile_tags": [case["category"].split(" ")[0]]}, AT)
    write_online_row(store, "query_stats", case["query"], {"qu_category_leaf": case["category"],
                                                           "qu_brand": case["brand"]}, AT)
    return out


@pytest.fixture(scope="module")
def server(parts, tt_coarse_dir, store_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles-3t") / "bundles"
    build_bundle(root, "three-tower", docs=parts.docs_v1, model_dir=parts.model_dir, vectors=parts.vectors_v1,
                 coarse_ranker_dir=tt_coarse_dir)
    app = create_app(ServerSettings(bundles_dir=root, feature_repo=store_dir), start=False)
    rt = app.state.runtime
    rt.set_threads()
    assert rt.features is not None and rt.features.open()
    rt.manager.reload()
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        yield http, app


def _eager(parts: Parts, config: CoarseRankerConfig, request: dict, ids: list[int],
           cross_request: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the eager student's scores, the pairs' cross features) for one request row and candidate ids; the cross
    features of `cross_request` when given."""
    model = CoarseRanker(config).eval()
    fz = config.featurizer
    docs = parts.docs_v1.set_index("doc_id").loc[ids].reset_index()
    cross = compute_cross_features([cross_request or request], docs, None, config.cross_features, fz.text)
    with torch.no_grad():
        q = model.encode_queries(featurize_queries([request], fz))
        d = model.encode_docs(featurize_docs(docs, fz))
        scores = model.score_pairs(q.expand(len(ids), -1), d, torch.from_numpy(cross),
                                   torch.from_numpy(bucketize(cross, config.cross_features)))
    return scores.numpy(), cross


def test_a_three_tower_ranker_reranks_with_the_cross_features_of_the_request(server, parts, tt_config, case):
    http, app = server
    r = http.post("/search", json={"query": case["query"], "user_id": USER, "k": 30, "rerank": True,
                                   "candidates": 60, "retrieval": "hybrid", "relevance_control": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reranked"] is True and body["personalized"] is True
    rescorer = app.state.runtime.manager.current.rescorer
    assert rescorer.usable and rescorer.three_tower
    items = body["items"]
    assert len(items) == 30
    coarse = [it["coarse_score"] for it in items]
    assert None not in coarse and coarse == sorted(coarse, reverse=True)

    ids = [it["doc_id"] for it in items]
    user = {"seq_rt_doc_ids": case["seen"], "seq_rt_categories": case["seen_categories"],
            "seq_rt_authors": case["seen_authors"], "seq_rt_event_types": ["click"] * len(case["seen"]),
            "user_profile_tags": [case["category"].split(" ")[0]]}
    request = {"query": case["query"], "user_id": USER, "query_category_leaf": case["category"],
               "query_brand": case["brand"], "qu_category_leaf": case["category"], "qu_brand": case["brand"],
               **user}  # the query tower reads the store's understanding (qu_*), the cross features the log's
    expected, cross = _eager(parts, tt_config, request, ids)
    np.testing.assert_allclose(coarse, expected, rtol=1e-5, atol=1e-5)
    # the request's cross features are not trivial: the query's category and brand, the user's seen docs
    names = tt_config.cross_features
    assert (cross[:, names.index("qd_category_match")] == 1).any()
    assert (cross[:, names.index("qd_brand_match")] == 1).any()
    assert (cross[:, names.index("ud_category_events")] > 0).any()
    # and they change the scores: the cross features of the query text alone score the same docs differently
    bare, _ = _eager(parts, tt_config, request, ids, cross_request={"query": case["query"]})
    assert np.abs(bare - expected).max() > 1e-3


def test_the_rescorer_scores_a_doc_without_a_doc_row_as_missing(tt_coarse_dir, parts, tmp_path):
    rescorer = CoarseRescorer.open(tt_coarse_dir)
    ids = parts.docs_v1["doc_id"].to_numpy()[:4]
    unknown = np.array([ids[0], 999_999, ids[1]])
    scores = rescorer.score({"query": "red case"}, unknown)
    assert np.isfinite(scores[[0, 2]]).all() and np.isnan(scores[1])

    # a three-tower ranker whose doc rows are absent is loaded as unusable, with the reason
    copy = tmp_path / "coarse"
    import shutil

    shutil.copytree(tt_coarse_dir, copy)
    (copy / DOC_ROWS).unlink()
    broken = CoarseRescorer.open(copy)
    assert not broken.usable and DOC_ROWS in (broken.reason or "")
