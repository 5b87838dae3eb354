"""POST /search end to end in-process on the embedding channel (`retrieval: ann`; the merge with the lexical
channel is tests/serving/test_hybrid.py): tower + Faiss results against brute force, filters with over-fetch,
radius, coarse re-score, and the health, readiness, metrics and OpenAPI routes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ebr.models.inputs import featurize_queries
from ebr.models.rankers.coarse_ranker import CoarseRanker
from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import InProcessClient, metric_value
from tests.serving.conftest import Parts, copy_root, publish

TOL = 1e-4


def exact_scores(parts: Parts, query: str) -> pd.Series:
    """Cosine of the eager query tower's vector with every v1 doc vector, by doc id."""
    with torch.no_grad():
        q = parts.model.query_tower(featurize_queries([{"query": query}], parts.config.featurizer)).numpy()[0]
    return pd.Series(parts.vectors_v1 @ q, index=parts.docs_v1["doc_id"].to_numpy())


def assert_best_of(items: list[dict], eligible: pd.Series, k: int) -> None:
    """Items carry their true scores, descending, and no eligible doc outside them scores higher."""
    ids = [it["doc_id"] for it in items]
    scores = np.array([it["score"] for it in items])
    assert len(ids) == len(set(ids)) == min(k, len(eligible))
    assert set(ids) <= set(eligible.index)
    np.testing.assert_allclose(scores, eligible.loc[ids].to_numpy(), atol=TOL)
    assert (np.diff(scores) <= TOL).all()
    rest = eligible.drop(ids)
    if len(rest):
        assert rest.max() <= scores.min() + TOL


def doc_field(parts: Parts, field: str) -> pd.Series:
    return parts.docs_v1.set_index("doc_id")[field]


def test_top_k_equals_brute_force_over_the_tower_vector(client, parts):
    r = client.post("/search", json={"retrieval": "ann", "query": "red running shoes", "k": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bundle_version"] == "v1"
    assert body["personalized"] is False and body["reranked"] is False
    assert body["degraded"] == "no_feature_store", "served without a store: said so in the answer"
    assert body["took_ms"] > 0
    assert_best_of(body["items"], exact_scores(parts, "red running shoes"), 20)
    assert all("coarse_score" not in it for it in body["items"])


def test_k_defaults_to_100_and_is_capped_by_the_corpus(client, parts):
    assert len(client.post("/search", json={"retrieval": "ann", "query": "watch"}).json()["items"]) == 100
    r = client.post("/search", json={"retrieval": "ann", "query": "watch", "k": 1000})
    assert_best_of(r.json()["items"], exact_scores(parts, "watch"), 1000)
    assert len(r.json()["items"]) == len(parts.docs_v1)


@pytest.mark.parametrize("filters", [{"brand": "acme"}, {"category_leaf": "dress"},
                                     {"brand": "globex", "category_leaf": "running shoes"}])
def test_filters_keep_k_matching_docs_by_over_fetching(client, parts, filters):
    k = 5
    r = client.post("/search", json={"retrieval": "ann", "query": "light summer jacket", "k": k, "filters": filters})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    match = pd.Series(True, index=parts.docs_v1["doc_id"].to_numpy())
    for field, value in filters.items():
        match &= (doc_field(parts, field) == value).to_numpy()
    eligible = exact_scores(parts, "light summer jacket")[match.to_numpy()]
    assert len(eligible) >= k, "the corpus must allow k matching docs for this check"
    assert_best_of(items, eligible, k)
    for field, value in filters.items():
        assert (doc_field(parts, field).loc[[it["doc_id"] for it in items]] == value).all()


def test_filter_with_few_matches_returns_all_of_them(client, parts):
    brand, cat = "wonka", "kettle"
    match = (doc_field(parts, "brand") == brand) & (doc_field(parts, "category_leaf") == cat)
    n_match = int(match.sum())
    assert 0 < n_match < 50
    before = _metric(client, "ebr_serve_short_results_total")
    r = client.post("/search", json={"retrieval": "ann", "query": "kettle", "k": 50,
                                           "filters": {"brand": brand, "category_leaf": cat}})
    items = r.json()["items"]
    assert sorted(it["doc_id"] for it in items) == sorted(match[match].index.tolist())
    assert _metric(client, "ebr_serve_short_results_total") == before + 1


def test_filter_that_nothing_matches_returns_no_items(client):
    r = client.post("/search", json={"retrieval": "ann", "query": "kettle", "k": 10,
                                     "filters": {"brand": "no-such-brand"}})
    assert r.status_code == 200 and r.json()["items"] == []


def test_radius_keeps_docs_at_or_above_it(client, parts):
    exact = exact_scores(parts, "vintage lamp")
    radius = float(np.sort(exact.to_numpy())[-30])  # about 30 docs inside
    r = client.post("/search", json={"retrieval": "ann", "query": "vintage lamp", "k": 100, "radius": radius})
    items = r.json()["items"]
    assert all(it["score"] >= radius for it in items)
    inside = exact[exact >= radius + TOL]
    assert set(inside.index) <= {it["doc_id"] for it in items}
    assert len(items) <= (exact >= radius - TOL).sum()
    capped = client.post("/search", json={"retrieval": "ann", "query": "vintage lamp", "k": 7,
                                          "radius": radius}).json()["items"]
    assert [it["doc_id"] for it in capped] == [it["doc_id"] for it in items[:7]]


def test_rerank_orders_by_the_coarse_rankers_score(client, parts):
    plain = client.post("/search", json={"retrieval": "ann", "query": "wireless headphones", "k": 30}).json()
    r = client.post("/search", json={"retrieval": "ann", "query": "wireless headphones", "k": 30, "rerank": True,
                                     "candidates": 30})  # a funnel of k: the same docs, re-ordered
    body = r.json()
    assert body["reranked"] is True
    coarse = [it["coarse_score"] for it in body["items"]]
    assert coarse == sorted(coarse, reverse=True)
    assert {it["doc_id"] for it in body["items"]} == {it["doc_id"] for it in plain["items"]}
    # the same scores from the eager student (same seed => same weights) over its own doc vectors
    model = CoarseRanker(parts.coarse_config).eval()
    fz = parts.coarse_config.featurizer
    with torch.no_grad():
        q = model.encode_queries(featurize_queries([{"query": "wireless headphones"}], fz))
        ids = [it["doc_id"] for it in body["items"]]
        d = model.encode_docs(_doc_inputs(parts, ids, fz))
        want = model.score_pairs(q.expand(len(ids), -1), d).numpy()
    np.testing.assert_allclose(coarse, want, atol=1e-4)


def test_the_funnel_returns_the_coarse_rankers_best_k_of_n_retrieved(client):
    body = {"retrieval": "ann", "query": "wireless headphones", "relevance_control": False}
    retrieved = client.post("/search", json={**body, "k": 120}).json()["items"]
    everything = client.post("/search", json={**body, "k": 120, "rerank": True, "candidates": 120}).json()["items"]
    top = client.post("/search", json={**body, "k": 10, "rerank": True, "candidates": 120}).json()
    assert top["reranked"] is True and len(top["items"]) == 10
    assert {it["doc_id"] for it in everything} == {it["doc_id"] for it in retrieved}
    assert [it["doc_id"] for it in top["items"]] == [it["doc_id"] for it in everything[:10]]
    best_by_ann = {it["doc_id"] for it in retrieved[:10]}
    assert {it["doc_id"] for it in top["items"]} != best_by_ann, "the coarse ranker picks from beyond the ANN top 10"
    default = client.post("/search", json={**body, "k": 10, "rerank": True}).json()
    assert len(default["items"]) == 10 and default["reranked"] is True


def _doc_inputs(parts: Parts, ids: list[int], fz):
    from ebr.models.inputs import featurize_docs

    return featurize_docs(parts.docs_v1.set_index("doc_id").loc[ids].reset_index(), fz)


def test_rerank_without_a_coarse_ranker_answers_in_ann_order(tmp_path, parts):
    root = tmp_path / "bundles"
    publish(parts, root, "plain", coarse=False)
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    app.state.runtime.manager.reload()
    c = InProcessClient(app)
    try:
        body = c.post("/search", json={"retrieval": "ann", "query": "dress", "k": 10, "rerank": True}).json()
        assert body["reranked"] is False and body["bundle_version"] == "plain"
        assert_best_of(body["items"], exact_scores(parts, "dress"), 10)
        assert _metric(c, "ebr_serve_rerank_unavailable_total") == 1
    finally:
        c.close()


def test_readiness_search_and_metrics_before_and_after_the_first_bundle(tmp_path, published_root):
    root = copy_root(published_root, tmp_path / "bundles")
    (root / "CURRENT").unlink()
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    c = InProcessClient(app)
    try:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        r = c.post("/search", json={"retrieval": "ann", "query": "dress"})
        assert r.status_code == 503 and r.json()["errors"][0]["field"] == "bundle"
        assert _metric(c, "ebr_serve_ready") == 0
        (root / "CURRENT").write_text("v1\n", encoding="utf-8")
        app.state.runtime.manager.reload()
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["bundle_version"] == "v1"
        assert c.post("/search", json={"retrieval": "ann", "query": "dress"}).status_code == 200
        assert _metric(c, "ebr_serve_ready") == 1
        assert _metric(c, 'ebr_serve_bundle_info{version="v1"}') == 1
        assert _metric(c, "ebr_serve_bundle_docs") == 300
    finally:
        c.close()


def _metric(c: InProcessClient, name: str) -> float:
    return metric_value(c.get("/metrics").text, name)


def test_metrics_count_requests_errors_and_stage_latency(client):
    before_ok = _metric(client, 'ebr_serve_requests_total{code="200",route="/search"}')
    before_err = _metric(client, 'ebr_serve_errors_total{code="422",route="/search"}')
    before_tower = _metric(client, 'ebr_serve_stage_seconds_count{stage="tower"}')
    client.post("/search", json={"retrieval": "ann", "query": "backpack", "k": 3})
    client.post("/search", json={"retrieval": "ann", "query": "backpack", "k": 0})
    client.post("/search", json={"retrieval": "ann", "query": "backpack", "k": 3, "rerank": True})
    assert _metric(client, 'ebr_serve_requests_total{code="200",route="/search"}') == before_ok + 2
    assert _metric(client, 'ebr_serve_errors_total{code="422",route="/search"}') == before_err + 1
    assert _metric(client, 'ebr_serve_stage_seconds_count{stage="tower"}') == before_tower + 2
    text = client.get("/metrics").text
    for stage in ("features", "featurize", "tower", "search", "filter", "rescore"):
        assert f'ebr_serve_stage_seconds_bucket{{le="0.005",stage="{stage}"}}' in text
    assert 'ebr_serve_request_seconds_count{route="/search"}' in text
    assert "# TYPE ebr_serve_feature_fallbacks_total counter" in text


def test_server_timing_header_lists_every_stage(client):
    r = client.post("/search", json={"retrieval": "ann", "query": "keyboard", "k": 3})
    stages = dict(part.split(";dur=") for part in r.headers["server-timing"].split(", "))
    assert set(stages) == {"features", "featurize", "batch_wait", "tower", "search", "filter", "lexical", "rescore",
                           "total"}
    assert float(stages["total"]) >= float(stages["tower"]) > 0


def test_openapi_documents_the_request_and_response(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/healthz", "/readyz", "/metrics", "/admin/reload"} <= set(spec["paths"])
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SearchRequest"}
    req = spec["components"]["schemas"]["SearchRequest"]
    assert req["required"] == ["query"]
    assert req["additionalProperties"] is False
    assert req["properties"]["k"]["maximum"] == 1000
    resp = spec["components"]["schemas"]["SearchResponse"]["properties"]
    assert {"items", "bundle_version", "personalized", "took_ms"} <= set(resp)


def test_warm_up_loads_the_han_segmenter_before_the_bundle_serves(tmp_path, published_root, monkeypatch):
    """The first Chinese query must not pay jieba's dictionary load (~0.7 s): warming a bundle does."""
    from ebr.models import inputs
    from ebr.text import segment

    monkeypatch.setattr(segment, "_TOKENIZER", None)
    segment.segment_han.cache_clear()
    monkeypatch.setattr(inputs, "_ANALYZERS", {})  # analyzers cache per text: the fixture's export analyzed these
    root = copy_root(published_root, tmp_path / "bundles")
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    c = InProcessClient(app)
    try:
        assert segment._TOKENIZER is None
        app.state.runtime.manager.reload()
        assert c.get("/readyz").status_code == 200
        assert segment._TOKENIZER is not None
    finally:
        c.close()
