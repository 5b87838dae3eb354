"""MMoE (multi-gate mixture of experts) for multi-objective heads (seed 000, "MMoE", formulas 19-22).

h_i = e_i(x); g_k = softmax(W_k x + b_k); o_k = sum_i g_k,i h_i; y_k = f_k(o_k).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ebr.models.blocks.mlp import MLP


class MMoE(nn.Module):
    """Shared experts, one softmax gate and one tower per task; returns one logit per task."""

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        num_experts: int = 4,
        expert_dims: Sequence[int] = (128,),
        tower_dims: Sequence[int] = (64,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_tasks < 1 or num_experts < 1:
            raise ValueError(
                f"MMoE needs num_tasks >= 1 and num_experts >= 1, got {num_tasks}, {num_experts}"
            )
        self.experts = nn.ModuleList(
            MLP(in_dim, expert_dims, dropout, activate_last=True) for _ in range(num_experts)
        )
        self.gates = nn.ModuleList(nn.Linear(in_dim, num_experts) for _ in range(num_tasks))
        self.towers = nn.ModuleList(MLP(expert_dims[-1], [*tower_dims, 1], dropout) for _ in range(num_tasks))

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] -> per-task expert weights [B, num_tasks, num_experts] (rows sum to 1)."""
        return torch.stack([torch.softmax(g(x), dim=-1) for g in self.gates], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] -> task logits [B, num_tasks]."""
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, h]
        mixed = torch.einsum("bte,beh->bth", self.gate_weights(x), experts)
        return torch.cat([tower(mixed[:, k]) for k, tower in enumerate(self.towers)], dim=-1)
