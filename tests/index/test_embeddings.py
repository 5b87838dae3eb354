"""Embedding shard format: round trip, normalization, checksums, and one test per rejected input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ebr.index import (
    EmbeddingsError,
    finalize_embeddings,
    iter_embedding_shards,
    load_embeddings_info,
    read_embeddings,
    verify_embeddings,
    write_embedding_shard,
)
from ebr.index.embeddings import EMBEDDINGS_JSON, ids_name, vectors_name


def _rand(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_round_trip_normalizes_and_records_checksums(tmp_path):
    raw = _rand(50, 8)
    write_embedding_shard(tmp_path, 0, np.arange(30), raw[:30])
    write_embedding_shard(tmp_path, 1, np.arange(30, 50), raw[30:])
    doc = finalize_embeddings(tmp_path, "v7")
    assert (doc["dim"], doc["count"], doc["model_version"]) == (8, 50, "v7")
    assert set(doc["checksums"]) == {vectors_name(0), ids_name(0), vectors_name(1), ids_name(1)}
    emb = read_embeddings(tmp_path)
    np.testing.assert_array_equal(emb.ids, np.arange(50))
    np.testing.assert_allclose(emb.vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)
    shards = list(iter_embedding_shards(tmp_path))
    assert [s.shard_no for s in shards] == [0, 1]
    assert isinstance(shards[0].vectors, np.memmap)
    assert shards[1].vectors.shape == (20, 8)
    assert load_embeddings_info(tmp_path).shard_counts == (30, 20)


def test_nan_vector_is_rejected_naming_doc_id(tmp_path):
    v = _rand(10, 4)
    v[6, 2] = np.nan
    with pytest.raises(EmbeddingsError, match=r"row 6 \(doc id 106\).*NaN"):
        write_embedding_shard(tmp_path / "e", 0, np.arange(100, 110), v)
    assert not (tmp_path / "e").exists()


def test_zero_vector_cannot_be_normalized(tmp_path):
    v = _rand(5, 4)
    v[3] = 0
    with pytest.raises(EmbeddingsError, match="row 3.*zero vector"):
        write_embedding_shard(tmp_path, 0, np.arange(5), v)


def test_unnormalized_vectors_rejected_when_normalize_false(tmp_path):
    with pytest.raises(EmbeddingsError, match="L2 norm"):
        write_embedding_shard(tmp_path, 0, np.arange(5), _rand(5, 4) * 3, normalize=False)


def test_duplicate_ids_within_a_shard(tmp_path):
    with pytest.raises(EmbeddingsError, match="duplicate doc ids.*\\[4\\]"):
        write_embedding_shard(tmp_path, 0, np.array([1, 4, 4, 7]), _rand(4, 4))


def test_duplicate_ids_across_shards_block_finalize(tmp_path):
    write_embedding_shard(tmp_path, 0, np.array([1, 2, 3]), _rand(3, 4))
    write_embedding_shard(tmp_path, 1, np.array([3, 9]), _rand(2, 4, 1))
    with pytest.raises(EmbeddingsError, match="more than one shard.*\\[3\\]"):
        finalize_embeddings(tmp_path, "v1")
    assert not (tmp_path / EMBEDDINGS_JSON).exists()


def test_dimension_mismatch_between_shards(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(3), _rand(3, 8))
    write_embedding_shard(tmp_path, 1, np.arange(3, 6), _rand(3, 6))
    with pytest.raises(EmbeddingsError, match=r"shard-00001\.vectors\.npy: dimension mismatch, 6 .* 8"):
        finalize_embeddings(tmp_path, "v1")
    assert not (tmp_path / EMBEDDINGS_JSON).exists()


def test_gap_in_shard_numbers_is_a_missing_shard(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(3), _rand(3, 4))
    write_embedding_shard(tmp_path, 2, np.arange(3, 6), _rand(3, 4))
    with pytest.raises(EmbeddingsError, match=r"missing shard file shard-00001\.vectors\.npy"):
        finalize_embeddings(tmp_path, "v1")


def test_missing_ids_file(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(3), _rand(3, 4))
    (tmp_path / ids_name(0)).unlink()
    with pytest.raises(EmbeddingsError, match=r"missing shard file shard-00000\.ids\.npy"):
        finalize_embeddings(tmp_path, "v1")


def test_shard_deleted_after_finalize_is_reported(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(3), _rand(3, 4))
    write_embedding_shard(tmp_path, 1, np.arange(3, 5), _rand(2, 4))
    finalize_embeddings(tmp_path, "v1")
    (tmp_path / vectors_name(1)).unlink()
    with pytest.raises(EmbeddingsError, match=r"shard-00001\.vectors\.npy"):
        list(iter_embedding_shards(tmp_path))


def test_empty_embeddings_cannot_be_finalized(tmp_path):
    with pytest.raises(EmbeddingsError, match="no shard files"):
        finalize_embeddings(tmp_path, "v1")
    write_embedding_shard(tmp_path, 0, np.arange(0), np.empty((0, 4), np.float32))
    with pytest.raises(EmbeddingsError, match="all shards are empty"):
        finalize_embeddings(tmp_path, "v1")
    assert not (tmp_path / EMBEDDINGS_JSON).exists()


def test_unfinalized_dir_cannot_be_read(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(3), _rand(3, 4))
    with pytest.raises(EmbeddingsError, match="never finalized"):
        read_embeddings(tmp_path)


def test_finalized_dir_refuses_more_shards(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(3), _rand(3, 4))
    finalize_embeddings(tmp_path, "v1")
    with pytest.raises(EmbeddingsError, match="already finalized"):
        write_embedding_shard(tmp_path, 1, np.arange(3, 6), _rand(3, 4))


@pytest.mark.parametrize(
    ("ids", "vectors", "pattern"),
    [
        (np.arange(4).reshape(2, 2), _rand(4, 4), "ids must be 1-D"),
        (np.arange(4, dtype=np.float64), _rand(4, 4), "ids must be integers"),
        (np.arange(4), _rand(4, 4)[0], "vectors must be 2-D"),
        (np.arange(3), _rand(4, 4), "3 ids but 4 vectors"),
    ],
)
def test_bad_shapes_and_types(tmp_path, ids, vectors, pattern):
    with pytest.raises(EmbeddingsError, match=pattern):
        write_embedding_shard(tmp_path, 0, ids, vectors)
    assert list(tmp_path.iterdir()) == []


def test_tampered_shard_fails_checksum(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(6), _rand(6, 4))
    finalize_embeddings(tmp_path, "v1")
    path = tmp_path / vectors_name(0)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EmbeddingsError, match=r"shard-00000\.vectors\.npy: sha256"):
        verify_embeddings(tmp_path)


def test_json_count_must_match_shards(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(6), _rand(6, 4))
    doc = finalize_embeddings(tmp_path, "v1")
    doc["count"] = 7
    (tmp_path / EMBEDDINGS_JSON).write_text(json.dumps(doc))
    with pytest.raises(EmbeddingsError, match="count 7 != sum of shard counts 6"):
        load_embeddings_info(tmp_path)


def test_nan_written_around_the_writer_blocks_finalize(tmp_path):
    write_embedding_shard(tmp_path, 0, np.arange(4), _rand(4, 4))
    v = np.load(tmp_path / vectors_name(0))
    v[2, 3] = np.inf
    np.save(tmp_path / vectors_name(0), v)
    with pytest.raises(
        EmbeddingsError, match=r"shard-00000\.vectors\.npy: row 2 \(doc id 2\) has NaN or infinite"
    ):
        finalize_embeddings(tmp_path, "v1")
    assert not (tmp_path / EMBEDDINGS_JSON).exists()
