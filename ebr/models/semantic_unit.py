"""The MGDSPR multi-granular semantic unit (Taobao, seed 001, 2.1.1).

From the query's char unigrams, char bigrams and words, and the user's recent queries, it builds
q_1gram, q_2gram, q_seg (means), q_seg_seq (Transformer over words, then mean), q_his_seq (q_seg attending
over the recent queries) and q_mix (their sum), stacked as Q_mgs [B, 6, d]. The history attention uses the
zero-vector trick so a user without recent queries (or a logged-out one) contributes nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from ebr.models.blocks.attention import TransformerLayer, ZeroVectorAttention
from ebr.models.blocks.embedding import bag_mean, hashed_embedding
from ebr.models.blocks.pooling import masked_mean
from ebr.models.config import FeaturizerConfig


class MultiGranularSemanticUnit(nn.Module):
    """Query semantics at several granularities: [B, G, d], G = 6 (5 without history, 1 when off)."""

    def __init__(
        self,
        featurizer: FeaturizerConfig,
        dim: int,
        num_heads: int = 8,
        transformer_layers: int = 1,
        dropout: float = 0.0,
        multi_granular: bool = True,
        query_history: bool = True,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        v = featurizer.vocab
        self.word_emb = hashed_embedding(v.word + 1, dim, sparse)
        self.multi_granular = multi_granular
        self.query_history = multi_granular and query_history
        self.unigram_emb = hashed_embedding(v.unigram + 1, dim, sparse) if multi_granular else None
        self.bigram_emb = hashed_embedding(v.bigram + 1, dim, sparse) if multi_granular else None
        if multi_granular:
            self.word_pos = nn.Parameter(torch.zeros(featurizer.max_len.query_words, dim))
            nn.init.normal_(self.word_pos, std=dim**-0.5)
            self.word_transformer = nn.ModuleList(
                TransformerLayer(dim, num_heads, dropout=dropout) for _ in range(transformer_layers)
            )
        else:
            self.word_pos = None
            self.word_transformer = None
        self.history_attention = ZeroVectorAttention(dim, num_heads, dropout) if self.query_history else None
        self.num_granules = (6 if self.query_history else 5) if multi_granular else 1

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query-tower inputs -> Q_mgs [B, G, d]."""
        words = inputs["query_words"]
        word_mask = words > 0
        word_vecs = self.word_emb(words)
        q_seg = masked_mean(word_vecs, word_mask)
        if self.unigram_emb is None or self.bigram_emb is None or self.word_transformer is None:
            return q_seg.unsqueeze(1)
        uni = inputs["query_unigrams"]
        bi = inputs["query_bigrams"]
        q_1gram = bag_mean(self.unigram_emb, uni)
        q_2gram = bag_mean(self.bigram_emb, bi)
        x = word_vecs + self.word_pos
        # An empty query would leave every key masked; letting it see position 0 keeps softmax finite, and the
        # masked mean below ignores that position anyway.
        seen = word_mask.clone()
        seen[:, 0] = True
        for layer in self.word_transformer:
            x = layer(x, seen)
        q_seg_seq = masked_mean(x, word_mask)
        granules = [q_1gram, q_2gram, q_seg, q_seg_seq]
        if self.history_attention is not None:
            hist = inputs["recent_query_words"]  # [B, K, Lw]
            hist_vecs = bag_mean(self.word_emb, hist)  # [B, K, d]
            q_his, _ = self.history_attention(q_seg.unsqueeze(1), hist_vecs, (hist > 0).any(dim=-1))
            granules.append(q_his.squeeze(1))
        q_mix = torch.stack(granules, dim=0).sum(dim=0)
        granules.append(q_mix)
        return torch.stack(granules, dim=1)
