"""Synthetic clustered embeddings (normalized Gaussian mixtures) written in the on-disk shard format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ebr.index import IndexConfig, finalize_embeddings, write_embedding_shard
from ebr.index.synthetic import clustered_vectors

N = 12_000
D = 32


def write_embeddings(
    directory: Path, ids: np.ndarray, vectors: np.ndarray, shards: int = 3, model_version: str = "m-test"
) -> Path:
    """Split (ids, vectors) into `shards` consecutive shards, write and finalize them."""
    bounds = np.linspace(0, len(ids), shards + 1).astype(int)
    for s in range(shards):
        write_embedding_shard(
            directory, s, ids[bounds[s] : bounds[s + 1]], vectors[bounds[s] : bounds[s + 1]]
        )
    finalize_embeddings(directory, model_version)
    return directory


def exact_topk_ids(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Brute-force top-k doc ids by float64 inner product, independent of Faiss."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    return ids[np.argsort(-scores, axis=1, kind="stable")[:, :k]]


def recall_of(ann_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """|ANN ∩ exact| / k averaged over queries, with Python sets."""
    return float(
        np.mean([len(set(a.tolist()) & set(e.tolist())) / k for a, e in zip(ann_ids, exact_ids, strict=True)])
    )


def fast_config(**kw) -> IndexConfig:
    """An IndexConfig sized for unit tests (few queries, no progress bars)."""
    base = dict(num_eval_queries=200, latency_queries=20, recall_k=20, progress=False)
    base.update(kw)
    return IndexConfig(**base)


@pytest.fixture(scope="session")
def corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc ids, doc vectors [N, D], query vectors [300, D]) from one clustered distribution."""
    x = clustered_vectors(N + 300, D, num_clusters=60, spread=1.0, seed=3)
    ids = (np.arange(N, dtype=np.int64) * 37 + 1_000) ^ 0x5A5A
    return ids, x[:N], x[N:]


@pytest.fixture(scope="session")
def embeddings_dir(tmp_path_factory, corpus) -> Path:
    """A finalized 3-shard embeddings dir of the corpus (read-only for tests)."""
    ids, vectors, _ = corpus
    return write_embeddings(tmp_path_factory.mktemp("emb") / "embeddings", ids, vectors)


REAL_QUERY_NOISE = 1.5


@pytest.fixture(scope="session")
def real_queries(corpus) -> np.ndarray:
    """300 query-like vectors [300, D]: the corpus queries pushed off the doc distribution (noise of L2 norm 1.5),
    the way query-tower vectors sit farther from their docs than docs do from each other. Tuning on held-out
    docs plus the default noise (0.3) under-probes for them, as it did for a real day's queries."""
    from ebr.index.queries import perturbed_doc_queries

    return perturbed_doc_queries(corpus[2], REAL_QUERY_NOISE, seed=5)
