"""PyTorch's thread count (and deterministic algorithms) for a block of work, restored afterwards.

A step's results must not depend on how many cores it found: the local DAG gives tasks run side by side their
share of the cores, a pod sees its node's. Steps that must be bitwise repeatable pin their threads here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_settings(num_threads: int | None, deterministic: bool | None = None) -> Iterator[None]:
    """Torch thread count (None: unchanged) and deterministic algorithms (None: unchanged) for the block."""
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    if deterministic is not None:
        torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
