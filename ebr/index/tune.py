"""Search-parameter tuning: sweep nprobe (IVF) or efSearch (HNSW) upward until ann_recall@k reaches a target.

Recall is measured against exact inner-product search on held-out query vectors; every sweep point
also records single-thread one-query latency, giving the recall/latency curve kept in the manifest.
As the Facebook EBR paper advises (seeds/004), the parameters are re-tuned on every build, since any
model change moves the embedding distribution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from ebr.index.evaluate import evaluate, exact_search
from ebr.index.factory import IndexLayout
from ebr.index.search import ShardedSearcher

MAX_EF_SEARCH = 4096
PLATEAU_GAIN = 0.002  # recall gain over the last two sweep steps (~2x latency) below which we stop


def _grid(lo: int, hi: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... (steps of ~sqrt(2)) restricted to [lo, hi], hi always included."""
    vals, p = set(), 1
    while p <= hi:
        vals.update(v for v in (p, p + p // 2) if lo <= v <= hi)
        p *= 2
    vals.add(hi)
    return sorted(vals)


def sweep_values(layout: IndexLayout, k: int) -> list[int]:
    """Values of the layout's search parameter to try, ascending (empty when it has none)."""
    if layout.kind == "ivf":
        return _grid(1, layout.nlist)
    if layout.kind == "hnsw":
        # Faiss searches HNSW with max(efSearch, k), so values below k are all the same point.
        return [k] + [v for v in _grid(k + 1, max(k + 1, MAX_EF_SEARCH)) if v <= MAX_EF_SEARCH]
    return []


def search_params_for(layout: IndexLayout, value: int) -> dict[str, int]:
    """ParameterSpace settings for one sweep value (an HNSW coarse quantizer gets a matching efSearch)."""
    assert layout.parameter is not None
    params = {layout.parameter: int(value)}
    if layout.hnsw_quantizer:
        params["quantizer_efSearch"] = max(64, 2 * int(value))
    return params


@dataclass(frozen=True)
class TunePoint:
    """One sweep point: parameter value (None for indexes without one), recall and latency."""

    value: int | None
    ann_recall: float
    latency_p50_ms: float
    latency_p99_ms: float


@dataclass(frozen=True)
class TuneResult:
    """The chosen search parameter, its metrics and the whole recall/latency curve."""

    parameter: str | None
    value: int | None
    search_params: dict[str, int]
    k: int
    target_recall: float
    target_reached: bool
    ann_recall: float
    latency_p50_ms: float
    latency_p99_ms: float
    num_queries: int
    latency_queries: int
    curve: list[TunePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tune(
    index: faiss.Index | ShardedSearcher,
    base_vectors: np.ndarray | None,
    query_vectors: np.ndarray,
    target_recall: float = 0.95,
    k: int = 100,
    *,
    base_ids: np.ndarray | None = None,
    exact_ids: np.ndarray | None = None,
    latency_queries: int = 300,
    latency_repeats: int = 1,
    progress: bool = True,
) -> TuneResult:
    """Sweep the index's search parameter upward until ann_recall@k >= target_recall.

    `index` is a Faiss index (labels = positions in `base_vectors`, or `base_ids` when given) or a
    ShardedSearcher. Exact top-k comes from `exact_ids` if given, else brute force over `base_vectors`.
    The sweep stops at the first value meeting the target, when recall stops improving (a quantization
    ceiling, e.g. PQ) or at the last value; without the target the first (cheapest) point within
    PLATEAU_GAIN of the best recall is chosen. The searcher is left set to the chosen value.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if isinstance(index, ShardedSearcher):
        searcher = index
    else:
        ids = np.arange(index.ntotal, dtype=np.int64) if base_ids is None else base_ids
        searcher = ShardedSearcher([index], [ids])
    q = np.ascontiguousarray(query_vectors, dtype=np.float32)
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != searcher.dim:
        raise ValueError(f"query_vectors has shape {q.shape}; need [nq >= 1, {searcher.dim}]")
    if exact_ids is None:
        if base_vectors is None:
            raise ValueError("tune needs base_vectors or exact_ids to know the exact top-k")
        ids = np.arange(len(base_vectors), dtype=np.int64) if base_ids is None else np.asarray(base_ids)
        exact_ids = exact_search(q, [(ids, base_vectors)], k)[1]
    layout = searcher.layout
    values: list[int | None] = list(sweep_values(layout, k)) or [None]
    curve: list[TunePoint] = []
    chosen: TunePoint | None = None
    ev = None
    bar = tqdm(values, desc=f"tune {layout.parameter or layout.kind}", disable=not progress, leave=False)
    for value in bar:
        if value is not None:
            searcher.set_search_params(search_params_for(layout, value))
        ev = evaluate(
            searcher, q, exact_ids, k, latency_queries=latency_queries, latency_repeats=latency_repeats
        )
        point = TunePoint(value, ev.ann_recall, ev.latency_p50_ms, ev.latency_p99_ms)
        curve.append(point)
        bar.set_postfix(recall=f"{ev.ann_recall:.4f}", p50_ms=f"{ev.latency_p50_ms:.3f}")
        if ev.ann_recall >= target_recall:
            chosen = point
            break
        if len(curve) >= 3 and curve[-1].ann_recall - curve[-3].ann_recall < PLATEAU_GAIN:
            break
    bar.close()
    assert ev is not None
    reached = chosen is not None
    if chosen is None:
        # below target: the cheapest point within PLATEAU_GAIN of the best recall seen
        best = max(p.ann_recall for p in curve)
        chosen = next(p for p in curve if p.ann_recall >= best - PLATEAU_GAIN)
    params = search_params_for(layout, chosen.value) if chosen.value is not None else {}
    if params:
        searcher.set_search_params(params)
    return TuneResult(
        parameter=layout.parameter,
        value=chosen.value,
        search_params=params,
        k=k,
        target_recall=target_recall,
        target_reached=reached,
        ann_recall=chosen.ann_recall,
        latency_p50_ms=chosen.latency_p50_ms,
        latency_p99_ms=chosen.latency_p99_ms,
        num_queries=ev.num_queries,
        latency_queries=ev.latency_queries,
        curve=curve,
    )
