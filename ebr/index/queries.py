"""Query vectors for tuning: the day's real query-tower vectors when given, else perturbed held-out doc vectors.

The daily build gets real ones from `ebr.evaluate.day_queries.encode_day_queries` (the index package stays
below the model and feature code); `load_query_vectors` reads such vectors from a `.npy` file ([nq, d]
float), for callers that produce them elsewhere (e.g. a training step's held-out validation queries).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

QUERIES = "queries"  # manifest `tuning.tuning_queries` / `tuned_on`: real query vectors
DOCS_NOISE = "docs+noise"  # manifest `tuning.tuning_queries`: held-out docs plus noise
SYNTHETIC = "synthetic"  # manifest `tuned_on` of a docs+noise build


def normalize_queries(query_vectors: np.ndarray, d: int) -> np.ndarray:
    """Check shape [nq, d] and finiteness, then L2-normalize rows (a zero row is an error)."""
    q = np.asarray(query_vectors)
    if q.ndim != 2 or q.shape[1] != d or q.shape[0] == 0:
        raise ValueError(f"query_vectors has shape {q.shape}; need [nq >= 1, {d}] to match the embeddings")
    if not (np.issubdtype(q.dtype, np.floating) or np.issubdtype(q.dtype, np.integer)):
        raise ValueError(f"query_vectors must be numeric, got dtype {q.dtype}")
    q = q.astype(np.float32)
    if not np.isfinite(q).all():
        raise ValueError("query_vectors contain NaN or infinite values")
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"query_vectors row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is a zero vector")
    return np.ascontiguousarray(q / norms)


def load_query_vectors(path: str | Path) -> np.ndarray:
    """Read a `.npy` file of query vectors [nq, d]; ValueError naming the file when it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"query vectors file {path} does not exist")
    try:
        q = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"query vectors file {path} is not a readable .npy array ({e})") from e
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"query vectors file {path} holds shape {q.shape}; need [nq >= 1, d]")
    if not (np.issubdtype(q.dtype, np.floating) or np.issubdtype(q.dtype, np.integer)):
        raise ValueError(f"query vectors file {path} holds dtype {q.dtype}; need float vectors")
    return q


def perturbed_doc_queries(doc_vectors: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Doc vectors plus isotropic Gaussian noise of expected L2 norm `noise`, re-normalized (seeded)."""
    docs = np.asarray(doc_vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(docs.shape).astype(np.float32) * np.float32(noise / np.sqrt(docs.shape[1]))
    q = docs + eps
    return np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True))
