"""build_index: embeddings dir -> trained, filled, tuned and evaluated Faiss index dir with a manifest.

Steps: verify the embeddings' checksums; pick the factory (choose_factory when "auto"); per index
shard train on a seeded sample and add that shard's docs (memory bounded by one embedding shard
plus the index); compute exact top-K of the tuning queries (the day's real query vectors when given,
else held-out docs plus noise); sweep the search parameters (nprobe / efSearch, x k_factor_rf with a
refine stage) to the target ann_recall@K (measured on the merged sharded result); write index files,
doc ids, the recall/latency plot and manifest.json into a temp dir beside `out_dir`, then rename it
into place.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from ebr.artifacts.atomic import atomic_output_dir, save_npy_atomic, write_json_atomic
from ebr.artifacts.checksums import checksum_files, sha256_file
from ebr.index.config import IndexConfig
from ebr.index.embeddings import EMBEDDINGS_JSON, EmbeddingsInfo, iter_embedding_shards, verify_embeddings
from ebr.index.evaluate import exact_search
from ebr.index.factory import (
    MIN_TRAIN_PER_LIST,
    IndexLayout,
    decide_factory,
    inspect_index,
    make_index,
    prepare_index,
)
from ebr.index.manifest import FORMAT, MANIFEST_NAME, PLOT_NAME, shard_file_names
from ebr.index.plot import plot_recall_curve
from ebr.index.queries import (
    DOCS_NOISE,
    QUERIES,
    SYNTHETIC,
    load_query_vectors,
    normalize_queries,
    perturbed_doc_queries,
)
from ebr.index.search import ShardedSearcher, search_params_string
from ebr.index.sharding import SHARD_RULE, shard_of
from ebr.index.threads import faiss_threads
from ebr.index.tune import tune

log = logging.getLogger(__name__)

ADD_BATCH = 131_072
TRAIN_PER_CENTROID = 64
_EVAL_STREAM = 1_000_003


class IndexBuildError(ValueError):
    """A build that cannot proceed with the given embeddings and config; names the field and the problem."""


def train_size(layout: IndexLayout, n: int, requested: int) -> int:
    """Training vectors for an index: `requested` (0 = 64 per centroid), at most n; checks Faiss's minimum."""
    size = min(n, requested if requested > 0 else TRAIN_PER_CENTROID * max(1, layout.train_centroids))
    if layout.nlist and size < MIN_TRAIN_PER_LIST * layout.nlist:
        raise IndexBuildError(
            f"IVF with nlist={layout.nlist} needs >= {MIN_TRAIN_PER_LIST * layout.nlist} training vectors "
            f"({MIN_TRAIN_PER_LIST} per list) but only {size} are available (docs in shard: {n}, "
            f"index.train_sample={requested}); use fewer lists or a smaller index.shards"
        )
    if layout.pq_m and size < 256:
        raise IndexBuildError(f"PQ needs >= 256 training vectors (one per code), only {size} are available")
    return size


class _Corpus:
    """The embeddings as one global row order (shard 0, shard 1, ...) split into index shards."""

    def __init__(self, directory: Path, info: EmbeddingsInfo, num_shards: int) -> None:
        self.directory = directory
        self.info = info
        self.num_shards = num_shards
        self.offsets = np.concatenate([[0], np.cumsum(info.shard_counts)]).astype(np.int64)
        counts = np.zeros(num_shards, dtype=np.int64)
        for sh in iter_embedding_shards(directory):
            counts += np.bincount(shard_of(sh.ids, num_shards), minlength=num_shards)
        self.shard_counts = counts

    def rows_of(self, index_shard: int, ids: np.ndarray) -> np.ndarray:
        """Row numbers, within one embedding shard, of the docs that belong to `index_shard`."""
        if self.num_shards == 1:
            return np.arange(ids.shape[0])
        return np.flatnonzero(shard_of(ids, self.num_shards) == index_shard)

    def sample(self, index_shard: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded uniform sample (without replacement) of one index shard's docs: (global rows, vectors)."""
        rng = np.random.default_rng([seed, index_shard])
        ranks = np.sort(rng.choice(int(self.shard_counts[index_shard]), size=size, replace=False))
        rows, vecs, seen = [], [], 0
        for sh in iter_embedding_shards(self.directory):
            local = self.rows_of(index_shard, sh.ids)
            lo, hi = np.searchsorted(ranks, [seen, seen + local.size])
            pick = local[ranks[lo:hi] - seen]
            rows.append(self.offsets[sh.shard_no] + pick)
            vecs.append(np.asarray(sh.vectors[pick]))
            seen += local.size
        return np.concatenate(rows), np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32)

    def gather(self, global_rows: np.ndarray) -> np.ndarray:
        """Vectors at sorted global row numbers."""
        out = []
        for sh in iter_embedding_shards(self.directory):
            lo, hi = np.searchsorted(global_rows, self.offsets[sh.shard_no : sh.shard_no + 2])
            out.append(np.asarray(sh.vectors[global_rows[lo:hi] - self.offsets[sh.shard_no]]))
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _eval_queries(
    corpus: _Corpus, cfg: IndexConfig, query_vectors: np.ndarray | None, in_train: np.ndarray, tunable: bool
) -> tuple[np.ndarray, str]:
    """The tuning queries and their source: the caller's (normalized, subsampled) or held-out docs + noise
    (a warning when the index has search parameters to tune on them)."""
    rng = np.random.default_rng([cfg.seed, _EVAL_STREAM])
    if query_vectors is not None:
        q = normalize_queries(query_vectors, corpus.info.dim)
        if q.shape[0] > cfg.num_eval_queries:
            q = q[np.sort(rng.choice(q.shape[0], cfg.num_eval_queries, replace=False))]
        return q, QUERIES
    if tunable:
        log.warning(
            "index: no query vectors given, tuning on %d held-out doc vectors plus noise (tuned_on=synthetic); "
            "real queries can need far more probing than this suggests",
            cfg.num_eval_queries,
        )
    held_out = np.flatnonzero(~in_train)
    pool = held_out if held_out.size >= cfg.num_eval_queries else np.arange(corpus.info.count)
    rows = np.sort(rng.choice(pool, size=min(cfg.num_eval_queries, pool.size), replace=False))
    return perturbed_doc_queries(corpus.gather(rows), cfg.query_noise, cfg.seed), DOCS_NOISE


def _build_shard(
    corpus: _Corpus, factory: str, cfg: IndexConfig, s: int, in_train: np.ndarray
) -> tuple[faiss.Index, np.ndarray, int, dict[str, float]]:
    """Train (on a seeded sample) and fill index shard s; returns index, doc ids, train size, timings."""
    d = corpus.info.dim
    index = make_index(factory, d)
    prepare_index(index, cfg.seed)
    layout = inspect_index(index)
    n_s = int(corpus.shard_counts[s])
    timings = {"train": 0.0, "add": 0.0}
    n_train = 0
    if not index.is_trained:
        t0 = time.perf_counter()
        n_train = train_size(layout, n_s, cfg.train_sample)
        rows, sample = corpus.sample(s, n_train, cfg.seed)
        in_train[rows] = True
        index.train(sample)
        timings["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids_parts = []
    with tqdm(
        total=n_s, desc=f"add index shard {s}", unit="vec", disable=not cfg.progress, leave=False
    ) as bar:
        for sh in iter_embedding_shards(corpus.directory):
            rows = corpus.rows_of(s, sh.ids)
            ids_parts.append(np.asarray(sh.ids[rows]))
            for start in range(0, rows.size, ADD_BATCH):
                batch = rows[start : start + ADD_BATCH]
                index.add(np.ascontiguousarray(sh.vectors[batch], dtype=np.float32))
                bar.update(batch.size)
    timings["add"] = time.perf_counter() - t0
    return index, np.concatenate(ids_parts).astype(np.int64), n_train, timings


def build_index(
    embeddings_dir: str | Path,
    out_dir: str | Path,
    cfg: IndexConfig | None = None,
    query_vectors: np.ndarray | str | Path | None = None,
) -> dict[str, Any]:
    """Build, tune and evaluate the Faiss index of a finalized embeddings dir into `out_dir` (atomically).

    `query_vectors` are real query-tower vectors for tuning, [nq, d] or the path of a `.npy` file holding
    them (a seeded sample of `num_eval_queries` is used when there are more); without them held-out doc
    vectors plus seeded noise are used. The manifest's `tuned_on` ("queries" | "synthetic") and
    `tuning.num_queries` say which and how many. Returns the manifest.
    """
    cfg = cfg or IndexConfig()
    t_start = time.perf_counter()
    embeddings_dir, out_dir = Path(embeddings_dir), Path(out_dir)
    query_file = None
    if isinstance(query_vectors, str | Path):
        query_file = Path(query_vectors)
        query_vectors = load_query_vectors(query_file)
    query_vectors_given = 0 if query_vectors is None else int(np.shape(query_vectors)[0])
    timings: dict[str, float] = {}
    info = verify_embeddings(embeddings_dir)
    n, d, num_shards = info.count, info.dim, cfg.shards
    if num_shards > n:
        raise IndexBuildError(f"index.shards={num_shards} exceeds the {n} docs in {embeddings_dir}")
    corpus = _Corpus(embeddings_dir, info, num_shards)
    if (corpus.shard_counts == 0).any():
        raise IndexBuildError(
            f"index.shards={num_shards}: shard {int(np.argmin(corpus.shard_counts))} gets no docs"
        )
    if query_vectors is not None:  # checked before any training, so bad queries cost nothing
        try:
            query_vectors = normalize_queries(query_vectors, d)
        except ValueError as e:
            raise ValueError(f"query vectors file {query_file}: {e}" if query_file else str(e)) from e
    timings["verify_embeddings"] = time.perf_counter() - t_start
    if cfg.factory == "auto":
        try:
            factory, reason = decide_factory(
                int(corpus.shard_counts.max()),
                d,
                cfg.memory_budget_bytes // num_shards,
                flat_max_n=cfg.flat_max_n,
                allow_hnsw=cfg.auto_hnsw,
            )
        except ValueError as e:
            raise IndexBuildError(f"index.factory=auto: {e}") from e
    else:
        factory, reason = cfg.factory, "set by index.factory"
    layout = inspect_index(make_index(factory, d))  # also rejects a bad factory string before any work
    k = min(cfg.recall_k, n)
    in_train = np.zeros(n, dtype=bool)
    with faiss_threads(cfg.threads), atomic_output_dir(out_dir, MANIFEST_NAME) as tmp:
        threads = faiss.omp_get_max_threads()
        indexes, id_arrays, shard_entries, train_sizes = [], [], [], []
        timings["train"] = timings["add"] = timings["write"] = 0.0
        for s in range(num_shards):
            index, ids, n_train, t = _build_shard(corpus, factory, cfg, s, in_train)
            timings["train"] += t["train"]
            timings["add"] += t["add"]
            t0 = time.perf_counter()
            index_name, ids_name = shard_file_names(s, num_shards)
            faiss.write_index(index, str(tmp / index_name))
            save_npy_atomic(tmp / ids_name, ids)
            timings["write"] += time.perf_counter() - t0
            indexes.append(index)
            id_arrays.append(ids)
            train_sizes.append(n_train)
            shard_entries.append(
                {
                    "shard": s,
                    "index_file": index_name,
                    "doc_ids_file": ids_name,
                    "count": int(ids.size),
                    "index_bytes": (tmp / index_name).stat().st_size,
                }
            )
        searcher = ShardedSearcher(indexes, id_arrays)
        t0 = time.perf_counter()
        queries, source = _eval_queries(corpus, cfg, query_vectors, in_train, bool(layout.parameters))
        chunks = ((sh.ids, sh.vectors) for sh in iter_embedding_shards(embeddings_dir))
        exact_ids = exact_search(queries, chunks, k)[1]
        timings["ground_truth"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = tune(
            searcher,
            None,
            queries,
            cfg.target_recall,
            k,
            exact_ids=exact_ids,
            latency_queries=cfg.latency_queries,
            latency_repeats=cfg.latency_repeats,
            max_k_factor=cfg.max_k_factor,
            progress=cfg.progress,
        )
        timings["tune"] = time.perf_counter() - t0
        tuned_on = QUERIES if source == QUERIES else SYNTHETIC
        if not result.target_reached:
            log.warning(
                "index %s: ann_recall@%d %.4f on %s is below the target %.3f (recall stopped improving at %s)",
                factory,
                k,
                result.ann_recall,
                tuned_on,
                cfg.target_recall,
                result.search_params,
            )
        plot_recall_curve(
            result.curve,
            tmp / PLOT_NAME,
            k=k,
            target=cfg.target_recall,
            parameter=result.parameter,
            title=f"{factory}  n={n} d={d} shards={num_shards}  (tuned on {source})",
        )
        index_bytes = sum(e["index_bytes"] for e in shard_entries)
        names = [name for e in shard_entries for name in (e["index_file"], e["doc_ids_file"])] + [PLOT_NAME]
        timings = {key: round(v, 3) for key, v in timings.items()}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_version": info.model_version,
            "embeddings": {
                "path": str(embeddings_dir.resolve()),
                "count": n,
                "sha256": sha256_file(embeddings_dir / EMBEDDINGS_JSON),
            },
            "n": n,
            "d": d,
            "metric": cfg.metric,
            "factory": factory,
            "factory_requested": cfg.factory,
            "factory_reason": reason,
            "layout": {
                "kind": layout.kind,
                "nlist": layout.nlist,
                "pq_m": layout.pq_m,
                "pq_nbits": layout.pq_nbits if layout.pq_m else None,
                "opq": layout.opq,
                "refine": layout.refine or None,
            },
            "seed": cfg.seed,
            "train_sample": train_sizes,
            "shards": shard_entries,
            "shard_rule": SHARD_RULE,
            "search_params": result.search_params,
            "search_params_string": search_params_string(result.search_params),
            "tuned_on": tuned_on,
            "recall_k": k,
            "ann_recall": result.ann_recall,
            "latency_p50_ms": result.latency_p50_ms,
            "latency_p99_ms": result.latency_p99_ms,
            "tuning": {
                "tuned_on": tuned_on,
                "num_queries": result.num_queries,
                "query_vectors_given": query_vectors_given,
                "query_vectors_file": str(query_file.resolve()) if query_file is not None else None,
                "latency_queries": result.latency_queries,
                "latency_repeats": cfg.latency_repeats,
                "parameter": result.parameter,
                "parameters": list(result.parameters),
                "value": result.value,
                "cost": result.cost,
                "target_recall": cfg.target_recall,
                "target_reached": result.target_reached,
                "tuning_queries": source,
                "query_noise": cfg.query_noise if source == DOCS_NOISE else None,
                "curve": [
                    {
                        "value": p.value,
                        "params": p.params,
                        "ann_recall": p.ann_recall,
                        "latency_p50_ms": p.latency_p50_ms,
                        "latency_p99_ms": p.latency_p99_ms,
                        "cost": p.cost,
                    }
                    for p in result.curve
                ],
            },
            "index_bytes": index_bytes,
            "bytes_per_vector": index_bytes / n,
            "vector_bytes": result.vector_bytes,
            "threads": threads,
            "faiss_version": faiss.__version__,
            "config": cfg.model_dump(mode="json"),
            "timings_s": timings,
            "build_seconds": round(time.perf_counter() - t_start, 3),
            "files": checksum_files(tmp, names),
        }
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
    return manifest
