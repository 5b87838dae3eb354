"""Training: retrieval losses (ebr.train.losses), training loops, distillation, checkpoints, tracking and the
model registry (the export format of trained towers is `ebr.models.export`).

Submodules import torch lazily or are not imported here, so importing this package stays cheap.
"""
