"""Offline evaluation of hybrid retrieval: the embedding channel and the lexical (BM25) channel merged per
request with the server's own fusion and query-selection code (ebr.hybrid), on the holdout requests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ebr.hybrid import ChannelHits, QuerySelection, fuse, select_channels
from ebr.hybrid.defaults import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT

EMPTY = -1


@dataclass(frozen=True)
class HybridVariant:
    """One way of merging: fusion rule, lexical weight (embedding = 1), and whether query selection runs."""

    name: str
    fusion: str = DEFAULT_FUSION
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT
    selection: bool = True


SERVED = HybridVariant("hybrid")  # what the server does by default (retrieval=auto)


def scores_of(doc_ids: np.ndarray, doc_vectors: np.ndarray, queries: np.ndarray, retrieved: np.ndarray) -> np.ndarray:
    """Inner products of each query with its retrieved docs ([n, k]; -inf where the id is -1 padding)."""
    order = np.argsort(doc_ids, kind="stable")
    pos = order[np.searchsorted(doc_ids, np.maximum(retrieved, 0), sorter=order)]
    scores = np.einsum("nd,nkd->nk", queries.astype(np.float32), doc_vectors[pos].astype(np.float32))
    return np.where(retrieved >= 0, scores, -np.inf)


def hybrid_ids(
    queries: Sequence[str],
    ann: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    variant: HybridVariant,
    tokenize: Callable[[str], list[str]],
) -> np.ndarray:
    """[n, k] merged doc ids (-1 pads) of every request; `ann` and `lexical` are (ids, scores) [n, >= k]."""
    rule = QuerySelection(enabled=variant.selection)
    weights = {"ann": 1.0, "lexical": variant.lexical_weight}
    out = np.full((len(queries), k), EMPTY, dtype=np.int64)
    for i, query in enumerate(queries):
        channels = select_channels(query, tokenize, rule)
        hits = []
        if "ann" in channels:
            hits.append(ChannelHits("ann", ann[0][i], ann[1][i]))
        if "lexical" in channels:
            hits.append(ChannelHits("lexical", lexical[0][i], lexical[1][i]))
        if len(hits) == 1:  # one channel: its own list, as the server answers it
            ids = hits[0].valid()[0][:k]
        else:
            ids = fuse(variant.fusion, hits, k, weights).ids
        out[i, : len(ids)] = ids
    return out


def hybrid_systems(
    queries: Sequence[str],
    ann: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    tokenize: Callable[[str], list[str]],
    variants: Sequence[HybridVariant] = (SERVED,),
) -> dict[str, np.ndarray]:
    """{variant name: [n, k] ids} for each variant."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"hybrid variant names must be distinct, got {names}")
    return {v.name: hybrid_ids(queries, ann, lexical, k, v, tokenize) for v in variants}
