"""Seeded parameter initialization that leaves the caller's torch random state untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Inside: torch's CPU generator seeded with `seed` (same seed -> same initial weights); outside, the global
    random state is as it was. `None` = draw from the current global state."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield
