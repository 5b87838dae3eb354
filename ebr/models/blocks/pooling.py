"""Masked mean pooling: the MGDSPR aggregation for char/word bags and long-term fields (seed 001)."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` [..., L, d] over positions where `mask` [..., L] is true; all-false rows give zeros."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=-2) / m.sum(dim=-2).clamp(min=1.0)
