"""Retrieval samples on the tiny dataset: positives, the negative table, hard negatives, no overlap of sources."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ebr.contract import list_days, load
from ebr.samples import PositivesConfig, load_window, request_negatives
from ebr.samples.positives import click_positives
from ebr.samples.window import attach_author, day_start

from .conftest import encode_queries


def _window_impressions(tiny_data, days) -> pd.DataFrame:
    imps = load(tiny_data, "impressions", days)
    req = load(tiny_data, "search_requests", days)[["request_id", "query"]]
    return imps.merge(req, on="request_id")


def test_manifest_matches_files(built, tables, eval_day, tiny_days, full_cfg):
    out, manifest = built
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest
    before = [d for d in tiny_days if d < eval_day][-full_cfg.days_back:]
    assert manifest["train_days"] == before and manifest["day_range"] == [before[0], before[-1]]
    assert manifest["seed"] == full_cfg.seed and manifest["config"] == full_cfg.model_dump(mode="json")
    expected = {"retrieval", "negatives", "hard_negatives", "rewrites", "exposed_unclicked", "ranking"}
    assert set(manifest["tables"]) == expected
    for name, t in manifest["tables"].items():
        assert t["rows"] == len(tables[name]) and t["columns"] == list(tables[name].columns)
    assert not list(out.glob(".*")) and not list(out.parent.glob(".out.tmp-*"))


def test_click_positives_are_sufficiently_exposed_clicks(tables, tiny_data, built, full_cfg):
    manifest = built[1]
    imps = _window_impressions(tiny_data, manifest["train_days"])
    cfg = full_cfg.positives
    dwell_ok = imps["dwell_ms"].isna() | (imps["dwell_ms"] >= cfg.min_dwell_ms)
    want = imps[(imps["stage"] == "exposed") & imps["clicked"] & dwell_ok]
    clicks = tables["retrieval"][tables["retrieval"]["kind"] == "click"]
    assert len(clicks) == len(want) > 0
    got = clicks.merge(want, on=["request_id", "doc_id"], validate="one_to_one")
    expect_w = 1 + cfg.like_weight * got["liked"] + cfg.favorite_weight * got["favorited"] + \
        cfg.comment_weight * got["commented"]
    assert np.allclose(got["weight"], expect_w)
    assert (got["weight"] > 1).any()
    # short-dwell clicks exist in the logs and are left out
    assert (imps["clicked"] & (imps["dwell_ms"] < cfg.min_dwell_ms)).any()
    assert set(tables["retrieval"]["kind"]) == {"click", "hard_positive"}


def test_negative_table_covers_the_corpus_with_exposure_power(tables, tiny_data, eval_day, built, full_cfg):
    neg = tables["negatives"]
    docs = load(tiny_data, "docs", [d for d in list_days(tiny_data, "docs") if d < eval_day])
    assert set(neg["doc_id"]) == set(docs["doc_id"]) and neg["doc_id"].is_unique
    assert math.isclose(neg["prob"].sum(), 1.0, rel_tol=1e-9) and (neg["prob"] > 0).all()
    imps = _window_impressions(tiny_data, built[1]["train_days"])
    counts = imps[imps["stage"] == "exposed"]["doc_id"].value_counts()
    exp = neg["doc_id"].map(counts).fillna(0).to_numpy()
    assert (neg["exposures"].to_numpy() == exp).all()
    s, p = full_cfg.negatives.exposure_smoothing, full_cfg.negatives.exposure_power
    hi = neg.loc[neg["exposures"].idxmax()]
    lo = neg[(neg["exposures"] > 0) & (neg["exposures"] < hi["exposures"])].iloc[0]
    never = neg[neg["exposures"] == 0]
    assert len(never) > 0
    assert math.isclose(hi["prob"] / lo["prob"], ((hi["exposures"] + s) / (lo["exposures"] + s)) ** p, rel_tol=1e-9)
    assert math.isclose(hi["prob"] / never["prob"].iloc[0], ((hi["exposures"] + s) / s) ** p, rel_tol=1e-9)
    assert never["prob"].nunique() == 1


def test_hard_negatives_rank_band_and_ratio(tables, built, prev_index, full_cfg):
    hard, retrieval, manifest = tables["hard_negatives"], tables["retrieval"], built[1]
    quota = retrieval["request_id"].nunique() * full_cfg.hard_negatives.per_request
    assert manifest["hard_negative_quota"] == quota and 0 < len(hard) <= quota
    assert hard.groupby("request_id").size().max() <= full_cfg.hard_negatives.per_request
    assert set(hard["request_id"]) <= set(retrieval["request_id"])
    req = hard.drop_duplicates("request_id")
    _, ids = prev_index.search(encode_queries(req), prev_index.ntotal)
    rank_of = {(r, int(d)): k + 1 for r, row in zip(req["request_id"], ids, strict=True) for k, d in enumerate(row)}
    ranks = np.array([rank_of[(r, d)] for r, d in zip(hard["request_id"], hard["doc_id"], strict=True)])
    band = full_cfg.hard_negatives
    assert ranks.min() >= band.rank_min and ranks.max() <= band.rank_max
    assert (hard["ann_rank"].to_numpy() == ranks).all()


def _keys(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(frame["request_id"], frame["doc_id"].astype(int), strict=True))


def test_no_positive_is_a_negative_of_its_request(tables, full_cfg):
    retrieval = tables["retrieval"]
    pos = _keys(retrieval)
    assert pos.isdisjoint(_keys(tables["hard_negatives"]))
    assert pos.isdisjoint(_keys(tables["exposed_unclicked"]))
    drawn = request_negatives(retrieval, tables["negatives"], 50, np.random.default_rng(0))
    assert len(drawn) == 50 * len(retrieval) and pos.isdisjoint(_keys(drawn))
    rw = tables["rewrites"]
    neg_rw = rw[rw["label"] == 0]
    assert len(neg_rw) > 0
    pos_rw = set(zip(retrieval["request_id"], retrieval["query"], retrieval["doc_id"], strict=True))
    assert pos_rw.isdisjoint(set(zip(neg_rw["request_id"], neg_rw["query"], neg_rw["doc_id"], strict=True)))
    rank = tables["ranking"]
    rank_pos = rank[rank["source"] == "exposed_clicked"]
    rank_neg = rank[rank["source"] != "exposed_clicked"]
    assert _keys(rank_pos).isdisjoint(_keys(rank_neg))
    assert _keys(retrieval[retrieval["kind"] == "click"]).isdisjoint(_keys(rank_neg))


def test_rewrites_on_simulated_dictionary(tables):
    rw, retrieval = tables["rewrites"], tables["retrieval"]
    assert set(rw["rewrite"]) == {"synonym_swap", "drop_non_core", "drop_core"}
    hp = rw[rw["kind"] == "hard_positive"]
    got = retrieval[retrieval["kind"] == "hard_positive"]
    assert len(got) == len(hp) > 0
    keys = ["request_id", "query", "doc_id"]
    assert set(got[keys].itertuples(index=False)) == set(hp[keys].itertuples(index=False))


def test_every_row_is_before_the_day(tables, eval_day):
    cutoff = day_start(eval_day)
    for name, t in tables.items():
        if "event_timestamp" in t.columns:
            assert (t["event_timestamp"] < cutoff).all(), name


def test_exposure_knobs_filter_positives(tiny_data, tiny_days):
    win = load_window(tiny_data, tiny_days[-1], 3)
    imps = attach_author(win.impressions, win.docs)
    base = click_positives(imps, PositivesConfig(min_dwell_ms=0))
    top3 = click_positives(imps, PositivesConfig(min_dwell_ms=0, max_position=3))
    pos_of = imps.set_index(["request_id", "doc_id"])["position"]
    assert 0 < len(top3) < len(base)
    assert pos_of.loc[list(zip(top3["request_id"], top3["doc_id"], strict=True))].max() <= 3
    n_exp = imps[imps["stage"] == "exposed"]["doc_id"].value_counts()
    popular = click_positives(imps, PositivesConfig(min_dwell_ms=0, min_doc_exposures=20))
    assert 0 < len(popular) < len(base) and (popular["doc_id"].map(n_exp) >= 20).all()
    dropped = base[~base["doc_id"].isin(popular["doc_id"])]
    assert (dropped["doc_id"].map(n_exp) < 20).all()
    no_missing = click_positives(imps, PositivesConfig(min_dwell_ms=0, keep_missing_dwell=False))
    dwell = imps.set_index(["request_id", "doc_id"])["dwell_ms"]
    assert dwell.loc[list(zip(no_missing["request_id"], no_missing["doc_id"], strict=True))].notna().all()


def test_position_weight_is_a_capped_inverse_propensity(tiny_data, tiny_days):
    win = load_window(tiny_data, tiny_days[-1], 3)
    imps = attach_author(win.impressions, win.docs)
    flat = PositivesConfig(min_dwell_ms=0, like_weight=0, favorite_weight=0, comment_weight=0)
    plain = click_positives(imps, flat)
    weighted = click_positives(imps, flat.model_copy(update={"position_weight_power": 1.5, "max_position_weight": 4}))
    assert (plain["weight"] == 1).all()
    assert plain[["request_id", "doc_id"]].equals(weighted[["request_id", "doc_id"]])
    pos = imps.set_index(["request_id", "doc_id"])["position"]
    shown = pos.loc[list(zip(weighted["request_id"], weighted["doc_id"], strict=True))].to_numpy(dtype="float64")
    assert len(np.unique(shown)) > 2
    np.testing.assert_allclose(weighted["weight"], np.minimum(shown ** 1.5, 4.0), rtol=1e-6)
    assert weighted["weight"].max() == 4.0 and weighted["weight"].min() == 1.0
    engaged = click_positives(imps, PositivesConfig(min_dwell_ms=0, position_weight_power=1.0))
    base = click_positives(imps, PositivesConfig(min_dwell_ms=0))
    np.testing.assert_allclose(engaged["weight"], base["weight"] * np.minimum(shown, 10.0), rtol=1e-6)


def test_relevance_filter_drops_clicks_off_the_understood_category_or_brand(tiny_data, tiny_days):
    win = load_window(tiny_data, tiny_days[-1], 3)
    imps = attach_author(win.impressions, win.docs)
    base = click_positives(imps, PositivesConfig(min_dwell_ms=0), win.docs)
    kept = click_positives(imps, PositivesConfig(min_dwell_ms=0, relevance_filter=True), win.docs)
    assert base.attrs["relevance_filtered"] == 0
    dropped = base.merge(kept[["request_id", "doc_id"]], on=["request_id", "doc_id"], how="left", indicator=True)
    dropped = dropped[dropped["_merge"] == "left_only"]
    assert 0 < len(dropped) == kept.attrs["relevance_filtered"] == len(base) - len(kept)
    req = win.requests.set_index("request_id")[["query_category_leaf", "query_brand"]]
    doc = win.docs.set_index("doc_id")[["category_leaf", "brand"]]

    def off(frame: pd.DataFrame) -> np.ndarray:  # the rule written out: leaf category differs, or brand missing
        q = req.loc[frame["request_id"]].to_numpy(dtype=object)
        d = doc.loc[frame["doc_id"]].to_numpy(dtype=object)
        cat = pd.notna(q[:, 0]) & (q[:, 0] != d[:, 0])
        brand = pd.notna(q[:, 1]) & (pd.isna(d[:, 1]) | (q[:, 1] != d[:, 1]))
        return cat | brand

    assert off(dropped).all() and not off(kept).any()
    with pytest.raises(ValueError, match="relevance_filter needs the docs table"):
        click_positives(imps, PositivesConfig(relevance_filter=True))
    with pytest.raises(ValueError, match=r"doc_id not in the docs table.*"):
        click_positives(imps, PositivesConfig(min_dwell_ms=0, relevance_filter=True),
                       win.docs[win.docs["doc_id"] != base["doc_id"].iloc[0]])
