"""Statistics views against a direct computation from the contract tables (windows end before the snapshot)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.contract import load
from tests.features.conftest import read_view


@pytest.fixture(scope="module")
def facts(tiny_data, tiny_days):
    req = load(tiny_data, "search_requests")
    imp = load(tiny_data, "impressions")
    exposed = imp[imp["stage"] == "exposed"].merge(req[["request_id", "user_id", "query"]], on="request_id")
    return req, exposed


def _snapshot(table: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    return table[table["event_timestamp"] == at]


def test_doc_stats_count_exposures_before_the_snapshot(built, tiny_days, facts):
    _, exposed = facts
    at = pd.Timestamp(tiny_days[-1], tz="UTC")  # built from facts of the days before
    snap = _snapshot(read_view(built[0], "doc_stats"), at).set_index("doc_id")
    for w in (1, 7, 30):
        win = exposed[(exposed["event_timestamp"] >= at - pd.Timedelta(days=w)) & (exposed["event_timestamp"] < at)]
        exp = win.groupby("doc_id").size().reindex(snap.index, fill_value=0)
        clicks = win.groupby("doc_id")["clicked"].sum().reindex(snap.index, fill_value=0)
        likes = win.groupby("doc_id")["liked"].sum().reindex(snap.index, fill_value=0)
        assert (snap[f"doc_exposures_{w}d"] == exp).all()
        assert (snap[f"doc_clicks_{w}d"] == clicks).all()
        assert (snap[f"doc_likes_{w}d"] == likes).all()
        ctr = (clicks + 20 * 0.05) / (exp + 20)
        assert np.allclose(snap[f"doc_ctr_{w}d"], ctr, rtol=1e-5)
    assert snap["doc_exposures_1d"].sum() > 0
    assert (snap["doc_exposures_30d_bucket"] == np.minimum(np.floor(np.log2(1 + snap["doc_exposures_30d"])), 15)).all()


def test_every_existing_doc_has_a_snapshot_and_new_docs_a_row_when_they_appear(built, tiny_data, tiny_days):
    docs = load(tiny_data, "docs")
    first = docs.groupby("doc_id")["event_timestamp"].min()
    stats = read_view(built[0], "doc_stats")
    at = pd.Timestamp(tiny_days[-1], tz="UTC")
    assert set(_snapshot(stats, at)["doc_id"]) == set(first[first < at].index)
    new = first[first > pd.Timestamp(tiny_days[0], tz="UTC") + pd.Timedelta(days=1)]
    assert len(new)
    rows = stats.merge(new.rename("first").reset_index(), on="doc_id")
    at_first = rows[rows["event_timestamp"] == rows["first"]]
    assert len(at_first) == len(new) and (at_first["doc_exposures_30d"] == 0).all()


def test_query_stats_and_understanding_fields(built, tiny_days, facts):
    req, exposed = facts
    at = pd.Timestamp(tiny_days[-1], tz="UTC")
    snap = _snapshot(read_view(built[0], "query_stats"), at).set_index("query")
    win = req[(req["event_timestamp"] >= at - pd.Timedelta(days=7)) & (req["event_timestamp"] < at)]
    searches = win.groupby("query").size().reindex(snap.index, fill_value=0)
    assert (snap["query_searches_7d"].astype(int) == searches).all()
    month = req[req["event_timestamp"] < at].dropna(subset=["query_category_leaf"])
    counts = month.groupby(["query", "query_category_leaf"]).size().rename("n").reset_index()
    top = counts.sort_values(["query", "n", "query_category_leaf"], ascending=[True, False, True])
    top = top.drop_duplicates("query").set_index("query")["query_category_leaf"]
    assert (snap.loc[top.index, "qu_category_leaf"] == top).all()
    clicks = exposed[(exposed["event_timestamp"] >= at - pd.Timedelta(days=30)) & (exposed["event_timestamp"] < at)]
    assert (snap["query_clicks_30d"].astype(int) == clicks.groupby("query")["clicked"].sum()
            .reindex(snap.index, fill_value=0)).all()  # fmt: skip


def test_a_query_first_searched_during_a_day_gets_a_null_row_at_its_first_request(built, tiny_days, facts):
    req, _ = facts
    stats = read_view(built[0], "query_stats")
    day_start = pd.Timestamp(tiny_days[-1], tz="UTC")
    before = set(req.loc[req["event_timestamp"] < day_start, "query"])
    today = req[(req["event_timestamp"] >= day_start) & ~req["query"].isin(before)]
    assert len(today), "the tiny data should have queries first searched on its last day"
    first = today.groupby("query")["event_timestamp"].min()
    rows = stats.merge(first.rename("first").reset_index(), on="query")
    at_first = rows[rows["event_timestamp"] == rows["first"]]
    assert len(at_first) == len(first)
    assert at_first["query_searches_30d"].isna().all() and at_first["qu_category_leaf"].isna().all()


def test_author_docs_and_user_register_days(built, tiny_data, tiny_days):
    at = pd.Timestamp(tiny_days[-1], tz="UTC")
    docs = load(tiny_data, "docs")
    current = docs[docs["event_timestamp"] < at].sort_values("event_timestamp").drop_duplicates("doc_id", keep="last")
    authors = _snapshot(read_view(built[0], "author_stats"), at).set_index("author_id")
    assert (authors["author_docs"] == current.groupby("author_id").size().reindex(authors.index, fill_value=0)).all()
    users = load(tiny_data, "users").sort_values("event_timestamp").drop_duplicates("user_id", keep="last")
    snap = _snapshot(read_view(built[0], "user_stats"), at).set_index("user_id")
    reg = users.set_index("user_id")["register_ts"].reindex(snap.index)
    assert np.allclose(snap["user_register_days"], (at - reg).dt.total_seconds() / 86400, atol=1e-3)


@pytest.mark.parametrize("string_keys", [False, True])
def test_window_sums_equal_a_direct_sum_over_each_window(string_keys):
    from ebr.features.history import DAY_US
    from ebr.features.statistics import window_sums

    rng = np.random.default_rng(3)
    quarter = DAY_US // 4  # times on a quarter-day grid: many facts fall exactly on a window's bounds
    names = np.array([f"q{i}" for i in range(12)]) if string_keys else np.arange(12) * 7
    facts = pd.DataFrame({"k": rng.choice(names[:9], 500), "ts": rng.integers(0, 160, 500) * quarter,
                          "a": rng.integers(0, 3, 500), "b": 1})
    points = pd.DataFrame({"k": rng.choice(names, 80), "ts": rng.integers(0, 180, 80) * quarter},
                          index=rng.permutation(80) + 5)  # keys 9..11 have no fact; the index is not 0..n
    got = window_sums(points, facts, "k", ["a", "b"], (1, 7, 30))
    assert list(got.columns) == ["a_1", "b_1", "a_7", "b_7", "a_30", "b_30"]
    assert got.index.equals(points.index)
    for idx, p in points.iterrows():
        for w in (1, 7, 30):
            inside = facts[(facts["k"] == p["k"]) & (facts["ts"] < p["ts"]) & (facts["ts"] >= p["ts"] - w * DAY_US)]
            assert got.loc[idx, f"a_{w}"] == inside["a"].sum()
            assert got.loc[idx, f"b_{w}"] == len(inside)
    assert got["b_30"].sum() > got["b_1"].sum() > 0
    empty = window_sums(points, facts.iloc[:0], "k", ["a"], (1,))
    assert (empty["a_1"] == 0).all() and empty.index.equals(points.index)
