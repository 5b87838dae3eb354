"""Residual stacked LSTM for the real-time behaviour sequence (Taobao MGDSPR, seed 001: 2 layers,
dropout 0.2, residual connections between LSTM layers).
"""

from __future__ import annotations

import torch
from torch import nn


def reverse_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reverse the valid prefix of each row of `x` [B, L, d] (valid = `mask` [B, L]); padding stays put.

    Sequences are stored newest first; reversing gives the chronological order an LSTM should read.
    """
    length = x.shape[1]
    n = mask.long().sum(dim=1, keepdim=True)
    pos = torch.arange(length, device=x.device).unsqueeze(0)
    idx = torch.where(pos < n, n - 1 - pos, pos)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class ResidualLSTM(nn.Module):
    """LSTM layers of equal width, each adding its input back (h_{l+1} = LSTM_l(dropout(h_l)) + h_l)."""

    def __init__(self, dim: int, num_layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        if dim < 1 or num_layers < 1:
            raise ValueError(f"ResidualLSTM needs dim >= 1 and num_layers >= 1, got {dim}, {num_layers}")
        self.layers = nn.ModuleList(nn.LSTM(dim, dim, batch_first=True) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, dim] (valid steps first, padding after) -> hidden states [B, L, dim].

        Padding comes after the valid steps, so it never influences a valid step's state.
        """
        h = x
        for i, lstm in enumerate(self.layers):
            inp = self.dropout(h) if i > 0 else h
            out, _ = lstm(inp)
            h = out + h
        return h
