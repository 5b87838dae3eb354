"""Online features: equal to the latest offline values after materialization; unknown and logged-out users."""

from __future__ import annotations

import pandas as pd
import pytest

from ebr.features.definitions import LIST_FEATURES, service_features
from tests.features.conftest import read_view, same_value


def test_online_equals_latest_offline_values(built, store):
    from ebr.features import historical_features, online_features

    out, result = built
    end = pd.Timestamp(result["materialized"]["end"])
    seq = read_view(out, "user_sequences")
    queries = read_view(out, "user_queries")
    users = [int(u) for u in seq.loc[seq["seq_st_doc_ids"].map(len) > 0, "user_id"].unique()[:3]]
    assert users, "the tiny data should give some users a short-term sequence"
    qs = [queries.loc[queries["user_id"] == u, "recent_queries"].iloc[-1] for u in users]
    entity = pd.DataFrame({"user_id": users, "query": [q[0] if q else "none" for q in qs], "event_timestamp": end})
    offline = historical_features(store, entity, "query_tower_online", on_missing="null")
    for i, u in enumerate(users):
        online = online_features(store, user_id=u, query=entity["query"].iloc[i])
        assert set(online) == set(service_features("query_tower_online"))
        for name, value in online.items():
            assert same_value(value, offline[name].iloc[i]), (u, name, value, offline[name].iloc[i])
        assert online["seq_st_doc_ids"], "a user with a short-term sequence gets it online"


@pytest.mark.parametrize(("user_id", "query"), [(10**12, "a query nobody searched"), (None, None), (None, "x")])
def test_unknown_or_logged_out_requests_get_nulls_and_empty_lists(store, user_id, query):
    from ebr.features import online_features

    got = online_features(store, user_id=user_id, query=query)
    assert set(got) == set(service_features("query_tower_online"))
    for name, value in got.items():
        assert value == [] if name in LIST_FEATURES else value is None, (name, value)


def test_logged_out_request_still_gets_query_features(built, store):
    from ebr.features import online_features

    stats = read_view(built[0], "query_stats")
    query = stats.loc[stats["query_searches_30d"] > 0, "query"].iloc[-1]
    got = online_features(store, user_id=None, query=query)
    assert got["query_searches_30d"] > 0 and got["user_gender"] is None and got["recent_queries"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"user_id": "7"}, "user_id must be an integer"), ({"user_id": True}, "user_id must be an integer"),
     ({"query": 5}, "query must be a string"), ({"service_name": "nope"}, "unknown feature service")],
)  # fmt: skip
def test_bad_online_input_names_the_parameter(store, kwargs, message):
    from ebr.features import online_features

    with pytest.raises(ValueError, match=message):
        online_features(store, **kwargs)


def test_a_request_is_one_round_trip_and_entities_can_be_left_out(built, store, monkeypatch):
    from ebr.features import online_features

    seq = read_view(built[0], "user_sequences")
    user = int(seq["user_id"].iloc[0])
    calls = []
    real = store.get_online_features

    def counted(*args, **kwargs):  # the real store answers; the wrapper only counts the round trips
        calls.append(kwargs.get("entity_rows"))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "get_online_features", counted)
    both = online_features(store, user_id=user, query="x")
    assert len(calls) == 1 and set(calls[0][0]) == {"user_id", "query"}, "user and query features in one call"
    only_user = online_features(store, user_id=user, query="x", entities={"user"})
    assert len(calls) == 2 and set(calls[1][0]) == {"user_id"}
    assert only_user == {k: v for k, v in both.items() if k in only_user}
    assert set(only_user) < set(both), "the query's features are left out when not asked for"


def test_the_feast_yaml_carries_the_online_write_batch(built):
    from feast.repo_config import load_repo_config

    out = built[0]
    cfg = load_repo_config(out, out / "feature_store.yaml")
    assert cfg.materialization_config.online_write_batch_size == 50
    users = read_view(out, "user_profile")["user_id"].nunique()
    assert users > 2 * 50, "the tiny data should need several batches per view"


def test_the_duckdb_read_loads_what_feast_materialize_loads(built, tiny_data, tiny_days, tmp_path):
    """The default (`asof`) build reads each key's latest row with DuckDB and writes it through Feast; a `file`
    build runs Feast's own materialize. Every view's online values agree for every key of its table."""
    from ebr.features import FeaturesConfig, build_features, open_store
    from ebr.features.definitions import ENTITIES, VIEWS

    out, result = built
    assert result["materialized"]["engine"] == "asof" and result["materialized"]["rows"]
    ref_dir = tmp_path / "file"
    ref = build_features(tiny_data, tiny_days[-1], ref_dir, FeaturesConfig(offline_engine="file",
                                                                           online_write_batch_size=50))
    assert ref["materialized"]["engine"] == "file"
    ours, theirs = open_store(out), open_store(ref_dir)
    for spec in VIEWS:
        key = ENTITIES[spec.entity].join_key
        keys = read_view(out, spec.name)[key].drop_duplicates().tolist()
        assert result["materialized"]["rows"][spec.name] == len(keys), spec.name
        refs = [f"{spec.name}:{f}" for f in spec.feature_names]
        rows = [{key: k.item() if hasattr(k, "item") else k} for k in keys]
        a = ours.get_online_features(features=refs, entity_rows=rows).to_dict()
        b = theirs.get_online_features(features=refs, entity_rows=rows).to_dict()
        for f in spec.feature_names:
            for i, (x, y) in enumerate(zip(a[f], b[f], strict=True)):
                assert same_value(x, y), (spec.name, f, keys[i], x, y)
