"""The retrieval model's cosine of each candidate pair, a feature of the coarse ranker's head (Facebook EBR:
the embedding cosine as a ranking feature was the best of the options tried).

The two-tower retrieval model (`ebr.models.two_tower`) encodes the requests' query rows and the pairs' doc rows
with its own featurizer (`ebr.models.inputs`, the path its training and its exported towers take) and each pair
gets <q, d> of the unit vectors: online this is the ANN score of an embedding-channel candidate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.rankers.rows import RankingRows
from ebr.models.two_tower import TwoTowerModel


def _encode(frame: pd.DataFrame, encode: Callable[[pd.DataFrame], torch.Tensor], dim: int,
            batch_size: int) -> np.ndarray:
    out = np.zeros((len(frame), dim), dtype=np.float32)
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start : start + batch_size]
        out[start : start + len(part)] = encode(part).numpy()
    return out


def retrieval_cosines(model: TwoTowerModel, rows: RankingRows, batch_size: int = 4096) -> np.ndarray:
    """cos(q, d) [pairs] float32 of every pair of `rows` under the retrieval model's query and doc towers."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fz = model.config.featurizer
    dim = model.config.doc_tower.out_dim
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            q = _encode(rows.requests, lambda f: model.encode_queries(featurize_queries(f, fz)), dim, batch_size)
            d = _encode(rows.docs, lambda f: model.encode_docs(featurize_docs(f, fz)), dim, batch_size)
    finally:
        model.train(was)
    req = rows.pairs["request_row"].to_numpy(dtype=np.int64)
    doc = rows.pairs["doc_row"].to_numpy(dtype=np.int64)
    return np.einsum("ij,ij->i", q[req], d[doc]).astype(np.float32)
