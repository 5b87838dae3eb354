"""export_doc_embeddings: the exported doc tower over the whole corpus of the day, in shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.test_two_tower_pipeline import pipe, trained  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(pipe, tmp_path_factory):  # noqa: F811
    from ebr.index.export import ExportEmbeddingsConfig, export_doc_embeddings

    model = trained(pipe, "base")
    out = tmp_path_factory.mktemp("embeddings") / "emb"
    cfg = ExportEmbeddingsConfig(num_shards=3, batch_size=128, progress=False, num_threads=1)
    result = export_doc_embeddings(model["model_dir"], pipe.features, pipe.data, pipe.day, out, cfg)
    return model, out, result


def test_shards_partition_the_whole_corpus_of_the_day(pipe, exported):  # noqa: F811
    from ebr.features.doc_features import corpus_docs
    from ebr.index import iter_embedding_shards, load_embeddings_info

    model, out, result = exported
    corpus = corpus_docs(pipe.data, pipe.day)["doc_id"].to_numpy()
    shards = list(iter_embedding_shards(out))
    assert len(shards) == 3 and all(len(s.ids) > 0 for s in shards)
    ids = np.concatenate([s.ids for s in shards])
    assert len(ids) == len(set(ids.tolist())) == len(corpus)
    assert set(ids.tolist()) == set(corpus.tolist())
    assert result["shard_counts"] == [len(s.ids) for s in shards]
    info = load_embeddings_info(out)
    assert info.model_version == model["model_version"] and info.count == len(corpus)


def test_vectors_are_unit_norm_and_equal_the_eager_doc_tower(pipe, exported):  # noqa: F811
    from ebr.features.doc_features import corpus_docs, doc_feature_table
    from ebr.index import read_embeddings
    from ebr.models.inputs import featurize_docs
    from ebr.train.checkpoint import load_two_tower

    model_result, out, _ = exported
    emb = read_embeddings(out)
    assert np.allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    model = load_two_tower(model_result["model_dir"])
    table = doc_feature_table(pipe.features, corpus_docs(pipe.data, pipe.day), pipe.day)
    with torch.no_grad():
        eager = model.encode_docs(featurize_docs(table, model.config.featurizer)).numpy()
    by_id = dict(zip(table["doc_id"].tolist(), range(len(table)), strict=True))
    rows = [by_id[i] for i in emb.ids.tolist()]
    assert np.abs(emb.vectors - eager[rows]).max() <= 1e-5


def test_export_errors_name_the_problem(pipe, exported, tmp_path):  # noqa: F811
    from ebr.index.export import ExportEmbeddingsConfig, export_doc_embeddings

    model, out, _ = exported
    with pytest.raises(ValueError, match="num_shards"):
        export_doc_embeddings(model["model_dir"], pipe.features, pipe.data, pipe.day, tmp_path / "e",
                              ExportEmbeddingsConfig(num_shards=100_000, progress=False))
    with pytest.raises(FileNotFoundError, match="export.json"):
        export_doc_embeddings(tmp_path, pipe.features, pipe.data, pipe.day, tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_re_export_replaces_the_directory_whole(pipe, exported, tmp_path):  # noqa: F811
    from ebr.index import load_embeddings_info
    from ebr.index.export import ExportEmbeddingsConfig, export_doc_embeddings

    model, _, _ = exported
    out = tmp_path / "emb"
    for shards in (2, 1):
        export_doc_embeddings(model["model_dir"], pipe.features, pipe.data, pipe.day, out,
                              ExportEmbeddingsConfig(num_shards=shards, progress=False))
        assert load_embeddings_info(out).num_shards == shards
    assert sorted(p.name for p in out.iterdir()) == ["embeddings.json", "shard-00000.ids.npy",
                                                      "shard-00000.vectors.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["emb"]


def test_fan_out_export_equals_the_single_task_export(pipe, exported, tmp_path):  # noqa: F811
    """The DAG's ParallelFor path (one task per shard, then finalize over the collected shard directories)
    gives bitwise the same embeddings as the one-task export, and out-of-order delivery changes nothing."""
    from ebr.index import read_embeddings
    from ebr.index.export import (
        ExportEmbeddingsConfig,
        export_one_shard,
        finalize_shard_dirs,
        plan_export_shards,
    )

    model, out, _ = exported
    cfg = ExportEmbeddingsConfig(num_shards=3, batch_size=128, progress=False, num_threads=1)
    shard_nos = plan_export_shards(pipe.data, pipe.day, cfg)
    assert shard_nos == [0, 1, 2]
    dirs = []
    for n in reversed(shard_nos):
        d = tmp_path / f"shard-task-{n}"
        assert export_one_shard(model["model_dir"], pipe.features, pipe.data, pipe.day, n, d, cfg)["count"] > 0
        dirs.append(d)
    fanned = finalize_shard_dirs(dirs, model["model_dir"], tmp_path / "fanned")
    a, b = read_embeddings(out), read_embeddings(tmp_path / "fanned")
    assert np.array_equal(a.ids, b.ids)
    assert np.array_equal(a.vectors, b.vectors)
    assert fanned["count"] == len(a.ids)
    with pytest.raises(Exception, match="delivered twice"):
        finalize_shard_dirs(dirs + dirs[:1], model["model_dir"], tmp_path / "dup")
    assert not (tmp_path / "dup").exists()
