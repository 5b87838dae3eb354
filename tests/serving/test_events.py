"""POST /events against a real Feast store (SQLite online store) and real HTTP on loopback: a pushed click and
search reach the next search of the user (through the in-process feature cache), stale and next-day events follow
the offline rule, and bad batches are refused naming the field with nothing pushed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest

from ebr.features import online_features, open_store
from serving.app import create_app
from serving.schema import MAX_EVENTS
from serving.settings import ServerSettings
from tests.serving.clients import InProcessClient, LiveServer, metric_value
from tests.serving.online_rows import write_online_row

FRESH = 31  # a user without any row in the store
OTHER = 32
DOC, DOC2 = 7, 8
MAX_QUERY_CHARS = 64
T = "2024-03-05T10:00:00Z"


def _write(store, view: str, key: object, values: dict) -> None:
    write_online_row(store, view, key, values, pd.Timestamp("2024-03-01", tz="UTC"))


@pytest.fixture(scope="module")
def events_store(tmp_path_factory) -> Path:
    """A features directory whose online store knows two docs (their category and author) and no user."""
    out = tmp_path_factory.mktemp("events") / "features"
    out.mkdir()
    store = open_store(out)
    _write(store, "doc_profile", DOC, {"category_leaf": "running shoes", "author_id": 40, "title": "acme runner"})
    _write(store, "doc_profile", DOC2, {"category_leaf": "jacket", "author_id": 41, "title": "rain jacket"})
    return out


def _app(root: Path, features: Path | None, cache_ttl_s: float = 600.0):
    app = create_app(ServerSettings(bundles_dir=root, feature_repo=features, feature_cache_ttl_s=cache_ttl_s,
                                    max_query_chars=MAX_QUERY_CHARS), start=False)
    rt = app.state.runtime
    rt.set_threads()
    if rt.features is not None:
        assert rt.features.open()
    rt.manager.reload()
    return app


def _click(user: int, doc: int, when: str = T, **kw) -> dict:
    return {"type": "click", "user_id": user, "doc_id": doc, "event_timestamp": when, **kw}


def _search(user: int, query: str, when: str = T) -> dict:
    return {"type": "search", "user_id": user, "query": query, "event_timestamp": when}


def test_a_pushed_click_reaches_the_next_search_of_the_user(published_root, events_store):
    app = _app(published_root, events_store)
    rt = app.state.runtime
    cache = rt.features.cache
    search = {"query": "trail shoes", "user_id": FRESH, "k": 10, "retrieval": "ann"}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        first = http.post("/search", json=search).json()
        assert first["personalized"] is False and first["degraded"] is None  # nothing known of the user yet
        assert cache.get("user", FRESH)["seq_rt_doc_ids"] == []  # and that is cached for 600 s

        r = http.post("/events", json={"events": [_click(FRESH, DOC, "2024-03-05T10:00:00Z", query="trail shoes"),
                                                  _search(FRESH, "trail shoes", "2024-03-05T09:59:58+00:00")]})
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 2, "applied": 2, "stale": 0, "ignored": 0, "users": 1}

        second = http.post("/search", json=search).json()
        assert second["personalized"] is True and second["degraded"] is None
        read = cache.get("user", FRESH)  # what that search read from the store (and cached)
        assert read["seq_rt_doc_ids"] == [DOC] and read["seq_rt_categories"] == ["running shoes"]
        assert read["seq_rt_authors"] == [40] and read["seq_rt_event_types"] == ["click"]
        assert read["recent_queries"] == ["trail shoes"]
        assert second["items"] != first["items"]  # the user's features now enter the query tower

        # a later click goes first; an event older than the row is stale; an unknown doc keeps unknown side info
        r = http.post("/events", json={"events": [_click(FRESH, DOC2, "2024-03-05T11:00:00Z"),
                                                  _click(FRESH, 999, "2024-03-05T11:30:00+08:00")]}).json()
        assert (r["applied"], r["stale"]) == (1, 1)  # 11:30+08:00 is 03:30 UTC: before the row
        http.post("/search", json=search)
        assert cache.get("user", FRESH)["seq_rt_doc_ids"] == [DOC2, DOC]

        # the next day starts a new real-time sequence (the 00:00 reset); recent queries carry over
        r = http.post("/events", json={"events": [_click(FRESH, 999, "2024-03-06T08:00:00Z"),
                                                  _search(FRESH, "rain jacket", "2024-03-06T08:00:01Z")]}).json()
        assert r["applied"] == 2
        http.post("/search", json=search)
        read = cache.get("user", FRESH)
        assert read["seq_rt_doc_ids"] == [999] and read["seq_rt_categories"] == [""] and read["seq_rt_authors"] == [-1]
        assert read["recent_queries"] == ["rain jacket", "trail shoes"]

        metrics = http.get("/metrics").text
        assert metric_value(metrics, 'ebr_serve_events_total{outcome="pushed"}') == 5
        assert metric_value(metrics, 'ebr_serve_events_total{outcome="stale"}') == 1
        assert metric_value(metrics, 'ebr_serve_requests_total{code="200",route="/events"}') == 3


@pytest.fixture(scope="module")
def events_client(published_root, events_store):
    client = InProcessClient(_app(published_root, events_store))
    yield client
    client.close()


BAD = [
    ("too many events", {"events": [_search(OTHER, "q")] * (MAX_EVENTS + 1)}, 422, "events"),
    ("no events", {"events": []}, 422, "events"),
    ("events missing", {}, 422, "events"),
    ("events not a list", {"events": _search(OTHER, "q")}, 422, "events"),
    ("click without doc_id", {"events": [{"type": "click", "user_id": OTHER, "event_timestamp": T}]}, 422,
     "events.0.doc_id"),
    ("search without query", {"events": [{"type": "search", "user_id": OTHER, "event_timestamp": T}]}, 422,
     "events.0.query"),
    ("search with doc_id", {"events": [{**_search(OTHER, "q"), "doc_id": 3}]}, 422, "events.0.doc_id"),
    ("unknown type", {"events": [{**_click(OTHER, DOC), "type": "like"}]}, 422, "events.0.type"),
    ("timestamp without offset", {"events": [_click(OTHER, DOC, "2024-03-05T10:00:00")]}, 422,
     "events.0.event_timestamp"),
    ("timestamp not a time", {"events": [_click(OTHER, DOC, "yesterday")]}, 422, "events.0.event_timestamp"),
    ("timestamp a number", {"events": [_click(OTHER, DOC, 1709632800)]}, 422, "events.0.event_timestamp"),
    ("timestamp far ahead", {"events": [_click(OTHER, DOC, "2999-01-01T00:00:00Z")]}, 422,
     "events.0.event_timestamp"),
    ("timestamp before 2000", {"events": [_click(OTHER, DOC, "1999-12-31T23:59:59Z")]}, 422,
     "events.0.event_timestamp"),
    ("user_id zero", {"events": [_click(0, DOC)]}, 422, "events.0.user_id"),
    ("user_id a string", {"events": [_click("32", DOC)]}, 422, "events.0.user_id"),  # type: ignore[arg-type]
    ("doc_id negative", {"events": [_click(OTHER, -1)]}, 422, "events.0.doc_id"),
    ("blank query", {"events": [_search(OTHER, "   ")]}, 422, "events.0.query"),
    ("query too long", {"events": [_search(OTHER, "x" * (MAX_QUERY_CHARS + 1))]}, 422, "events.0.query"),
    ("unknown event field", {"events": [{**_click(OTHER, DOC), "session": "s1"}]}, 422, "events.0.session"),
    ("unknown top-level field", {"events": [_click(OTHER, DOC)], "source": "app"}, 422, "source"),
    ("one bad event of three", {"events": [_click(OTHER, DOC), _search(OTHER, "q"), _click(OTHER, DOC, "now")]},
     422, "events.2.event_timestamp"),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), BAD, ids=[c[0] for c in BAD])
def test_bad_batches_are_refused_naming_the_field_and_push_nothing(events_client, events_store, name, body, status,
                                                                  field):
    r = events_client.post("/events", json=body)
    assert r.status_code == status, (name, r.text)
    err = r.json()
    assert field in [e["field"] for e in err["errors"]], err
    assert field in err["error"]
    got = online_features(open_store(events_store, apply=False), user_id=OTHER)
    assert got["seq_rt_doc_ids"] == [] and got["recent_queries"] == [], "a refused batch pushes nothing"


def test_not_json_and_wrong_content_type_are_refused(events_client):
    assert events_client.post("/events", content=b'{"events": [', headers={"content-type": "application/json"}
                              ).status_code == 400
    r = events_client.post("/events", content=json.dumps({"events": [_click(OTHER, DOC)]}).encode(),
                           headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["errors"][0]["field"] == "content-type"


def test_a_full_batch_is_accepted_and_rejections_are_counted(events_client, events_store):
    before = metric_value(events_client.get("/metrics").text, 'ebr_serve_events_total{outcome="rejected"}')
    events_client.post("/events", json={"events": [_click(OTHER, DOC)] * (MAX_EVENTS + 1)})
    after = metric_value(events_client.get("/metrics").text, 'ebr_serve_events_total{outcome="rejected"}')
    assert after - before == MAX_EVENTS + 1
    user = 33
    batch = [_search(user, f"query {i}", f"2024-03-05T10:{i // 60:02d}:{i % 60:02d}Z") for i in range(MAX_EVENTS)]
    r = events_client.post("/events", json={"events": batch})
    assert r.status_code == 200 and r.json() == {"received": MAX_EVENTS, "applied": MAX_EVENTS, "stale": 0,
                                                 "ignored": 0, "users": 1}
    stored = online_features(open_store(events_store, apply=False), user_id=user)
    assert stored["recent_queries"] == [f"query {i}" for i in range(MAX_EVENTS - 1, MAX_EVENTS - 21, -1)]


def test_without_a_feature_store_events_are_a_409_naming_it(client):
    r = client.post("/events", json={"events": [_click(OTHER, DOC)]})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "feature_store"


def test_a_store_that_fails_the_push_is_a_503_and_the_next_batch_goes_through(published_root, events_store,
                                                                            tmp_path):
    """The online store loses its tables under the server: the batch is answered 503 (Retry-After) and counted as
    failed; once the store is back (the same bytes), a batch is pushed again."""
    import shutil
    import sqlite3

    from ebr.features.definitions import PROJECT
    from ebr.features.store import ONLINE_DB

    store = tmp_path / "features"
    shutil.copytree(events_store, store)
    saved = (store / ONLINE_DB).read_bytes()
    c = InProcessClient(_app(published_root, store))
    try:
        with sqlite3.connect(store / ONLINE_DB) as db:
            for (name,) in db.execute("select name from sqlite_master where type='table'").fetchall():
                if name.startswith(f"{PROJECT}_"):
                    db.execute(f'drop table "{name}"')
        r = c.post("/events", json={"events": [_click(OTHER, DOC)]})
        assert r.status_code == 503 and r.json()["errors"][0]["field"] == "feature_store", r.text
        assert r.headers["retry-after"] == "1"
        assert metric_value(c.get("/metrics").text, 'ebr_serve_events_total{outcome="failed"}') == 1
        (store / ONLINE_DB).write_bytes(saved)
        r = c.post("/events", json={"events": [_click(OTHER, DOC)]})
        assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    finally:
        c.close()
