"""Query relaxation: when relevance control (the store's query understanding) leaves fewer than k docs, `relax`
fills the rest from the same channels without that constraint; explicit filters still hold, the constrained head
is unchanged and the filled items are marked (real bundle, real Feast store, the app in-process)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ebr.features import open_store
from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import InProcessClient, metric_value
from tests.serving.conftest import Parts
from tests.serving.online_rows import write_online_row

K = 30


@pytest.fixture(scope="module")
def narrow(parts: Parts) -> dict:
    """A query whose understood category holds fewer than K docs, and a brand that has docs outside it."""
    docs = parts.docs_v1
    counts = docs["category_leaf"].value_counts()
    category = counts[counts < K // 2].index[0]
    brand = docs[(docs["category_leaf"] != category) & docs["brand"].notna()]["brand"].value_counts().index[0]
    return {"query": f"{category} for sale", "category": category, "brand": brand,
            "in_category": int(counts[category])}


@pytest.fixture(scope="module")
def store_dir(narrow, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store-relax") / "features"
    out.mkdir()
    write_online_row(open_store(out), "query_stats", narrow["query"],
                     {"qu_category_leaf": narrow["category"]}, pd.Timestamp("2024-03-01", tz="UTC"))
    return out


def _client(settings: ServerSettings) -> InProcessClient:
    app = create_app(settings, start=False)
    rt = app.state.runtime
    assert rt.features is not None and rt.features.open()
    rt.manager.reload()
    return InProcessClient(app)


@pytest.fixture(scope="module")
def client(published_root, store_dir):
    c = _client(ServerSettings(bundles_dir=published_root, feature_repo=store_dir))
    yield c
    c.close()


def _items(client: InProcessClient, **body) -> list[dict]:
    r = client.post("/search", json={"k": K, "retrieval": "hybrid", **body})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _field(parts: Parts, doc_id: int, name: str) -> object:
    return parts.docs_v1.set_index("doc_id").loc[doc_id, name]


def test_a_short_constrained_answer_is_filled_and_marked(client, parts, narrow):
    strict = _items(client, query=narrow["query"])
    assert 0 < len(strict) <= narrow["in_category"] < K, "relevance control leaves a short list"
    assert all(_field(parts, it["doc_id"], "category_leaf") == narrow["category"] for it in strict)
    assert not any(it.get("relaxed") for it in strict)

    before = metric_value(client.get("/metrics").text, "ebr_serve_relaxed_items_total")
    relaxed = _items(client, query=narrow["query"], relax=True)
    assert len(relaxed) == K
    assert [it["doc_id"] for it in relaxed[: len(strict)]] == [it["doc_id"] for it in strict], "the head is unchanged"
    tail = relaxed[len(strict):]
    assert all(it["relaxed"] for it in tail) and not any(it.get("relaxed") for it in relaxed[: len(strict)])
    assert len({it["doc_id"] for it in relaxed}) == K, "no doc twice"
    assert any(_field(parts, it["doc_id"], "category_leaf") != narrow["category"] for it in tail)
    after = metric_value(client.get("/metrics").text, "ebr_serve_relaxed_items_total")
    assert after - before == len(tail)


def test_relaxation_never_drops_an_explicit_filter(client, parts, narrow):
    items = _items(client, query=narrow["query"], relax=True, filters={"brand": narrow["brand"]})
    assert items and all(_field(parts, it["doc_id"], "brand") == narrow["brand"] for it in items)
    head = [it for it in items if not it.get("relaxed")]
    assert all(_field(parts, it["doc_id"], "category_leaf") == narrow["category"] for it in head)
    assert any(it.get("relaxed") for it in items)


def test_without_relevance_control_or_relax_nothing_is_relaxed(client, narrow):
    assert not any(it.get("relaxed") for it in _items(client, query=narrow["query"], relax=False))
    free = _items(client, query=narrow["query"], relax=True, relevance_control=False)
    assert len(free) == K and not any(it.get("relaxed") for it in free)


def test_the_server_setting_turns_relaxation_on_for_requests_that_do_not_say(published_root, store_dir, narrow):
    settings = ServerSettings.resolve({"bundles_dir": published_root, "feature_repo": store_dir},
                                      env={"EBR_RELAX": "true"})
    assert settings.relax is True
    assert ServerSettings.resolve({"bundles_dir": published_root}, env={}).relax is False
    c = _client(settings)
    try:
        items = _items(c, query=narrow["query"])
        assert len(items) == K and any(it.get("relaxed") for it in items)
        assert not any(it.get("relaxed") for it in _items(c, query=narrow["query"], relax=False))
    finally:
        c.close()
