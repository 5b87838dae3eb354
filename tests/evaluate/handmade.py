"""Hand-made evaluation sets for tests: a few requests with chosen queries, clicks and labels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ebr.evaluate import EvalSet

DAY = "2026-03-05"


def make_evalset(
    queries: Sequence[str],
    clicks: Sequence[Sequence[int]] | None = None,
    labels: Sequence[Mapping[int, int] | None] | None = None,
    categories: Sequence[str | None] | None = None,
    brands: Sequence[str | None] | None = None,
) -> EvalSet:
    """One request per query; labels None = no complete labels; label dicts keep only label >= 1."""
    n = len(queries)
    labels = labels if labels is not None else [None] * n
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "user_id": pd.array([i + 1 for i in range(n)], dtype="Int64"),
            "query": list(queries),
            "query_category_leaf": list(categories) if categories is not None else [None] * n,
            "query_brand": list(brands) if brands is not None else [None] * n,
            "event_timestamp": pd.date_range(f"{DAY} 08:00", periods=n, freq="min", tz="UTC"),
            "clicked_doc_ids": [list(c) for c in clicks] if clicks is not None else [[] for _ in range(n)],
            "labels_complete": [lab is not None for lab in labels],
            "label_doc_ids": [sorted(d for d, g in (lab or {}).items() if g >= 1) for lab in labels],
            "label_values": [[(lab or {})[d] for d in sorted(d for d, g in (lab or {}).items() if g >= 1)]
                             for lab in labels],
            "label_ds": [DAY if lab is not None else None for lab in labels],
        }
    )
    return EvalSet(day=DAY, frame=frame)


def reference_metrics(retrieved: np.ndarray, clicks: list[list[int]], labels: list[dict | None], k: int) -> dict:
    """Per-request values of each metric at K with plain loops over requests, straight from the definitions."""
    cr, tr, pg, pge, nd = [], [], [], [], []
    for row, clicked, lab in zip(retrieved.tolist(), clicks, labels, strict=True):
        top = [d for d in row[:k] if d != -1]
        if clicked:
            cr.append(len(set(clicked) & set(top)) / len(set(clicked)))
        if lab is not None:
            rel = {d for d, g in lab.items() if g >= 1}
            if rel:
                tr.append(len(rel & set(top)) / len(rel))
            pg.append(sum(1 for d in top if lab.get(d, 0) >= 1) / k)
            pge.append(sum(1 for d in top if lab.get(d, 0) == 2) / k)
            dcg = sum((2 ** lab.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(row[:k]) if d != -1)
            ideal = sorted((2**g - 1 for g in lab.values()), reverse=True)[:k]
            idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
            if idcg > 0:
                nd.append(dcg / idcg)
    return {"click_recall": cr, "true_recall": tr, "p_good": pg, "p_good_exact": pge, "ndcg": nd}
