"""Attention blocks of the Taobao MGDSPR query tower (seed 001).

- `MultiHeadAttention`: scaled dot-product attention with a key mask (self-attention over behaviours).
- `ZeroVectorAttention`: query attention over a history with an all-zero vector prepended, so the query can
  attend to "nothing" when no past behaviour is related to it (MGDSPR 2.1.2): the zero slot scores 0 and
  contributes 0, and the output projection has no bias, so attending only to it yields exactly zero.
- `TransformerLayer`: post-norm self-attention + feed-forward (q_seg_seq over words, [CLS] fusion).

Training calls these blocks on small tensors (a batch of 256 rows, 10-27 tokens), where the count of kernels
matters more than their arithmetic: the attention runs in one fused `scaled_dot_product_attention` unless the
weights are asked for, and a self-attention's (or a history's key/value) projections are one matrix product.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout: nn.Dropout,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split q [B,h,Nq,dh], k/v [B,h,T,dh], mask [B,T] (true = valid) -> (out [B,Nq,h*dh], w [B,h,Nq,T] or None).

    A row whose keys are all masked gets uniform weights (finite), never NaN; callers mask such outputs. Without
    `need_weights` the same softmax runs fused (an additive mask of the dtype's minimum keeps that rule).
    """
    if need_weights:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        out = dropout(weights) @ v
    else:
        bias = None
        if mask is not None:
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill_(~mask, torch.finfo(q.dtype).min)[:, None, None, :]
        p = dropout.p if dropout.training else 0.0
        out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p), None
    b, h, n, dh = out.shape
    return out.transpose(1, 2).reshape(b, n, h * dh), weights


def _fused_linear(x: torch.Tensor, layers: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, ...]:
    """`(layer(x) for layer in layers)` as one matrix product (the layers share an input and a bias setting)."""
    weight = torch.cat([m.weight for m in layers])
    bias = None if layers[0].bias is None else torch.cat([m.bias for m in layers])
    return F.linear(x, weight, bias).split([m.out_features for m in layers], dim=-1)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with projections; returns the output and, when asked, the weights."""

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0, out_bias: bool = True) -> None:
        super().__init__()
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"attention dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim, bias=out_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query [B, Nq, d], key/value [B, T, d], key_mask [B, T] -> ([B, Nq, d], weights [B, h, Nq, T] when
        `need_weights`, else None)."""
        h = self.num_heads
        if query is key and key is value:  # self-attention: one product for q, k and v
            q, k, v = _fused_linear(query, (self.q_proj, self.k_proj, self.v_proj))
        elif key is value:
            q = self.q_proj(query)
            k, v = _fused_linear(key, (self.k_proj, self.v_proj))
        else:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        out, w = _attend(
            _split_heads(q, h), _split_heads(k, h), _split_heads(v, h), key_mask, self.dropout, need_weights
        )
        return self.out_proj(out), w


class ZeroVectorAttention(MultiHeadAttention):
    """MGDSPR query attention over a history with a prepended zero vector (slot 0 of the weights); the same
    projections as `MultiHeadAttention`, without an output bias (an empty history must give a zero output)."""

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__(dim, num_heads, dropout, out_bias=False)

    def forward(  # type: ignore[override]  # keys first, values optional: the history attends to itself
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        key_mask: torch.Tensor,
        values: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query [B, Nq, d] over keys [B, T, d] (values default to keys), key_mask [B, T] true = valid.

        Returns ([B, Nq, d], weights [B, h, Nq, T + 1] when `need_weights`, else None); weight slot 0 is the
        zero vector.
        """
        h = self.num_heads
        if values is None:
            k, v = _fused_linear(keys, (self.k_proj, self.v_proj))
        else:
            k, v = self.k_proj(keys), self.v_proj(values)
        zero = torch.zeros_like(k[:, :1])
        k = torch.cat([zero, k], dim=1)
        v = torch.cat([zero, v], dim=1)
        mask = torch.cat([torch.ones_like(key_mask[:, :1]), key_mask], dim=1)
        out, w = _attend(
            _split_heads(self.q_proj(query), h), _split_heads(k, h), _split_heads(v, h), mask, self.dropout,
            need_weights,
        )
        return self.out_proj(out), w


class TransformerLayer(nn.Module):
    """Post-norm Transformer encoder layer: x = LN(x + MHA(x)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, num_heads: int = 8, ffn_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.ReLU(), nn.Linear(ffn_mult * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, d] with optional mask [B, L] (true = valid keys) -> [B, L, d]."""
        a, _ = self.attention(x, x, x, mask)
        x = self.norm1(x + self.dropout(a))
        return self.norm2(x + self.dropout(self.ffn(x)))

    def first_token(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Row 0 of `forward(x, mask)`, [B, 1, d], computed alone: position 0 attends over every token, but no
        other position's output is built (a [CLS] read-out needs only its own row: 1/L of the layer's cost)."""
        head = x[:, :1]
        a, _ = self.attention(head, x, x, mask)
        head = self.norm1(head + self.dropout(a))
        return self.norm2(head + self.dropout(self.ffn(head)))
