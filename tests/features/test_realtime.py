"""Pushed real-time features: the push views' definitions, the event-folding rule against the offline derivation
(`ebr.features.sequences`), and pushes into a real materialized Feast store."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from ebr.features.config import FeaturesConfig
from ebr.features.definitions import PUSH_VIEWS, UNKNOWN_AUTHOR, UNKNOWN_CATEGORY, build_definitions, table_path
from ebr.features.history import DAY_US, History, day_start_us
from ebr.features.realtime import RealtimeEvent, RealtimeRules, RealtimeState, apply_events
from tests.features.conftest import read_view

DAY = "2026-11-08"
START = day_start_us(DAY)
DOCS = {11: ("dress", 501), 12: ("skirt", 502), 13: ("shoes", 501), 14: ("lamp", 503), 15: ("kettle", 504)}


def test_push_views_read_their_derived_table_and_others_have_no_push_source(tmp_path):
    defs = build_definitions(str(tmp_path))
    for name, view in defs.views.items():
        if name in PUSH_VIEWS:
            assert view.stream_source.name == f"{name}_push"
            assert view.batch_source.path == table_path(str(tmp_path), name)  # materialize and retrieval read it
            assert defs.push_sources[name].batch_source is defs.sources[name]
        else:
            assert view.stream_source is None and view.batch_source.path == table_path(str(tmp_path), name)
    assert sorted(defs.push_sources) == sorted(PUSH_VIEWS)


def _history(clicks: list[tuple[int, int, int]], searches: list[tuple[int, int, str]]) -> History:
    """A History of clicks (user, ts_us, doc) and searches (user, ts_us, query), sorted as `load_history` sorts."""
    ev = pd.DataFrame(clicks, columns=["user_id", "ts", "doc_id"]).astype({"user_id": np.int64, "ts": np.int64,
                                                                          "doc_id": np.int64})
    ev["event_type"] = "click"
    ev["category"] = [DOCS.get(d, (UNKNOWN_CATEGORY, UNKNOWN_AUTHOR))[0] for d in ev["doc_id"]]
    ev["author_id"] = np.array([DOCS.get(d, (UNKNOWN_CATEGORY, UNKNOWN_AUTHOR))[1] for d in ev["doc_id"]], np.int64)
    ev = ev.sort_values(["user_id", "ts", "doc_id", "event_type"], kind="stable").reset_index(drop=True)
    req = pd.DataFrame(searches, columns=["user_id", "ts", "query"])
    req["user_id"] = req["user_id"].astype("Int64")
    req["ts"] = req["ts"].astype(np.int64)
    req = req.sort_values("ts", kind="stable").reset_index(drop=True)
    empty = pd.DataFrame({"user_id": pd.Series([], dtype=np.int64), "ts": pd.Series([], dtype=np.int64)})
    return History(docs=pd.DataFrame(), users=empty, authors=pd.DataFrame(), requests=req,
                   impressions=pd.DataFrame(), events=ev, first_fact_us=START - 40 * DAY_US)


def _fold(events: list[RealtimeEvent], rules: RealtimeRules) -> RealtimeState:
    """The state after pushing `events` one per request, in time order, from a user without rows."""
    state = RealtimeState()
    for e in sorted(events, key=lambda e: e.ts_us):
        state = apply_events(state, [e], DOCS, rules).state
    return state


def test_folding_events_one_by_one_equals_the_offline_rows():
    """Every offline row of user_realtime and user_queries at t inside day D equals the state that pushing the
    user's events before t (those of D - 1 included) gives: newest first, bounded, reset at 00:00, distinct."""
    from ebr.features import sequences

    cfg = FeaturesConfig(realtime_max_len=3, recent_queries_max_len=3)
    rules = RealtimeRules(cfg.realtime_max_len, cfg.recent_queries_max_len, cfg.sequence_event_types)
    s = 1_000_000
    clicks = [(1, START - 3600 * s, 14),  # the day before: gone after the 00:00 reset
              (1, START + 60 * s, 11), (1, START + 120 * s, 12), (1, START + 120 * s, 13),  # a tie: doc order
              (1, START + 300 * s, 99),  # a doc unknown at the event: unknown category and author
              (1, START + 400 * s, 15), (2, START + 50 * s, 12), (2, START + 7200 * s, 11)]
    searches = [(1, START - 7200 * s, "old query"), (1, START + 30 * s, "red dress"), (1, START + 90 * s, "skirt"),
                (1, START + 200 * s, "red dress"), (1, START + 250 * s, "lamp"), (1, START + 260 * s, "kettle"),
                (2, START + 10 * s, "shoes")]
    h = _history(clicks, searches)
    seen = sequences.first_seen(h)
    rt = sequences.user_realtime(h, START, cfg, sequences.event_timeline(h, cfg), seen)
    rq = sequences.user_queries(h, START, cfg, sequences.request_timeline(h), seen)
    events = [RealtimeEvent("click", u, t, doc_id=d) for u, t, d in clicks]
    events += [RealtimeEvent("search", u, t, query=q) for u, t, q in searches]
    checked = 0
    for frame, names in ((rt, [f"seq_rt_{k}" for k in ("doc_ids", "categories", "authors", "event_types")]),
                         (rq, ["recent_queries"])):
        for _, row in frame[(frame["ts"] > START) & (frame["ts"] < START + DAY_US)].iterrows():
            before = [e for e in events if e.user_id == row["user_id"] and e.ts_us < row["ts"]]
            got = _fold(before, rules).features()
            for name in names:
                assert got[name] == list(row[name]), (row["user_id"], row["ts"], name)
            checked += 1
    assert checked >= 10
    last = _fold([e for e in events if e.user_id == 1], rules)
    assert last.sequence["doc_ids"] == [15, 99, 13]  # bounded to 3, newest first, the day before reset away
    assert last.sequence["categories"] == ["kettle", UNKNOWN_CATEGORY, "shoes"]
    assert last.sequence["authors"] == [504, UNKNOWN_AUTHOR, 501]
    assert last.queries == ["kettle", "lamp", "red dress"]


def test_stale_events_are_counted_not_applied_and_unknown_kinds_are_refused():
    rules = RealtimeRules()
    state = apply_events(RealtimeState(), [RealtimeEvent("click", 1, START + 100, doc_id=11)], DOCS, rules).state
    late = apply_events(state, [RealtimeEvent("click", 1, START + 10, doc_id=12),
                                RealtimeEvent("search", 1, START + 10, query="first query")], DOCS, rules)
    assert (late.applied, late.stale) == (1, 1)  # the search view had no row: nothing to be older than
    assert late.state.sequence["doc_ids"] == [11] and late.state.queries == ["first query"]
    assert late.changed == {"user_queries"}
    no_clicks = apply_events(RealtimeState(), [RealtimeEvent("click", 1, START, doc_id=11)], DOCS,
                             RealtimeRules(sequence_event_types=("like",)))
    assert (no_clicks.applied, no_clicks.ignored, no_clicks.changed) == (0, 1, set())
    with pytest.raises(ValueError, match="kind"):
        RealtimeEvent("view", 1, START, doc_id=11)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="doc_id"):
        RealtimeEvent("click", 1, START)


def test_push_into_a_materialized_store_updates_what_online_features_return(built, tmp_path):
    """On a copy of the tiny build: a pushed click and search show in `online_features` with the doc's category
    and author from the online doc_profile; an event older than the user's row is stale; the offline tables (and so
    historical retrieval) are untouched."""
    from ebr.features import online_features, open_store
    from ebr.features.realtime import push_events, read_states
    from ebr.features.store import store_settings

    out, result = built
    copy = tmp_path / "store"
    shutil.copytree(out, copy)
    store = open_store(copy)
    rules = RealtimeRules.from_settings(store_settings(copy))
    assert rules == RealtimeRules()  # the build recorded its (default) rules
    end = pd.Timestamp(result["materialized"]["end"])
    realtime = read_view(copy, "user_realtime")
    user = int(realtime.loc[realtime["event_timestamp"] == end, "user_id"].iloc[0])  # active on the last day
    docs = read_view(copy, "doc_profile").drop_duplicates("doc_id", keep="last")
    doc = docs.iloc[0]
    before = read_states(store, [user])[user]
    assert before.sequence["doc_ids"] == [] and before.sequence_ts_us == end.value // 1000  # the 00:00 reset row
    t = end + pd.Timedelta(hours=1)
    us = t.value // 1000
    report = push_events(store, [RealtimeEvent("click", user, us, doc_id=int(doc["doc_id"])),
                                 RealtimeEvent("search", user, us - 1_000_000, query="pushed query"),
                                 RealtimeEvent("click", user, (end - pd.Timedelta(hours=1)).value // 1000, doc_id=1)],
                         rules)
    assert (report.applied, report.stale, report.users) == (2, 1, [user])
    got = online_features(store, user_id=user)
    assert got["seq_rt_doc_ids"] == [int(doc["doc_id"])]
    assert got["seq_rt_categories"] == [doc["category_leaf"]] and got["seq_rt_authors"] == [int(doc["author_id"])]
    assert got["seq_rt_event_types"] == ["click"]
    assert got["recent_queries"][0] == "pushed query" and got["recent_queries"][1:] == before.queries[:19]
    after = read_view(copy, "user_realtime")
    pd.testing.assert_frame_equal(after, realtime)  # online only: the offline table is the logs' derivation
