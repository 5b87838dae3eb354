"""Behaviour-sequence encoders of the MGDSPR query tower (Taobao, seed 001, 2.1.2).

Each behaviour is its doc id plus side information (category, author, event type), embedded and
concatenated. Real-time: residual LSTM then multi-head self-attention; short-term: self-attention;
long-term: each field mean-pooled over the sequence. Each is then attended by every Q_mgs vector with a
zero vector prepended, giving [B, G, d].
"""

from __future__ import annotations

import torch
from torch import nn

from ebr.models.blocks.attention import MultiHeadAttention, ZeroVectorAttention
from ebr.models.blocks.embedding import hashed_embedding
from ebr.models.blocks.pooling import masked_mean
from ebr.models.blocks.recurrent import ResidualLSTM, reverse_padded
from ebr.models.config import SEQUENCE_FIELDS, FeaturizerConfig
from ebr.models.inputs import NUM_EVENT_TYPE_IDS


class BehaviorItemEmbedding(nn.Module):
    """Embeds a behaviour's doc id, category, author and event type (tables shared by all windows)."""

    def __init__(self, featurizer: FeaturizerConfig, dim: int, sparse: bool = False) -> None:
        super().__init__()
        v = featurizer.vocab
        self.doc_ids = hashed_embedding(v.doc_id + 1, dim, sparse)
        self.categories = hashed_embedding(v.category + 1, dim, sparse)
        self.authors = hashed_embedding(v.author_id + 1, dim, sparse)
        self.event_types = hashed_embedding(NUM_EVENT_TYPE_IDS, dim, sparse)
        self.project = nn.Linear(len(SEQUENCE_FIELDS) * dim, dim)

    def fields(self, inputs: dict[str, torch.Tensor], window: str) -> list[torch.Tensor]:
        """The four field embeddings [B, L, d] of one window, in SEQUENCE_FIELDS order."""
        return self.windows(inputs, [window], project=())[window]  # type: ignore[return-value]

    def forward(self, inputs: dict[str, torch.Tensor], window: str) -> torch.Tensor:
        """Item vectors [B, L, d] of one window: concat(id, side info) projected to d."""
        return self.windows(inputs, [window], project=(window,))[window]  # type: ignore[return-value]

    def windows(
        self, inputs: dict[str, torch.Tensor], windows: list[str], project: tuple[str, ...]
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Per window: its projected item vectors [B, L, d] when named in `project`, else its four field
        embeddings. One lookup per table and one projection serve every window together (a training step's
        cost here is the count of kernels, not their size); windows in `project` must come first."""
        n = len(project)
        if list(project) != windows[:n]:
            raise ValueError(f"projected windows {project} must lead the windows {windows}")
        lengths = [inputs[f"seq_{w}_doc_ids"].shape[1] for w in windows]
        tables = (self.doc_ids, self.categories, self.authors, self.event_types)
        per_field = [
            table(torch.cat([inputs[f"seq_{w}_{field}"] for w in windows], dim=1))
            for table, field in zip(tables, SEQUENCE_FIELDS, strict=True)
        ]
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        head = sum(lengths[:n])
        if n:
            items = self.project(torch.cat([f[:, :head] for f in per_field], dim=-1))
            out.update(zip(project, items.split(lengths[:n], dim=1), strict=True))
        start = head
        for w, length in zip(windows[n:], lengths[n:], strict=True):  # slices: no empty split in an export
            out[w] = [f[:, start : start + length] for f in per_field]
            start += length
        return out


class RealTimeSequenceEncoder(nn.Module):
    """Real-time behaviours: residual LSTM (chronological) -> self-attention -> zero-vector attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.lstm = ResidualLSTM(dim, lstm_layers, lstm_dropout)
        self.self_attention = MultiHeadAttention(dim, num_heads, dropout)
        self.query_attention = ZeroVectorAttention(dim, num_heads, dropout)

    def forward(self, items: torch.Tensor, mask: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """items [B, L, d] (newest first), mask [B, L], queries Q_mgs [B, G, d] -> [B, G, d]."""
        h = self.lstm(reverse_padded(items, mask))
        h, _ = self.self_attention(h, h, h, mask)
        out, _ = self.query_attention(queries, h, mask)
        return out


class ShortTermSequenceEncoder(nn.Module):
    """Short-term behaviours: self-attention -> zero-vector attention (MGDSPR: as real-time, no LSTM)."""

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, num_heads, dropout)
        self.query_attention = ZeroVectorAttention(dim, num_heads, dropout)

    def forward(self, items: torch.Tensor, mask: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """items [B, L, d], mask [B, L], queries [B, G, d] -> [B, G, d]."""
        h, _ = self.self_attention(items, items, items, mask)
        out, _ = self.query_attention(queries, h, mask)
        return out


class LongTermSequenceEncoder(nn.Module):
    """Long-term behaviours: one mean-pooled vector per field (id, category, author, event type), attended by
    the query with the zero vector (MGDSPR long-term module)."""

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.query_attention = ZeroVectorAttention(dim, num_heads, dropout)

    def forward(self, fields: list[torch.Tensor], mask: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """fields: per-field [B, L, d], mask [B, L], queries [B, G, d] -> [B, G, d]."""
        pooled = torch.stack([masked_mean(f, mask) for f in fields], dim=1)  # [B, F, d]
        present = mask.any(dim=1, keepdim=True).expand(-1, pooled.shape[1])
        out, _ = self.query_attention(queries, pooled, present)
        return out
