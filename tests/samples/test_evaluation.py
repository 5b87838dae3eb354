"""The evaluation-day table: clicks and labels of day D's requests."""

from __future__ import annotations

import pytest

from ebr.contract import load
from ebr.samples import eval_requests


def test_eval_requests_match_the_logs(tiny_data, eval_day):
    ev = eval_requests(tiny_data, eval_day)
    req = load(tiny_data, "search_requests", [eval_day])
    assert sorted(ev["request_id"]) == sorted(req["request_id"])
    imps = load(tiny_data, "impressions", [eval_day])
    clicks = imps[imps["clicked"]].groupby("request_id")["doc_id"].agg(set)
    got = ev.set_index("request_id")["clicked_doc_ids"].map(set)
    assert (got[clicks.index] == clicks).all()
    assert got.drop(clicks.index).map(len).eq(0).all()
    exposed = ev["exposed_doc_ids"].map(set)
    assert all(c <= e for c, e in zip(ev["clicked_doc_ids"].map(set), exposed, strict=True))


def test_eval_labels(tiny_data, eval_day):
    ev = eval_requests(tiny_data, eval_day)
    labels = load(tiny_data, "relevance_labels")
    labels = labels[labels["ds"] <= eval_day]
    complete = ev[ev["labels_complete"]]
    assert len(complete) > 0
    for _, row in complete.head(20).iterrows():
        lab = labels[labels["query"] == row["query"]]
        lab = lab[lab["ds"] == lab["ds"].max()]
        want = set(lab.loc[lab["label"] >= 1, "doc_id"])
        assert set(row["relevant_doc_ids"]) == want
        assert all(v >= 1 for v in row["relevant_labels"])
    partial = ev[~ev["labels_complete"]]
    assert partial["relevant_doc_ids"].isna().all()


def test_eval_bad_day(tiny_data):
    with pytest.raises(ValueError, match="day 2031-01-01 has no partition"):
        eval_requests(tiny_data, "2031-01-01")
