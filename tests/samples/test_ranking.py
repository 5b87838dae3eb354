"""Ranking samples: grouped by request, every source present, labels and strata right."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.contract import load
from ebr.samples.ranking import SOURCES


def test_every_source_and_request_grouping(tables, built):
    rank = tables["ranking"]
    assert set(rank["source"]) == set(SOURCES)
    # each request's rows are one contiguous block
    starts = rank["request_id"].ne(rank["request_id"].shift()).sum()
    assert starts == rank["request_id"].nunique()
    per_req = rank.groupby("request_id")["source"].agg(set)
    assert per_req.map(lambda s: "exposed_clicked" in s).all()
    assert per_req.map(len).min() >= 3
    assert built[1]["ranking_sources"] == {s: int((rank["source"] == s).sum()) for s in SOURCES}
    # request-level fields are constant inside a request
    assert (rank.groupby("request_id")[["query", "event_timestamp"]].nunique() == 1).all().all()


def test_labels_follow_the_logs(tables, tiny_data, built):
    rank = tables["ranking"]
    assert ((rank["label_click"] == 1) == (rank["source"] == "exposed_clicked")).all()
    for flag in ("label_like", "label_favorite", "label_comment"):
        assert (rank[flag] <= rank["label_click"]).all()
    imps = load(tiny_data, "impressions", built[1]["train_days"])
    logged = rank[~rank["source"].str.startswith("random")].merge(
        imps, on=["request_id", "doc_id"], validate="one_to_one"
    )
    assert (logged["label_like"].astype(bool) == logged["liked"]).all()
    want_stage = logged["source"].map({"exposed_clicked": "exposed", "exposed_unclicked": "exposed",
                                      "ranked_cut": "ranked", "preranked_cut": "preranked"})
    assert (logged["stage_x"] == want_stage).all() and (logged["stage_y"] == want_stage).all()
    assert logged["position_x"].isna().eq(logged["source"].isin(["ranked_cut", "preranked_cut"])).all()


def test_random_negatives_are_stratified_and_unlogged(tables, tiny_data, built):
    rank, neg = tables["ranking"], tables["negatives"]
    rnd = rank[rank["source"].str.startswith("random")]
    imps = load(tiny_data, "impressions", built[1]["train_days"])
    clash = rnd.merge(imps[["request_id", "doc_id"]], on=["request_id", "doc_id"])
    assert clash.empty
    assert not rnd.duplicated(["request_id", "doc_id"]).any()
    cat = rnd["doc_id"].map(neg.set_index("doc_id")["category_leaf"])
    same = (rnd["source"] == "random_same_category").to_numpy()
    assert (cat[same].to_numpy() == rnd.loc[same, "query_category_leaf"].to_numpy()).all()
    other = ~same & rnd["query_category_leaf"].notna().to_numpy()
    assert (cat[other].to_numpy() != rnd.loc[other, "query_category_leaf"].to_numpy()).all()
    cfg = built[1]["config"]["ranking"]
    per = rnd.groupby(["request_id", "source"]).size()
    assert per.max() <= cfg["random_same_category"] + cfg["random_other_category"]
    assert rnd["stage"].isna().all() and np.isnan(rnd["rank_score"].to_numpy(dtype=float)).all()


def test_ranking_rows_are_capped_by_whole_requests_deterministically(tables, tiny_data, built, full_cfg):
    from ebr.samples.build import _rng
    from ebr.samples.ranking import ranking_samples
    from ebr.samples.window import attach_author, load_window

    full = tables["ranking"]
    day = built[1]["day"]
    win = load_window(tiny_data, day, full_cfg.days_back)
    imps = attach_author(win.impressions, win.docs)
    cap = len(full) // 3
    cfg = full_cfg.model_copy(update={"ranking": full_cfg.ranking.model_copy(update={"max_rows": cap})})
    runs = [ranking_samples(imps, tables["negatives"], cfg.ranking, _rng(cfg, day, "ranking")) for _ in range(2)]
    capped = runs[0]
    assert 0.5 * cap < len(capped) <= cap and capped.equals(runs[1])
    kept_ids = capped["request_id"].unique()
    assert 0 < len(kept_ids) < full["request_id"].nunique()
    # whole requests: every kept request has all of its logged rows of the uncapped table, and nothing else
    logged = ~full["source"].str.startswith("random")
    kept = full[logged & full["request_id"].isin(kept_ids)].reset_index(drop=True)
    mine = capped[~capped["source"].str.startswith("random")].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[capped.columns], mine, check_dtype=False)
    # requests are chosen before rows are built, so the random negatives are drawn for the kept requests only;
    # each still gets at most its wanted number and never a doc it logged
    rnd = capped[capped["source"].str.startswith("random")]
    want = cfg.ranking.random_same_category + cfg.ranking.random_other_category
    assert rnd["request_id"].isin(kept_ids).all() and rnd.groupby("request_id").size().max() <= want
    seen = imps[["request_id", "doc_id"]].drop_duplicates()
    assert rnd.merge(seen, on=["request_id", "doc_id"]).empty
    # the default bound keeps every row of a small day (1.4M rows), so the tiny day is uncapped
    assert full_cfg.ranking.max_rows is not None and full_cfg.ranking.max_rows >= 1_400_000 > len(full)
