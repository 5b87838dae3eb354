"""The BM25 formula written out directly (float64), to check the index's float32 scores against."""

from __future__ import annotations

import math
from collections import Counter


def bm25_reference(docs: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Okapi BM25 of every doc: sum over query tokens (repeats count) of idf * tf * (k1 + 1) /
    (tf + k1 * (1 - b + b * |d| / avgdl)), idf = max(0, log((N - df + 0.5) / (df + 0.5)))."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for d in docs:
        tf = Counter(d)
        total = 0.0
        for t in query:
            if tf[t] == 0:
                continue
            idf = max(0.0, math.log((n - df[t] + 0.5) / (df[t] + 0.5)))
            total += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(total)
    return scores
