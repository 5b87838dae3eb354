"""IVF-PQ with a refine stage (`...,RFlat` = IndexRefineFlat): nprobe x k_factor_rf tuned through
faiss.ParameterSpace to ann_recall@100 >= 0.95 at the cheapest setting, and its bytes per vector reported."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ebr.index import build_index, load_index, make_index, tune
from ebr.index.factory import inspect_index, prepare_index, vector_bytes
from ebr.index.threads import faiss_threads
from ebr.index.tune import k_factor_values, search_cost

from .conftest import D, exact_topk_ids, fast_config, recall_of

K = 100
TARGET = 0.95


def test_pq_refine_build_reaches_target_where_plain_pq_cannot(tmp_path, embeddings_dir, corpus, real_queries):
    ids, vectors, _ = corpus
    small = {"recall_k": K, "num_eval_queries": 300, "latency_queries": 5, "train_sample": 4000, "threads": 1}
    cfg = fast_config(factory="IVF64,PQ8x8,RFlat", target_recall=TARGET, **small)
    m = build_index(embeddings_dir, tmp_path / "refine", cfg, query_vectors=real_queries)
    assert m["tuned_on"] == "queries" and m["tuning"]["target_reached"] and m["ann_recall"] >= TARGET
    assert m["tuning"]["parameters"] == ["nprobe", "k_factor_rf"]
    assert set(m["search_params"]) == {"nprobe", "k_factor_rf"} and m["search_params"]["k_factor_rf"] > 1
    nprobe, kf = m["search_params"]["nprobe"], m["search_params"]["k_factor_rf"]
    assert m["search_params_string"] == f"nprobe={nprobe},k_factor_rf={kf}"
    assert m["layout"] == {"kind": "ivf", "nlist": 64, "pq_m": 8, "pq_nbits": 8, "opq": False, "refine": "flat"}
    # bytes per vector: 8 B of PQ code + 8 B list id + 4*D B of float32 refine copy + 8 B doc id
    assert m["vector_bytes"] == {"code": 8, "list_id": 8, "graph": 0, "refine": 4 * D, "doc_id": 8,
                                 "total": 8 + 8 + 4 * D + 8}  # fmt: skip
    assert m["bytes_per_vector"] >= 8 + 8 + 4 * D
    # the loaded index answers with the tuned parameters and reaches the target on an independent recount
    searcher = load_index(tmp_path / "refine")
    assert searcher.search_params == m["search_params"]
    refine = faiss.downcast_index(searcher._indexes[0])
    assert refine.k_factor == kf and faiss.extract_index_ivf(refine.base_index).nprobe == nprobe
    _, found = searcher.search(real_queries, K)
    independent = recall_of(found, exact_topk_ids(real_queries, ids, vectors, K), K)
    assert independent >= TARGET and independent == pytest.approx(m["ann_recall"], abs=1e-3)
    # the cheapest setting meeting the target: no other point of the sweep that meets it costs less
    meeting = [p for p in m["tuning"]["curve"] if p["ann_recall"] >= TARGET]
    assert m["tuning"]["cost"] == min(p["cost"] for p in meeting)
    assert any(p["params"] == m["search_params"] for p in meeting)
    # without the refine stage the PQ codes cap recall@100 well below the target
    plain = build_index(embeddings_dir, tmp_path / "plain", fast_config(factory="IVF64,PQ8x8", **small),
                        query_vectors=real_queries)
    assert not plain["tuning"]["target_reached"] and plain["ann_recall"] < 0.85
    assert plain["vector_bytes"]["total"] == 8 + 8 + 8


def _trained(factory: str, vectors: np.ndarray) -> faiss.Index:
    index = make_index(factory, vectors.shape[1])
    prepare_index(index, seed=0)
    with faiss_threads(1):
        index.train(vectors[:4000])
        index.add(vectors)
    return index


def test_tune_sweeps_nprobe_by_k_factor_and_keeps_the_cheapest(corpus, real_queries):
    _, vectors, _ = corpus
    index = _trained("IVF64,PQ8,RFlat", vectors)
    r = tune(index, vectors, real_queries[:200], TARGET, K, latency_queries=5, max_k_factor=16, progress=False)
    assert r.parameters == ("nprobe", "k_factor_rf") and r.target_reached and r.ann_recall >= TARGET
    tried = sorted({p.params["k_factor_rf"] for p in r.curve})
    assert len(tried) >= 2 and set(tried) <= {1, 2, 4, 8, 16}
    # k_factor 1 re-ranks only the K PQ candidates: its recall plateaus below the target
    assert max(p.ann_recall for p in r.curve if p.params["k_factor_rf"] == 1) < TARGET
    best = min((p for p in r.curve if p.ann_recall >= TARGET), key=lambda p: p.cost)
    assert (r.search_params, r.cost) == (best.params, best.cost)
    assert r.value == r.search_params["nprobe"] and r.vector_bytes["refine"] == 4 * D
    # the index is left at the chosen setting
    top = faiss.downcast_index(index)
    assert top.k_factor == r.search_params["k_factor_rf"]
    assert faiss.extract_index_ivf(index).nprobe == r.search_params["nprobe"]


def test_pq_refine_without_ivf_tunes_k_factor_only(corpus, real_queries):
    _, vectors, _ = corpus
    r = tune(_trained("PQ8,RFlat", vectors[:4000]), vectors[:4000], real_queries[:100], TARGET, 50,
             latency_queries=3, progress=False)  # fmt: skip
    assert r.parameters == ("k_factor_rf",) and r.parameter == "k_factor_rf"
    assert r.target_reached and r.search_params == {"k_factor_rf": r.value}
    assert [p.value for p in r.curve] == k_factor_values(64)[: len(r.curve)]  # stops at the first that reaches


@pytest.mark.parametrize(
    ("factory", "refine", "opq", "parts"),
    [
        ("OPQ8,IVF16,PQ8,RFlat", "flat", True, {"code": 8, "list_id": 8, "refine": 128}),
        ("IVF16,PQ8x4,RFlat", "flat", False, {"code": 4, "list_id": 8, "refine": 128}),
        ("IVF16,PQ8,Refine(SQ8)", "sq", False, {"code": 8, "list_id": 8, "refine": 32}),
        ("IVF16,Flat", "", False, {"code": 128, "list_id": 8, "refine": 0}),
        ("HNSW16", "", False, {"code": 128, "graph": 128, "refine": 0}),
    ],
)
def test_layout_and_bytes_per_vector_of_refine_indexes(factory, refine, opq, parts):
    index = make_index(factory, 32)
    layout = inspect_index(index)
    assert (layout.refine, layout.opq) == (refine, opq)
    assert layout.parameters == ((layout.parameter,) if layout.parameter else ()) + (("k_factor_rf",) if refine else ())
    got = vector_bytes(index)
    assert {k: got[k] for k in parts} == parts
    assert got["total"] == sum(v for k, v in got.items() if k != "total") and got["doc_id"] == 8
    if "x4" in factory:
        assert layout.pq_nbits == 4 and layout.train_centroids == 16


def test_search_cost_grows_with_every_parameter():
    layout = inspect_index(make_index("IVF64,PQ8,RFlat", D))
    vb = vector_bytes(make_index("IVF64,PQ8,RFlat", D))
    cost = [[search_cost(layout, {"nprobe": p, "k_factor_rf": kf}, 10_000, K, vb) for kf in (1, 2, 4)]
            for p in (1, 2, 8)]  # fmt: skip
    arr = np.array(cost)
    assert (np.diff(arr, axis=0) > 0).all() and (np.diff(arr, axis=1) > 0).all()
    # 8 lists of 64 over 10k codes of 8 B, plus 4 x 100 refine vectors of 128 B
    assert cost[2][2] == pytest.approx(8 / 64 * 10_000 * 8 + 4 * K * 4 * D)
    assert k_factor_values(20) == [1, 2, 4, 8, 16, 20]
    with pytest.raises(ValueError, match="max_k_factor"):
        k_factor_values(0)


def test_auto_under_a_tight_budget_picks_pq_with_a_refine_stage_that_reaches_the_target(
    tmp_path, embeddings_dir, corpus, real_queries
):
    ids, vectors, _ = corpus
    cfg = fast_config(factory="auto", flat_max_n=1000, memory_budget_bytes=1_000_000, recall_k=K,
                      num_eval_queries=300, latency_queries=5, train_sample=8000, threads=1)  # fmt: skip
    m = build_index(embeddings_dir, tmp_path / "idx", cfg, query_vectors=real_queries)
    assert m["factory"] == "IVF256,PQ8,Refine(SQ8)" and "SQ8" in m["factory_reason"]
    assert m["layout"]["refine"] == "sq" and m["vector_bytes"]["refine"] == D  # 8-bit codes: d bytes
    assert m["vector_bytes"]["total"] == 8 + 8 + D + 8 < 4 * D
    assert m["tuning"]["target_reached"] and m["ann_recall"] >= TARGET
    _, found = load_index(tmp_path / "idx").search(real_queries, K)
    assert recall_of(found, exact_topk_ids(real_queries, ids, vectors, K), K) >= TARGET
