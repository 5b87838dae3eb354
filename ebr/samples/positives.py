"""Retrieval positives: clicks on sufficiently exposed docs, weighted by deeper engagement (seeds 000, 002, 004)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.judgements.relevance import understanding_mismatch
from ebr.samples.config import PositivesConfig
from ebr.samples.tables import columns

POSITIVE_COLUMNS = columns("retrieval")


def sufficient_click_mask(imps: pd.DataFrame, cfg: PositivesConfig) -> np.ndarray:
    """Rows of `imps` that are positives: exposed, clicked, within the shown slots, long enough a dwell, on a doc
    exposed at least `min_doc_exposures` times in the window."""
    exposed = (imps["stage"] == "exposed").to_numpy()
    mask = exposed & imps["clicked"].to_numpy(dtype=bool)
    if cfg.max_position is not None:
        pos = imps["position"].to_numpy(dtype="float64", na_value=np.inf)
        mask &= pos <= cfg.max_position
    dwell = imps["dwell_ms"].to_numpy(dtype="float64", na_value=np.nan)
    has = ~np.isnan(dwell)
    ok = np.where(has, dwell >= cfg.min_dwell_ms, cfg.keep_missing_dwell)
    mask &= ok
    if cfg.min_doc_exposures > 1:
        counts = imps.loc[exposed, "doc_id"].value_counts()
        n = imps["doc_id"].map(counts).fillna(0).to_numpy()
        mask &= n >= cfg.min_doc_exposures
    return mask


def positive_weight(rows: pd.DataFrame, cfg: PositivesConfig) -> np.ndarray:
    """(1 + like_weight*liked + favorite_weight*favorited + comment_weight*commented) times the position weight."""
    w = np.ones(len(rows), dtype="float64")
    w += cfg.like_weight * rows["liked"].to_numpy(dtype=bool)
    w += cfg.favorite_weight * rows["favorited"].to_numpy(dtype=bool)
    w += cfg.comment_weight * rows["commented"].to_numpy(dtype=bool)
    return (w * position_weight(rows["position"].to_numpy(dtype="float64"), cfg)).astype("float32")


def position_weight(position: np.ndarray, cfg: PositivesConfig) -> np.ndarray:
    """Inverse examination propensity of a click at a 1-based `position`: min(position ** power, cap); all ones
    when `position_weight_power` is 0. Strong position bias makes clicks mirror the old ranker's top slots."""
    if cfg.position_weight_power == 0:
        return np.ones(len(position))
    return np.minimum(np.maximum(position, 1.0) ** cfg.position_weight_power, cfg.max_position_weight)


def relevance_mismatch(rows: pd.DataFrame, docs: pd.DataFrame) -> np.ndarray:
    """Bool per row of `rows` (impressions with their request's query_category_leaf and query_brand): the doc is
    one the relevance control would remove for that request, by the doc's fields in `docs` (doc_id, category_leaf,
    brand; every doc of `rows` must be there)."""
    at = pd.Index(docs["doc_id"]).get_indexer(rows["doc_id"])
    if (at < 0).any():
        bad = rows["doc_id"].to_numpy()[at < 0][:5].tolist()
        raise ValueError(f"doc_id not in the docs table, no fields for the relevance filter: {bad}")
    return understanding_mismatch(rows["query_category_leaf"].to_numpy(), rows["query_brand"].to_numpy(),
                                  docs["category_leaf"].to_numpy()[at], docs["brand"].to_numpy()[at])


def click_positives(imps: pd.DataFrame, cfg: PositivesConfig, docs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per positive (request, doc) with its engagement weight; `imps` carries request and author columns.
    With `cfg.relevance_filter`, clicks on docs the relevance control would remove are dropped (needs `docs`); how
    many is in the frame's `attrs["relevance_filtered"]`."""
    rows = imps.loc[sufficient_click_mask(imps, cfg)].copy()
    if cfg.relevance_filter:
        if docs is None:
            raise ValueError("samples.positives.relevance_filter needs the docs table (category_leaf, brand)")
        off = relevance_mismatch(rows, docs)
        dropped = int(off.sum())
        rows = rows.loc[~off]
    else:
        dropped = 0
    rows["weight"] = positive_weight(rows, cfg)
    rows["kind"] = "click"
    rows = rows.sort_values(["event_timestamp", "request_id", "doc_id"], kind="mergesort")
    out = rows[POSITIVE_COLUMNS].reset_index(drop=True)
    out.attrs["relevance_filtered"] = dropped
    return out
