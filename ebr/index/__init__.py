"""Doc-embedding shards, Faiss index build/tune/evaluate, manifests and sharded search.

See docs/index.md for the on-disk formats, the auto decision table and the tuning procedure.
"""

from ebr.artifacts.checksums import ChecksumError
from ebr.index.build import IndexBuildError, build_index
from ebr.index.config import IndexConfig
from ebr.index.embeddings import (
    Embeddings,
    EmbeddingsError,
    EmbeddingShard,
    EmbeddingsInfo,
    finalize_embeddings,
    iter_embedding_shards,
    load_embeddings_info,
    read_embeddings,
    verify_embeddings,
    write_embedding_shard,
)
from ebr.index.evaluate import Evaluation, ann_recall, evaluate, exact_search, measure_latency
from ebr.index.factory import FactoryError, choose_factory, decide_factory, ivf_nlist, make_index, pq_bytes
from ebr.index.manifest import ManifestError, read_manifest
from ebr.index.search import ShardedSearcher, load_index
from ebr.index.sharding import shard_of
from ebr.index.tune import TunePoint, TuneResult, tune

__all__ = [
    "ChecksumError",
    "EmbeddingShard",
    "Embeddings",
    "EmbeddingsError",
    "EmbeddingsInfo",
    "Evaluation",
    "FactoryError",
    "IndexBuildError",
    "IndexConfig",
    "ManifestError",
    "ShardedSearcher",
    "TunePoint",
    "TuneResult",
    "ann_recall",
    "build_index",
    "choose_factory",
    "decide_factory",
    "evaluate",
    "exact_search",
    "finalize_embeddings",
    "ivf_nlist",
    "iter_embedding_shards",
    "load_embeddings_info",
    "load_index",
    "make_index",
    "measure_latency",
    "pq_bytes",
    "read_embeddings",
    "read_manifest",
    "shard_of",
    "tune",
    "verify_embeddings",
    "write_embedding_shard",
]
