"""Query vectors for tuning: real query-tower vectors when given, else perturbed held-out doc vectors."""

from __future__ import annotations

import numpy as np

QUERIES = "queries"
DOCS_NOISE = "docs+noise"


def normalize_queries(query_vectors: np.ndarray, d: int) -> np.ndarray:
    """Check shape [nq, d] and finiteness, then L2-normalize rows (a zero row is an error)."""
    q = np.asarray(query_vectors)
    if q.ndim != 2 or q.shape[1] != d or q.shape[0] == 0:
        raise ValueError(f"query_vectors has shape {q.shape}; need [nq >= 1, {d}] to match the embeddings")
    q = q.astype(np.float32)
    if not np.isfinite(q).all():
        raise ValueError("query_vectors contain NaN or infinite values")
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"query_vectors row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is a zero vector")
    return np.ascontiguousarray(q / norms)


def perturbed_doc_queries(doc_vectors: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Doc vectors plus isotropic Gaussian noise of expected L2 norm `noise`, re-normalized (seeded)."""
    docs = np.asarray(doc_vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(docs.shape).astype(np.float32) * np.float32(noise / np.sqrt(docs.shape[1]))
    q = docs + eps
    return np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True))
