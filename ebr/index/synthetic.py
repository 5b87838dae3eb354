"""Seeded synthetic embeddings shaped like doc-tower output, for index tests and benchmarks.

A mixture of Gaussian clusters on the unit sphere: cluster centres are random unit vectors, cluster
sizes follow Zipf weights (a few head topics, a long tail), each point is centre + isotropic noise of
expected L2 norm `spread`, re-normalized. Queries drawn from the same mixture play query-tower vectors.
"""

from __future__ import annotations

import numpy as np


def clustered_vectors(
    n: int, d: int, *, num_clusters: int = 100, zipf: float = 1.0, spread: float = 1.0, seed: int = 0
) -> np.ndarray:
    """n unit-norm float32 vectors [n, d] from a Zipf-weighted Gaussian mixture (deterministic per seed)."""
    if n < 0 or d < 1 or num_clusters < 1:
        raise ValueError(
            f"need n >= 0, d >= 1, num_clusters >= 1; got n={n}, d={d}, num_clusters={num_clusters}"
        )
    centre_rng = np.random.default_rng([seed, 0])
    centres = centre_rng.standard_normal((num_clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, num_clusters + 1) ** zipf
    rng = np.random.default_rng([seed, 1, n])
    labels = rng.choice(num_clusters, size=n, p=weights / weights.sum())
    out = np.empty((n, d), dtype=np.float32)
    step = 262_144
    for start in range(0, n, step):
        lab = labels[start : start + step]
        noise = rng.standard_normal((lab.size, d), dtype=np.float32) * np.float32(spread / np.sqrt(d))
        block = centres[lab] + noise
        out[start : start + step] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out
