"""User profile encoder: hashed ids and bucketized numbers as fields, crossed by SENet, DCN-v2 and FiBiNet
bilinear interaction (seed 000 "特征交叉"; seed 003 "SENet 双塔模型").
"""

from __future__ import annotations

import torch
from torch import nn

from ebr.models.blocks.bilinear import BilinearInteraction, BilinearKind
from ebr.models.blocks.cross import CrossNetwork
from ebr.models.blocks.embedding import BucketEmbedding, bag_mean, hashed_embedding
from ebr.models.blocks.mlp import MLP
from ebr.models.blocks.senet import SENet
from ebr.models.config import FeaturizerConfig
from ebr.models.inputs import NUM_GENDER_IDS


class UserProfileEncoder(nn.Module):
    """Fields (user id, gender, age, city, profile tags, numeric columns) -> one user vector [B, d].

    A logged-out user has every id at 0; the encoder still returns a (learned, constant) vector.
    """

    def __init__(
        self,
        featurizer: FeaturizerConfig,
        dim: int,
        senet: bool = True,
        senet_reduction: int = 3,
        dcn: bool = True,
        dcn_layers: int = 2,
        dcn_low_rank: int | None = None,
        bilinear: bool = False,
        bilinear_kind: BilinearKind = "field_all",
        sparse: bool = False,
    ) -> None:
        super().__init__()
        v = featurizer.vocab
        self.user_id = hashed_embedding(v.user_id + 1, dim, sparse)
        self.gender = hashed_embedding(NUM_GENDER_IDS, dim, sparse)
        self.age = BucketEmbedding([featurizer.user_age.num_ids], dim, sparse)
        self.city = hashed_embedding(v.city + 1, dim, sparse)
        self.profile_tags = hashed_embedding(v.profile_tag + 1, dim, sparse)
        nums = [f.num_ids for f in featurizer.user_numeric]
        self.numeric = BucketEmbedding(nums, dim, sparse) if nums else None
        self.num_fields = 5 + len(nums)
        self.senet = SENet(self.num_fields, senet_reduction) if senet else None
        flat = self.num_fields * dim
        self.cross = CrossNetwork(flat, dcn_layers, dcn_low_rank) if dcn else None
        # FiBiNet: p = Bilinear(E) and q = Bilinear(SENet(E)), two separate interaction layers.
        self.bilinear = BilinearInteraction(self.num_fields, dim, bilinear_kind) if bilinear else None
        self.bilinear_senet = (
            BilinearInteraction(self.num_fields, dim, bilinear_kind) if bilinear and senet else None
        )
        extra = 0
        if self.bilinear is not None:
            extra = self.bilinear.num_pairs * dim * (2 if senet else 1)
        self.mlp = MLP(flat + extra, [dim, dim])

    def field_embeddings(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The profile fields [B, F, d] before crossing."""
        tags = inputs["user_profile_tags"]
        fields = [
            self.user_id(inputs["user_id"]),
            self.gender(inputs["user_gender"]),
            self.age(inputs["user_age"].unsqueeze(1)).squeeze(1),
            self.city(inputs["user_city"]),
            bag_mean(self.profile_tags, tags),
        ]
        stacked = torch.stack(fields, dim=1)
        if self.numeric is not None:
            stacked = torch.cat([stacked, self.numeric(inputs["user_numeric"])], dim=1)
        return stacked

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query-tower inputs -> user vector [B, d]."""
        raw = self.field_embeddings(inputs)
        fields = self.senet(raw) if self.senet is not None else raw
        x = fields.flatten(1)
        if self.cross is not None:
            x = self.cross(x)
        if self.bilinear is not None:
            parts = [x, self.bilinear(raw).flatten(1)]
            if self.bilinear_senet is not None:
                parts.append(self.bilinear_senet(fields).flatten(1))
            x = torch.cat(parts, dim=1)
        return self.mlp(x)
