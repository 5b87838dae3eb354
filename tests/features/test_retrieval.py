"""Historical retrieval: point-in-time values, no row lost or merged, dropped rows detected and reported."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from ebr.features.definitions import ENTITIES, SERVICES, VIEW_BY_NAME, service_features
from tests.features.conftest import read_view, same_value

US = pd.Timedelta(microseconds=1)


@pytest.fixture(params=["asof", "file"])
def engine(request) -> str:
    """Every retrieval test runs through the DuckDB ASOF join and through Feast's file offline store."""
    return request.param


def _reference(out_dir, entity_df: pd.DataFrame, service: str, ttl_days: int = 2) -> pd.DataFrame:
    """The service's features by a plain as-of lookup: each view's latest row at or before the row's time."""
    ref = entity_df.reset_index(drop=True).copy()
    views = sorted(SERVICES[service], key=lambda v: VIEW_BY_NAME[v].entity == "author")
    for view in views:
        spec = VIEW_BY_NAME[view]
        key = ENTITIES[spec.entity].join_key
        table = read_view(out_dir, view)
        cols = {n: [] for n in spec.feature_names}
        for k, t in zip(ref[key], ref["event_timestamp"], strict=True):
            rows = table[(table[key] == k) & (table["event_timestamp"] <= t)] if pd.notna(k) else table.iloc[:0]
            if spec.ttl == "snapshot":
                rows = rows[rows["event_timestamp"] >= t - timedelta(days=ttl_days)]
            row = rows.iloc[-1] if len(rows) else None
            for n in spec.feature_names:
                empty = [] if spec.features[spec.feature_names.index(n)].dtype.startswith("list") else None
                cols[n].append(row[n] if row is not None else empty)
        for n, values in cols.items():
            ref[n] = values
    return ref


@pytest.fixture(scope="module")
def probe(built) -> pd.DataFrame:
    """Entity rows exactly at feature-row times and 1 us before them, for users, queries and docs."""
    out = built[0]
    rt = read_view(out, "user_realtime")
    busy = rt.groupby("user_id").size().sort_values().index[-3:]
    rows = []
    for u in busy:
        r = rt[rt["user_id"] == u].iloc[len(rt[rt["user_id"] == u]) // 2]
        rows += [(u, r["event_timestamp"]), (u, r["event_timestamp"] - US)]
    docs = read_view(out, "doc_profile")
    changed = docs[docs.duplicated("doc_id", keep=False)].drop_duplicates("doc_id", keep="last").head(3)
    stats = read_view(out, "query_stats")
    first_snapshot = stats["event_timestamp"].min().normalize() + pd.Timedelta(days=1)
    queries = stats.loc[stats["event_timestamp"] == first_snapshot, "query"].head(len(rows)).tolist()
    rows = [(u, t) for u, t in rows if t >= first_snapshot]  # every probe query has a row by then
    entity = pd.DataFrame({
        "user_id": pd.array([u for u, _ in rows] * 2, dtype="Int64"),
        "query": (queries * 4)[: 2 * len(rows)],
        "doc_id": ([int(d) for d in changed["doc_id"]] * 8)[: 2 * len(rows)],
        "event_timestamp": [t for _, t in rows] + [t for _, t in rows],
    })
    # Doc change times exactly and 1 us before; a logged-out row; two rows sharing user, query and time.
    extra = []
    for _, d in changed.iterrows():
        for t in (d["event_timestamp"], d["event_timestamp"] - US):
            extra.append({"user_id": pd.NA, "query": queries[0], "doc_id": int(d["doc_id"]), "event_timestamp": t})
    t0 = entity["event_timestamp"].iloc[0]
    for d in changed["doc_id"].head(2):
        u = entity["user_id"].iloc[0]
        extra.append({"user_id": u, "query": queries[1], "doc_id": int(d), "event_timestamp": t0})
    return pd.concat([entity, pd.DataFrame(extra).astype({"user_id": "Int64"})], ignore_index=True)


def test_features_equal_the_latest_row_at_or_before_each_entity_row(engine, built, store, probe):
    from ebr.features import historical_features_with_report

    got, report = historical_features_with_report(store, probe, "retrieval_training", engine=engine)
    ref = _reference(built[0], probe.assign(author_id=None).drop(columns="author_id"), "retrieval_training")
    assert report.missing_rows == 0 and report.rows_out == len(probe)
    assert report.duplicate_rows >= 0 and report.null_key_rows["user"] == probe["user_id"].isna().sum()
    pd.testing.assert_frame_equal(got[list(probe.columns)], probe)
    for name in service_features("retrieval_training"):
        for i in range(len(probe)):
            assert same_value(got[name].iloc[i], ref[name].iloc[i]), (name, i, got[name].iloc[i], ref[name].iloc[i])
    # A change row at t is seen at t and not 1 us before: values differ across the pair.
    assert any(not same_value(got["title"].iloc[i], got["title"].iloc[i + 1]) for i in range(len(probe) - 1))


def test_rows_sharing_keys_and_time_keep_their_own_doc_features(engine, store, probe):
    from ebr.features import historical_features

    last = probe.tail(2)
    got = historical_features(store, last, "retrieval_training", engine=engine)
    assert len(got) == 2 and got["doc_id"].tolist() == last["doc_id"].tolist()
    assert got["title"].iloc[0] != got["title"].iloc[1]
    assert got["recent_queries"].iloc[0] == got["recent_queries"].iloc[1]


def test_logged_out_rows_get_null_user_features_and_empty_lists(engine, store, probe):
    from ebr.features import historical_features

    anon = probe[probe["user_id"].isna()]
    got = historical_features(store, anon, "retrieval_training", engine=engine)
    assert got["user_gender"].isna().all() and got["user_searches_7d"].isna().all()
    assert all(x == [] for x in got["seq_st_doc_ids"]) and all(x == [] for x in got["recent_queries"])
    assert got["title"].notna().all() and got["query_searches_30d"].notna().all()


@pytest.fixture(scope="module")
def dropping(built, tiny_days) -> pd.DataFrame:
    """Two good rows, a new doc asked before it existed, and a user asked long after the last snapshot."""
    out = built[0]
    docs = read_view(out, "doc_profile")
    first = docs.groupby("doc_id")["event_timestamp"].min()
    late_doc = int(first.idxmax())
    users = read_view(out, "user_profile")["user_id"].unique()
    last_day_end = pd.Timestamp(tiny_days[-1], tz="UTC") + pd.Timedelta(days=1)
    good_doc = int(first.idxmin())
    return pd.DataFrame({
        "user_id": pd.array([users[0], users[1], users[2], users[3]], dtype="Int64"),
        "query": ["a", "b", "c", "d"],
        "doc_id": [good_doc, good_doc, late_doc, good_doc],
        "event_timestamp": [last_day_end - pd.Timedelta(hours=5), last_day_end - pd.Timedelta(hours=4),
                            first[late_doc] - pd.Timedelta(hours=1), last_day_end + pd.Timedelta(days=3)],
    })  # fmt: skip


def test_dropped_rows_raise_with_count_and_examples(engine, store, dropping):
    from ebr.features import FeatureRetrievalError, historical_features

    with pytest.raises(FeatureRetrievalError) as err:
        historical_features(store, dropping, "retrieval_training", engine=engine)
    report = err.value.report
    assert report.missing_rows == 2
    late_doc = int(dropping["doc_id"].iloc[2])
    assert report.dropped["doc_profile"].keys == 1
    assert report.dropped["doc_profile"].examples[0]["doc_id"] == late_doc
    assert "user_stats" in report.dropped and "doc_stats" in report.dropped
    assert "user_profile" not in report.dropped  # change rows never expire
    assert str(late_doc) in str(err.value)


def test_dropped_rows_kept_with_nulls_or_dropped_on_request(engine, store, dropping):
    from ebr.features import historical_features_with_report

    kept, report = historical_features_with_report(store, dropping, "retrieval_training", on_missing="null",
                                                   engine=engine)
    assert len(kept) == 4 and report.missing_rows == 2 and report.rows_out == 4
    assert kept["title"].iloc[:2].notna().all() and pd.isna(kept["title"].iloc[2])
    assert pd.isna(kept["user_searches_30d"].iloc[3]) and kept["user_gender"].notna().iloc[3]
    dropped, report = historical_features_with_report(store, dropping, "retrieval_training", on_missing="drop",
                                                      engine=engine)
    assert dropped.index.tolist() == [0, 1] and report.rows_out == 2


@pytest.mark.parametrize(
    ("mutate", "service", "message"),
    [
        (lambda df: df.drop(columns="event_timestamp"), "retrieval_training", "lacks the column 'event_timestamp'"),
        (lambda df: df.assign(event_timestamp=df["event_timestamp"].dt.tz_localize(None)), "retrieval_training",
         "timezone-aware"),
        (lambda df: df.drop(columns="doc_id"), "retrieval_training", "lacks the column 'doc_id'"),
        (lambda df: df, "nope", "unknown feature service 'nope'"),
        (lambda df: df.assign(title="x"), "retrieval_training", r"\['title'\] collide"),
        (lambda df: df.assign(doc_id="abc"), "retrieval_training", "'doc_id' must hold int64 keys"),
    ],
)
def test_bad_entity_rows_name_the_problem(engine, store, dropping, mutate, service, message):
    from ebr.features import historical_features

    with pytest.raises(ValueError, match=message):
        historical_features(store, mutate(dropping.copy()), service, engine=engine)


def test_author_features_follow_the_given_author_or_the_docs_author(engine, store, probe):
    from ebr.features import historical_features

    rows = probe.head(4)
    derived = historical_features(store, rows, "ranking_training", engine=engine)
    given = historical_features(store, rows.assign(author_id=np.int64(derived["author_id"].iloc[0])),
                                "ranking_training", engine=engine)  # fmt: skip
    assert derived["author_follower_count"].notna().all()
    assert given["author_follower_count"].nunique() == 1
    assert given["author_follower_count"].iloc[0] == derived["author_follower_count"].iloc[0]


def test_empty_entity_rows_give_an_empty_frame_with_every_feature(engine, store, probe):
    from ebr.features import historical_features

    got = historical_features(store, probe.iloc[:0], "retrieval_training", engine=engine)
    assert len(got) == 0 and set(service_features("retrieval_training")) <= set(got.columns)


@pytest.fixture(scope="module")
def logged_rows(built, tiny_data, tiny_days) -> pd.DataFrame:
    """The (user, query, doc, time) rows of every impression of the last two tiny days, plus rows the file store
    drops (a doc asked before it existed, a user long after the last snapshot)."""
    from ebr.contract import load

    imp = load(tiny_data, "impressions", tiny_days[-2:])
    req = load(tiny_data, "search_requests", tiny_days[-2:])
    rows = imp[["request_id", "doc_id"]].merge(
        req[["request_id", "user_id", "query", "event_timestamp"]], on="request_id"
    ).drop(columns="request_id")
    return rows.astype({"user_id": "Int64"}).drop_duplicates().reset_index(drop=True)


@pytest.mark.parametrize("service", ["retrieval_training", "query_tower_online"])
def test_asof_engine_gives_exactly_the_rows_of_feasts_file_store(store, logged_rows, dropping, service):
    from ebr.features import historical_features_with_report

    rows = pd.concat([logged_rows, dropping], ignore_index=True)
    want, want_report = historical_features_with_report(store, rows, service, on_missing="null", engine="file")
    got, got_report = historical_features_with_report(store, rows, service, on_missing="null", engine="asof")
    assert len(rows) > 1000 and want_report.missing_rows > 0
    pd.testing.assert_frame_equal(got, want)
    assert {v: (d.keys, d.rows) for v, d in got_report.dropped.items()} == {
        v: (d.keys, d.rows) for v, d in want_report.dropped.items()
    }
    assert got_report.missing_rows == want_report.missing_rows


def test_doc_feature_table_is_the_same_through_both_engines(built, tiny_data, tiny_days, store, monkeypatch):
    import ebr.features.retrieval as retrieval
    from ebr.features.doc_features import corpus_docs, doc_feature_table

    corpus = corpus_docs(tiny_data, tiny_days[-1])
    got = doc_feature_table(built[0], corpus, tiny_days[-1], "day_end", store=store)
    real = retrieval.offline_engine
    monkeypatch.setattr(retrieval, "offline_engine", lambda s, e=None: real(s, "file"))
    want = doc_feature_table(built[0], corpus, tiny_days[-1], "day_end", store=store)
    assert len(got) == len(corpus) and got["title"].notna().all()
    pd.testing.assert_frame_equal(got, want)


def test_directory_records_its_offline_engine(built, tmp_path):
    import shutil

    from ebr.features import FeaturesConfig
    from ebr.features.retrieval import offline_engine
    from ebr.features.store import open_store, store_settings, write_store_settings

    copy = tmp_path / "store"
    shutil.copytree(built[0], copy)
    assert store_settings(copy)["offline_engine"] == "asof"
    assert offline_engine(open_store(copy)) == "asof"
    write_store_settings(copy, FeaturesConfig(offline_engine="file"))
    reopened = open_store(copy)
    assert offline_engine(reopened) == "file" and offline_engine(reopened, "asof") == "asof"
    assert reopened.config.offline_store.type in ("file", "dask")  # Feast names its file store "dask"
    with pytest.raises(ValueError, match="offline engine must be one of"):
        offline_engine(reopened, "duckdb")  # type: ignore[arg-type]


@pytest.mark.parametrize("complete", [True, False])
def test_feature_columns_are_spread_typed_with_the_values_and_dtypes_an_object_column_infers(complete):
    """Numbers are spread as numeric arrays (no Python object per value), equal to the object-column rule."""
    from ebr.features.retrieval import _spread

    columns = {
        "f32": pd.Series(np.array([0.1, np.nan, 2.5], dtype="float32")),
        "f64": pd.Series([1.0, 2.0, np.nan]),
        "i32": pd.Series(np.array([3, 4, 5], dtype="int32")),
        "i64": pd.Series([7, 8, 9]),
        "flag": pd.Series([True, False, True]),
        "name": pd.Series(["a", None, "c"]),
        "when": pd.Series(pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"], utc=True)),
        "ints_na": pd.Series([1, None, 3], dtype="Int64"),
    }
    codes = np.array([2, 0, 0, 1, 2])
    n = 5 if complete else 7
    rows = np.arange(5) if complete else np.array([0, 2, 3, 5, 6])
    for name, values in columns.items():
        want = np.full(n, None, dtype=object)  # the rule: objects, then the dtype pandas infers
        want[rows] = values.to_numpy(dtype=object)[codes]
        want = pd.Series(want).infer_objects()
        raw = _spread(values, codes, rows, n, is_list=False)
        assert raw.dtype != object or name not in ("f32", "f64", "i32", "i64"), name
        pd.testing.assert_series_equal(pd.Series(raw).infer_objects(), want, obj=name)
    lists = _spread(pd.Series([[1], [2, 3], []], dtype=object), codes, rows, n, is_list=True)
    assert [list(v) for v in lists[rows]] == [[], [1], [1], [2, 3], []]
    assert all(lists[i] == [] for i in set(range(n)) - set(rows))


def test_asof_join_under_a_duckdb_memory_limit_gives_the_same_rows_and_cleans_its_spill_dir(store, logged_rows):
    from pathlib import Path

    from ebr.features.asof import asof_features, connect_duckdb
    from ebr.features.config import FeaturesConfig

    pairs = logged_rows[["doc_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    views = {"doc_profile": ["category_leaf", "title"], "doc_stats": ["doc_age_days", "doc_clicks_1d"]}
    free = asof_features(store, pairs, "doc_id", views, memory_limit="")  # "" = no limit
    tight = asof_features(store, pairs, "doc_id", views, memory_limit="20MB")
    pd.testing.assert_frame_equal(tight[0], free[0])
    assert all((tight[i][v] == free[i][v]).all() for i in (1, 2) for v in views)
    with connect_duckdb(None, "64MB") as con:
        spill = Path(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0].startswith("61")  # 64 MB in MiB
        assert spill.is_dir()
    assert not spill.exists()
    with pytest.raises(ValueError, match="offline_memory_limit"):
        FeaturesConfig(offline_memory_limit="lots")
