"""The two-tower retrieval model: query tower, doc tower and the score temperature.

score(q, d) = <q, d> / tau on L2-normalized vectors (cosine with temperature, seed 003 "归一化和温度系数";
tau = 2 from Taobao MGDSPR, seed 001). Initial weights are a function of `TwoTowerConfig.seed` alone.
"""

from __future__ import annotations

import torch
from torch import nn

from ebr.models.config import TwoTowerConfig
from ebr.models.doc_tower import DocTower
from ebr.models.query_tower import QueryTower


class TwoTowerModel(nn.Module):
    """Both towers and the temperature; encode each side separately, score by scaled inner product."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = config
        self.temperature = config.effective_temperature
        sparse = config.sparse_embeddings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.query_tower = QueryTower(config.query_tower, config.featurizer, sparse)
            self.doc_tower = DocTower(config.doc_tower, config.featurizer, sparse)
        if config.share_word_embeddings:  # one word table: the doc tower's own (unused) one is dropped
            self.doc_tower.title_words = self.query_tower.semantic.word_emb

    def encode_queries(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query-tower inputs -> normalized query vectors [B, k]."""
        return self.query_tower(inputs)

    def encode_docs(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Doc-tower inputs -> normalized doc vectors [B, k]."""
        return self.doc_tower(inputs)

    def score(self, query: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
        """Row-wise scores [B] of paired vectors: <q_i, d_i> / tau."""
        return (query * doc).sum(dim=-1) / self.temperature

    def score_matrix(self, query: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        """All-pairs scores [B, N] of query vectors [B, k] against doc vectors [N, k]."""
        return query @ docs.T / self.temperature

    def forward(
        self, query_inputs: dict[str, torch.Tensor], doc_inputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Encode paired rows: {"query", "doc", "score"}."""
        q = self.encode_queries(query_inputs)
        d = self.encode_docs(doc_inputs)
        return {"query": q, "doc": d, "score": self.score(q, d)}
