"""Embedding tables for hashed ids (padding row 0 stays zero) and for bucketized numeric columns."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ebr.models.blocks.pooling import masked_mean


def hashed_embedding(num_embeddings: int, dim: int, sparse: bool = False) -> nn.Embedding:
    """A table for hashed ids, row 0 = padding; rows start small (std 1/sqrt(dim)) so bag means are tame."""
    if num_embeddings < 1 or dim < 1:
        raise ValueError(f"embedding needs num_embeddings >= 1 and dim >= 1, got {num_embeddings}, {dim}")
    emb = nn.Embedding(num_embeddings, dim, padding_idx=0, sparse=sparse)
    nn.init.normal_(emb.weight, std=dim**-0.5)
    with torch.no_grad():
        emb.weight[0].zero_()
    return emb


def bag_mean(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean of `table`'s rows over each bag of ids [..., L], padding id 0 skipped -> [..., d] (an empty bag gives
    zeros): `masked_mean(table(ids), ids > 0)` in one kernel, with the table's sparse-gradient setting. Graph
    export (serving programs, ONNX) gets the two-step form: ONNX has no bag with a padding id."""
    if table.padding_idx != 0:
        raise ValueError(f"bag_mean needs a table whose padding id is 0, got padding_idx={table.padding_idx}")
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        return masked_mean(table(ids), ids > 0)
    flat = ids.reshape(-1, ids.shape[-1])
    out = F.embedding_bag(flat, table.weight, mode="mean", padding_idx=0, sparse=table.sparse)
    return out.view(*ids.shape[:-1], table.embedding_dim)


class BucketEmbedding(nn.Module):
    """One embedding per bucketized numeric column, stored in a single table with per-column offsets.

    Bucket 0 (null) is a learned row of each column, not padding: a missing statistic is informative.
    """

    def __init__(self, num_ids: Sequence[int], dim: int, sparse: bool = False) -> None:
        super().__init__()
        if any(n < 1 for n in num_ids):
            raise ValueError(f"every numeric column needs at least one bucket, got {list(num_ids)}")
        self.num_columns = len(num_ids)
        self.dim = dim
        offsets = [0]
        for n in num_ids[:-1]:
            offsets.append(offsets[-1] + n)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.table = nn.Embedding(max(1, sum(num_ids)), dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=dim**-0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, N] bucket ids -> [B, N, dim]."""
        return self.table(ids + self.offsets)
