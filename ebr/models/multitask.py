"""Multi-objective heads (click, like, favorite, comment): MMoE over [q, d, q*d].

Seed 000 "多目标与目标一致性" and seed 003 "多目标双塔模型"; per-task weights live in the config and are
applied by the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from ebr.models.blocks.mmoe import MMoE
from ebr.models.config import MultiObjectiveConfig


class MultiObjectiveHeads(nn.Module):
    """Query and doc vectors -> one logit per task [B, T], through MMoE over [q, d, q*d]."""

    def __init__(self, embed_dim: int, config: MultiObjectiveConfig) -> None:
        super().__init__()
        self.tasks = list(config.tasks)
        self.register_buffer("task_weights", torch.tensor(config.task_weights, dtype=torch.float32))
        self.mmoe = MMoE(
            3 * embed_dim, len(self.tasks), config.num_experts, config.expert_dims, config.tower_dims
        )

    def forward(self, query: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
        """query [B, k], doc [B, k] -> task logits [B, T] (order of `tasks`)."""
        return self.mmoe(torch.cat([query, doc, query * doc], dim=-1))


class DictInputHeads(nn.Module):
    """The heads behind the one-dict-of-tensors convention of export and serving: {"query", "doc"}."""

    def __init__(self, heads: MultiObjectiveHeads) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """{"query": [B, k], "doc": [B, k]} -> task logits [B, T]."""
        return self.heads(inputs["query"], inputs["doc"])
