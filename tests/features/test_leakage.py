"""No look-ahead: facts planted at or after a sample's time change none of its features."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebr.contract import load
from ebr.contract.schema import TABLES
from ebr.features.definitions import ENTITIES, VIEWS, service_features
from tests.features.conftest import read_view, same_value

PLANTED_QUERY = "planted query never seen"


def _append(root, table: str, day: str, rows: list[dict]) -> None:
    path = root / table / f"ds={day}" / "planted.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLES[table].schema), path)


@pytest.fixture(scope="module")
def planted(built, tiny_data, tiny_days, tmp_path_factory):
    """A copy of the tiny data with facts planted at and just after one logged-in request, built again."""
    from ebr.features import FeaturesConfig, build_features

    day = tiny_days[-1]
    req = load(tiny_data, "search_requests", [day])
    imp = load(tiny_data, "impressions", [day])
    exposed = imp[imp["stage"] == "exposed"].merge(req[["request_id", "user_id", "query"]], on="request_id")
    exposed = exposed[exposed["user_id"].notna()].sort_values("event_timestamp")
    sample = exposed.iloc[len(exposed) // 2]
    t = sample["event_timestamp"]
    user, doc = int(sample["user_id"]), int(sample["doc_id"])
    root = tmp_path_factory.mktemp("planted") / "data"
    shutil.copytree(tiny_data, root)
    us = timedelta(microseconds=1)
    _append(root, "user_events", day, [
        dict(user_id=user, doc_id=doc, event_type="purchase", source="feed", event_timestamp=t),
        dict(user_id=user, doc_id=doc, event_type="like", source="feed", event_timestamp=t + us),
    ])  # fmt: skip
    _append(root, "search_requests", day, [
        dict(request_id="planted-1", user_id=user, query=PLANTED_QUERY, query_category_leaf=None, query_brand=None,
             event_timestamp=t),
    ])  # fmt: skip
    _append(root, "impressions", day, [
        dict(request_id="planted-1", doc_id=doc, stage="exposed", position=1, clicked=True, liked=True,
             favorited=True, commented=True, dwell_ms=1, rank_score=None, event_timestamp=t),
    ])  # fmt: skip
    docs = load(root, "docs")
    drow = docs[docs["doc_id"] == doc].sort_values("event_timestamp").iloc[-1].to_dict()
    drow.update(title="planted title", event_timestamp=t + us)
    _append(root, "docs", day, [{k: drow[k] for k in TABLES["docs"].names}])
    users = load(root, "users")
    urow = users[users["user_id"] == user].sort_values("event_timestamp").iloc[-1].to_dict()
    urow.update(city="planted city", event_timestamp=t + us)
    _append(root, "users", day, [{k: urow[k] for k in TABLES["users"].names}])
    out = tmp_path_factory.mktemp("planted_features") / "store"
    build_features(root, day, out, FeaturesConfig(materialize=False))
    entity = pd.DataFrame({"user_id": [user, user], "query": [sample["query"], PLANTED_QUERY],
                           "doc_id": [doc, doc], "event_timestamp": [t, t]})  # fmt: skip
    return out, entity, t


def test_derived_rows_valid_at_t_are_unchanged(built, planted):
    out, _, t = planted
    for v in VIEWS:
        key = ENTITIES[v.entity].join_key
        a, b = (read_view(d, v.name) for d in (built[0], out))
        a, b = (x[x["event_timestamp"] < t].reset_index(drop=True) for x in (a, b))
        pd.testing.assert_frame_equal(a, b, obj=f"rows of {v.name} before {t}")
        later = read_view(out, v.name)
        assert (later["event_timestamp"] >= later.groupby(key)["event_timestamp"].transform("min")).all()


def test_sample_features_ignore_facts_at_or_after_its_time(built, planted, store):
    from ebr.features import historical_features, open_store

    out, entity, t = planted
    before = historical_features(store, entity, "retrieval_training")
    after = historical_features(open_store(out), entity, "retrieval_training")
    for name in service_features("retrieval_training"):
        for i in range(len(entity)):
            assert same_value(before[name].iloc[i], after[name].iloc[i]), (name, i)
    # The planted facts are visible one second later, so the comparison above could fail.
    later = historical_features(open_store(out), entity.assign(event_timestamp=t + timedelta(seconds=1)),
                                "retrieval_training")  # fmt: skip
    row = later.iloc[0]
    assert row["title"] == "planted title" and row["user_city"] == "planted city"
    assert row["seq_rt_event_types"][:2] == ["like", "purchase"]
    assert row["recent_queries"][0] == PLANTED_QUERY
