"""Reusable network blocks, one per module, each citing the seed that describes it.

Blocks take plain tensors (no feature names), so the retrieval towers, the fine ranker and the coarse
ranker can all compose them.
"""

from ebr.models.blocks.attention import MultiHeadAttention, TransformerLayer, ZeroVectorAttention
from ebr.models.blocks.bilinear import BilinearInteraction
from ebr.models.blocks.cross import CrossNetwork
from ebr.models.blocks.embedding import BucketEmbedding, bag_mean, hashed_embedding
from ebr.models.blocks.mlp import MLP
from ebr.models.blocks.mmoe import MMoE
from ebr.models.blocks.pooling import masked_mean
from ebr.models.blocks.recurrent import ResidualLSTM, reverse_padded
from ebr.models.blocks.senet import SENet

__all__ = [
    "MLP",
    "MMoE",
    "SENet",
    "BilinearInteraction",
    "BucketEmbedding",
    "CrossNetwork",
    "MultiHeadAttention",
    "ResidualLSTM",
    "TransformerLayer",
    "ZeroVectorAttention",
    "bag_mean",
    "hashed_embedding",
    "masked_mean",
    "reverse_padded",
]
