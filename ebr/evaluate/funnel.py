"""The pre-rank funnel, evaluated offline as the server runs it: retrieve N candidates with the served hybrid
system (constraints inside both channels), score them with the day's coarse ranker, keep the top M.

The coarse ranker is the distill step's output directory (`export/` with the `query_tower` and `scorer`
programs, the offline doc matrix `doc_ids.npy` / `doc_vectors.npy`, and for a three-tower ranker the doc rows of
its cross features `doc_rows.parquet`), the same files a bundle ships and the server's re-rank path loads. A
three-tower ranker scores each (request, candidate) pair with the cross features of the request's row (query,
query-understanding fields, the user's features as of the request) and the candidate's doc row, the function the
server uses. A candidate missing from the doc matrix (or the doc rows) scores NaN and goes last, as online.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

EMPTY = -1
FUNNEL_SYSTEM = "funnel_served"  # retrieve N (hybrid, served) -> coarse-rank -> top M
FUNNEL_CANDIDATES = 500  # N: the server's EBR_FUNNEL_CANDIDATES default
PAIR_CHUNK = 200_000  # candidate pairs scored per scorer call (memory: chunk x doc dim floats)


@dataclass(frozen=True)
class CoarseScorer:
    """A loaded coarse ranker: its exported programs, the doc matrix sorted by doc id and, with three towers, the
    doc side of its cross features."""

    bundle: object  # ebr.models.export.ExportedBundle
    doc_ids: np.ndarray
    doc_vectors: np.ndarray
    cross_docs: object | None = None  # ebr.models.rankers.cross_features.CrossDocs (three towers)

    @property
    def three_tower(self) -> bool:
        return self.cross_docs is not None

    @classmethod
    def load(cls, coarse_dir: str | Path) -> CoarseScorer | None:
        """The coarse ranker of `coarse_dir`, or None when the funnel cannot feed its scorer (a student reading
        the retrieval cosine needs it; a three-tower one without its doc rows)."""
        from ebr.index.export import export_dir_of
        from ebr.models.export import load_exported
        from ebr.models.rankers.cross_features import CROSS_INPUTS
        from ebr.train.rankers import DOC_IDS, DOC_VECTORS, open_cross_docs

        d = Path(coarse_dir)
        if not (d / DOC_IDS).is_file() or not (d / DOC_VECTORS).is_file():
            return None
        bundle = load_exported(export_dir_of(d), only=["query_tower", "scorer"])  # the doc side is DOC_VECTORS
        spec = set(bundle["scorer"].input_spec)
        if spec not in ({"query", "doc"}, {"query", "doc", *CROSS_INPUTS}) or bundle.featurizer is None:
            return None
        cross_docs = None
        if CROSS_INPUTS <= spec:
            try:
                cross_docs = open_cross_docs(d, bundle)
            except ValueError:
                return None
        ids = np.load(d / DOC_IDS, allow_pickle=False).astype(np.int64)
        vectors = np.load(d / DOC_VECTORS, allow_pickle=False).astype(np.float32)
        order = np.argsort(ids, kind="stable")
        return cls(bundle, ids[order], vectors[order], cross_docs)

    def scores(self, queries: np.ndarray, candidates: np.ndarray, requests: pd.DataFrame | None = None) -> np.ndarray:
        """float32 [n, N] coarse scores of each request's candidates (`queries` [n, dim] from the ranker's own
        query tower); NaN for padding (-1) and for docs missing from the doc matrix (three towers: or from the doc
        rows). A three-tower ranker needs `requests`, one row per request (query, query_category_leaf,
        query_brand and the user's features), for the cross features."""
        import torch

        if self.three_tower and (requests is None or len(requests) != len(candidates)):
            raise ValueError("a three-tower coarse ranker needs one request row per candidate list for its cross "
                             "features")
        n, width = candidates.shape
        out = np.full((n, width), np.nan, dtype=np.float32)
        flat = candidates.reshape(-1)
        pos = np.minimum(np.searchsorted(self.doc_ids, flat), max(len(self.doc_ids) - 1, 0))
        known = np.flatnonzero((flat >= 0) & (self.doc_ids[pos] == flat)) if len(self.doc_ids) else np.zeros(0, int)
        cross_rows = None
        if self.cross_docs is not None:
            cross_rows, has_row = self.cross_docs.rows_of(flat[known])  # type: ignore[attr-defined]
            known = known[has_row]
        scorer = self.bundle["scorer"]  # type: ignore[index]
        res = out.reshape(-1)
        for start in range(0, len(known), PAIR_CHUNK):
            part = known[start : start + PAIR_CHUNK]
            q = torch.from_numpy(np.ascontiguousarray(queries[part // width], dtype=np.float32))
            d = torch.from_numpy(np.ascontiguousarray(self.doc_vectors[pos[part]]))
            inputs = {"query": q, "doc": d}
            if cross_rows is not None:  # only this chunk's requests are prepared (their text, their sequences)
                chunk_requests, request_rows = np.unique(part // width, return_inverse=True)
                values, buckets = self.cross_docs.features(  # type: ignore[attr-defined]
                    requests.iloc[chunk_requests], request_rows, cross_rows[start : start + PAIR_CHUNK])
                inputs.update(cross=torch.from_numpy(values), cross_buckets=torch.from_numpy(buckets))
            res[part] = scorer(inputs).reshape(-1).float().numpy()
        return out


def funnel_ids(scorer: CoarseScorer, queries: np.ndarray, candidates: np.ndarray, m: int,
               requests: pd.DataFrame | None = None) -> np.ndarray:
    """[n, m] doc ids: each request's candidates ordered by coarse score (best first, NaN last, ties in
    retrieval order), the top m kept; -1 pads. `requests`: the request rows a three-tower ranker needs."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    scores = scorer.scores(queries, candidates, requests)
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
