"""The evaluation set: built from the raw tables of the tiny dataset, label-day choice, parquet round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.contract import load
from ebr.evaluate import EvalSet, build_evalset, load_corpus
from ebr.judgements.evalset import label_sets


@pytest.fixture(scope="module")
def evalset(tiny_data, tiny_days) -> EvalSet:
    day = tiny_days[-1]
    return build_evalset(tiny_data, day, corpus=load_corpus(tiny_data, day))


def test_evalset_has_every_request_with_its_clicks(evalset, tiny_data, tiny_days) -> None:
    day = tiny_days[-1]
    requests = load(tiny_data, "search_requests", [day])
    assert sorted(evalset.frame["request_id"]) == sorted(requests["request_id"])
    imp = load(tiny_data, "impressions", [day])
    expected = imp[imp["clicked"]].groupby("request_id")["doc_id"].apply(lambda s: sorted(set(s)))
    got = evalset.frame.set_index("request_id")["clicked_doc_ids"]
    assert (got.map(len) > 0).sum() == len(expected) > 0
    for rid, docs in expected.items():
        assert list(got[rid]) == docs


def test_evalset_has_complete_labels_for_some_requests(evalset, tiny_data, tiny_days) -> None:
    f = evalset.frame
    labeled = f[f["labels_complete"]]
    assert len(labeled) > 0
    labels = load(tiny_data, "relevance_labels")
    row = labeled.iloc[0]
    src = labels[(labels["query"] == row["query"]) & (labels["ds"] == row["label_ds"]) & (labels["label"] >= 1)]
    assert sorted(src["doc_id"]) == list(row["label_doc_ids"])
    assert all(v in (1, 2) for vals in labeled["label_values"] for v in vals)
    j = evalset.labels()
    assert j.judged.sum() == len(labeled)
    same_day = build_evalset(tiny_data, tiny_days[-1], label_days="same_day")
    assert set(same_day.frame["label_ds"].dropna()) == {tiny_days[-1]}
    assert same_day.frame["labels_complete"].sum() <= f["labels_complete"].sum()


def test_label_days_policies_on_a_middle_day(tiny_data, tiny_days) -> None:
    day = tiny_days[2]
    up_to = build_evalset(tiny_data, day, label_days="up_to_day").frame
    any_day = build_evalset(tiny_data, day, label_days="any_day").frame
    assert up_to["label_ds"].dropna().le(day).all()
    assert (any_day["request_id"] == up_to["request_id"]).all()
    assert not (up_to["labels_complete"] & ~any_day["labels_complete"]).any()
    # some queries of the day are labelled only on later days: any_day uses them, up_to_day does not
    only_later = any_day["labels_complete"] & ~up_to["labels_complete"]
    assert only_later.any() and any_day.loc[only_later, "label_ds"].gt(day).all()
    with pytest.raises(ValueError, match="label_days must be one of"):
        build_evalset(tiny_data, day, label_days="nearest")  # type: ignore[arg-type]


def test_clicks_of_a_request_logged_the_next_day_count(tiny_data, tiny_days) -> None:
    day, nxt = tiny_days[-2], tiny_days[-1]
    es = build_evalset(tiny_data, day)
    imp = load(tiny_data, "impressions", [day, nxt])
    imp = imp[imp["clicked"] & imp["request_id"].isin(es.frame["request_id"])]
    n_clicks = es.frame["clicked_doc_ids"].map(len).sum()
    assert n_clicks == len(imp.drop_duplicates(["request_id", "doc_id"])) > 0


def test_evalset_parquet_round_trip(evalset, tmp_path) -> None:
    path = evalset.save(tmp_path / "sub" / "evalset.parquet")
    back = EvalSet.load(path)
    assert back.day == evalset.day
    assert back.n_requests == evalset.n_requests
    pd.testing.assert_series_equal(back.frame["request_id"], evalset.frame["request_id"])
    assert back.frame["clicked_doc_ids"].map(list).tolist() == evalset.frame["clicked_doc_ids"].map(list).tolist()
    a, b = back.labels(), evalset.labels()
    np.testing.assert_array_equal(a.docs, b.docs)
    np.testing.assert_array_equal(a.grades, b.grades)
    assert [p.name for p in path.parent.iterdir()] == ["evalset.parquet"]  # no temp file left behind
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not an evaluation set"):
        EvalSet.load(tmp_path / "other.parquet")


def test_label_sets_choose_the_nearest_complete_day() -> None:
    rows = [
        # q1: complete one day before and one day after D: the earlier wins the tie
        ("q1", 1, 2, True, "2026-03-04"), ("q1", 2, 1, True, "2026-03-06"),
        # q2: complete on D and two days before: D wins; label 0 rows are dropped
        ("q2", 3, 1, True, "2026-03-05"), ("q2", 4, 0, True, "2026-03-05"), ("q2", 5, 2, True, "2026-03-03"),
        # q3: only incomplete labels
        ("q3", 6, 2, False, "2026-03-05"),
        # q4: complete three days before and one day after: after is nearer; doc 99 is not in the corpus
        ("q4", 7, 1, True, "2026-03-02"), ("q4", 8, 2, True, "2026-03-06"), ("q4", 99, 2, True, "2026-03-06"),
        # q5: not a query of the evaluation day
        ("q5", 9, 2, True, "2026-03-05"),
    ]
    labels = pd.DataFrame(rows, columns=["query", "doc_id", "label", "complete", "ds"])
    got = label_sets(labels, "2026-03-05", {"q1", "q2", "q3", "q4"}, known=np.arange(50)).set_index("query")
    assert sorted(got.index) == ["q1", "q2", "q4"]
    assert got.loc["q1", "label_ds"] == "2026-03-04" and got.loc["q1", "label_doc_ids"] == [1]
    assert got.loc["q2", "label_ds"] == "2026-03-05" and got.loc["q2", "label_doc_ids"] == [3]
    assert got.loc["q4", "label_ds"] == "2026-03-06"
    assert got.loc["q4", "label_doc_ids"] == [8] and got.loc["q4", "label_values"] == [2]


def test_build_evalset_rejects_a_missing_day(tiny_data) -> None:
    with pytest.raises(ValueError, match="no search_requests partition for day 1999-01-01"):
        build_evalset(tiny_data, "1999-01-01")


def test_a_bounded_evalset_is_a_stable_uniform_subset_of_the_whole(evalset, tiny_data, tiny_days) -> None:
    from ebr.judgements.evalset import evaluation_requests

    n = len(evalset.frame) // 3
    bounded = build_evalset(tiny_data, tiny_days[-1], max_requests=n).frame
    again = build_evalset(tiny_data, tiny_days[-1], max_requests=n).frame
    assert len(bounded) == n and bounded.equals(again)
    # the kept requests' rows are exactly the whole table's rows, in the same order
    whole = evalset.frame[evalset.frame["request_id"].isin(bounded["request_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(bounded, whole)
    # uniform, not the first requests of the day; a bound above the day keeps everything
    assert not bounded["request_id"].equals(evalset.frame["request_id"].head(n).reset_index(drop=True))
    assert build_evalset(tiny_data, tiny_days[-1], max_requests=len(evalset.frame)).frame.equals(evalset.frame)
    with pytest.raises(ValueError, match="max_requests"):
        evaluation_requests(evalset.frame["request_id"], 0)
