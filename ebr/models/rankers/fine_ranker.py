"""The fine ranker (teacher): a one-tower interaction model over query, user, doc and cross-feature fields.

Every input is a field embedding (seed 002: the fine ranker is a single interaction tower); the fields are
crossed by DCN-v2 (cross layers beside a deep MLP, formula 12) or FiBiNet (SENet + bilinear interaction of
the raw and the reweighted fields), and MMoE heads predict click, like, favorite and comment (formulas 19-23).
The ranking score is a fixed weighting of the task logits (`FineRankerConfig.effective_score_weights`).
"""

from __future__ import annotations

import torch
from torch import nn

from ebr.models.blocks.bilinear import BilinearInteraction
from ebr.models.blocks.cross import CrossNetwork
from ebr.models.blocks.embedding import BucketEmbedding, hashed_embedding
from ebr.models.blocks.mlp import MLP
from ebr.models.blocks.mmoe import MMoE
from ebr.models.blocks.pooling import masked_mean
from ebr.models.blocks.senet import SENet
from ebr.models.inputs import NUM_GENDER_IDS
from ebr.models.rankers.config import FineRankerConfig
from ebr.models.rankers.cross_features import num_buckets

QUERY_FIELDS = ("query_words", "query_bigrams", "user_id", "user_gender", "user_age", "user_city",
                "user_profile_tags", "user_seq_categories")
DOC_FIELDS = ("doc_id", "title_words", "category_l1", "category_l2", "category_leaf", "brand", "attributes",
              "tags", "author_id")


def signed_log1p(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): counts compressed, ratios and -1/0/1 matches kept in a small range."""
    return torch.sign(x) * torch.log1p(x.abs())


class FineRanker(nn.Module):
    """Ranking rows -> task logits [N, T] and the ranking score [N]; initial weights depend on the seed only."""

    def __init__(self, config: FineRankerConfig) -> None:
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._build(config)

    def _build(self, c: FineRankerConfig) -> None:
        f = c.featurizer
        v = f.vocab
        e = c.embed_dim
        sp = c.sparse_embeddings
        self.tasks = c.tasks
        self.words = hashed_embedding(v.word + 1, e, sp)  # query words and title words share one table
        self.bigrams = hashed_embedding(v.bigram + 1, e, sp)
        self.user_id = hashed_embedding(v.user_id + 1, e, sp)
        self.gender = hashed_embedding(NUM_GENDER_IDS, e, sp)
        self.age = BucketEmbedding([f.user_age.num_ids], e, sp)
        self.city = hashed_embedding(v.city + 1, e, sp)
        self.profile_tags = hashed_embedding(v.profile_tag + 1, e, sp)
        self.categories = hashed_embedding(v.category + 1, e, sp)  # doc categories and sequence categories
        self.user_numeric = BucketEmbedding([x.num_ids for x in f.user_numeric], e, sp) if f.user_numeric else None
        self.doc_id = hashed_embedding(v.doc_id + 1, e, sp)
        self.brand = hashed_embedding(v.brand + 1, e, sp)
        self.attributes = hashed_embedding(v.attribute + 1, e, sp)
        self.tags = hashed_embedding(v.tag + 1, e, sp)
        self.author = hashed_embedding(v.author_id + 1, e, sp)
        self.doc_numeric = BucketEmbedding([x.num_ids for x in f.doc_numeric], e, sp) if f.doc_numeric else None
        self.cross_embedding = BucketEmbedding(num_buckets(c.cross_features), e, sp)
        n_cross = len(c.cross_features)
        self.num_fields = (len(QUERY_FIELDS) + len(f.user_numeric) + len(DOC_FIELDS) + len(f.doc_numeric)
                           + n_cross)
        flat = self.num_fields * e + n_cross
        if c.interaction == "dcn":
            self.cross_net: CrossNetwork | None = CrossNetwork(flat, c.dcn_layers, c.dcn_low_rank)
            self.senet: SENet | None = None
            self.bilinear: BilinearInteraction | None = None
            self.bilinear_senet: BilinearInteraction | None = None
            self.deep = MLP(flat, c.deep_dims, c.dropout, activate_last=True)
            head_in = flat + c.deep_dims[-1]
        else:
            self.cross_net = None
            self.senet = SENet(self.num_fields, c.senet_reduction)
            self.bilinear = BilinearInteraction(self.num_fields, e, c.bilinear_kind)
            self.bilinear_senet = BilinearInteraction(self.num_fields, e, c.bilinear_kind)
            self.deep = MLP(2 * self.bilinear.num_pairs * e + n_cross, c.deep_dims, c.dropout, activate_last=True)
            head_in = c.deep_dims[-1]
        mt = c.multi_task
        if mt.enabled:
            self.heads: nn.Module = MMoE(head_in, len(self.tasks), mt.num_experts, mt.expert_dims, mt.tower_dims,
                                         c.dropout)
        else:
            self.heads = MLP(head_in, [*mt.tower_dims, 1], c.dropout)
        self.register_buffer("score_weights", torch.tensor(c.effective_score_weights, dtype=torch.float32))

    def query_fields(self, q: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query/user fields [R, Fq, e] (QUERY_FIELDS, then the configured user numeric columns)."""
        words, bigrams, tags = q["query_words"], q["query_bigrams"], q["user_profile_tags"]
        seq = torch.cat([q["seq_rt_categories"], q["seq_st_categories"], q["seq_lt_categories"]], dim=1)
        parts = [
            masked_mean(self.words(words), words > 0),
            masked_mean(self.bigrams(bigrams), bigrams > 0),
            self.user_id(q["user_id"]),
            self.gender(q["user_gender"]),
            self.age(q["user_age"].unsqueeze(1)).squeeze(1),
            self.city(q["user_city"]),
            masked_mean(self.profile_tags(tags), tags > 0),
            masked_mean(self.categories(seq), seq > 0),
        ]
        out = torch.stack(parts, dim=1)
        if self.user_numeric is not None:
            out = torch.cat([out, self.user_numeric(q["user_numeric"])], dim=1)
        return out

    def doc_fields(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """Doc fields [N, Fd, e] (DOC_FIELDS, then the configured doc numeric columns)."""
        title, attrs, tags = d["title_words"], d["attributes"], d["tags"]
        parts = [
            self.doc_id(d["doc_id"]),
            masked_mean(self.words(title), title > 0),
            self.categories(d["category_l1"]),
            self.categories(d["category_l2"]),
            self.categories(d["category_leaf"]),
            self.brand(d["brand"]),
            masked_mean(self.attributes(attrs), attrs > 0),
            masked_mean(self.tags(tags), tags > 0),
            self.author(d["author_id"]),
        ]
        out = torch.stack(parts, dim=1)
        if self.doc_numeric is not None:
            out = torch.cat([out, self.doc_numeric(d["doc_numeric"])], dim=1)
        return out

    def task_logits(
        self,
        query: dict[str, torch.Tensor],
        doc: dict[str, torch.Tensor],
        cross: torch.Tensor,
        cross_buckets: torch.Tensor,
        pair_request: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [N, T] of N pairs: doc row i pairs with query row pair_request[i] (None: row i)."""
        qf = self.query_fields(query)
        if pair_request is not None:
            qf = qf[pair_request]
        fields = torch.cat([qf, self.doc_fields(doc), self.cross_embedding(cross_buckets)], dim=1)
        dense = signed_log1p(cross)
        if self.cross_net is not None:
            x0 = torch.cat([fields.flatten(1), dense], dim=1)
            h = torch.cat([self.cross_net(x0), self.deep(x0)], dim=1)
        else:
            assert self.senet is not None and self.bilinear is not None and self.bilinear_senet is not None
            p = self.bilinear(fields).flatten(1)
            q = self.bilinear_senet(self.senet(fields)).flatten(1)
            h = self.deep(torch.cat([p, q, dense], dim=1))
        return self.heads(h)

    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The ranking score [N] of task logits [N, T]."""
        return logits @ self.score_weights

    def forward(
        self,
        query: dict[str, torch.Tensor],
        doc: dict[str, torch.Tensor],
        cross: torch.Tensor,
        cross_buckets: torch.Tensor,
        pair_request: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Ranking scores [N] of N pairs (see `task_logits`)."""
        return self.score_logits(self.task_logits(query, doc, cross, cross_buckets, pair_request))
