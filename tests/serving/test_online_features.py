"""Online features from a real Feast SQLite online store: personalization, unknown users, query-understanding
relevance control, and degradation when the store is unreachable, fails mid-operation or hangs."""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ebr.features import open_store
from ebr.features.definitions import PROJECT
from ebr.features.store import ONLINE_DB
from ebr.models.two_tower import TwoTowerModel
from serving.app import ServerRuntime, create_app
from serving.feature_source import FeatureCache, OnlineFeatureSource, open_feature_store
from serving.settings import ServerSettings
from serving.synthetic import build_bundle, encode_docs, export_model
from tests.models.rows import small_config
from tests.serving.clients import InProcessClient, metric_value, wait_for
from tests.serving.conftest import LEAN_QUERY_TOWER
from tests.serving.online_rows import write_online_row

ANN = {"retrieval": "ann"}  # the embedding channel alone: personalization moves its scores

USER = 7
BAD_USER = 8  # its stored gender is not one the featurizer knows
QUERY = "acme running shoes"


def _write(store, view: str, key: object, values: dict) -> None:
    write_online_row(store, view, key, values, pd.Timestamp.now(tz="UTC"))


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory) -> Path:
    """A features directory (ebr.features layout) whose online store holds one user and one query."""
    out = tmp_path_factory.mktemp("features") / "features"
    out.mkdir()
    store = open_store(out)  # applies the project's definitions (the slow part, ~15 s)
    _write(store, "user_profile", USER, {"user_gender": "f", "user_age": 31.0, "user_city": "hangzhou",
                                         "user_profile_tags": ["sports", "outdoor"]})
    _write(store, "user_sequences", USER, {
        "seq_st_doc_ids": [3, 2, 1], "seq_st_categories": ["running shoes", "jacket", "dress"],
        "seq_st_authors": [4, 3, 2], "seq_st_event_types": ["click", "like", "click"],
    })  # fmt: skip
    _write(store, "user_queries", USER, {"recent_queries": ["trail shoes", "acme jacket"]})
    _write(store, "user_profile", BAD_USER, {"user_gender": "not-a-gender", "user_age": 40.0})
    _write(store, "query_stats", QUERY, {"qu_category_leaf": "running shoes", "qu_brand": "acme",
                                         "query_searches_7d": 12})
    return out


def _client(root: Path, features: Path, retry_s: float = 5.0, cache_ttl_s: float = 0.0) -> InProcessClient:
    """The app on a real store; the feature cache is off unless asked for, so every request meets the store."""
    app = create_app(ServerSettings(bundles_dir=root, feature_repo=features, feature_retry_s=retry_s,
                                    feature_cache_ttl_s=cache_ttl_s), start=False)
    rt = app.state.runtime
    rt.features.open()
    rt.manager.reload()
    return InProcessClient(app)


def _ids(body: dict) -> list[int]:
    return [it["doc_id"] for it in body["items"]]


def _fallbacks(c: InProcessClient, reason: str) -> float:
    return metric_value(c.get("/metrics").text, f'ebr_serve_feature_fallbacks_total{{reason="{reason}"}}')


@pytest.mark.slow
def test_known_user_is_personalized_and_unknown_user_is_not(published_root, feature_dir):
    c = _client(published_root, feature_dir)
    try:
        anon = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20}).json()
        known = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20, "user_id": USER}).json()
        unknown = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20, "user_id": 999_999}).json()
        assert anon["personalized"] is False
        assert known["personalized"] is True
        assert [it["score"] for it in known["items"]] != [it["score"] for it in anon["items"]]
        assert unknown["personalized"] is False
        assert unknown["degraded"] is None and known["degraded"] is None, "an unknown user is not a fault"
        assert unknown["items"] == anon["items"]
        assert _fallbacks(c, "error") == _fallbacks(c, "unavailable") == 0
        bad = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20, "user_id": BAD_USER})
        assert bad.status_code == 200 and bad.json()["personalized"] is False
        assert bad.json()["degraded"] == "bad_features"
        assert bad.json()["items"] == anon["items"]
        assert _fallbacks(c, "bad_features") == 1
    finally:
        c.close()


@pytest.mark.slow
def test_query_understanding_fields_drive_relevance_control(published_root, feature_dir, parts):
    docs = parts.docs_v1.set_index("doc_id")
    matching = docs[(docs["category_leaf"] == "running shoes") & (docs["brand"] == "acme")]
    k = 5
    assert len(matching) >= k
    c = _client(published_root, feature_dir)
    try:
        on = c.post("/search", json={**ANN, "query": QUERY, "k": k}).json()
        assert len(on["items"]) == k
        assert set(_ids(on)) <= set(matching.index)
        off = c.post("/search", json={**ANN, "query": QUERY, "k": 40, "relevance_control": False}).json()
        assert not set(_ids(off)) <= set(matching.index)
        # request filters and query understanding combine: a filter that contradicts the QU brand leaves nothing
        both = c.post("/search", json={**ANN, "query": QUERY, "k": k, "filters": {"brand": "globex"}}).json()
        assert both["items"] == []
        assert metric_value(c.get("/metrics").text, "ebr_serve_constrained_searches_total") > 0
    finally:
        c.close()


@pytest.mark.slow
def test_store_failing_mid_operation_degrades_to_unpersonalized(published_root, feature_dir, tmp_path):
    broken = tmp_path / "features"
    shutil.copytree(feature_dir, broken)
    c = _client(published_root, broken, retry_s=60.0)
    try:
        assert c.post("/search", json={**ANN, "query": "trail shoes", "user_id": USER}).json()["personalized"] is True
        with sqlite3.connect(broken / ONLINE_DB) as db:  # the store loses its tables under the server
            for (name,) in db.execute("select name from sqlite_master where type='table'").fetchall():
                if name.startswith(f"{PROJECT}_"):
                    db.execute(f'drop table "{name}"')
        r = c.post("/search", json={**ANN, "query": "trail shoes", "user_id": USER})
        assert r.status_code == 200 and r.json()["personalized"] is False and len(r.json()["items"]) == 100
        assert r.json()["degraded"] == "features_unavailable", "a store failure is told apart from an unknown user"
        assert _fallbacks(c, "error") == 1
        for failures in (2, 3):  # asked again (on a fresh connection) until 3 consecutive failures
            r = c.post("/search", json={**ANN, "query": "trail shoes", "user_id": USER})
            assert r.status_code == 200 and r.json()["personalized"] is False
            assert _fallbacks(c, "error") == failures and _fallbacks(c, "unavailable") == 0
        r = c.post("/search", json={**ANN, "query": "trail shoes", "user_id": USER})  # backing off: store not asked
        assert r.status_code == 200 and r.json()["personalized"] is False
        assert _fallbacks(c, "error") == 3 and _fallbacks(c, "unavailable") == 1
    finally:
        c.close()


def test_unreachable_store_serves_unpersonalized_and_counts_it(published_root, tmp_path):
    c = _client(published_root, tmp_path / "no-store-here", retry_s=0.0)
    try:
        for _ in range(3):
            r = c.post("/search", json={**ANN, "query": "trail shoes", "k": 10, "user_id": USER})
            assert r.status_code == 200
            assert r.json()["personalized"] is False and len(r.json()["items"]) == 10
            assert r.json()["degraded"] == "features_unavailable"
        assert _fallbacks(c, "unavailable") == 3
    finally:
        c.close()


@pytest.mark.slow
def test_store_truncated_then_restored_comes_back_without_a_restart(published_root, feature_dir, tmp_path):
    """The SRE probe: truncate online_store.db under the running server, copy the same bytes back; the server
    answers unpersonalized (saying why, ready all along), then personalized again on a fresh connection."""
    from tests.serving.clients import wait_for

    store = tmp_path / "features"
    shutil.copytree(feature_dir, store)
    saved = (store / ONLINE_DB).read_bytes()
    c = _client(published_root, store, retry_s=0.05)
    try:
        body = {**ANN, "query": "trail shoes", "user_id": USER}
        assert c.post("/search", json=body).json()["personalized"] is True
        (store / ONLINE_DB).write_bytes(b"")  # truncated under the server
        r = c.post("/search", json=body).json()
        assert r["personalized"] is False and r["degraded"] == "features_unavailable"
        ready = c.get("/readyz")
        assert ready.status_code == 200 and "feature store unavailable" in ready.json()["detail"]
        assert metric_value(c.get("/metrics").text, "ebr_serve_feature_store_up") == 0
        (store / ONLINE_DB).write_bytes(saved)  # restored: the same bytes back
        back = wait_for(lambda: (lambda j: j if j["personalized"] else None)(c.post("/search", json=body).json()),
                        timeout=30)
        assert back["degraded"] is None
        assert "feature store" not in c.get("/readyz").json()["detail"]
        assert metric_value(c.get("/metrics").text, "ebr_serve_feature_store_up") == 1
    finally:
        c.close()


class HangingStore:
    """A real Feast store whose lookups first wait for `gate`: it simulates a hung network store (a Redis that
    took the connection and never answers), which cannot run here. The wait is bounded (60 s) so no thread is
    left behind for ever."""

    def __init__(self, store, gate: threading.Event) -> None:
        self.store, self.gate = store, gate

    def get_online_features(self, **kw):
        self.gate.wait(60)
        return self.store.get_online_features(**kw)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


@pytest.mark.slow
def test_a_hung_store_costs_a_request_the_timeout_and_personalization_returns(published_root, feature_dir):
    """The store stops answering (lookups block): each request waits at most the lookup timeout and is answered
    unpersonalized with `degraded: features_timeout` while the lookup still hangs; at most `max_pending` lookups
    are ever outstanding (beyond that the store is skipped at once), and once the store answers again the
    answers are personalized again, without a restart."""
    gate = threading.Event()
    gate.set()
    source = OnlineFeatureSource(feature_dir, retry_s=0.05, timeout_s=0.2, connect_timeout_s=0.2, max_pending=2,
                                 opener=lambda d: HangingStore(open_feature_store(d), gate))
    settings = ServerSettings(bundles_dir=published_root, feature_repo=feature_dir, feature_retry_s=0.05,
                              feature_cache_ttl_s=0.0)
    app = create_app(settings, runtime=ServerRuntime(settings, features=source), start=False)
    assert source.open()
    app.state.runtime.manager.reload()
    c = InProcessClient(app)
    body = {**ANN, "query": "trail shoes", "user_id": USER}
    try:
        assert c.post("/search", json=body).json()["personalized"] is True
        gate.clear()  # the store hangs
        r = c.post("/search", json=body)
        assert r.status_code == 200 and len(r.json()["items"]) == 100
        assert r.json()["personalized"] is False
        assert r.json()["degraded"] == "features_timeout"
        assert source.pending == 1, "answered while the lookup still hangs"
        assert _fallbacks(c, "timeout") == 1, c.get("/metrics").text
        assert not source.healthy and "no answer within 0.2 s" in (source.last_error or "")
        assert "feature store unavailable" in c.get("/readyz").json()["detail"]
        assert metric_value(c.get("/metrics").text, "ebr_serve_feature_store_up") == 0
        for _ in range(20):  # past each backoff the store is tried again: never more than 2 lookups outstanding
            r = c.post("/search", json=body)
            assert r.status_code == 200 and r.json()["personalized"] is False
            assert r.json()["degraded"] in ("features_timeout", "features_unavailable")
            assert source.pending <= 2
            time.sleep(0.03)
        assert source.pending == 2 and _fallbacks(c, "timeout") >= 2
        gate.set()  # the store answers again
        wait_for(lambda: source.pending == 0, timeout=30)
        back = wait_for(lambda: (lambda j: j if j["personalized"] else None)(c.post("/search", json=body).json()),
                        timeout=30)
        assert back["degraded"] is None and source.healthy
        assert metric_value(c.get("/metrics").text, "ebr_serve_feature_store_up") == 1
    finally:
        gate.set()
        c.close()


def test_a_feature_timeout_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match=re.escape("feature timeout (EBR_FEATURE_TIMEOUT_S) must be > 0 seconds")):
        ServerSettings.resolve({"bundles_dir": "/b"}, {"EBR_FEATURE_TIMEOUT_S": "0"})
    assert ServerSettings.resolve({"bundles_dir": "/b"}, {"EBR_FEATURE_TIMEOUT_S": "0.25"}).feature_timeout_s == 0.25


def test_the_feature_cache_answers_repeated_users_and_queries_without_the_store(published_root, feature_dir):
    def counts() -> tuple[float, float]:
        text = c.get("/metrics").text
        return (metric_value(text, 'ebr_serve_feature_cache_lookups{result="hit"}'),
                metric_value(text, 'ebr_serve_feature_cache_lookups{result="miss"}'))

    c = _client(published_root, feature_dir, cache_ttl_s=60.0)
    try:
        body = {**ANN, "query": "trail shoes", "k": 10, "user_id": USER}
        hits0, misses0 = counts()
        first = c.post("/search", json=body).json()
        hits1, misses1 = counts()
        assert (hits1 - hits0) + (misses1 - misses0) == 2, "one lookup per entity: the user and the query"
        again = c.post("/search", json=body).json()
        hits2, misses2 = counts()
        assert (hits2 - hits1, misses2 - misses1) == (2, 0), "the same user and query again: both from the cache"
        assert again["items"] == first["items"] and again["personalized"] is True
        other = c.post("/search", json={**body, "query": "a query never asked"}).json()
        hits3, misses3 = counts()
        assert (hits3 - hits2, misses3 - misses2) == (1, 1) and other["personalized"] is True
    finally:
        c.close()


@pytest.mark.slow
def test_a_tower_without_personalization_reads_the_user_only_for_a_rerank(tmp_path, parts, feature_dir):
    """The default query tower reads no user input: a request is not personalized by a user id alone and the
    store is not asked for the user's features; the coarse ranker's rerank reads them."""
    config = small_config(query_tower={**LEAN_QUERY_TOWER, "personalization": False})
    model = TwoTowerModel(config).eval()
    model_dir = export_model(model, tmp_path / "model" / "export", parts.docs_v1, "plain").parent
    root = tmp_path / "bundles"
    build_bundle(root, "v1", docs=parts.docs_v1, model_dir=model_dir, vectors=encode_docs(model, parts.docs_v1),
                 coarse_ranker_dir=parts.coarse_dir)

    def lookups() -> float:
        text = c.get("/metrics").text
        return sum(metric_value(text, f'ebr_serve_feature_cache_lookups{{result="{r}"}}') for r in ("hit", "miss"))

    c = _client(root, feature_dir, cache_ttl_s=60.0)
    try:
        anon = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20}).json()
        before = lookups()
        known = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20, "user_id": USER}).json()
        assert lookups() - before == 1, "the query's features alone: the user's are not read"
        assert known["personalized"] is False and known["items"] == anon["items"]
        before = lookups()
        reranked = c.post("/search", json={**ANN, "query": "trail shoes", "k": 20, "user_id": USER,
                                           "rerank": True}).json()
        assert lookups() - before == 2, "a rerank reads the user's features and the query's"
        assert reranked["reranked"] is True and reranked["personalized"] is True
    finally:
        c.close()


def test_cached_features_answer_on_the_callers_thread_while_the_store_hangs(feature_dir):
    """A (user, query) whose features are all cached is answered without a lookup thread: a hung store does not
    delay it, while an uncached query waits the timeout and falls back; once the store is marked down, the
    cached pair is still answered with its features and an uncached one skips the store."""
    gate = threading.Event()
    gate.set()
    source = OnlineFeatureSource(feature_dir, timeout_s=0.2, connect_timeout_s=5, max_pending=2, trip_after=1,
                                 cache=FeatureCache(60, 100),
                                 opener=lambda d: HangingStore(open_feature_store(d), gate))
    try:
        first = source.fetch(USER, QUERY)
        assert first.fallback is None and first.user_known and first.values["qu_brand"] == "acme"
        gate.clear()  # the store hangs
        t0 = time.monotonic()
        again = source.fetch(USER, QUERY)
        assert time.monotonic() - t0 < 0.2 and source.pending == 0, "no lookup was started for a cached pair"
        assert again.fallback is None and again.values == first.values
        again.values["qu_brand"] = "changed"  # a caller's copy: the cache keeps its own values
        assert source.fetch(USER, QUERY).values["qu_brand"] == "acme"
        other = source.fetch(USER, "a query never asked")
        assert other.fallback == "timeout" and source.pending == 1
        assert not source.healthy  # down for the backoff
        during = source.fetch(USER, QUERY)
        assert during.fallback is None and during.user_known and during.values == first.values
        assert source.fetch(USER, "another query never asked").fallback == "unavailable"
        assert source.pending == 1, "no lookup was started while the store is down"
    finally:
        gate.set()
        wait_for(lambda: source.pending == 0, timeout=30)


class _SlowOnce:
    """A real Feast store whose next `slow` lookups each take `delay_s` (a GC pause, a network blip), then answer."""

    def __init__(self, store, delay_s: float) -> None:
        self.store, self.delay_s, self.slow = store, delay_s, 0

    def get_online_features(self, **kw):
        if self.slow > 0:
            self.slow -= 1
            time.sleep(self.delay_s)
        return self.store.get_online_features(**kw)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_one_slow_lookup_costs_only_its_request_and_three_in_a_row_trip_the_backoff(feature_dir):
    """A lookup past the timeout degrades its own request; the next is asked on the same connection (slow is not
    broken) and answers personalized. Only `trip_after` consecutive failures make the store skipped."""
    opened: list[_SlowOnce] = []

    def opener(d):
        opened.append(_SlowOnce(open_feature_store(d), delay_s=1.0))
        return opened[-1]

    source = OnlineFeatureSource(feature_dir, retry_s=60.0, timeout_s=0.3, connect_timeout_s=5, max_pending=8,
                                 opener=opener)
    assert source.trip_after == 3 and source.open()
    opened[-1].slow = 1
    assert source.fetch(USER, "q1").fallback == "timeout" and not source.backing_off
    after = source.fetch(USER, "q2")
    assert after.fallback is None and after.user_known, "the next request is personalized again"
    assert len(opened) == 1, "a timeout keeps the store and its connection"
    assert source.healthy
    opened[-1].slow = 3
    assert [source.fetch(USER, f"slow {i}").fallback for i in range(3)] == ["timeout"] * 3
    assert source.backing_off, "three consecutive failures trip the backoff"
    assert source.fetch(USER, "skipped").fallback == "unavailable"
    with pytest.raises(ValueError, match="trip-after must be >= 1"):
        OnlineFeatureSource(feature_dir, trip_after=0)


def test_the_trip_count_is_configured_from_the_environment():
    assert ServerSettings.resolve({"bundles_dir": "/b"}, {"EBR_FEATURE_TRIP_AFTER": "5"}).feature_trip_after == 5
    with pytest.raises(ValueError, match=re.escape("feature trip-after (EBR_FEATURE_TRIP_AFTER) must be >= 1")):
        ServerSettings.resolve({"bundles_dir": "/b"}, {"EBR_FEATURE_TRIP_AFTER": "0"})


@pytest.mark.slow
def test_query_understanding_reaches_the_query_tower_row_whoever_asks(feature_dir):
    from serving.schema import SearchRequest
    from serving.search import SearchEngine

    source = OnlineFeatureSource(feature_dir)
    assert source.open()
    engine = SearchEngine(lambda: None, features=source)
    for user in (None, USER, 999_999):  # logged out, known, unknown: the query's understanding is the query's
        row, found = engine._features(SearchRequest(query=QUERY, user_id=user), with_user=True)
        assert (row["qu_category_leaf"], row["qu_brand"]) == ("running shoes", "acme"), user
        assert ("user_gender" in row) == (user == USER)
    row, _ = engine._features(SearchRequest(query="a query nobody searched"), with_user=True)
    assert row["qu_category_leaf"] is None and row["qu_brand"] is None
