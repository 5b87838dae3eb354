"""Deterministic assignment of docs to index shards: splitmix64(doc_id) % num_shards.

Hashing the doc id (not its position) keeps a doc in the same shard day after day, whatever order
the export wrote it in, and spreads consecutive ids evenly.
"""

from __future__ import annotations

import numpy as np

SHARD_RULE = "splitmix64(doc_id) % shards"


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer applied element-wise to int64/uint64 values (wrapping uint64 arithmetic)."""
    z = np.asarray(values).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def shard_of(doc_ids: np.ndarray, num_shards: int) -> np.ndarray:
    """Index shard (int64 in [0, num_shards)) of each doc id."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if num_shards == 1:
        return np.zeros(np.shape(doc_ids), dtype=np.int64)
    return (splitmix64(doc_ids) % np.uint64(num_shards)).astype(np.int64)
