"""Behaviour sequences and recent queries: lengths, newest-first order, window boundaries (10 and 30 days)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ebr.features import FeaturesConfig, derive_day
from ebr.features.history import load_history
from tests.features.synthetic import DAY, US, B, event, request, write_dataset

PREV = "2026-03-30"


def _events() -> list[dict]:
    ev = [event(1, 1 + k, B + timedelta(hours=1, seconds=k)) for k in range(70)]  # 70 today
    ev += [event(1, 100 + k, B - timedelta(hours=150 - k)) for k in range(150)]  # 150 in the short-term window
    ev += [
        event(2, 301, B - timedelta(days=10)),  # exactly 10 days before: short-term
        event(2, 302, B - timedelta(days=10) - US),  # just older: long-term
        event(2, 303, B - timedelta(days=30), "favorite"),  # exactly 30 days before: long-term
        event(2, 304, B - timedelta(days=30) - US),  # just older: out of every window
        event(2, 305, B - US, "purchase"),  # newest
    ]
    return ev


def _requests() -> list[dict]:
    day_before = B - timedelta(days=1)
    req = [request(f"a{k}", 3, f"q{k}", day_before + timedelta(minutes=k)) for k in range(25)]
    req.append(request("dup", 3, "q3", day_before + timedelta(minutes=30)))
    req.append(request("old", 3, "q_old", B - timedelta(days=30, hours=12)))
    req.append(request("old2", 2, "q_old2", B - timedelta(days=30, hours=12)))
    req.append(request("anon", None, "q_anon", day_before + timedelta(minutes=40)))
    return req


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("seq") / "data", _events(), _requests())
    return load_history(root, PREV, DAY, FeaturesConfig().lookback_days)


def _both_days(history, view: str, cfg: FeaturesConfig):
    import pandas as pd

    return pd.concat([derive_day(history, d, cfg)[view] for d in (PREV, DAY)], ignore_index=True)


def _row_at(frame, user: int, ts_us: int) -> dict:
    hit = frame[(frame["user_id"] == user) & (frame["ts"] == ts_us)]
    assert len(hit) == 1, f"expected one row of user {user} at {ts_us}, got {len(hit)}"
    return hit.iloc[0].to_dict()


def _latest(frame, user: int, ts_us: int) -> dict:
    rows = frame[(frame["user_id"] == user) & (frame["ts"] <= ts_us)].sort_values("ts")
    assert len(rows), f"no row of user {user} at or before {ts_us}"
    return rows.iloc[-1].to_dict()


B_US = int(B.timestamp() * 1_000_000)
DAY_US = 86_400_000_000


def test_short_and_long_term_limits_order_and_boundaries(history):
    seq = derive_day(history, PREV, FeaturesConfig())["user_sequences"]
    heavy = _row_at(seq, 1, B_US)
    assert heavy["seq_st_doc_ids"] == list(range(249, 149, -1))  # 100 newest of 150, newest first
    assert heavy["seq_lt_doc_ids"] == []
    edge = _row_at(seq, 2, B_US)
    assert edge["seq_st_doc_ids"] == [305, 301]
    assert edge["seq_lt_doc_ids"] == [302, 303]
    assert edge["seq_st_event_types"] == ["purchase", "click"]
    assert edge["seq_lt_event_types"] == ["click", "favorite"]
    assert edge["seq_st_categories"] == [f"leaf{d % 7}" for d in (305, 301)]
    assert edge["seq_lt_authors"] == [100 + d % 5 for d in (302, 303)]


def test_sequence_lengths_follow_the_config(history):
    cfg = FeaturesConfig(short_term_max_len=7, long_term_max_len=1, short_term_days=9)
    edge = _row_at(derive_day(history, PREV, cfg)["user_sequences"], 2, B_US)
    assert edge["seq_st_doc_ids"] == [305]  # the 10-day-old event left the 9-day short-term window
    assert edge["seq_lt_doc_ids"] == [301]  # long-term keeps only the newest one
    heavy = _row_at(derive_day(history, PREV, cfg)["user_sequences"], 1, B_US)
    assert heavy["seq_st_doc_ids"] == list(range(249, 242, -1))


def test_realtime_holds_todays_last_50_newest_first_and_resets(history):
    rt = _both_days(history, "user_realtime", FeaturesConfig())
    first_event = B_US + 3_600_000_000
    assert _latest(rt, 1, first_event)["seq_rt_doc_ids"] == []  # an event at t is not visible at t
    assert _row_at(rt, 1, first_event + 1)["seq_rt_doc_ids"] == [1]
    after_all = _latest(rt, 1, first_event + 70 * 1_000_000)
    assert after_all["seq_rt_doc_ids"] == list(range(70, 20, -1))
    assert len(after_all["seq_rt_event_types"]) == len(after_all["seq_rt_authors"]) == 50
    assert _row_at(rt, 1, B_US + DAY_US)["seq_rt_doc_ids"] == []  # next day's 00:00: short-term takes over


def test_hourly_buckets_delay_realtime_to_the_bucket_end(history):
    rt = _both_days(history, "user_realtime", FeaturesConfig(realtime_bucket_seconds=3600))
    two_am = B_US + 2 * 3_600_000_000
    assert _latest(rt, 1, two_am - 1)["seq_rt_doc_ids"] == []
    assert _row_at(rt, 1, two_am)["seq_rt_doc_ids"] == list(range(70, 20, -1))


def test_recent_queries_distinct_newest_first_within_the_window(history):
    q = _both_days(history, "user_queries", FeaturesConfig())
    first_request = B_US - DAY_US
    assert _row_at(q, 3, first_request + 1)["recent_queries"] == ["q0", "q_old"]
    assert _latest(q, 3, B_US)["recent_queries"] == ["q3"] + [f"q{k}" for k in range(24, 5, -1)]
    old = derive_day(history, "2026-02-28", FeaturesConfig())["user_queries"]
    assert _latest(old, 2, B_US - 1)["recent_queries"] == ["q_old2"]
    assert _row_at(q, 2, B_US)["recent_queries"] == []  # older than 30 days at 00:00: a row drops it
    assert "q_anon" not in set(sum(q["recent_queries"], []))
    small = _both_days(history, "user_queries", FeaturesConfig(recent_queries_max_len=3))
    assert _latest(small, 3, B_US)["recent_queries"] == ["q3", "q24", "q23"]
