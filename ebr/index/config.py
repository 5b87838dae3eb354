"""IndexConfig: how the Faiss index of doc embeddings is chosen, trained, tuned and sharded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ebr.settings import Section


class IndexConfig(Section):
    """Index build settings; every field has a default that works for a daily build on one machine."""

    factory: str = Field(
        "auto",
        min_length=1,
        description='"auto" picks from N, d and the memory budget (see choose_factory); '
        "any other value is a Faiss index_factory string such as IVF4096,Flat or OPQ16,IVF4096,PQ16",
    )
    metric: Literal["ip"] = Field(
        "ip", description="inner product on L2-normalized vectors, i.e. cosine similarity"
    )
    memory_budget_bytes: int = Field(
        4 << 30, gt=0, description="RAM the index (all shards, plus 8-byte doc ids) may take when served"
    )
    flat_max_n: int = Field(
        50_000, ge=1, description="auto: below this many docs per shard use exact Flat search"
    )
    auto_hnsw: bool = Field(
        False,
        description="auto: prefer HNSW32 over IVF-Flat when it fits the budget (faster, ~+280 B/vector)",
    )
    train_sample: int = Field(
        0, ge=0, description="vectors to train on; 0 = auto: 64 x centroids (IVF lists, 256 per PQ codebook)"
    )
    seed: int = Field(0, ge=0, lt=2**31, description="seed of training sample, k-means, eval queries")
    target_recall: float = Field(
        0.96, gt=0.0, le=1.0,
        description="tuning keeps the cheapest setting with ann_recall@K >= this on the tuning sample; one point "
        "above the publish gate's min_ann_recall (0.95), which is measured on all of the day's requests",
    )
    recall_k: int = Field(100, ge=1, description="K of ann_recall@K and of the latency measurement")
    min_ann_recall: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="publish gate: the new bundle is refused when its index's ann_recall@recall_k on the day's "
        "real queries is below this; 0 switches the check off",
    )
    tune_on: Literal["queries", "synthetic"] = Field(
        "queries",
        description="daily build: 'queries' tunes on query-tower vectors of a seeded sample of num_eval_queries "
        "of the day's requests; 'synthetic' on held-out doc vectors plus query_noise",
    )
    max_k_factor: int = Field(
        64,
        ge=1,
        le=4096,
        description="indexes with a refine stage (e.g. IVF4096,PQ16x8,RFlat): k_factor_rf is swept over "
        "1, 2, 4, ... up to this (candidates re-ranked = k_factor_rf x K)",
    )
    num_eval_queries: int = Field(1000, ge=1, description="held-out query vectors for recall measurement")
    latency_queries: int = Field(300, ge=1, description="queries timed one at a time on one thread")
    latency_repeats: int = Field(
        1, ge=1, description="runs per timed query, keeping the fastest (>1 filters noise on shared hosts)"
    )
    query_noise: float = Field(
        0.3, ge=0.0, description="without query vectors: L2 norm of the Gaussian noise added to held-out docs"
    )
    shards: int = Field(1, ge=1, le=4096, description="index shards; docs go to splitmix64(doc_id) % shards")
    threads: int = Field(0, ge=0, description="Faiss OpenMP threads for training/adding; 0 = all cores")
    progress: bool = Field(True, description="show tqdm progress bars")
