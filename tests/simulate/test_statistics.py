"""Statistical sanity of the simulated logs: the biases and signals downstream steps rely on.

Measured on `stats_run` (tiny corpus, 3000 requests). Thresholds leave wide margins around what the default
knobs produce, but each fails if the mechanism behind it is switched off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.simulate import build_world


def _gini(counts: np.ndarray) -> float:
    c = np.sort(counts.astype(np.float64))
    n = len(c)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(c) / (n * c.sum()))


def _exposed(run) -> pd.DataFrame:
    imp, req = run.table("impressions"), run.table("search_requests")
    return imp[imp["stage"] == "exposed"].merge(req[["request_id", "query", "user_id"]], on="request_id")


def test_exposure_concentrates_on_popular_docs(stats_run):
    """Top 10% of docs by latent popularity get > 30% of exposures (10% if exposure ignored popularity)."""
    world = build_world(stats_run.cfg)
    n0 = world.sizes.n_docs
    top = np.argsort(-world.docs.popularity[:n0])[: n0 // 10] + 1
    ex = _exposed(stats_run)
    assert ex["doc_id"].isin(top).mean() > 0.30
    counts = ex["doc_id"].value_counts().reindex(np.arange(1, n0 + 1), fill_value=0).to_numpy()
    assert _gini(counts) > 0.55


def test_ctr_falls_with_position(stats_run):
    ctr = _exposed(stats_run).groupby("position")["clicked"].mean()
    assert list(ctr.index) == list(range(1, stats_run.cfg.n_exposed + 1))
    assert ctr[1] > ctr[2] > ctr[4] > ctr[10]
    assert ctr.loc[1:3].mean() > 2.5 * ctr.loc[8:10].mean()


def test_clicked_docs_are_more_relevant_than_skipped_ones(stats_run):
    """Mean ground-truth label (complete labels; unlisted = 0) of clicked vs exposed-not-clicked docs."""
    ex = _exposed(stats_run)
    labels = stats_run.table("relevance_labels")
    ex = ex[ex["query"].isin(set(labels["query"]))]
    lab = labels.drop_duplicates(["query", "doc_id"])[["query", "doc_id", "label"]]
    ex = ex.merge(lab, on=["query", "doc_id"], how="left").fillna({"label": 0})
    clicked, skipped = ex.loc[ex["clicked"], "label"], ex.loc[~ex["clicked"], "label"]
    assert len(clicked) > 200 and len(skipped) > 200
    assert clicked.mean() > skipped.mean() + 0.1
    # irrelevant docs are exposed (recall by popularity and QU errors) but rarely clicked
    assert (ex["label"] == 0).mean() > 0.02
    assert ex.loc[ex["label"] == 0, "clicked"].mean() < ex.loc[ex["label"] == 2, "clicked"].mean()


def test_exposure_covers_a_small_share_of_relevant_docs(stats_run):
    """Per labelled query: relevant docs (label >= 1) ever exposed for it / all relevant docs; mean < 0.45."""
    ex = _exposed(stats_run)
    labels = stats_run.table("relevance_labels")
    relevant = labels[labels["label"] >= 1].groupby("query")["doc_id"].apply(set)
    shown = ex.groupby("query")["doc_id"].apply(set)
    cover = [len(docs & shown.get(q, set())) / len(docs) for q, docs in relevant.items()]
    assert len(cover) > 50
    assert np.mean(cover) < 0.45
    assert np.median([len(d) for d in relevant]) > stats_run.cfg.n_exposed


def test_ambiguous_queries_follow_the_users_preference(stats_run):
    """Clicks on ambiguous queries land on the reading whose l1 the user prefers far above chance (0.5)."""
    world = build_world(stats_run.cfg)
    terms = world.tax.vocab.terms
    l1_index = {terms[t]: i for i, t in enumerate(world.tax.l1_term)}
    intents = pd.read_parquet(stats_run.root / "_meta" / "query_intents.parquet")
    readings = intents[intents["ambiguous"]].groupby("query")["category_l1"].apply(list)
    ex = _exposed(stats_run)
    ex = ex[ex["query"].isin(readings.index) & ex["clicked"] & ex["user_id"].notna()]
    docs = stats_run.table("docs").drop_duplicates("doc_id", keep="last").set_index("doc_id")["category_l1"]
    theta = world.users.theta
    agree = []
    for q, u, d in zip(ex["query"], ex["user_id"].astype(int), ex["doc_id"], strict=True):
        if u > len(theta):
            continue
        preferred = max(readings[q], key=lambda name: theta[u - 1, l1_index[name]])
        agree.append(docs[d] == preferred)
    assert len(agree) > 100
    assert np.mean(agree) > 0.75


def test_query_understanding_errs_at_the_configured_rate(stats_run):
    intents = pd.read_parquet(stats_run.root / "_meta" / "query_intents.parquet")
    truth = intents[~intents["ambiguous"]].set_index("query")["category_leaf"]
    req = stats_run.table("search_requests")
    req = req[req["query"].isin(truth.index) & req["query_category_leaf"].notna()].drop_duplicates("query")
    wrong = (req["query_category_leaf"] != req["query"].map(truth)).mean()
    rate = stats_run.cfg.qu_error_rate
    assert 0.5 * rate < wrong < 2.0 * rate


def test_head_queries_repeat_and_tail_queries_are_many(tiny_run):
    counts = tiny_run.table("search_requests")["query"].value_counts()
    assert counts.iloc[0] >= 10 * counts.median()
    assert (counts == 1).sum() > 0.15 * len(counts)
