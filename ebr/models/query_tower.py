"""The query tower: Taobao MGDSPR user tower (seed 001) with a user-profile branch.

Q_mgs (multi-granular semantic unit) attends over the real-time, short-term and long-term behaviour
sequences (zero vector prepended); a [CLS] token self-attends over [CLS, Q_mgs, H_real, H_short, H_long,
H_user] (MGDSPR 2.1.3, plus the profile vector as one more token, and optionally the query's understood
category and brand as another), and its output is projected to `out_dim`
and L2-normalized. Every part switches off by one flag of `QueryTowerConfig`; a switched-off part has no
parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebr.models.behavior import (
    BehaviorItemEmbedding,
    LongTermSequenceEncoder,
    RealTimeSequenceEncoder,
    ShortTermSequenceEncoder,
)
from ebr.models.blocks.attention import TransformerLayer
from ebr.models.blocks.embedding import hashed_embedding
from ebr.models.config import FeaturizerConfig, QueryTowerConfig
from ebr.models.seeding import seeded
from ebr.models.semantic_unit import MultiGranularSemanticUnit
from ebr.models.user_profile import UserProfileEncoder


class QueryUnderstanding(nn.Module):
    """H_qu [B, d]: embeddings of the query's understood leaf category and brand, summed (zero when both are
    unknown). Query attribute features (category, NER, intent) sit beside the text in seeds 000 and 002."""

    def __init__(self, featurizer: FeaturizerConfig, dim: int, sparse: bool = False) -> None:
        super().__init__()
        self.category = hashed_embedding(featurizer.vocab.category + 1, dim, sparse)
        self.brand = hashed_embedding(featurizer.vocab.brand + 1, dim, sparse)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.category(inputs["query_category"]) + self.brand(inputs["query_brand"])


class QueryTower(nn.Module):
    """Query-tower inputs (ebr.models.inputs.featurize_queries) -> unit-norm query vectors [B, out_dim]."""

    def __init__(
        self,
        config: QueryTowerConfig,
        featurizer: FeaturizerConfig,
        sparse: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        with seeded(seed):
            self._build(config, featurizer, sparse)

    def _build(self, c: QueryTowerConfig, featurizer: FeaturizerConfig, sparse: bool) -> None:
        d = c.hidden_dim
        self.out_dim = c.out_dim
        personal = c.personalization
        self.semantic = MultiGranularSemanticUnit(
            featurizer, d, c.num_heads, c.word_transformer_layers, c.attention_dropout,
            c.multi_granular, personal and c.query_history, sparse,
        )  # fmt: skip
        g = self.semantic.num_granules
        use_rt = personal and c.realtime_sequence
        use_st = personal and c.short_term_sequence
        use_lt = personal and c.long_term_sequence
        self.behavior_items = (
            BehaviorItemEmbedding(featurizer, d, sparse) if (use_rt or use_st or use_lt) else None
        )
        self.realtime = (
            RealTimeSequenceEncoder(d, c.num_heads, c.lstm_layers, c.lstm_dropout, c.attention_dropout)
            if use_rt else None
        )  # fmt: skip
        self.short_term = ShortTermSequenceEncoder(d, c.num_heads, c.attention_dropout) if use_st else None
        self.long_term = LongTermSequenceEncoder(d, c.num_heads, c.attention_dropout) if use_lt else None
        self.user_profile = (
            UserProfileEncoder(
                featurizer, d, c.senet, c.senet_reduction, c.dcn, c.dcn_layers, c.dcn_low_rank,
                c.bilinear, c.bilinear_kind, sparse,
            )
            if personal and c.user_profile else None
        )  # fmt: skip
        self.understanding = QueryUnderstanding(featurizer, d, sparse) if c.query_understanding else None
        num_tokens = (g * (1 + int(use_rt) + int(use_st) + int(use_lt)) + int(self.user_profile is not None)
                      + int(self.understanding is not None))
        self.num_tokens = num_tokens
        if c.cls_fusion:
            self.cls = nn.Parameter(torch.zeros(1, 1, d))
            nn.init.normal_(self.cls, std=d**-0.5)
            # Token-type embeddings tell the fusion which source each token came from.
            self.token_type = nn.Parameter(torch.zeros(1, num_tokens + 1, d))
            nn.init.normal_(self.token_type, std=d**-0.5)
            self.fusion = nn.ModuleList(
                TransformerLayer(d, c.num_heads, dropout=c.attention_dropout) for _ in range(c.fusion_layers)
            )
            self.output = nn.Linear(d, c.out_dim)
        else:
            self.cls = None
            self.token_type = None
            self.fusion = None
            self.output = nn.Linear(num_tokens * d, c.out_dim)

    def tokens(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fusion tokens [B, N, d]: Q_mgs, then H_real, H_short, H_long (each [B, G, d]), then H_user and
        H_qu (when on)."""
        q = self.semantic(inputs)
        parts = [q]
        if self.behavior_items is not None:
            encoders = [(w, e) for w, e in (("rt", self.realtime), ("st", self.short_term)) if e is not None]
            windows = [w for w, _ in encoders] + (["lt"] if self.long_term is not None else [])
            seqs = self.behavior_items.windows(inputs, windows, project=tuple(w for w, _ in encoders))
            for w, encoder in encoders:
                parts.append(encoder(seqs[w], inputs[f"seq_{w}_doc_ids"] > 0, q))
            if self.long_term is not None:
                parts.append(self.long_term(seqs["lt"], inputs["seq_lt_doc_ids"] > 0, q))
        if self.user_profile is not None:
            parts.append(self.user_profile(inputs).unsqueeze(1))
        if self.understanding is not None:
            parts.append(self.understanding(inputs).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query-tower inputs -> [B, out_dim], unit L2 norm."""
        x = self.tokens(inputs)
        if self.fusion is not None and self.cls is not None and self.token_type is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.token_type
            for layer in self.fusion[:-1]:
                x = layer(x)
            # only the [CLS] row is read out: the last layer computes that row alone
            out = self.output(self.fusion[-1].first_token(x)[:, 0])
        else:
            out = self.output(x.flatten(1))
        return F.normalize(out, dim=-1)
