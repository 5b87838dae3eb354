"""build_index end to end: manifest, recall recomputation, sharding, checksums, atomicity, determinism."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ebr.index import (
    ChecksumError,
    EmbeddingsError,
    FactoryError,
    IndexBuildError,
    ManifestError,
    build_index,
    load_index,
    shard_of,
    write_embedding_shard,
)
from ebr.index.embeddings import vectors_name
from ebr.index.manifest import MANIFEST_NAME, PLOT_NAME

from .conftest import exact_topk_ids, fast_config, recall_of, write_embeddings


def _no_leftovers(parent, name):
    return [p.name for p in parent.iterdir() if name in p.name]


def test_auto_small_corpus_is_flat_with_full_manifest(tmp_path, embeddings_dir, corpus):
    ids, vectors, queries = corpus
    m = build_index(embeddings_dir, tmp_path / "idx", fast_config())
    assert m["factory"] == "Flat" and m["factory_requested"] == "auto" and "flat_max_n" in m["factory_reason"]
    assert (m["n"], m["d"], m["model_version"], m["metric"]) == (len(ids), 32, "m-test", "ip")
    assert m["ann_recall"] == pytest.approx(1.0, abs=1e-3)
    assert m["tuning"]["tuning_queries"] == "docs+noise" and m["tuning"]["query_noise"] == 0.3
    assert m["bytes_per_vector"] == pytest.approx(
        (tmp_path / "idx" / "index.faiss").stat().st_size / len(ids)
    )
    assert m["bytes_per_vector"] >= 4 * 32
    files = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert files == sorted(["index.faiss", "doc_ids.npy", PLOT_NAME, MANIFEST_NAME])
    assert set(m["files"]) == set(files) - {MANIFEST_NAME}
    assert (tmp_path / "idx" / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "idx" / MANIFEST_NAME).read_text()) == m
    searcher = load_index(tmp_path / "idx")
    _, found = searcher.search(queries[:20], 10)
    np.testing.assert_array_equal(found, exact_topk_ids(queries[:20], ids, vectors, 10))
    assert sorted(np.load(tmp_path / "idx" / "doc_ids.npy").tolist()) == sorted(ids.tolist())


def test_ivf_recall_in_manifest_equals_independent_recomputation(tmp_path, embeddings_dir, corpus):
    ids, vectors, queries = corpus
    cfg = fast_config(factory="IVF64,Flat", target_recall=0.9, num_eval_queries=len(queries))
    m = build_index(embeddings_dir, tmp_path / "idx", cfg, query_vectors=queries)
    assert m["tuning"]["tuning_queries"] == "queries" and m["tuning"]["target_reached"]
    assert m["ann_recall"] >= 0.9 and m["search_params"] == {"nprobe": m["tuning"]["value"]}
    assert [p["value"] for p in m["tuning"]["curve"]][-1] == m["tuning"]["value"]
    searcher = load_index(tmp_path / "idx")
    _, found = searcher.search(queries, cfg.recall_k)
    independent = recall_of(found, exact_topk_ids(queries, ids, vectors, cfg.recall_k), cfg.recall_k)
    assert m["ann_recall"] == pytest.approx(independent, abs=1e-3)


def test_sharded_build_merges_to_target_recall(tmp_path, embeddings_dir, corpus):
    ids, vectors, queries = corpus
    cfg = fast_config(factory="IVF32,Flat", shards=3, num_eval_queries=len(queries))
    m = build_index(embeddings_dir, tmp_path / "idx", cfg, query_vectors=queries)
    assert [s["index_file"] for s in m["shards"]] == [f"index-0000{i}.faiss" for i in range(3)]
    assert sum(s["count"] for s in m["shards"]) == len(ids)
    searcher = load_index(tmp_path / "idx")
    assert searcher.num_shards == 3 and searcher.ntotal == len(ids)
    for s in range(3):
        shard_ids = np.load(tmp_path / "idx" / f"doc_ids-0000{s}.npy")
        assert (shard_of(shard_ids, 3) == s).all()
    _, found = searcher.search(queries, cfg.recall_k)
    merged = recall_of(found, exact_topk_ids(queries, ids, vectors, cfg.recall_k), cfg.recall_k)
    assert merged >= cfg.target_recall
    assert m["ann_recall"] == pytest.approx(merged, abs=1e-3)


def test_sharded_flat_build_equals_exact_topk(tmp_path, embeddings_dir, corpus):
    ids, vectors, queries = corpus
    build_index(embeddings_dir, tmp_path / "idx", fast_config(factory="Flat", shards=4))
    scores, found = load_index(tmp_path / "idx").search(queries[:40], 25)
    np.testing.assert_array_equal(found, exact_topk_ids(queries[:40], ids, vectors, 25))
    assert np.all(np.diff(scores, axis=1) <= 0)


@pytest.mark.parametrize("victim", ["doc_ids.npy", "index.faiss", PLOT_NAME])
def test_tampered_file_is_detected_by_name(tmp_path, embeddings_dir, victim):
    build_index(embeddings_dir, tmp_path / "idx", fast_config(factory="IVF16,Flat"))
    path = tmp_path / "idx" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=rf"{victim}: sha256 .* does not match"):
        load_index(tmp_path / "idx")


def test_missing_file_and_dimension_checks(tmp_path, embeddings_dir):
    build_index(embeddings_dir, tmp_path / "idx", fast_config(factory="Flat"))
    with pytest.raises(ManifestError, match="d=32 but the caller expects 64"):
        load_index(tmp_path / "idx", expected_dim=64)
    (tmp_path / "idx" / "doc_ids.npy").unlink()
    with pytest.raises(ChecksumError, match="doc_ids.npy: file listed in manifest.json is missing"):
        load_index(tmp_path / "idx")
    with pytest.raises(ManifestError, match="doc_ids.npy: file listed in .* is missing"):
        load_index(tmp_path / "idx", verify=False)
    with pytest.raises(ManifestError, match="does not exist"):
        load_index(tmp_path / "nowhere")


def _nan_tampered(tmp_path, embeddings_dir):
    bad = tmp_path / "nan_emb"
    shutil.copytree(embeddings_dir, bad)
    v = np.load(bad / vectors_name(1))
    v[3, 0] = np.nan
    np.save(bad / vectors_name(1), v)
    return bad


@pytest.mark.parametrize(
    ("case", "error", "pattern"),
    [
        ("unfinalized", EmbeddingsError, "never finalized"),
        ("nan_vectors", EmbeddingsError, r"shard-00001\.vectors\.npy: sha256"),
        ("unknown_factory", FactoryError, "'IVF16,Bogus' is not a valid Faiss index_factory string"),
        ("too_many_lists", IndexBuildError, "nlist=4096 needs >= 122880 training vectors"),
        ("too_many_shards", IndexBuildError, "index.shards=10 exceeds the 5 docs"),
        ("empty_shard", IndexBuildError, r"index.shards=4096: shard \d+ gets no docs"),
        ("budget", IndexBuildError, "index.factory=auto: memory_budget_bytes=1000 is too small"),
        ("nan_queries", ValueError, "query_vectors contain NaN"),
        ("wrong_query_dim", ValueError, r"query_vectors has shape \(5, 16\)"),
    ],
)
def test_bad_inputs_fail_clearly_and_leave_no_output(tmp_path, embeddings_dir, corpus, case, error, pattern):
    emb, cfg, queries = embeddings_dir, fast_config(), None
    if case == "unfinalized":
        emb = tmp_path / "raw"
        write_embedding_shard(emb, 0, np.arange(5), np.ones((5, 4), np.float32))
    elif case == "nan_vectors":
        emb = _nan_tampered(tmp_path, embeddings_dir)
    elif case == "unknown_factory":
        cfg = fast_config(factory="IVF16,Bogus")
    elif case == "too_many_lists":
        cfg = fast_config(factory="IVF4096,Flat")
    elif case == "too_many_shards":
        emb = write_embeddings(tmp_path / "small", np.arange(5), corpus[1][:5], shards=1)
        cfg = fast_config(shards=10)
    elif case == "empty_shard":
        cfg = fast_config(shards=4096)
    elif case == "budget":
        cfg = fast_config(memory_budget_bytes=1000)
    elif case == "nan_queries":
        queries = corpus[2][:5].copy()
        queries[2, 1] = np.nan
    elif case == "wrong_query_dim":
        queries = corpus[2][:5, :16]
    out = tmp_path / "out" / "idx"
    with pytest.raises(error, match=pattern):
        build_index(emb, out, cfg, query_vectors=queries)
    assert not out.exists()
    assert not (out.parent.exists() and _no_leftovers(out.parent, "idx"))


def test_rebuild_replaces_index_but_never_an_unrelated_dir(tmp_path, embeddings_dir):
    out = tmp_path / "idx"
    build_index(embeddings_dir, out, fast_config(factory="Flat"))
    m2 = build_index(embeddings_dir, out, fast_config(factory="IVF16,Flat"))
    assert load_index(out).manifest["factory"] == m2["factory"] == "IVF16,Flat"
    assert _no_leftovers(tmp_path, "idx") == ["idx"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no manifest.json"):
        build_index(embeddings_dir, precious, fast_config(factory="Flat"))
    assert (precious / "notes.txt").read_text() == "keep me"


def _build_twice(tmp_path, embeddings_dir, seed_a, seed_b, factory):
    out = []
    for name, seed in (("a", seed_a), ("b", seed_b)):
        cfg = fast_config(factory=factory, seed=seed, threads=1, train_sample=2000)
        m = build_index(embeddings_dir, tmp_path / name, cfg)
        out.append((m, (tmp_path / name / "doc_ids.npy").read_bytes()))
    return out


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF16,PQ8", "HNSW8", "IVF16,PQ8,RFlat"])
def test_same_seed_same_index_bytes_recall_and_doc_order(tmp_path, embeddings_dir, factory):
    (m1, ids1), (m2, ids2) = _build_twice(tmp_path, embeddings_dir, 7, 7, factory)
    assert m1["files"]["index.faiss"] == m2["files"]["index.faiss"]
    assert ids1 == ids2
    assert m1["ann_recall"] == m2["ann_recall"]
    assert [p["ann_recall"] for p in m1["tuning"]["curve"]] == [
        p["ann_recall"] for p in m2["tuning"]["curve"]
    ]


def test_other_seed_trains_another_index(tmp_path, embeddings_dir):
    (m1, _), (m2, _) = _build_twice(tmp_path, embeddings_dir, 7, 8, "IVF32,Flat")
    assert m1["files"]["index.faiss"] != m2["files"]["index.faiss"]
    assert m1["train_sample"] == m2["train_sample"] == [2000]
