"""Samples of the fine ranker and the coarse ranker, grouped by request (seed 002, "样本构建方法").

Per request: exposed clicked docs (positives, with like/favorite/comment labels), exposed unclicked docs, docs
the fine ranker (`ranked`) or the coarse ranker (`preranked`) cut before exposure, and random negatives of the
whole corpus stratified by category - some from the query's predicted leaf category, some from the others -
drawn by exposure frequency (the negative table's `prob`). Labels are the raw logged flags; the fine ranker
(teacher) scores these rows for the coarse ranker's distillation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.judgements.evalset import REQUEST_COLUMNS
from ebr.samples.config import RankingConfig
from ebr.samples.tables import columns

SOURCES = (
    "exposed_clicked", "exposed_unclicked", "ranked_cut", "preranked_cut", "random_same_category",
    "random_other_category",
)
RANKING_COLUMNS = columns("ranking")


def _logged_mask(imps: pd.DataFrame, cfg: RankingConfig) -> pd.Series:
    """Impressions that become ranking rows: every exposed doc, and the cut stages config includes."""
    stage = imps["stage"]
    keep = (stage == "exposed") | ((stage == "ranked") & cfg.include_ranked)
    return keep | ((stage == "preranked") & cfg.include_preranked)


def _logged_rows(imps: pd.DataFrame, cfg: RankingConfig) -> pd.DataFrame:
    stage = imps["stage"]
    clicked = imps["clicked"].astype(bool)
    source = pd.Series(np.where(clicked, "exposed_clicked", "exposed_unclicked"), index=imps.index, dtype="object")
    source[stage == "ranked"] = "ranked_cut"
    source[stage == "preranked"] = "preranked_cut"
    keep = _logged_mask(imps, cfg)
    rows = imps.loc[keep].copy()
    rows["source"] = source[keep]
    rows["label_click"] = rows["clicked"].astype("int8")
    rows["label_like"] = rows["liked"].astype("int8")
    rows["label_favorite"] = rows["favorited"].astype("int8")
    rows["label_comment"] = rows["commented"].astype("int8")
    return rows


def _stratum_draws(
    reqs: pd.DataFrame, corpus: pd.DataFrame, n: int, oversample: int, rng: np.random.Generator
) -> pd.DataFrame:
    """`n * oversample` draws per request from `corpus` by its prob (with replacement)."""
    if reqs.empty or corpus.empty or n == 0:
        return pd.DataFrame({"request_id": pd.Series([], dtype="object"), "doc_id": pd.Series([], dtype="int64")})
    p = corpus["prob"].to_numpy(dtype="float64")
    picks = rng.choice(len(p), size=(len(reqs), n * oversample), p=p / p.sum())
    return pd.DataFrame({
        "request_id": np.repeat(reqs["request_id"].to_numpy(), n * oversample),
        "doc_id": corpus["doc_id"].to_numpy()[picks.ravel()],
    })


def random_negatives(
    requests: pd.DataFrame, imps: pd.DataFrame, corpus: pd.DataFrame, cfg: RankingConfig, rng: np.random.Generator
) -> pd.DataFrame:
    """Stratified random negatives per request: never a doc the request logged at any stage."""
    reqs = requests.sort_values("request_id", kind="mergesort").reset_index(drop=True)
    has_cat = reqs["query_category_leaf"].notna()
    parts = []
    same = reqs[has_cat]
    for cat, group in same.groupby("query_category_leaf", sort=True):
        d = _stratum_draws(group, corpus[corpus["category_leaf"] == cat], cfg.random_same_category,
                           cfg.oversample, rng)
        parts.append(d.assign(source="random_same_category", want=cfg.random_same_category))
    other = _stratum_draws(same, corpus, cfg.random_other_category, cfg.oversample * 2, rng)
    cat_of = dict(zip(same["request_id"], same["query_category_leaf"], strict=True))
    doc_cat = corpus.set_index("doc_id")["category_leaf"]
    other = other[other["doc_id"].map(doc_cat).to_numpy() != other["request_id"].map(cat_of).to_numpy()]
    parts.append(other.assign(source="random_other_category", want=cfg.random_other_category))
    n_free = cfg.random_same_category + cfg.random_other_category
    free = _stratum_draws(reqs[~has_cat], corpus, n_free, cfg.oversample, rng)
    parts.append(free.assign(source="random_other_category", want=n_free))
    draws = pd.concat(parts, ignore_index=True)
    logged = imps[["request_id", "doc_id"]].drop_duplicates()
    m = draws.merge(logged, on=["request_id", "doc_id"], how="left", indicator=True)
    m = m[m["_merge"] == "left_only"].drop(columns="_merge")
    m = m.drop_duplicates(["request_id", "doc_id"])
    m = m[m.groupby(["request_id", "source"]).cumcount() < m["want"]].drop(columns="want")
    out = m.merge(reqs[REQUEST_COLUMNS], on="request_id", how="left", validate="many_to_one")
    out = out.merge(corpus[["doc_id", "author_id"]], on="doc_id", how="left", validate="many_to_one")
    for c in ("label_click", "label_like", "label_favorite", "label_comment"):
        out[c] = np.int8(0)
    out["stage"] = None
    return out


def requests_within(counts: pd.Series, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Whole requests (`counts`: rows per request_id), in the order of a hash keyed by one draw of `rng`, while
    their rows fit in `max_rows`."""
    key = "".join(f"{b:02x}" for b in rng.bytes(8))  # 16 characters, as pandas' hash key wants
    order = np.argsort(pd.util.hash_array(counts.index.to_numpy(dtype=object), hash_key=key), kind="stable")
    within = np.cumsum(counts.to_numpy()[order]) <= max_rows
    return counts.index.to_numpy()[order][within]


def ranking_samples(
    imps: pd.DataFrame, corpus: pd.DataFrame, cfg: RankingConfig, rng: np.random.Generator
) -> pd.DataFrame:
    """Every source of ranking rows for the window's requests, sorted so each request's rows are contiguous.

    With `cfg.max_rows`, whole requests are chosen before any row is built, by their most rows (logged rows +
    every wanted random negative), so the table never passes the bound and memory follows the bound, not the
    window (a `large` window's clicked requests would give tens of millions of rows)."""
    rid = imps["request_id"]  # masks over the window, one copy of the kept requests' impressions at the end
    kept = rid.isin(rid[imps["clicked"].astype(bool)].unique()) if cfg.require_click else None
    if cfg.max_rows is not None:
        logged = _logged_mask(imps, cfg) if kept is None else _logged_mask(imps, cfg) & kept
        most = rid[logged].value_counts(sort=False)
        most = most.reindex((rid if kept is None else rid[kept]).unique(), fill_value=0)
        most += cfg.random_same_category + cfg.random_other_category
        if most.sum() > cfg.max_rows:
            kept = rid.isin(requests_within(most, cfg.max_rows, rng))
    if kept is not None:
        imps = imps[kept]
    logged = _logged_rows(imps, cfg)
    requests = imps[REQUEST_COLUMNS].drop_duplicates("request_id")
    rand = random_negatives(requests, imps, corpus, cfg, rng)
    out = pd.concat([logged, rand], ignore_index=True)
    out["position"] = out["position"].astype("Int32")
    out["dwell_ms"] = out["dwell_ms"].astype("Int32")
    out["rank_score"] = out["rank_score"].astype("float32")
    out["author_id"] = out["author_id"].astype("int64")
    out["order"] = out["source"].map({s: i for i, s in enumerate(SOURCES)})
    out = out.sort_values(["event_timestamp", "request_id", "order", "position", "doc_id"], kind="mergesort")
    return out[RANKING_COLUMNS].reset_index(drop=True)
