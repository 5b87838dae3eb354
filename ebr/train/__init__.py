"""Training: retrieval losses (ebr.train.losses), model export (ebr.train.export), training loops,
distillation and checkpoints.

Submodules import torch lazily or are not imported here, so importing this package stays cheap.
"""
