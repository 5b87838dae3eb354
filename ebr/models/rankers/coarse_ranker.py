"""The coarse ranker (student): two towers, or three with a cross tower and a post-interaction MLP (seed 002).

Two towers: score = s * cos(q, d) + b with the MGDSPR query tower and the doc tower of `ebr.models`; the doc
side depends on the doc alone, so every doc vector is computed offline (`encode_corpus`) and shipped as a
matrix. Three towers add a cross tower over the query-doc and user-doc cross features (computed online with
`ebr.models.rankers.cross_features`) and score += MLP_post([q * d, cross_tower(x)]). With `retrieval_cosine`
the head also reads the retrieval model's cosine of the pair (`ebr.models.rankers.retrieval_cosine`):
score += w * cos_retrieval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from ebr.models.blocks.embedding import BucketEmbedding
from ebr.models.blocks.mlp import MLP
from ebr.models.config import FeaturizerConfig
from ebr.models.doc_tower import DocTower
from ebr.models.inputs import featurize_docs
from ebr.models.query_tower import QueryTower
from ebr.models.rankers.config import CoarseRankerConfig
from ebr.models.rankers.cross_features import num_buckets
from ebr.models.rankers.fine_ranker import signed_log1p


class CrossTower(nn.Module):
    """Bucketized cross features (embedded) and their raw values -> a cross vector [N, cross_dims[-1]]."""

    def __init__(self, names: list[str], embed_dim: int, dims: list[int]) -> None:
        super().__init__()
        self.embedding = BucketEmbedding(num_buckets(names), embed_dim)
        self.mlp = MLP(len(names) * (embed_dim + 1), dims, activate_last=True)
        self.out_dim = dims[-1]

    def forward(self, cross: torch.Tensor, cross_buckets: torch.Tensor) -> torch.Tensor:
        """cross [N, F] float, cross_buckets [N, F] int64 -> [N, out_dim]."""
        return self.mlp(torch.cat([self.embedding(cross_buckets).flatten(1), signed_log1p(cross)], dim=1))


class ScoringHead(nn.Module):
    """The per-candidate part of the coarse ranker: s * <q, d> + b (+ MLP_post([q * d, cross_tower(x)]))
    (+ w * cos_retrieval)."""

    def __init__(self, config: CoarseRankerConfig) -> None:
        super().__init__()
        self.three_tower = config.kind == "three_tower"
        self.uses_retrieval_cosine = config.retrieval_cosine
        log_s = torch.tensor(math.log(config.scale_init))
        if config.learn_scale:
            self.log_scale = nn.Parameter(log_s)
        else:
            self.register_buffer("log_scale", log_s)
        self.bias = nn.Parameter(torch.zeros(()))
        if self.three_tower:
            self.cross_tower: CrossTower | None = CrossTower(
                config.cross_features, config.cross_embed_dim, config.cross_dims
            )
            self.post: MLP | None = MLP(config.doc_tower.out_dim + self.cross_tower.out_dim, [*config.post_dims, 1])
        else:
            self.cross_tower = None
            self.post = None
        if self.uses_retrieval_cosine:
            self.retrieval_weight: nn.Parameter | None = nn.Parameter(torch.tensor(float(config.retrieval_cosine_init)))
        else:
            self.retrieval_weight = None

    def forward(
        self,
        query_vecs: torch.Tensor,
        doc_vecs: torch.Tensor,
        cross: torch.Tensor | None = None,
        cross_buckets: torch.Tensor | None = None,
        retrieval_cosine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores [N] of paired vectors [N, k]; three towers also need the pairs' cross features, and
        `retrieval_cosine` on, the pairs' retrieval cosines [N]."""
        score = torch.exp(self.log_scale) * (query_vecs * doc_vecs).sum(dim=-1) + self.bias
        if self.cross_tower is not None and self.post is not None:
            if cross is None or cross_buckets is None:
                raise ValueError("a three-tower coarse ranker needs cross and cross_buckets to score pairs")
            c = self.cross_tower(cross, cross_buckets)
            score = score + self.post(torch.cat([query_vecs * doc_vecs, c], dim=1)).squeeze(-1)
        if self.retrieval_weight is not None:
            if retrieval_cosine is None:
                raise ValueError("a coarse ranker with retrieval_cosine on needs the pairs' retrieval_cosine [N]")
            score = score + self.retrieval_weight * retrieval_cosine.reshape(-1).to(score.dtype)
        return score


class CoarseRanker(nn.Module):
    """Query tower, doc tower and the scoring head; initial weights depend on the config's seed only."""

    def __init__(self, config: CoarseRankerConfig) -> None:
        super().__init__()
        self.config = config
        sparse = config.sparse_embeddings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.query_tower = QueryTower(config.query_tower, config.featurizer, sparse)
            self.doc_tower = DocTower(config.doc_tower, config.featurizer, sparse)
            self.head = ScoringHead(config)

    @property
    def three_tower(self) -> bool:
        return self.head.three_tower

    @property
    def uses_retrieval_cosine(self) -> bool:
        """True when the head reads the retrieval model's cosine of each pair."""
        return self.head.uses_retrieval_cosine

    def encode_queries(self, query: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query-tower inputs [R] -> unit query vectors [R, k] (once per request online)."""
        return self.query_tower(query)

    def encode_docs(self, doc: dict[str, torch.Tensor]) -> torch.Tensor:
        """Doc-tower inputs [D] -> unit doc vectors [D, k] (precomputed offline)."""
        return self.doc_tower(doc)

    def score_pairs(
        self,
        query_vecs: torch.Tensor,
        doc_vecs: torch.Tensor,
        cross: torch.Tensor | None = None,
        cross_buckets: torch.Tensor | None = None,
        retrieval_cosine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores [N] of paired vectors [N, k] (see `ScoringHead`)."""
        return self.head(query_vecs, doc_vecs, cross, cross_buckets, retrieval_cosine)

    def forward(
        self,
        query: dict[str, torch.Tensor],
        doc: dict[str, torch.Tensor],
        cross: torch.Tensor | None = None,
        cross_buckets: torch.Tensor | None = None,
        pair_request: torch.Tensor | None = None,
        retrieval_cosine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores [N] of N pairs: doc row i pairs with query row pair_request[i] (None: row i)."""
        q = self.encode_queries(query)
        if pair_request is not None:
            q = q[pair_request]
        return self.score_pairs(q, self.encode_docs(doc), cross, cross_buckets, retrieval_cosine)


class PairScorer(nn.Module):
    """The scoring head behind the one-dict convention of export and serving: {"query", "doc"[, "cross",
    "cross_buckets"][, "retrieval_cosine"]} -> scores [N]; the server repeats the query vector once per
    candidate. It holds the head alone, so the exported program carries no tower weights."""

    def __init__(self, model: CoarseRanker) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Paired vectors (and cross features, retrieval cosines) -> [N]."""
        rc = inputs["retrieval_cosine"] if self.head.uses_retrieval_cosine else None
        if self.head.three_tower:
            return self.head(inputs["query"], inputs["doc"], inputs["cross"], inputs["cross_buckets"], rc)
        return self.head(inputs["query"], inputs["doc"], retrieval_cosine=rc)


def encode_corpus(
    model: CoarseRanker, docs: pd.DataFrame, featurizer: FeaturizerConfig, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Every doc row -> (doc ids int64 [D], unit vectors float32 [D, k]): the matrix the bundle ships."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = docs["doc_id"].to_numpy(dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("encode_corpus: doc rows must have distinct doc ids")
    out = np.zeros((len(docs), model.config.doc_tower.out_dim), dtype=np.float32)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(docs), batch_size):
                part = docs.iloc[start : start + batch_size]
                out[start : start + len(part)] = model.encode_docs(featurize_docs(part, featurizer)).numpy()
    finally:
        model.train(was)
    return ids, out
