"""Retrieval models: reusable blocks (SENet, DCN-v2, FiBiNet bilinear, attention, MMoE), the MGDSPR query
tower, the doc tower and the two-tower model.

Import submodules directly (`ebr.models.config` is torch-free; the rest import torch).
"""
