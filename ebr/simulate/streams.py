"""Named random streams: every random step draws from its own generator derived from (seed, name, keys).

Naming the streams keeps runs reproducible when one step changes how many numbers it draws: the other steps'
streams do not shift.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str, *keys: int) -> np.random.Generator:
    """A generator for step `name` (and optional integer keys such as the day index) under master `seed`."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8")), *(int(k) for k in keys)])
