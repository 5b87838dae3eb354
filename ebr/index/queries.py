"""Query vectors for tuning: the day's real query-tower vectors when given, else perturbed held-out doc vectors.

`encode_day_queries` is how the daily build gets real ones: a seeded sample of day D's requests (the holdout
day, never trained on) gets its query-side features as of each request's time from the Feast offline store
and goes through the model's exported query tower, exactly as the evaluation step encodes all of D's
requests. `load_query_vectors` reads such vectors from a `.npy` file ([nq, d] float), for callers that
produce them elsewhere (e.g. a training step's held-out validation queries).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

QUERIES = "queries"  # manifest `tuning.tuning_queries` / `tuned_on`: real query vectors
DOCS_NOISE = "docs+noise"  # manifest `tuning.tuning_queries`: held-out docs plus noise
SYNTHETIC = "synthetic"  # manifest `tuned_on` of a docs+noise build
_DAY_STREAM = 1_000_033


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


def sample_day_requests(data_root: str | Path, day: str, n: int, seed: int):
    """A seeded uniform sample (without replacement) of at most `n` of `day`'s search requests, in time order:
    a DataFrame with request_id, user_id, query, event_timestamp."""
    from ebr.contract import list_days, load

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if day not in list_days(data_root, "search_requests"):
        raise ValueError(f"no search_requests partition for day {day} under {data_root}: no queries to tune on")
    requests = load(data_root, "search_requests", [day])
    if requests.empty:
        raise ValueError(f"search_requests of {day} under {data_root} is empty: no queries to tune on")
    requests = requests.sort_values(["event_timestamp", "request_id"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng([seed, _DAY_STREAM])
    pick = np.sort(rng.choice(len(requests), size=min(n, len(requests)), replace=False))
    frame = requests.iloc[pick][["request_id", "user_id", "query", "event_timestamp"]].reset_index(drop=True)
    frame["user_id"] = frame["user_id"].astype("Int64")
    return frame


def encode_day_queries(
    model_dir: str | Path,
    features_dir: str | Path,
    data_root: str | Path,
    day: str,
    n: int,
    seed: int,
    batch_size: int = 2048,
) -> np.ndarray:
    """Query-tower vectors [min(n, requests of day), dim] of a seeded sample of `day`'s requests.

    Each request's query-side features come as of its own time (Feast historical retrieval, service
    `query_tower_online`), featurized and encoded by the model's exported query tower: the same path the
    evaluation step takes for every request of the day, so tuning sees the vectors the index will serve.
    """
    from types import SimpleNamespace

    from ebr.evaluate.two_tower import encode_queries, query_feature_rows
    from ebr.index.export import export_dir_of
    from ebr.train.export import load_exported

    frame = sample_day_requests(data_root, day, n, seed)
    bundle = load_exported(export_dir_of(model_dir))
    # query_feature_rows reads only the frame's user_id, query and event_timestamp columns
    rows = query_feature_rows(features_dir, SimpleNamespace(day=day, frame=frame))  # type: ignore[arg-type]
    vectors = encode_queries(bundle, rows, batch_size)
    if vectors.shape[0] != len(frame):
        raise ValueError(f"encoded {vectors.shape[0]} query vectors for {len(frame)} requests of {day}")
    return vectors
