"""Search-parameter tuning: sweep nprobe (IVF) or efSearch (HNSW), and with a refine stage also k_factor_rf,
until ann_recall@k reaches a target; keep the cheapest setting that does.

Recall is measured against exact inner-product search on held-out query vectors (the day's real query-tower
vectors when the build is given them); every sweep point also records single-thread one-query latency,
giving the recall/latency curve kept in the manifest. As the Facebook EBR paper advises (seeds/004), the
parameters are re-tuned on every build, since any model change moves the embedding distribution.

A refine stage (`...,RFlat`: faiss IndexRefineFlat, or `...,Refine(SQ8)`) re-ranks the base index's top
k_factor_rf * k candidates with exact (or finer) distances, which lifts IVF-PQ past the recall ceiling of
its codes. Its grid is nprobe x k_factor_rf, set through faiss.ParameterSpace
(`set_index_parameters(index, "nprobe=32,k_factor_rf=4")`); among the settings that reach the target the
one with the lowest modelled search cost (`search_cost`: bytes of codes scanned plus bytes re-ranked per
query, deterministic, unlike timings on a shared host) is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from ebr.index.evaluate import evaluate, exact_search
from ebr.index.factory import HNSW_M, REFINE_PARAMETER, IndexLayout
from ebr.index.search import ShardedSearcher

MAX_EF_SEARCH = 4096
PLATEAU_GAIN = 0.002  # recall gain over the last two sweep steps (~2x latency) below which we stop
DEFAULT_MAX_K_FACTOR = 64


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


def k_factor_values(max_k_factor: int) -> list[int]:
    """k_factor_rf values of a refine sweep: 1, 2, 4, ... up to max_k_factor (always included)."""
    if max_k_factor < 1:
        raise ValueError(f"max_k_factor must be >= 1, got {max_k_factor}")
    vals, p = [], 1
    while p < max_k_factor:
        vals.append(p)
        p *= 2
    return [*vals, max_k_factor]


def search_params_for(layout: IndexLayout, value: int | None, k_factor: int | None = None) -> dict[str, int]:
    """ParameterSpace settings for one sweep point: the base knob (an HNSW coarse quantizer gets a matching
    efSearch) and, with a refine stage, k_factor_rf."""
    params: dict[str, int] = {}
    if value is not None:
        assert layout.parameter is not None
        params[layout.parameter] = int(value)
        if layout.hnsw_quantizer:
            params["quantizer_efSearch"] = max(64, 2 * int(value))
    if k_factor is not None:
        params[REFINE_PARAMETER] = int(k_factor)
    return params


def search_cost(
    layout: IndexLayout, params: Mapping[str, int], n: int, k: int, vector_bytes: Mapping[str, int]
) -> float:
    """Modelled bytes one query reads: codes scanned by the base index plus refine vectors re-ranked.

    IVF scans nprobe/nlist of the n codes; HNSW visits ~max(efSearch, base k) nodes times their level-0
    links (2*M); Flat and PQ scan all n; a refine stage reads k_factor_rf * k refine vectors. Monotone in
    every parameter, so on a one-parameter sweep the cheapest point is the lowest value.
    """
    code = vector_bytes.get("code", 0)
    kf = int(params.get(REFINE_PARAMETER, 0))
    base_k = k * max(1, kf)
    if layout.kind == "ivf" and "nprobe" in params:
        scanned = params["nprobe"] / max(1, layout.nlist) * n * code
    elif layout.kind == "hnsw" and "efSearch" in params:
        links = vector_bytes.get("graph", 0) // 4 or 2 * HNSW_M
        scanned = min(n, max(params["efSearch"], base_k) * links) * code
    else:
        scanned = n * code
    return float(scanned + kf * k * vector_bytes.get("refine", 0))


@dataclass(frozen=True)
class TunePoint:
    """One sweep point: the first tuned parameter's value (None for indexes without one), recall, latency,
    every search parameter set at this point and its modelled cost (`search_cost`)."""

    value: int | None
    ann_recall: float
    latency_p50_ms: float
    latency_p99_ms: float
    params: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0


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
    parameters: tuple[str, ...] = ()
    vector_bytes: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0

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
    max_k_factor: int = DEFAULT_MAX_K_FACTOR,
    progress: bool = True,
) -> TuneResult:
    """Sweep the index's search parameters upward until ann_recall@k >= target_recall.

    `index` is a Faiss index (labels = positions in `base_vectors`, or `base_ids` when given) or a
    ShardedSearcher. Exact top-k comes from `exact_ids` if given, else brute force over `base_vectors`.
    Without a refine stage the base knob (nprobe / efSearch) is swept upward and the sweep stops at the
    first value meeting the target, when recall stops improving (a quantization ceiling, e.g. PQ) or at
    the last value. With a refine stage the same sweep runs for k_factor_rf = 1, 2, 4, ... max_k_factor,
    each capped at the base value the previous k_factor needed, and stops once a larger k_factor no
    longer lowers it. The chosen point is the lowest-`search_cost` one meeting the target; without the
    target, the lowest-cost point within PLATEAU_GAIN of the best recall. The searcher is left set to it.
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
    vbytes = searcher.vector_bytes
    first = layout.parameters[0] if layout.parameters else None
    k_factors: list[int | None] = list(k_factor_values(max_k_factor)) if layout.refine else [None]
    curve: list[TunePoint] = []
    reached: list[TunePoint] = []
    cap: int | None = None  # the base value the previous k_factor needed: a larger k_factor needs at most it
    ev = None
    bar = tqdm(
        desc=f"tune {' x '.join(layout.parameters) or layout.kind}", disable=not progress, leave=False
    )
    for kf in k_factors:
        values: list[int | None] = list(sweep_values(layout, k * (kf or 1))) or [None]
        if cap is not None:
            values = [v for v in values if v is not None and v <= cap]
        sweep: list[TunePoint] = []
        hit = None
        for value in values:
            params = search_params_for(layout, value, kf)
            if params:
                searcher.set_search_params(params)
            ev = evaluate(
                searcher, q, exact_ids, k, latency_queries=latency_queries, latency_repeats=latency_repeats
            )
            point = TunePoint(
                params.get(first) if first else None,
                ev.ann_recall,
                ev.latency_p50_ms,
                ev.latency_p99_ms,
                params,
                search_cost(layout, params, searcher.ntotal, k, vbytes),
            )
            curve.append(point)
            sweep.append(point)
            bar.update(1)
            bar.set_postfix(recall=f"{ev.ann_recall:.4f}", p50_ms=f"{ev.latency_p50_ms:.3f}")
            if ev.ann_recall >= target_recall:
                hit = point
                break
            # the plateau rule only without a cap: below the cap the target is known to be reachable
            if cap is None and len(sweep) >= 3 and sweep[-1].ann_recall - sweep[-3].ann_recall < PLATEAU_GAIN:
                break
        if hit is None:
            continue
        reached.append(hit)
        base = hit.params.get(layout.parameter) if layout.parameter else None
        if base is None or base == values[0] or base == cap:
            break  # a larger k_factor cannot lower the base value any more, it only adds refine cost
        cap = base
    bar.close()
    assert ev is not None
    if reached:
        chosen = min(reached, key=lambda p: p.cost)
    else:
        # below target: the cheapest point within PLATEAU_GAIN of the best recall seen
        best = max(p.ann_recall for p in curve)
        chosen = min((p for p in curve if p.ann_recall >= best - PLATEAU_GAIN), key=lambda p: p.cost)
    if chosen.params:
        searcher.set_search_params(chosen.params)
    return TuneResult(
        parameter=first,
        value=chosen.value,
        search_params=dict(chosen.params),
        k=k,
        target_recall=target_recall,
        target_reached=bool(reached),
        ann_recall=chosen.ann_recall,
        latency_p50_ms=chosen.latency_p50_ms,
        latency_p99_ms=chosen.latency_p99_ms,
        num_queries=ev.num_queries,
        latency_queries=ev.latency_queries,
        curve=curve,
        parameters=layout.parameters,
        vector_bytes=dict(vbytes),
        cost=chosen.cost,
    )
