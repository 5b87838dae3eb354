"""Hybrid retrieval in the server: the embedding and lexical channels of the bundle, merged with the fusion code
the offline evaluation uses, query selection for `auto`, filters on both channels, the channel of each result
in the answer, and a bundle without a lexical index answering from the embedding alone (real bundles, the
app in-process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ebr.hybrid import ChannelHits, fuse
from ebr.hybrid.defaults import DEFAULT_LEXICAL_WEIGHT
from serving.app import create_app
from serving.settings import ServerSettings
from serving.synthetic import build_bundle
from tests.serving.clients import InProcessClient

QUERY = "wayne red phone case"


def _search(client: InProcessClient, **body) -> dict:
    r = client.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _hits(answer: dict, name: str) -> ChannelHits:
    items = answer["items"]
    return ChannelHits(name, np.array([it["doc_id"] for it in items], dtype=np.int64),
                       np.array([it["score"] for it in items]))


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_a_hybrid_answer_is_the_fusion_of_the_two_channel_answers(client, fusion):
    body = {"query": QUERY, "k": 20, "relevance_control": False}
    ann = _search(client, **body, retrieval="ann")
    lexical = _search(client, **body, retrieval="lexical")
    hybrid = _search(client, **body, retrieval="hybrid", fusion=fusion, lexical_weight=0.7)
    assert ann["retrieval"] == "ann" and all(it["channels"] == ["ann"] for it in ann["items"])
    assert lexical["retrieval"] == "lexical" and all(it["channels"] == ["lexical"] for it in lexical["items"])
    want = fuse(fusion, [_hits(ann, "ann"), _hits(lexical, "lexical")], 20, {"ann": 1.0, "lexical": 0.7})
    assert hybrid["retrieval"] == "hybrid" and hybrid["fusion"] == fusion
    assert [it["doc_id"] for it in hybrid["items"]] == want.ids.tolist()
    np.testing.assert_allclose([it["score"] for it in hybrid["items"]], want.scores, rtol=1e-5)
    assert [tuple(it["channels"]) for it in hybrid["items"]] == want.channels
    both = [it for it in hybrid["items"] if len(it["channels"]) == 2]
    assert both, "the two channels agree on some docs for a query that names them"


def test_lexical_channel_finds_title_matches_and_filters_apply_to_it(loaded_app):
    app, client = loaded_app
    answer = _search(client, query="kettle", k=10, retrieval="lexical", relevance_control=False)
    assert answer["items"] and all(it["score"] > 0 for it in answer["items"])
    filtered = _search(client, query="wayne kettle", k=10, retrieval="lexical", relevance_control=False,
                       filters={"brand": "hooli"})
    assert filtered["items"], "hooli makes kettles in the test catalogue"
    rt_docs = app.state.runtime.manager.current.docs
    for it in filtered["items"]:
        pos = np.searchsorted(rt_docs.doc_ids, it["doc_id"])
        assert rt_docs.brand[pos] == "hooli"


def test_auto_selection_routes_id_like_and_long_queries(client):
    sku = _search(client, query="SKU-000123", k=5, retrieval="auto")
    assert sku["retrieval"] == "lexical" and sku["personalized"] is False
    long = _search(client, query="warm waterproof black dress with hood for rain runs", k=5,
                   retrieval="auto")
    assert long["retrieval"] == "ann" and all(it["channels"] == ["ann"] for it in long["items"])
    short = _search(client, query="black dress", k=5, retrieval="auto")
    assert short["retrieval"] == "hybrid"


def test_the_server_default_is_the_settings_default(published_root: Path):
    app = create_app(ServerSettings(bundles_dir=published_root, retrieval="ann", fusion="weighted"), start=False)
    app.state.runtime.manager.reload()
    c = InProcessClient(app)
    try:
        assert _search(c, query="black dress", k=5)["retrieval"] == "ann"
        assert _search(c, query="black dress", k=5, retrieval="hybrid")["fusion"] == "weighted"
    finally:
        c.close()


def test_a_bundle_without_a_lexical_index_answers_from_the_embedding(published_root: Path, tmp_path: Path):
    from tests.serving.conftest import copy_root

    root = copy_root(published_root, tmp_path / "bundles")
    version = (root / "CURRENT").read_text().strip()
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    app.state.runtime.manager.reload()
    bundle = app.state.runtime.manager.current
    bundle.lexical = None  # as an older bundle loads: without lexical/
    c = InProcessClient(app)
    try:
        answer = _search(c, query="black dress", k=5, retrieval="hybrid")
    finally:
        c.close()
    assert answer["retrieval"] == "ann" and answer["bundle_version"] == version


@pytest.mark.parametrize(("body", "field"), [
    ({"query": "x", "retrieval": "vector"}, "retrieval"),
    ({"query": "x", "fusion": "max"}, "fusion"),
    ({"query": "x", "lexical_weight": -1.0}, "lexical_weight"),
])
def test_bad_hybrid_fields_are_named(client, body, field):
    r = client.post("/search", json=body)
    assert r.status_code == 422
    assert any(e["field"] == field for e in r.json()["errors"]), r.text


def test_bad_hybrid_settings_are_refused_by_name(published_root: Path):
    with pytest.raises(ValueError, match=r"retrieval \(EBR_RETRIEVAL\) must be one of"):
        ServerSettings(bundles_dir=published_root, retrieval="vector")
    with pytest.raises(ValueError, match=r"fusion \(EBR_FUSION\) must be one of"):
        ServerSettings(bundles_dir=published_root, fusion="max")
    with pytest.raises(ValueError, match=r"lexical weight \(EBR_LEXICAL_WEIGHT\) must be in 0..100"):
        ServerSettings(bundles_dir=published_root, lexical_weight=-1)


def test_the_bundles_tuned_lexical_weight_is_the_default_unless_the_operator_or_request_says(parts, tmp_path):
    root = tmp_path / "bundles"
    build_bundle(root, "tuned", docs=parts.docs_v1, model_dir=parts.model_dir, vectors=parts.vectors_v1,
                 info={"retrieval": {"fusion": "weighted", "lexical_weight": 3.0}})
    body = {"query": QUERY, "k": 20, "relevance_control": False, "retrieval": "hybrid", "fusion": "weighted"}

    def answer(settings: dict, **extra) -> list[int]:
        app = create_app(ServerSettings(bundles_dir=root, **settings), start=False)
        app.state.runtime.manager.reload()
        client = InProcessClient(app)
        try:
            return [it["doc_id"] for it in _search(client, **body, **extra)["items"]]
        finally:
            client.close()

    tuned = answer({})
    assert tuned == answer({}, lexical_weight=3.0), "no weight named: the bundle's"
    assert tuned != answer({}, lexical_weight=0.1), "the weight matters for this query"
    assert answer({"lexical_weight": 0.1}) == answer({}, lexical_weight=0.1), "the operator's setting wins"
    assert answer({"lexical_weight": 0.1}, lexical_weight=3.0) == tuned, "and the request's over it"
    rrf = {**body, "fusion": "rrf"}  # tuned for weighted fusion: another rule keeps the default weight
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    app.state.runtime.manager.reload()
    client = InProcessClient(app)
    try:
        got = [it["doc_id"] for it in _search(client, **rrf)["items"]]
        want = [it["doc_id"] for it in _search(client, **rrf, lexical_weight=DEFAULT_LEXICAL_WEIGHT)["items"]]
    finally:
        client.close()
    assert got == want
