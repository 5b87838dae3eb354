"""encode_day_queries on the tiny pipeline: a seeded sample of the day's requests through the model's exported query
tower, the same vectors the evaluation step computes for those requests; the index build tunes on them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.test_two_tower_pipeline import pipe, trained  # noqa: F401

pytestmark = pytest.mark.slow

N = 60


def test_day_queries_are_the_evaluation_query_vectors_of_a_seeded_sample(pipe, tmp_path):  # noqa: F811
    from ebr.evaluate.day_queries import encode_day_queries, sample_day_requests
    from ebr.evaluate.two_tower import encode_queries, query_feature_rows
    from ebr.index import IndexConfig, build_index
    from ebr.index.export import ExportEmbeddingsConfig, export_dir_of, export_doc_embeddings
    from ebr.judgements.evalset import build_evalset
    from ebr.models.export import load_exported

    model_dir = trained(pipe, "base")["model_dir"]
    vectors = encode_day_queries(model_dir, pipe.features, pipe.data, pipe.day, N, seed=3)
    sample = sample_day_requests(pipe.data, pipe.day, N, seed=3)
    assert vectors.shape[0] == len(sample) == N and np.isfinite(vectors).all()
    assert sample["event_timestamp"].is_monotonic_increasing and sample["request_id"].is_unique
    # seeded: the same seed draws the same requests, another seed others
    np.testing.assert_array_equal(encode_day_queries(model_dir, pipe.features, pipe.data, pipe.day, N, seed=3),
                                  vectors)  # fmt: skip
    assert set(sample_day_requests(pipe.data, pipe.day, N, seed=4)["request_id"]) != set(sample["request_id"])
    # exactly what the evaluation step encodes for those requests of the day
    evalset = build_evalset(pipe.data, pipe.day)
    frame = evalset.frame.set_index("request_id").loc[sample["request_id"]].reset_index()
    rows = query_feature_rows(pipe.features, frame)
    expected = encode_queries(load_exported(export_dir_of(model_dir)), rows, 256)
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)
    # more than the day holds: all of them
    everything = sample_day_requests(pipe.data, pipe.day, 10**9, seed=3)
    assert len(everything) == evalset.n_requests
    with pytest.raises(ValueError, match="no search_requests partition for day 1999-01-01"):
        sample_day_requests(pipe.data, "1999-01-01", N, seed=3)
    # the index build tunes on them and says so
    emb = tmp_path / "emb"
    export_doc_embeddings(model_dir, pipe.features, pipe.data, pipe.day, emb,
                          ExportEmbeddingsConfig(num_shards=1, progress=False))  # fmt: skip
    m = build_index(emb, tmp_path / "index", IndexConfig(factory="IVF8,Flat", recall_k=20, latency_queries=5,
                                                         progress=False), query_vectors=vectors)  # fmt: skip
    assert m["tuned_on"] == "queries" and m["tuning"]["num_queries"] == N and m["tuning"]["target_reached"]


def test_the_build_index_step_tunes_on_the_days_queries(pipe, tmp_path):  # noqa: F811
    import json
    from types import SimpleNamespace

    from components.index import build_index
    from ebr.index.export import ExportEmbeddingsConfig, export_doc_embeddings

    model_dir = trained(pipe, "base")["model_dir"]
    emb = tmp_path / "emb"
    export_doc_embeddings(model_dir, pipe.features, pipe.data, pipe.day, emb,
                          ExportEmbeddingsConfig(num_shards=1, progress=False))  # fmt: skip
    art = SimpleNamespace
    index = art(path=str(tmp_path / "index"), metadata={})
    config = "index: {factory: 'IVF8,Flat', num_eval_queries: 40, recall_k: 20, latency_queries: 5, progress: false}"
    build_index.python_func(
        data_root=str(pipe.data), day=pipe.day, workspace=str(tmp_path / "ws"), config=config,
        embeddings=art(path=str(emb)), model=art(path=str(model_dir)),
        features=art(path="unused", metadata={"features_dir": str(pipe.features)}), index=index,
    )  # fmt: skip
    assert index.metadata["tuned_on"] == "queries" and index.metadata["ann_recall"] >= 0.95
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["tuning"]["num_queries"] == manifest["tuning"]["query_vectors_given"] == 40
    step = json.loads((tmp_path / "ws" / "reports" / pipe.day / "steps" / "build_index.json").read_text())
    assert (step["status"], step["tuned_on"], step["tuning_queries"]) == ("ok", "queries", 40)
    # tune_on: synthetic keeps the fallback
    synthetic = art(path=str(tmp_path / "index2"), metadata={})
    build_index.python_func(
        data_root=str(pipe.data), day=pipe.day, workspace=str(tmp_path / "ws"),
        config=config.replace("progress: false", "progress: false, tune_on: synthetic"),
        embeddings=art(path=str(emb)), model=art(path=str(model_dir)),
        features=art(path="unused", metadata={"features_dir": str(pipe.features)}), index=synthetic,
    )  # fmt: skip
    assert synthetic.metadata["tuned_on"] == "synthetic"
