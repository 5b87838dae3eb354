"""Retrieval models: reusable blocks (SENet, DCN-v2, FiBiNet bilinear, attention, MMoE), the MGDSPR query
tower, the doc tower, the two-tower model, its export format (`ebr.models.export`) and the ONNX runtime of the
query tower (`ebr.models.runtime`).

Import submodules directly (`ebr.models.config` is torch-free; the rest import torch).
"""
