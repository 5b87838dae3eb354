"""The doc tower: MGDSPR item representation H_item = e + tanh(W_t * mean(title words)) (Taobao, seed 001,
2.2) with category, brand, attribute, tag, author and bucketized-statistic fields, optional SENet
reweighting (seed 003), an MLP and L2 normalization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebr.models.blocks.embedding import BucketEmbedding, bag_mean, hashed_embedding
from ebr.models.blocks.mlp import MLP
from ebr.models.blocks.senet import SENet
from ebr.models.config import DocTowerConfig, FeaturizerConfig
from ebr.models.seeding import seeded


class DocTower(nn.Module):
    """Doc-tower inputs (ebr.models.inputs.featurize_docs) -> L2-normalized doc vectors [B, out_dim]."""

    def __init__(
        self,
        config: DocTowerConfig,
        featurizer: FeaturizerConfig,
        sparse: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        with seeded(seed):
            self._build(config, featurizer, sparse)

    def _build(self, c: DocTowerConfig, featurizer: FeaturizerConfig, sparse: bool) -> None:
        v = featurizer.vocab
        d = c.hidden_dim
        self.out_dim = c.out_dim
        self.doc_id = hashed_embedding(v.doc_id + 1, d, sparse) if c.use_id else None
        if c.use_title:
            self.title_words = hashed_embedding(v.word + 1, d, sparse)
            self.title_proj = nn.Linear(d, d)
        else:
            self.title_words = None
            self.title_proj = None
        self.categories = hashed_embedding(v.category + 1, d, sparse) if c.use_categories else None
        self.brand = hashed_embedding(v.brand + 1, d, sparse) if c.use_brand else None
        self.attributes = hashed_embedding(v.attribute + 1, d, sparse) if c.use_attributes else None
        self.tags = hashed_embedding(v.tag + 1, d, sparse) if c.use_tags else None
        self.author = hashed_embedding(v.author_id + 1, d, sparse) if c.use_author else None
        nums = [f.num_ids for f in featurizer.doc_numeric]
        self.statistics = BucketEmbedding(nums, d, sparse) if c.use_statistics and nums else None
        self.num_fields = (
            int(c.use_id or c.use_title) + 3 * int(c.use_categories) + int(c.use_brand)
            + int(c.use_attributes) + int(c.use_tags) + int(c.use_author)
            + (len(nums) if self.statistics is not None else 0)
        )  # fmt: skip
        if self.num_fields == 0:
            raise ValueError(
                "doc tower has no input field: switch on a field or configure doc_numeric columns"
            )
        self.senet = SENet(self.num_fields, c.senet_reduction) if c.senet else None
        self.mlp = MLP(self.num_fields * d, [*c.mlp_dims, c.out_dim], c.dropout)

    def fields(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The doc fields [B, F, d]: H_item, categories l1/l2/leaf, brand, attributes, tags, author, stats."""
        parts: list[torch.Tensor] = []
        item: torch.Tensor | None = None
        if self.doc_id is not None:
            item = self.doc_id(inputs["doc_id"])
        if self.title_words is not None and self.title_proj is not None:
            words = inputs["title_words"]
            title = torch.tanh(self.title_proj(bag_mean(self.title_words, words)))
            item = title if item is None else item + title
        if item is not None:
            parts.append(item)
        if self.categories is not None:
            parts.extend(self.categories(inputs[k]) for k in ("category_l1", "category_l2", "category_leaf"))
        if self.brand is not None:
            parts.append(self.brand(inputs["brand"]))
        if self.attributes is not None:
            a = inputs["attributes"]
            parts.append(bag_mean(self.attributes, a))
        if self.tags is not None:
            t = inputs["tags"]
            parts.append(bag_mean(self.tags, t))
        if self.author is not None:
            parts.append(self.author(inputs["author_id"]))
        stacked = torch.stack(parts, dim=1)
        if self.statistics is not None:
            stacked = torch.cat([stacked, self.statistics(inputs["doc_numeric"])], dim=1)
        return stacked

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Doc-tower inputs -> [B, out_dim], unit L2 norm."""
        x = self.fields(inputs)
        if self.senet is not None:
            x = self.senet(x)
        return F.normalize(self.mlp(x.flatten(1)), dim=-1)
