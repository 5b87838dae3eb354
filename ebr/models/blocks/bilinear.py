"""FiBiNet bilinear interaction: p_ij = (v_i W) * v_j for every field pair i < j (seed 000, "双线性交互层").

Three ways to share W, as in FiBiNet: one W for all pairs (`field_all`), one per left field (`field_each`),
one per pair (`field_interaction`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

BilinearKind = Literal["field_all", "field_each", "field_interaction"]


class BilinearInteraction(nn.Module):
    """Second-order field interactions (inner + Hadamard products): [B, F, d] -> [B, F(F-1)/2, d]."""

    def __init__(self, num_fields: int, dim: int, kind: BilinearKind = "field_all") -> None:
        super().__init__()
        if num_fields < 2:
            raise ValueError(f"BilinearInteraction needs at least 2 fields, got {num_fields}")
        if kind not in ("field_all", "field_each", "field_interaction"):
            raise ValueError(
                f"bilinear kind must be field_all, field_each or field_interaction, got {kind!r}"
            )
        self.kind = kind
        left, right = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("left", left, persistent=False)
        self.register_buffer("right", right, persistent=False)
        self.num_pairs = int(left.numel())
        n = {"field_all": 1, "field_each": num_fields, "field_interaction": self.num_pairs}[kind]
        self.weight = nn.Parameter(torch.empty(n, dim, dim))
        nn.init.xavier_uniform_(self.weight.view(n * dim, dim))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """[B, F, d] -> [B, P, d] with P = F(F-1)/2."""
        if self.kind == "field_all":
            vw = (fields @ self.weight[0])[:, self.left]
        elif self.kind == "field_each":
            vw = torch.einsum("bfd,fde->bfe", fields, self.weight)[:, self.left]
        else:
            vw = torch.einsum("bpd,pde->bpe", fields[:, self.left], self.weight)
        return vw * fields[:, self.right]
