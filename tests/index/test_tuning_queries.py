"""Tuning on real query vectors: recorded as tuned_on=queries with their count, read from a .npy file or an array;
synthetic (docs + noise) tuning is the fallback without them, and under-probes for query-like vectors."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.index import build_index, load_index

from .conftest import exact_topk_ids, fast_config, recall_of

K = 20


def _recall_on(index_dir, queries, ids, vectors, k=K) -> float:
    _, found = load_index(index_dir).search(queries, k)
    return recall_of(found, exact_topk_ids(queries, ids, vectors, k), k)


def test_tuning_on_real_queries_reaches_the_target_synthetic_tuning_does_not(
    tmp_path, embeddings_dir, corpus, real_queries
):
    ids, vectors, _ = corpus
    cfg = fast_config(factory="IVF64,Flat", num_eval_queries=300, target_recall=0.95, recall_k=K)
    synthetic = build_index(embeddings_dir, tmp_path / "synthetic", cfg)
    assert synthetic["tuned_on"] == synthetic["tuning"]["tuned_on"] == "synthetic"
    assert synthetic["tuning"]["tuning_queries"] == "docs+noise"
    assert synthetic["tuning"]["num_queries"] == 300 and synthetic["tuning"]["query_vectors_given"] == 0
    assert synthetic["tuning"]["target_reached"]  # on its own docs-plus-noise queries...
    assert _recall_on(tmp_path / "synthetic", real_queries, ids, vectors) < 0.9  # ...but not on the real ones

    tuned = build_index(embeddings_dir, tmp_path / "tuned", cfg, query_vectors=real_queries)
    assert tuned["tuned_on"] == tuned["tuning"]["tuned_on"] == "queries"
    assert tuned["tuning"]["num_queries"] == tuned["tuning"]["query_vectors_given"] == len(real_queries)
    assert tuned["tuning"]["target_reached"] and tuned["ann_recall"] >= 0.95
    assert tuned["search_params"]["nprobe"] > synthetic["search_params"]["nprobe"]
    independent = _recall_on(tmp_path / "tuned", real_queries, ids, vectors)
    assert independent >= 0.95 and independent == pytest.approx(tuned["ann_recall"], abs=1e-3)


def test_query_vectors_file_is_read_subsampled_and_recorded(tmp_path, embeddings_dir, real_queries):
    path = tmp_path / "tuning_queries.npy"
    np.save(path, real_queries.astype(np.float64) * 3.0)  # any float dtype, any norm: rows are normalized
    cfg = fast_config(factory="IVF64,Flat", num_eval_queries=200, recall_k=K)
    from_file = build_index(embeddings_dir, tmp_path / "a", cfg, query_vectors=path)
    t = from_file["tuning"]
    assert from_file["tuned_on"] == "queries"
    assert (t["num_queries"], t["query_vectors_given"]) == (200, len(real_queries))
    assert t["query_vectors_file"] == str(path.resolve())
    # the same seeded subsample as passing the array itself
    from_array = build_index(embeddings_dir, tmp_path / "b", cfg, query_vectors=real_queries)
    assert from_array["tuning"]["query_vectors_file"] is None
    assert from_array["search_params"] == from_file["search_params"]
    assert from_array["ann_recall"] == pytest.approx(from_file["ann_recall"], abs=1e-6)


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("missing", r"query vectors file .*nowhere\.npy does not exist"),
        ("not_npy", r"query vectors file .*bad\.npy is not a readable \.npy array"),
        ("one_dim", r"query vectors file .*bad\.npy holds shape \(32,\)"),
        ("wrong_dim", r"query vectors file .*bad\.npy: query_vectors has shape \(4, 16\)"),
        ("nan", r"query vectors file .*bad\.npy: query_vectors contain NaN"),
    ],
)
def test_bad_query_vectors_file_is_named_and_leaves_no_output(tmp_path, embeddings_dir, real_queries, case, pattern):
    path = tmp_path / ("nowhere.npy" if case == "missing" else "bad.npy")
    if case == "not_npy":
        path.write_text("not an array")
    elif case == "one_dim":
        np.save(path, real_queries[0])
    elif case == "wrong_dim":
        np.save(path, real_queries[:4, :16])
    elif case == "nan":
        bad = real_queries[:4].copy()
        bad[1, 2] = np.nan
        np.save(path, bad)
    out = tmp_path / "idx"
    with pytest.raises(ValueError, match=pattern):
        build_index(embeddings_dir, out, fast_config(factory="IVF16,Flat"), query_vectors=path)
    assert not out.exists()
