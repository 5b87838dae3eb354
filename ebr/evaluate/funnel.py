"""The pre-rank funnel, evaluated offline as the server runs it: retrieve N candidates with the served hybrid
system (constraints inside both channels), score them with the day's coarse ranker, keep the top M.

The coarse ranker is the distill step's output directory (`export/` with the `query_tower` and `scorer`
programs, the offline doc matrix `doc_ids.npy` / `doc_vectors.npy`), the same files a bundle ships and the
server's re-rank path loads. A candidate missing from the doc matrix scores NaN and goes last, as online.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMPTY = -1
FUNNEL_SYSTEM = "funnel_served"  # retrieve N (hybrid, served) -> coarse-rank -> top M
FUNNEL_CANDIDATES = 500  # N: the server's EBR_FUNNEL_CANDIDATES default
PAIR_CHUNK = 200_000  # candidate pairs scored per scorer call (memory: chunk x doc dim floats)


@dataclass(frozen=True)
class CoarseScorer:
    """A loaded two-tower coarse ranker: its exported programs and the doc matrix sorted by doc id."""

    bundle: object  # ebr.models.export.ExportedBundle
    doc_ids: np.ndarray
    doc_vectors: np.ndarray

    @classmethod
    def load(cls, coarse_dir: str | Path) -> CoarseScorer | None:
        """The coarse ranker of `coarse_dir`, or None when it cannot score candidates from their vectors alone
        (a three-tower student needs cross features, a student reading the retrieval cosine needs it)."""
        from ebr.index.export import export_dir_of
        from ebr.models.export import load_exported
        from ebr.train.rankers import DOC_IDS, DOC_VECTORS

        d = Path(coarse_dir)
        if not (d / DOC_IDS).is_file() or not (d / DOC_VECTORS).is_file():
            return None
        bundle = load_exported(export_dir_of(d))
        if set(bundle["scorer"].input_spec) != {"query", "doc"} or bundle.featurizer is None:
            return None
        ids = np.load(d / DOC_IDS, allow_pickle=False).astype(np.int64)
        vectors = np.load(d / DOC_VECTORS, allow_pickle=False).astype(np.float32)
        order = np.argsort(ids, kind="stable")
        return cls(bundle, ids[order], vectors[order])

    def scores(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """float32 [n, N] coarse scores of each request's candidates (`queries` [n, dim] from the ranker's own
        query tower); NaN for padding (-1) and for docs missing from the doc matrix."""
        import torch

        n, width = candidates.shape
        out = np.full((n, width), np.nan, dtype=np.float32)
        flat = candidates.reshape(-1)
        pos = np.minimum(np.searchsorted(self.doc_ids, flat), max(len(self.doc_ids) - 1, 0))
        known = np.flatnonzero((flat >= 0) & (self.doc_ids[pos] == flat)) if len(self.doc_ids) else np.zeros(0, int)
        scorer = self.bundle["scorer"]  # type: ignore[index]
        res = out.reshape(-1)
        for start in range(0, len(known), PAIR_CHUNK):
            part = known[start : start + PAIR_CHUNK]
            q = torch.from_numpy(np.ascontiguousarray(queries[part // width], dtype=np.float32))
            d = torch.from_numpy(np.ascontiguousarray(self.doc_vectors[pos[part]]))
            res[part] = scorer({"query": q, "doc": d}).reshape(-1).float().numpy()
        return out


def funnel_ids(scorer: CoarseScorer, queries: np.ndarray, candidates: np.ndarray, m: int) -> np.ndarray:
    """[n, m] doc ids: each request's candidates ordered by coarse score (best first, NaN last, ties in
    retrieval order), the top m kept; -1 pads."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    scores = scorer.scores(queries, candidates)
    rank = np.where(np.isnan(scores), np.inf, -scores)
    retrieval_order = np.broadcast_to(np.arange(candidates.shape[1]), candidates.shape)
    order = np.lexsort((retrieval_order, rank, candidates < 0), axis=1)  # padding last, then score, then order
    ranked = np.take_along_axis(candidates, order, axis=1)
    out = np.full((len(candidates), m), EMPTY, dtype=np.int64)
    keep = min(m, ranked.shape[1])
    out[:, :keep] = np.where(ranked[:, :keep] >= 0, ranked[:, :keep], EMPTY)
    return out


def survival(candidates: np.ndarray, kept: np.ndarray, channel_ids: dict[str, np.ndarray]) -> dict[str, float]:
    """Per retrieval channel, the share of its candidates (inside the funnel's N) that survive into the top M
    (Taobao's Num_prank read as a rate): how much of what a channel retrieves the coarse ranker keeps."""
    out: dict[str, float] = {}
    for name, ids in channel_ids.items():
        got = total = 0
        for cand, top, chan in zip(candidates, kept, ids, strict=True):
            mine = set(chan[chan >= 0].tolist()) & set(cand[cand >= 0].tolist())
            total += len(mine)
            got += len(mine & set(top[top >= 0].tolist()))
        out[name] = round(got / total, 4) if total else 0.0
    return out
