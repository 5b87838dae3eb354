"""DCN-v2 cross network: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l (seed 000, "DCN", second version).

The full-rank W_l is the DCN-v2 layer; `low_rank` factorizes it as U V^T (DCN-v2's low-rank variant) to cut
parameters for wide inputs.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossNetwork(nn.Module):
    """Stacked explicit feature-crossing layers with residuals; output has the input's size."""

    def __init__(self, dim: int, num_layers: int = 2, low_rank: int | None = None) -> None:
        super().__init__()
        if dim < 1 or num_layers < 1 or (low_rank is not None and low_rank < 1):
            raise ValueError(
                f"CrossNetwork needs dim, num_layers (and low_rank) >= 1, got {dim}, {num_layers}, {low_rank}"
            )
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            if low_rank is None:
                self.layers.append(nn.Linear(dim, dim))
            else:
                self.layers.append(
                    nn.Sequential(nn.Linear(dim, low_rank, bias=False), nn.Linear(low_rank, dim))
                )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """[B, dim] -> [B, dim]."""
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x
