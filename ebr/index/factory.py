"""Choosing, creating and inspecting Faiss indexes from `index_factory` strings.

Decision table of `choose_factory` (n = docs in one index shard, d = dim, budget = bytes for that shard;
every layout also pays 8 B/doc for the doc-id array), following the Faiss guidelines
(wiki "Guidelines to choose an index") and the Facebook EBR paper's ANN tuning notes
(seeds/004: pq_bytes = d/4, always try OPQ):

| condition                                               | factory                      |
|---------------------------------------------------------|------------------------------|
| n < flat_max_n (50k) and n*(4d+8) <= budget             | Flat (exact)                 |
| allow_hnsw and HNSW32 (~4d+290 B/doc) fits              | HNSW32                       |
| IVF-Flat (4d+16 B/doc + centroids) fits                 | IVF{nlist},Flat              |
| IVF-PQ + SQ8 refine (m+d+16 B/doc + centroids) fits     | IVF{nlist},PQ{m},Refine(SQ8) |
| otherwise, if IVF-PQ (m+16 B/doc + centroids) fits      | OPQ{m},IVF{nlist},PQ{m}      |
| otherwise                                               | ValueError (budget too small)|

PQ codes alone cap ann_recall@100 well below 0.95 (about 0.6-0.75 at m = d/4), which the publish gate
(`index.min_ann_recall`) refuses; the SQ8 refine stage re-ranks the k_factor_rf x K best PQ candidates with
8-bit scalar-quantized vectors (d bytes each) and reaches it. Plain OPQ+PQ is left for budgets too small
for that (lower `index.min_ann_recall` to publish it). A refine stage with the exact vectors
(`IVF{nlist},PQ{m}x8,RFlat`, 4d bytes) costs as much memory as IVF-Flat and is an explicit choice.

nlist = smallest power of two >= 4*sqrt(n) (inside Faiss's 4..16*sqrt(n) range), capped at 65536 and
so that n >= 30*nlist (Faiss trains k-means on 30..256 points per list);
m = d/4 bytes per vector (largest divisor of d not above d/4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss

FLAT_MAX_N = 50_000
HNSW_M = 32
MAX_NLIST = 65_536
DOC_ID_BYTES = 8
IVF_LIST_ID_BYTES = 8
PQ_NBITS = 8
REFINE_PARAMETER = "k_factor_rf"  # faiss.ParameterSpace's name for IndexRefine.k_factor
MIN_TRAIN_PER_LIST = 30


class FactoryError(ValueError):
    """An index_factory string Faiss cannot build, or one this project cannot serve."""


def ivf_nlist(n: int) -> int:
    """IVF lists for n vectors: the smallest power of two >= 4*sqrt(n), capped at MAX_NLIST and so that
    n >= MIN_TRAIN_PER_LIST * nlist (k-means needs ~30+ points per list)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    nlist = min(MAX_NLIST, 1 << max(0, math.ceil(math.log2(4 * math.sqrt(n)))))
    while nlist > 1 and n < MIN_TRAIN_PER_LIST * nlist:
        nlist //= 2
    return nlist


def pq_bytes(d: int) -> int:
    """PQ code size m (bytes per vector at 8 bits per code): d/4, or the largest divisor of d below it."""
    target = max(1, d // 4)
    return max(m for m in range(1, target + 1) if d % m == 0)


def estimated_bytes(factory_kind: str, n: int, d: int, nlist: int = 0, m: int = 0) -> int:
    """Rough resident size of an index of one kind (flat, hnsw, ivf_flat, ivf_pq, ivf_pq_sq8 = IVF-PQ with an
    SQ8 refine stage), doc-id array included."""
    per_doc = {
        "flat": 4 * d,
        "hnsw": 4 * d + int(2 * HNSW_M * 4 * 1.1) + 12,
        "ivf_flat": 4 * d + IVF_LIST_ID_BYTES,
        "ivf_pq": m + IVF_LIST_ID_BYTES,
        "ivf_pq_sq8": m + IVF_LIST_ID_BYTES + d,
    }[factory_kind]
    fixed = nlist * 4 * d + {"ivf_pq": d * d * 4 + 256 * d * 4, "ivf_pq_sq8": 256 * d * 4 + 2 * d * 4}.get(
        factory_kind, 0
    )
    return n * (per_doc + DOC_ID_BYTES) + fixed


def decide_factory(
    n: int, d: int, memory_budget_bytes: int, *, flat_max_n: int = FLAT_MAX_N, allow_hnsw: bool = False
) -> tuple[str, str]:
    """The factory string for (n, d, budget) per the module's decision table, and the reason in words."""
    if n < 1 or d < 1:
        raise ValueError(f"need n >= 1 and d >= 1, got n={n}, d={d}")
    if memory_budget_bytes < 1:
        raise ValueError(f"memory_budget_bytes must be > 0, got {memory_budget_bytes}")
    flat = estimated_bytes("flat", n, d)
    if n < flat_max_n and flat <= memory_budget_bytes:
        return "Flat", f"n={n} < flat_max_n={flat_max_n}: exact search, {flat} bytes fit the budget"
    nlist = ivf_nlist(n)
    hnsw = estimated_bytes("hnsw", n, d)
    if n >= flat_max_n and allow_hnsw and hnsw <= memory_budget_bytes:
        return f"HNSW{HNSW_M}", f"allow_hnsw and HNSW{HNSW_M} (~{hnsw} bytes) fits the budget"
    ivf_flat = estimated_bytes("ivf_flat", n, d, nlist)
    if n >= flat_max_n and ivf_flat <= memory_budget_bytes:
        return f"IVF{nlist},Flat", f"uncompressed vectors (~{ivf_flat} bytes) fit; nlist=pow2>=4*sqrt(n)"
    m = pq_bytes(d)
    ivf_pq_sq8 = estimated_bytes("ivf_pq_sq8", n, d, nlist, m)
    if n >= MIN_TRAIN_PER_LIST * nlist and ivf_pq_sq8 <= memory_budget_bytes:
        return (
            f"IVF{nlist},PQ{m},Refine(SQ8)",
            f"uncompressed vectors (~{ivf_flat} bytes) exceed the budget; PQ m=d/4={m} B re-ranked with SQ8 "
            f"(+{d} B) to reach the recall target (~{ivf_pq_sq8})",
        )
    ivf_pq = estimated_bytes("ivf_pq", n, d, nlist, m)
    if n >= MIN_TRAIN_PER_LIST * nlist and ivf_pq <= memory_budget_bytes:
        return (
            f"OPQ{m},IVF{nlist},PQ{m}",
            f"IVF-PQ with an SQ8 refine (~{ivf_pq_sq8} bytes) exceeds the budget; OPQ+PQ, m=d/4={m} B "
            f"(~{ivf_pq}): recall@100 stays below ~0.8",
        )
    raise ValueError(
        f"memory_budget_bytes={memory_budget_bytes} is too small for n={n}, d={d}: Flat needs ~{flat} bytes"
        + (
            f", OPQ{m},IVF{nlist},PQ{m} ~{ivf_pq}"
            if n >= MIN_TRAIN_PER_LIST * nlist
            else ", too few for IVF-PQ"
        )
    )


def choose_factory(
    n: int, d: int, memory_budget_bytes: int, *, flat_max_n: int = FLAT_MAX_N, allow_hnsw: bool = False
) -> str:
    """Faiss index_factory string for n docs of dim d within a memory budget (decision table above)."""
    return decide_factory(n, d, memory_budget_bytes, flat_max_n=flat_max_n, allow_hnsw=allow_hnsw)[0]


@dataclass(frozen=True)
class IndexLayout:
    """What an index is made of: its kind, IVF lists, PQ code size, refine stage and its search-time knobs."""

    kind: str  # "flat", "ivf", "hnsw", "pq" or "other" (of the base index when there is a refine stage)
    nlist: int = 0
    pq_m: int = 0
    opq: bool = False
    hnsw_quantizer: bool = False
    pq_nbits: int = PQ_NBITS
    refine: str = ""  # "" (none), "flat" (RFlat: exact float vectors) or the refine index's class, e.g. "sq"

    @property
    def parameter(self) -> str | None:
        """The base index's search parameter that trades recall for speed (None when there is none)."""
        return {"ivf": "nprobe", "hnsw": "efSearch"}.get(self.kind)

    @property
    def parameters(self) -> tuple[str, ...]:
        """Every tuned search parameter: the base index's knob, then `k_factor_rf` with a refine stage."""
        base = (self.parameter,) if self.parameter else ()
        return (*base, REFINE_PARAMETER) if self.refine else base

    @property
    def train_centroids(self) -> int:
        """The largest k-means a training run does (IVF lists, or 2^nbits codes per PQ sub-quantizer)."""
        return max(self.nlist, (1 << self.pq_nbits) if self.pq_m else 0)


def _unwrap(index: faiss.Index) -> tuple[faiss.Index, faiss.Index | None, bool]:
    """(innermost base index, refine index or None, has OPQ) of an index_factory index."""
    top = faiss.downcast_index(index)
    refine = None
    opq = False
    while True:
        if isinstance(top, faiss.IndexRefine):
            refine = faiss.downcast_index(top.refine_index)
            top = faiss.downcast_index(top.base_index)
        elif isinstance(top, faiss.IndexPreTransform):
            opq = opq or any(
                isinstance(faiss.downcast_VectorTransform(top.chain.at(i)), faiss.OPQMatrix)
                for i in range(top.chain.size())
            )
            top = faiss.downcast_index(top.index)
        else:
            return top, refine, opq


def _refine_name(refine: faiss.Index | None) -> str:
    if refine is None:
        return ""
    if isinstance(refine, faiss.IndexFlat):
        return "flat"
    if isinstance(refine, faiss.IndexScalarQuantizer):
        return "sq"
    return type(refine).__name__


def inspect_index(index: faiss.Index) -> IndexLayout:
    """Describe a Faiss index built by index_factory (the caller keeps `index` alive)."""
    inner, refine, opq = _unwrap(index)
    extra = {"opq": opq, "refine": _refine_name(refine)}
    if isinstance(inner, faiss.IndexIVF):
        pq = getattr(inner, "pq", None)
        quantizer = faiss.downcast_index(inner.quantizer)
        return IndexLayout(
            "ivf",
            nlist=int(inner.nlist),
            pq_m=int(pq.M) if pq is not None else 0,
            pq_nbits=int(pq.nbits) if pq is not None else PQ_NBITS,
            hnsw_quantizer=isinstance(quantizer, faiss.IndexHNSW),
            **extra,
        )
    if isinstance(inner, faiss.IndexHNSW):
        return IndexLayout("hnsw", **extra)
    if isinstance(inner, faiss.IndexPQ):
        return IndexLayout("pq", pq_m=int(inner.pq.M), pq_nbits=int(inner.pq.nbits), **extra)
    if isinstance(inner, faiss.IndexFlat):
        return IndexLayout("flat", **extra)
    return IndexLayout("other", **extra)


def _code_size(index: faiss.Index) -> int:
    """Bytes per stored vector of a flat-codes index (Flat: 4d, SQ8: d, PQ: m*nbits/8), else 4d."""
    size = getattr(index, "code_size", None)
    return int(size) if isinstance(size, int) and size > 0 else 4 * int(index.d)


def vector_bytes(index: faiss.Index) -> dict[str, int]:
    """Resident bytes per indexed vector, by part: the base index's code, the IVF list id stored beside each
    code, the HNSW level-0 links, the refine stage's copy (RFlat: 4d float32) and the 8-byte doc id kept
    beside the index; `total` is their sum. Centroids, codebooks and OPQ matrices are per index, not per
    vector, and are left out (the manifest's file-size `bytes_per_vector` includes them)."""
    inner, refine, _ = _unwrap(index)
    out = {"code": 0, "list_id": 0, "graph": 0, "refine": 0, "doc_id": DOC_ID_BYTES}
    if isinstance(inner, faiss.IndexIVF):
        out["code"] = int(inner.code_size)
        out["list_id"] = IVF_LIST_ID_BYTES
    elif isinstance(inner, faiss.IndexHNSW):
        out["code"] = _code_size(faiss.downcast_index(inner.storage))
        out["graph"] = 4 * int(inner.hnsw.nb_neighbors(0))
    else:
        out["code"] = _code_size(inner)
    if refine is not None:
        out["refine"] = _code_size(refine)
    out["total"] = sum(out.values())
    return out


def _faiss_message(e: Exception) -> str:
    text = str(e)
    return text.split("Error: ", 1)[-1].strip().splitlines()[0] if "Error: " in text else text.splitlines()[0]


def make_index(factory: str, d: int) -> faiss.Index:
    """A fresh inner-product index from a Faiss index_factory string; FactoryError if Faiss rejects it."""
    if "IDMap" in factory:
        raise FactoryError(f"index factory {factory!r}: drop IDMap, doc ids are stored beside the index")
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise FactoryError(
            f"index factory {factory!r} is not a valid Faiss index_factory string for d={d}: "
            f"{_faiss_message(e)}"
        ) from e
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise FactoryError(f"index factory {factory!r} does not support inner-product search")
    layout = inspect_index(index)
    if layout.kind == "ivf" and layout.nlist < 1:
        raise FactoryError(f"index factory {factory!r}: IVF needs at least one list")
    return index


def prepare_index(index: faiss.Index, seed: int) -> None:
    """Seed every k-means of the index (IVF coarse quantizer, PQ codebooks) and skip polysemous training.

    OPQ rotations and HNSW levels use Faiss's fixed internal seeds, so they are reproducible too.
    Polysemous code ordering only serves Hamming pre-filtering, which this project does not use, and
    takes seconds per PQ index.
    """
    inner, _, _ = _unwrap(index)
    if isinstance(inner, faiss.IndexIVF):
        inner.cp.seed = seed
    pq = getattr(inner, "pq", None)
    if pq is not None:
        pq.cp.seed = seed
    if hasattr(inner, "do_polysemous_training"):
        inner.do_polysemous_training = False
