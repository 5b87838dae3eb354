"""The random-negative table: every doc of the corpus with prob ~ (exposures + smoothing) ** power (seeds 000, 003).

Training draws random negatives from `prob` and subtracts log(draws * prob) from their logits (log-Q correction of
sampled softmax: it removes the oversampling of popular docs, it does not suppress them); never-exposed docs keep
a small probability, so the whole corpus stays reachable (seed 004: random negatives stand for the natural
retrieval pool).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.samples.config import NegativesConfig
from ebr.samples.tables import columns

NEGATIVE_TABLE_COLUMNS = columns("negatives")


def exposure_counts(imps: pd.DataFrame) -> pd.Series:
    """Exposures per doc_id (rows with stage = exposed)."""
    return imps.loc[imps["stage"] == "exposed", "doc_id"].value_counts().rename("exposures")


def sampling_table(docs: pd.DataFrame, imps: pd.DataFrame, cfg: NegativesConfig) -> pd.DataFrame:
    """One row per corpus doc with its window exposures and sampling probability (sums to 1)."""
    if docs.empty:
        raise ValueError("the corpus (docs known before the day) is empty: no negative sampling table")
    table = docs[["doc_id", "author_id", "category_leaf"]].sort_values("doc_id").reset_index(drop=True)
    counts = exposure_counts(imps)
    table["exposures"] = table["doc_id"].map(counts).fillna(0).astype("int64")
    w = (table["exposures"].to_numpy(dtype="float64") + cfg.exposure_smoothing) ** cfg.exposure_power
    table["prob"] = w / w.sum()
    return table[NEGATIVE_TABLE_COLUMNS]


def draw_random_negatives(table: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` doc ids drawn with replacement from the table's `prob` (what a training epoch does)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    p = table["prob"].to_numpy(dtype="float64")
    return table["doc_id"].to_numpy()[rng.choice(len(p), size=n, p=p / p.sum())]


def request_negatives(
    positives: pd.DataFrame, table: pd.DataFrame, per_positive: int, rng: np.random.Generator, max_rounds: int = 8
) -> pd.DataFrame:
    """`per_positive` random negatives per positive row as (request_id, doc_id), drawn by `prob`, never one of the
    request's positive docs (collisions are redrawn up to `max_rounds` times, then dropped)."""
    if per_positive < 0:
        raise ValueError(f"per_positive must be >= 0, got {per_positive}")
    req = np.repeat(positives["request_id"].to_numpy(), per_positive)
    docs = draw_random_negatives(table, len(req), rng)
    pos_keys = set(zip(positives["request_id"], positives["doc_id"], strict=True))
    for _ in range(max_rounds):
        hit = np.fromiter(((r, d) in pos_keys for r, d in zip(req, docs, strict=True)), dtype=bool, count=len(req))
        if not hit.any():
            break
        docs[hit] = draw_random_negatives(table, int(hit.sum()), rng)
    else:
        keep = ~np.fromiter(((r, d) in pos_keys for r, d in zip(req, docs, strict=True)), dtype=bool, count=len(req))
        req, docs = req[keep], docs[keep]
    return pd.DataFrame({"request_id": req, "doc_id": docs.astype("int64")})
