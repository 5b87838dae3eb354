"""Ranking rows: features from the contract are point-in-time (nothing at or after the request), pairs line up."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ebr.contract import load
from ebr.judgements.evalset import build_evalset
from ebr.models.rankers.evaluation import judgements
from ebr.models.rankers.rows import (
    LABEL_COLUMNS,
    load_corpus_docs,
    load_eval_rows,
    load_training_rows,
    rows_from_joined,
)
from tests.rankers.conftest import TINY_FEATURIZER


def test_pairs_point_at_their_request_and_doc(rows, samples_dir):
    samples = pd.read_parquet(samples_dir / "ranking.parquet")
    assert len(rows.pairs) == len(samples) and rows.n_requests == samples["request_id"].nunique()
    p = rows.pairs
    assert (rows.requests["request_id"].to_numpy()[p["request_row"]] == p["request_id"].to_numpy()).all()
    assert (rows.docs["doc_id"].to_numpy()[p["doc_row"]] == p["doc_id"].to_numpy()).all()
    assert np.all(np.diff(p["request_row"].to_numpy()) >= 0)
    merged = p.merge(samples, on=["request_id", "doc_id"], suffixes=("", "_s"), validate="one_to_one")
    for c in LABEL_COLUMNS:
        assert (merged[c] == merged[f"{c}_s"]).all()
    assert rows.feature_source == "contract"


def test_sequences_and_recent_queries_hold_only_the_past(rows, tiny_data):
    events = load(tiny_data, "user_events")
    requests = load(tiny_data, "search_requests")
    req = rows.requests[rows.requests["user_id"].notna()]
    checked = 0
    for _, r in req.head(80).iterrows():
        t, day0 = r["event_timestamp"], r["event_timestamp"].floor("D")
        mine = events[events["user_id"] == r["user_id"]]
        rt = mine[(mine["event_timestamp"] >= day0) & (mine["event_timestamp"] < t)]
        st = mine[(mine["event_timestamp"] >= day0 - pd.Timedelta(days=10)) & (mine["event_timestamp"] < day0)]
        assert sorted(r["seq_rt_doc_ids"]) == sorted(rt["doc_id"].tolist()[-TINY_FEATURIZER.max_len.seq_rt:])
        assert len(r["seq_st_doc_ids"]) == min(len(st), TINY_FEATURIZER.max_len.seq_st)
        assert set(r["seq_st_doc_ids"]) <= set(st["doc_id"])
        past = requests[(requests["user_id"] == r["user_id"]) & (requests["event_timestamp"] < t)]
        assert set(r["recent_queries"]) <= set(past["query"])
        checked += len(r["seq_rt_doc_ids"]) + len(r["seq_st_doc_ids"])
    assert checked > 0  # the check saw real sequences


def test_doc_statistics_count_only_days_before_the_request_day(rows, tiny_data):
    imps = load(tiny_data, "impressions")
    exposed = imps[imps["stage"] == "exposed"]
    docs = rows.docs.sort_values("doc_clicks_30d", ascending=False).head(5)
    assert docs["doc_clicks_30d"].max() > 0
    for _, d in docs.iterrows():
        start = pd.Timestamp(d["day"], tz="UTC")
        before = exposed[(exposed["doc_id"] == d["doc_id"]) & (exposed["event_timestamp"] < start)]
        assert d["doc_clicks_30d"] == int(before["clicked"].sum())
        assert d["doc_ctr_30d"] == pytest.approx((before["clicked"].sum() + 20 * 0.05) / (len(before) + 20))
    first_day = rows.docs["day"].min()
    assert (rows.docs.loc[rows.docs["day"] == first_day, "doc_clicks_30d"] == 0).all()


@pytest.fixture(scope="module")
def eval_rows(tiny_data, tiny_days):
    return load_eval_rows(tiny_data, tiny_days[-1], TINY_FEATURIZER.max_len)


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


def test_corpus_docs_are_the_docs_known_before_the_day(tiny_data, tiny_days):
    corpus = load_corpus_docs(tiny_data, tiny_days[-1])
    known = load(tiny_data, "docs", tiny_days[:-1])["doc_id"].unique()
    assert sorted(corpus["doc_id"]) == sorted(known)
    assert corpus["title"].notna().all() and (corpus["doc_age_days"] >= 0).all()


def test_joined_features_are_split_into_requests_and_docs(rows):
    p = rows.pairs.head(30)
    joined = pd.concat([rows.requests.iloc[p["request_row"]].reset_index(drop=True),
                        rows.docs.iloc[p["doc_row"]].drop(columns=["doc_id"]).reset_index(drop=True),
                        p[["doc_id", "source", *LABEL_COLUMNS]].reset_index(drop=True)], axis=1)
    got = rows_from_joined(joined)
    assert got.feature_source == "joined" and got.n_requests == p["request_row"].nunique()
    assert len(got.docs) == 30 and got.docs["title"].tolist() == joined["title"].tolist()
    assert "seq_st_doc_ids" in got.requests.columns and "title" not in got.requests.columns


def test_samples_without_joined_features_need_the_data_root(samples_dir, tmp_path):
    with pytest.raises(ValueError, match="data_root"):
        load_training_rows(samples_dir, None, TINY_FEATURIZER.max_len)
    (tmp_path / "manifest.json").write_text(json.dumps({"tables": {}}))
    with pytest.raises(ValueError, match="no ranking table"):
        load_training_rows(tmp_path, None, TINY_FEATURIZER.max_len)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_training_rows(tmp_path / "nowhere", None, TINY_FEATURIZER.max_len)
