"""Ranking rows: every feature comes from the feature store, point in time at the request; pairs line up."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ebr.contract import load
from ebr.features import FeaturesConfig, historical_features, open_store
from ebr.judgements.evalset import build_evalset
from ebr.models.rankers.evaluation import judgements
from ebr.models.rankers.rows import (
    LABEL_COLUMNS,
    RANKING_SERVICE,
    load_corpus_docs,
    load_eval_rows,
    load_training_rows,
    rows_from_joined,
)


def _pair_frame(rows) -> pd.DataFrame:
    """One row per pair: its request's columns, its doc's columns and the pair's own."""
    p = rows.pairs
    return pd.concat([rows.requests.iloc[p["request_row"]].reset_index(drop=True),
                      rows.docs.iloc[p["doc_row"]].drop(columns=["doc_id"]).reset_index(drop=True),
                      p[["doc_id", "source", *LABEL_COLUMNS]].reset_index(drop=True)], axis=1)


def _first_seen(tiny_data) -> pd.Series:
    return load(tiny_data, "docs").groupby("doc_id")["event_timestamp"].min()


def test_pairs_point_at_their_request_and_doc(rows, samples_dir, tiny_data):
    samples = pd.read_parquet(samples_dir / "ranking.parquet")
    born_later = samples["doc_id"].map(_first_seen(tiny_data)) > samples["event_timestamp"]
    assert born_later.any()  # random negatives published after their request exist in the tiny data
    kept = samples[~born_later]
    assert len(rows.pairs) == len(kept) and rows.n_requests == kept["request_id"].nunique()
    assert f"{int(born_later.sum())} of {len(samples)} pair(s) left out" in " ".join(rows.notes)
    p = rows.pairs
    assert (rows.requests["request_id"].to_numpy()[p["request_row"]] == p["request_id"].to_numpy()).all()
    assert (rows.docs["doc_id"].to_numpy()[p["doc_row"]] == p["doc_id"].to_numpy()).all()
    assert np.all(np.diff(p["request_row"].to_numpy()) >= 0)
    merged = p.merge(kept, on=["request_id", "doc_id"], suffixes=("", "_s"), validate="one_to_one")
    assert len(merged) == len(p)
    for c in LABEL_COLUMNS:
        assert (merged[c] == merged[f"{c}_s"]).all()
    assert rows.feature_source == "feature_store"
    assert len(rows.docs) < len(rows.pairs)  # a doc seen with the same features by many pairs is one row


def test_rows_carry_exactly_the_feature_services_point_in_time_values(rows, features_dir):
    frame = _pair_frame(rows).head(400)
    entity = frame[["user_id", "query", "doc_id", "author_id", "event_timestamp"]]
    want = historical_features(open_store(features_dir), entity, RANKING_SERVICE, on_missing="null")
    def plain(values: list) -> list:
        return [v if isinstance(v, list) else (None if pd.isna(v) else v) for v in values]

    for c in ("user_gender", "recent_queries", "seq_rt_doc_ids", "seq_st_categories", "title", "brand",
              "doc_clicks_30d", "doc_ctr_30d", "doc_age_days", "author_follower_count"):
        assert plain(frame[c].tolist()) == plain(want[c].tolist()), c


def test_sequences_and_recent_queries_hold_only_the_past(rows, tiny_data):
    cfg = FeaturesConfig()
    events = load(tiny_data, "user_events")
    requests = load(tiny_data, "search_requests")
    req = rows.requests[rows.requests["user_id"].notna()]
    checked = 0
    for _, r in req.head(80).iterrows():
        t, day0 = r["event_timestamp"], r["event_timestamp"].floor("D")
        mine = events[events["user_id"] == r["user_id"]]
        rt = mine[(mine["event_timestamp"] >= day0) & (mine["event_timestamp"] < t)]
        st = mine[(mine["event_timestamp"] >= day0 - pd.Timedelta(days=10)) & (mine["event_timestamp"] < day0)]
        assert sorted(r["seq_rt_doc_ids"]) == sorted(rt["doc_id"].tolist()[-cfg.realtime_max_len:])
        assert len(r["seq_st_doc_ids"]) == min(len(st), cfg.short_term_max_len)
        assert set(r["seq_st_doc_ids"]) <= set(st["doc_id"])
        past = requests[(requests["user_id"] == r["user_id"]) & (requests["event_timestamp"] < t)]
        assert set(r["recent_queries"]) <= set(past["query"])
        checked += len(r["seq_rt_doc_ids"]) + len(r["seq_st_doc_ids"])
    assert checked > 0  # the check saw real sequences


def test_doc_statistics_count_only_days_before_the_request_day(rows, tiny_data):
    imps = load(tiny_data, "impressions")
    exposed = imps[imps["stage"] == "exposed"]
    frame = _pair_frame(rows)
    top = frame.sort_values("doc_clicks_30d", ascending=False).drop_duplicates("doc_id").head(5)
    assert top["doc_clicks_30d"].max() > 0
    for _, d in top.iterrows():
        start = d["event_timestamp"].floor("D")
        before = exposed[(exposed["doc_id"] == d["doc_id"]) & (exposed["event_timestamp"] < start)]
        assert d["doc_clicks_30d"] == int(before["clicked"].sum())
        assert d["doc_ctr_30d"] == pytest.approx((before["clicked"].sum() + 20 * 0.05) / (len(before) + 20), rel=1e-5)
    first_day = frame["event_timestamp"].min().floor("D")
    assert (frame.loc[frame["event_timestamp"] < first_day + pd.Timedelta(days=1), "doc_clicks_30d"] == 0).all()


def test_doc_profile_is_the_latest_version_at_the_request(rows, tiny_data):
    docs = load(tiny_data, "docs").sort_values("event_timestamp", kind="mergesort")
    frame = _pair_frame(rows).sample(300, random_state=0)
    for _, r in frame.iterrows():
        versions = docs[(docs["doc_id"] == r["doc_id"]) & (docs["event_timestamp"] <= r["event_timestamp"])]
        assert r["title"] == versions["title"].iloc[-1]
        assert r["author_id"] == versions["author_id"].iloc[-1]


@pytest.fixture(scope="module")
def eval_rows(tiny_data, tiny_days, features_dir):
    return load_eval_rows(tiny_data, tiny_days[-1], features_dir)


def test_eval_rows_are_every_logged_candidate_of_the_day(eval_rows, tiny_data, tiny_days):
    day = tiny_days[-1]
    ev = eval_rows
    imps = load(tiny_data, "impressions", [day])
    reqs = load(tiny_data, "search_requests", [day])
    day_imps = imps[imps["request_id"].isin(reqs["request_id"])]
    assert len(ev.pairs) == len(day_imps)
    assert set(ev.pairs["source"]) == {"preranked", "ranked", "exposed"}
    assert ev.requests["labels_complete"].any()
    assert (ev.pairs.groupby("request_row")["label_click"].sum() > 0).sum() < ev.n_requests  # clickless kept
    assert ev.feature_source == "feature_store" and ev.docs["title"].notna().all()


def test_eval_rows_judge_requests_by_the_evaluation_set(eval_rows, tiny_data, tiny_days):
    evalset = build_evalset(tiny_data, tiny_days[-1]).frame.set_index("request_id")
    req = eval_rows.requests.set_index("request_id")
    assert req.index.isin(evalset.index).all()
    want = evalset.loc[req.index]
    assert (req["labels_complete"] == want["labels_complete"]).all()
    for col in ("label_doc_ids", "label_values", "clicked_doc_ids"):
        assert req[col].map(list).tolist() == want[col].map(list).tolist()
    judged = judgements(eval_rows)
    labeled = req["labels_complete"].to_numpy()
    assert (judged["true"].judged == labeled).all() and labeled.any()
    clicked = eval_rows.pairs[eval_rows.pairs["label_click"] > 0].groupby("request_row")["doc_id"].agg(set)
    assert all(clicked.get(i, set()) == set(c) for i, c in enumerate(req["clicked_doc_ids"]))


def test_eval_rows_need_a_store_that_built_the_day(tiny_data, tiny_days, tmp_path):
    with pytest.raises(ValueError, match=rf"has not built day\(s\) \['{tiny_days[-1]}'\]"):
        load_eval_rows(tiny_data, tiny_days[-1], tmp_path / "features")


def test_corpus_docs_are_the_docs_known_before_the_day(tiny_data, tiny_days, features_dir):
    corpus = load_corpus_docs(tiny_data, tiny_days[-1], features_dir)
    known = load(tiny_data, "docs", tiny_days[:-1])["doc_id"].unique()
    assert sorted(corpus["doc_id"]) == sorted(known)
    assert corpus["title"].notna().all() and (corpus["doc_age_days"] >= 0).all()


def test_joined_features_are_split_into_requests_and_docs(rows):
    some = rows.select_requests(np.arange(3))
    joined = _pair_frame(some)
    joined = pd.concat([joined, joined.iloc[:2]], ignore_index=True)  # two pairs repeated: same doc features
    got = rows_from_joined(joined)
    assert got.feature_source == "joined" and got.n_requests == 3
    assert len(got.docs) == some.pairs["doc_row"].nunique() < len(joined) and len(got.pairs) == len(joined)
    order = np.argsort(pd.Index(got.requests["request_id"]).get_indexer(joined["request_id"]), kind="stable")
    assert got.pairs["doc_id"].tolist() == joined["doc_id"].iloc[order].tolist()
    assert got.docs.iloc[got.pairs["doc_row"]]["title"].tolist() == joined["title"].iloc[order].tolist()
    assert "seq_st_doc_ids" in got.requests.columns and "title" not in got.requests.columns
    with pytest.raises(ValueError, match="lack column"):
        rows_from_joined(joined.drop(columns=["query"]))


@pytest.mark.slow
def test_the_samples_steps_joined_table_gives_the_same_rows(tiny_data, tiny_days, features_dir, rows, tmp_path):
    from ebr.samples import SamplesConfig, build_samples

    out = tmp_path / "samples"
    build_samples(tiny_data, tiny_days[-1], out, SamplesConfig(seed=5, join_features=("ranking",)), features_dir)
    joined = load_training_rows(out, None)
    assert joined.feature_source == "joined" and joined.notes == rows.notes[1:]  # the same pairs left out
    pd.testing.assert_frame_equal(joined.pairs, rows.pairs)
    pd.testing.assert_frame_equal(_pair_frame(joined), _pair_frame(rows))


def test_samples_without_joined_features_need_the_feature_store(samples_dir, tmp_path):
    with pytest.raises(ValueError, match="features_dir"):
        load_training_rows(samples_dir, None)
    copy = tmp_path / "copy"
    shutil.copytree(samples_dir, copy)
    with pytest.raises(ValueError, match=r"has not built day\(s\)"):
        load_training_rows(copy, tmp_path / "no_features")
    (tmp_path / "manifest.json").write_text(json.dumps({"tables": {}}))
    with pytest.raises(ValueError, match="no ranking table"):
        load_training_rows(tmp_path, None)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_training_rows(tmp_path / "nowhere", None)


def test_distinct_rows_number_equal_rows_alike_in_order_of_first_sight():
    from ebr.models.rankers.rows import _distinct_rows

    rng = np.random.default_rng(4)
    n = 200
    frame = pd.DataFrame({"doc_id": rng.integers(0, 6, n), "title": rng.choice(["a", "b", None], n),
                          "score": rng.choice([1.0, np.nan], n),
                          "attributes": [list(rng.choice(["p", "q"], int(rng.integers(0, 3)))) for _ in range(n)]})
    got = _distinct_rows(frame)
    keys = [(d, t, None if s != s else s, tuple(a)) for d, t, s, a in frame.itertuples(index=False)]
    first: dict = {}
    want = [first.setdefault(k, len(first)) for k in keys]
    assert got.tolist() == want and len(first) > 10
