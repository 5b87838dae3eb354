"""Constraints inside the ANN search: Faiss search parameters carrying an `IDSelectorBitmap` of the allowed
positions, so a filtered query returns the top k among allowed docs instead of filtering k unfiltered ones.

The selector reaches the innermost index through the wrappers index_factory builds (refine stage, OPQ
pre-transform). A selective filter leaves few allowed docs in the lists an IVF probes, so the probe count grows
until the probed lists hold as many allowed docs as an unfiltered search scores (nprobe x the mean list size):
with the allowed count of every list known (counted once per constraint), the lists are walked in the query's
centroid order and the probe stops there (or once every allowed doc is covered, which is exact for IVF-Flat).
Allowed docs spread evenly over the lists give the classic 1 / selectivity scaling, which stays the upper
bound; allowed docs that cluster, as a category does in embedding space, need far fewer lists. HNSW's efSearch
is scaled by 1 / selectivity (capped at `MAX_EF`). Filtered recall stays near the unfiltered one
(bench/results/filtered.md measures it against exact filtered search at 1%, 10% and 50% of the corpus).

A narrow constraint is cheaper to answer exactly: when the allowed docs of a shard are fewer than the docs the
scaled probe would walk (IVF-Flat or Flat, inner product, where a stored vector is the vector itself), their
vectors are gathered once per constraint and a query scores them with one matrix product (`ExactSubset`):
exact, and a dense product over n allowed docs instead of a bitmap check on every doc of the probed lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import faiss
import numpy as np

MAX_EF = 4096


class AllowedPositions:
    """The allowed positions of one shard as a Faiss bitmap selector (the bitmap is kept alive with it), and
    with the shard's list assignment (`list_of`, position -> IVF list) the allowed count of every list."""

    def __init__(self, mask: np.ndarray, list_of: np.ndarray | None = None) -> None:
        self.count = int(mask.sum())
        self.total = int(mask.size)
        self._bitmap = np.packbits(mask, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(self.total, faiss.swig_ptr(self._bitmap))
        self.list_counts: np.ndarray | None = None
        self.exact: ExactSubset | None = None  # set by `ExactSubset.attach` when scoring the subset is cheaper
        if list_of is not None:
            nlist = int(list_of.max()) + 1 if list_of.size else 0
            self.list_counts = np.bincount(list_of[mask], minlength=nlist).astype(np.int64)

    @property
    def nbytes(self) -> int:
        extra = int(self.list_counts.nbytes) if self.list_counts is not None else 0
        extra += self.exact.nbytes if self.exact is not None else 0
        return int(self._bitmap.nbytes) + extra

    @property
    def selectivity(self) -> float:
        return self.count / self.total if self.total else 0.0


def stores_exact_vectors(index: faiss.Index) -> bool:
    """True when `index` keeps every vector as added (Flat, IVF-Flat) under inner product, so a stored vector
    can be read back and scored exactly."""
    top = faiss.downcast_index(index)
    return top.metric_type == faiss.METRIC_INNER_PRODUCT and isinstance(top, faiss.IndexIVFFlat | faiss.IndexFlat)


def ensure_direct_map(index: faiss.Index) -> None:
    """Give an IVF index its position -> (list, offset) map (once; the caller serializes the first call)."""
    top = faiss.downcast_index(index)
    if isinstance(top, faiss.IndexIVF) and top.direct_map.type == faiss.DirectMap.NoMap:
        top.make_direct_map()


def reconstruct_positions(index: faiss.Index, positions: np.ndarray) -> np.ndarray:
    """The stored vectors at `positions` (float32 [n, d]); an IVF gets its direct map on first use."""
    ensure_direct_map(index)
    top = faiss.downcast_index(index)
    return np.ascontiguousarray(top.reconstruct_batch(np.asarray(positions, dtype=np.int64)), dtype=np.float32)


class ExactSubset:
    """The allowed docs' own vectors (gathered once per constraint) and their positions: a query scores them
    with one matrix product, exactly."""

    def __init__(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        self.positions = positions
        self.vectors = vectors

    @property
    def nbytes(self) -> int:
        return int(self.positions.nbytes + self.vectors.nbytes)

    @staticmethod
    def worth_it(index: faiss.Index, allowed: AllowedPositions, search_params: Mapping[str, float]) -> bool:
        """True when `index` stores exact vectors under inner product and the allowed docs are fewer than the
        docs the 1 / selectivity probe would walk (for Flat: every doc)."""
        if not stores_exact_vectors(index):
            return False
        top = faiss.downcast_index(index)
        if isinstance(top, faiss.IndexFlat):
            return allowed.count < top.ntotal
        base = int(search_params.get("nprobe", top.nprobe))
        lists = min(int(top.nlist), max(base, math.ceil(base / max(allowed.selectivity, 1e-12))))
        return allowed.count < lists * top.ntotal / max(int(top.nlist), 1)

    @classmethod
    def attach(cls, index: faiss.Index, allowed: AllowedPositions, mask: np.ndarray) -> None:
        """Gather the vectors at the allowed positions of `index` (a direct map is made once for IVF)."""
        positions = np.flatnonzero(mask).astype(np.int64)
        allowed.exact = cls(positions, reconstruct_positions(index, positions))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [nq, k] descending, positions [nq, k]) of the top k allowed docs; -inf / -1 pad."""
        nq, n = len(queries), len(self.positions)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        pos = np.full((nq, k), -1, dtype=np.int64)
        if n == 0:
            return scores, pos
        sims = queries @ self.vectors.T
        m = min(k, n)
        top = np.argpartition(-sims, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (nq, 1))
        part = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((self.positions[top], -part), axis=1) if nq else top
        top = np.take_along_axis(top, order, axis=1)
        scores[:, :m] = np.take_along_axis(sims, top, axis=1)
        pos[:, :m] = self.positions[top]
        return scores, pos


def positions_mask(shard_ids: np.ndarray, sorted_ids: np.ndarray, order: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Bool [len(shard_ids)]: True at the positions whose doc id is in `allowed` (`sorted_ids` = shard_ids
    sorted, `order` its argsort)."""
    mask = np.zeros(len(shard_ids), dtype=bool)
    if not len(allowed) or not len(shard_ids):
        return mask
    at = np.searchsorted(sorted_ids, allowed)
    inside = at < len(sorted_ids)
    hit = inside.copy()
    hit[inside] = sorted_ids[at[inside]] == allowed[inside]
    mask[order[at[hit]]] = True
    return mask


def ivf_chain(index: faiss.Index) -> tuple[faiss.IndexIVF | None, list[Any]]:
    """The IVF that decides an index's probe (itself, or inside a refine stage / pre-transform) and the
    vector transforms a query goes through before reaching it; (None, []) for an index without IVF."""
    top = faiss.downcast_index(index)
    transforms: list[Any] = []
    while True:
        if isinstance(top, faiss.IndexRefine):
            top = faiss.downcast_index(top.base_index)
        elif isinstance(top, faiss.IndexPreTransform):
            transforms += [faiss.downcast_VectorTransform(top.chain.at(i)) for i in range(top.chain.size())]
            top = faiss.downcast_index(top.index)
        elif isinstance(top, faiss.IndexIVF):
            return top, transforms
        else:
            return None, []


def list_assignment(index: faiss.Index) -> np.ndarray | None:
    """Position -> IVF list (int32 [ntotal]) of an index holding sequential positions; None without IVF."""
    from faiss.contrib.inspect_tools import get_invlist

    ivf, _ = ivf_chain(index)
    if ivf is None:
        return None
    out = np.full(int(ivf.ntotal), -1, dtype=np.int32)
    for lst in range(int(ivf.nlist)):
        if ivf.invlists.list_size(lst):
            out[get_invlist(ivf.invlists, lst)[0]] = lst
    if (out < 0).any() or ivf.ntotal != index.ntotal:
        return None  # ids are not the positions 0..n-1: no per-list counts, the 1 / selectivity rule applies
    return out


def list_aware_nprobe(index: faiss.Index, allowed: AllowedPositions, queries: np.ndarray, base: int) -> int:
    """Lists to probe so the probed lists hold as many allowed docs as `base` lists hold on average (or every
    allowed doc), walking each query's lists in centroid order; the largest over `queries`, at most the
    1 / selectivity rule's count. Without per-list counts, the 1 / selectivity rule."""
    ivf, transforms = ivf_chain(index)
    if ivf is None:
        raise ValueError("list_aware_nprobe needs an IVF index")
    nlist = int(ivf.nlist)
    scaled = min(nlist, max(base, math.ceil(base / max(allowed.selectivity, 1e-12))))
    if allowed.list_counts is None or len(allowed.list_counts) > nlist or not len(queries):
        return scaled
    counts = np.zeros(nlist, dtype=np.int64)
    counts[: len(allowed.list_counts)] = allowed.list_counts
    target = min(allowed.count, math.ceil(base * ivf.ntotal / max(nlist, 1)))
    if target <= 0:
        return min(base, scaled)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for vt in transforms:
        q = vt.apply(q)
    _, lists = ivf.quantizer.search(q, scaled)
    covered = np.cumsum(np.where(lists >= 0, counts[np.maximum(lists, 0)], 0), axis=1)
    reached = covered >= target
    need = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, scaled)
    return int(max(1, min(scaled, int(need.max()))))


def filtered_params(index: faiss.Index, allowed: AllowedPositions, search_params: Mapping[str, float],
                    queries: np.ndarray | None = None) -> Any:
    """Search parameters for `index` (as index_factory built it) restricted to `allowed`: an IVF's probe count
    by `list_aware_nprobe` for `queries` (by 1 / selectivity without them), HNSW's efSearch by 1 /
    selectivity, and the refine factor of `search_params`."""
    scale = 1.0 / max(allowed.selectivity, 1e-12)
    top = faiss.downcast_index(index)
    if isinstance(top, faiss.IndexRefine | faiss.IndexPreTransform | faiss.IndexIVF):
        ivf, _ = ivf_chain(top)
        if ivf is not None:
            base = int(search_params.get("nprobe", ivf.nprobe))
            nprobe = (list_aware_nprobe(top, allowed, queries, base) if queries is not None
                      else min(int(ivf.nlist), max(base, math.ceil(base * scale))))
            return _wrapped_params(top, allowed, search_params, nprobe)
    if isinstance(top, faiss.IndexHNSW):
        base = int(search_params.get("efSearch", top.hnsw.efSearch))
        ef = min(MAX_EF, max(base, math.ceil(base * scale)))
        return faiss.SearchParametersHNSW(sel=allowed.selector, efSearch=ef)
    return faiss.SearchParameters(sel=allowed.selector)


def _wrapped_params(top: faiss.Index, allowed: AllowedPositions, search_params: Mapping[str, float],
                    nprobe: int) -> Any:
    """The IVF's parameters (selector, nprobe) wrapped as the refine stage / pre-transform above it need."""
    if isinstance(top, faiss.IndexRefine):
        p = faiss.IndexRefineSearchParameters()
        p.k_factor = float(search_params.get("k_factor_rf", top.k_factor))
        p.base_index_params = _wrapped_params(faiss.downcast_index(top.base_index), allowed, search_params, nprobe)
        return p
    if isinstance(top, faiss.IndexPreTransform):
        p = faiss.SearchParametersPreTransform()
        p.index_params = _wrapped_params(faiss.downcast_index(top.index), allowed, search_params, nprobe)
        return p
    return faiss.SearchParametersIVF(sel=allowed.selector, nprobe=nprobe)
