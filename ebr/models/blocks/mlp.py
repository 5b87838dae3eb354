"""A plain multi-layer perceptron: the deep part of DCN and the towers' output stacks (seeds 000, 003)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Linear layers with ReLU and dropout between them; the last layer is linear unless `activate_last`."""

    def __init__(
        self, in_dim: int, dims: Sequence[int], dropout: float = 0.0, activate_last: bool = False
    ) -> None:
        super().__init__()
        if in_dim < 1 or not dims or any(d < 1 for d in dims):
            raise ValueError(f"MLP needs in_dim >= 1 and positive layer sizes, got {in_dim}, {list(dims)}")
        layers: list[nn.Module] = []
        prev = in_dim
        for i, d in enumerate(dims):
            layers.append(nn.Linear(prev, d))
            if i < len(dims) - 1 or activate_last:
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
            prev = d
        self.net = nn.Sequential(*layers)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., in_dim] -> [..., dims[-1]]."""
        return self.net(x)
