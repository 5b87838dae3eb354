"""SENet field reweighting (squeeze, excitation, re-weight), as used in FiBiNet and SENet two-tower models.

Seed 000 (vector recall overview, "SENet & FiBiNet") and seed 003 ("SENet 双塔模型"): z_i = mean of field
i's embedding, A = sigmoid(W2 relu(W1 z)) with squeeze ratio r, V = [a_1 e_1, ..., a_n e_n].
"""

from __future__ import annotations

import torch
from torch import nn


class SENet(nn.Module):
    """Learns one importance weight in (0, 1) per field and rescales the field embeddings by it."""

    def __init__(self, num_fields: int, reduction_ratio: int = 3) -> None:
        super().__init__()
        if num_fields < 1 or reduction_ratio < 1:
            raise ValueError(
                f"SENet needs num_fields >= 1 and reduction_ratio >= 1, got {num_fields}, {reduction_ratio}"
            )
        hidden = max(1, num_fields // reduction_ratio)
        self.squeeze_to_hidden = nn.Linear(num_fields, hidden)
        self.hidden_to_fields = nn.Linear(hidden, num_fields)
        # Field means z start near 0, so a negative initial bias would leave every squeeze unit dead.
        nn.init.zeros_(self.squeeze_to_hidden.bias)

    def field_weights(self, fields: torch.Tensor) -> torch.Tensor:
        """[B, F, d] -> the excitation weights [B, F]."""
        z = fields.mean(dim=-1)
        return torch.sigmoid(self.hidden_to_fields(torch.relu(self.squeeze_to_hidden(z))))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """[B, F, d] -> reweighted [B, F, d]."""
        return fields * self.field_weights(fields).unsqueeze(-1)
