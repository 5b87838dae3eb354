"""The tiny pipeline the two-tower tests share (features, samples with hard negatives, trained models), built once
per session and cached; and tests of the doc-feature table and the training data built from it."""

from __future__ import annotations

import functools
import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ebr.train.two_tower_config import TwoTowerTrainConfig, deep_merge

pytestmark = pytest.mark.slow
DIM = 8


@dataclass(frozen=True)
class Pipeline:
    """Paths of the shared tiny pipeline: raw data, feature store and the samples of the last day."""

    data: Path
    day: str
    features: Path
    samples: Path
    base: Path


def _encode_queries(frame: pd.DataFrame) -> np.ndarray:
    """A deterministic stand-in for the previous model's query tower: unit vectors seeded by query and user."""
    out = np.empty((len(frame), DIM), dtype="float32")
    for i, (q, u) in enumerate(zip(frame["query"], frame["user_id"], strict=True)):
        v = np.random.default_rng(zlib.crc32(f"{q}|{u}".encode())).normal(size=DIM)
        out[i] = v / np.linalg.norm(v)
    return out


def _previous_index(data: Path):
    """The previous model's index: a Faiss IndexFlatIP over random unit vectors of every doc, by doc id."""
    import faiss

    from ebr.contract import load

    doc_ids = np.sort(load(data, "docs")["doc_id"].unique()).astype("int64")
    vecs = np.random.default_rng(3).normal(size=(len(doc_ids), DIM)).astype("float32")
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    index.add_with_ids(vecs, doc_ids)
    return index


@functools.cache
def tiny_pipeline(data: Path, base: Path) -> Pipeline:
    """Feature store for the last tiny day and its samples (features joined, ANN hard negatives, exposed-unclicked)."""
    from ebr.contract import list_days
    from ebr.features import build_features
    from ebr.samples import SamplesConfig, build_samples

    day = list_days(data, "search_requests")[-1]
    features, samples = base / "features", base / "samples"
    build_features(data, day, features)
    cfg = SamplesConfig(
        use_exposed_unclicked_negatives=True, seed=3,
        ranking={"include_preranked": False, "include_ranked": False, "random_same_category": 0,
                 "random_other_category": 0},
    )  # fmt: skip
    build_samples(data, day, samples, cfg, features_dir=features, prev_index=_previous_index(data),
                  encode_queries=_encode_queries)
    return Pipeline(data, day, features, samples, base)


def tiny_config(mlflow_dir: Path | None, **overrides: Any) -> TwoTowerTrainConfig:
    """A small personalized model and loop for tests (hidden 16, short sequences, one thread, deterministic)."""
    base: dict[str, Any] = {
        "model": {
            "featurizer": {
                "vocab": {"unigram": 2000, "bigram": 4000, "word": 4000, "user_id": 1000, "doc_id": 2000,
                          "author_id": 500, "brand": 500, "attribute": 1000, "tag": 500, "category": 200},
                "max_len": {"seq_rt": 6, "seq_st": 10, "seq_lt": 10, "recent_queries": 4, "title_words": 16},
            },
            # personalized (off in the default model): the tests exercise every block and the real-time skew
            "query_tower": {"hidden_dim": 16, "out_dim": 16, "num_heads": 2, "personalization": True,
                            "cls_fusion": True},
            "doc_tower": {"hidden_dim": 16, "out_dim": 16, "mlp_dims": [32]},
            "seed": 5,
        },
        "loss": {"num_hard_negatives": 16},
        "negatives": {"random_negatives": 64},
        # no ONNX conversion (~2 s a training) but for the shared "base" model (trained() below)
        "train": {"epochs": 3, "batch_size": 64, "num_threads": 1, "progress": False, "valid_k": 50,
                  "early_stopping_patience": 0, "seed": 1, "onnx_query_tower": False},
        "mlflow": {"tracking_uri": f"sqlite:///{mlflow_dir}/mlflow.db" if mlflow_dir else None,
                   "artifact_location": str(mlflow_dir / "artifacts") if mlflow_dir else None},
    }  # fmt: skip
    return TwoTowerTrainConfig.model_validate(deep_merge(base, overrides))


@functools.cache
def trained(pipe: Pipeline, name: str, overrides_json: str = "{}") -> dict[str, Any]:
    """train_two_tower's result for a named config (cached per session); MLflow in <base>/<name>/. The "base"
    model is also converted to ONNX, as production's are; the others skip the conversion they do not test."""
    from ebr.train.two_tower import train_two_tower

    work = pipe.base / name
    work.mkdir(parents=True, exist_ok=True)
    overrides = json.loads(overrides_json)
    if name == "base":
        overrides = deep_merge({"train": {"onnx_query_tower": True}}, overrides)
    cfg = tiny_config(work, **overrides)
    return train_two_tower(pipe.samples, pipe.features, work / "model", cfg)


@pytest.fixture(scope="module")
def pipe(tiny_data, tmp_path_factory) -> Pipeline:
    return tiny_pipeline(tiny_data, tmp_path_factory.getbasetemp() / "two_tower_pipeline")


def test_doc_table_covers_the_corpus_with_point_in_time_features(pipe):
    from ebr.features import open_store
    from ebr.features.doc_features import DOC_FEATURE_COLUMNS, corpus_docs, doc_feature_table

    store = open_store(pipe.features)
    before = corpus_docs(pipe.data, pipe.day, include_day=False)
    end = corpus_docs(pipe.data, pipe.day, include_day=True)
    assert set(before["doc_id"]) < set(end["doc_id"])  # docs published during the day join the serving corpus
    table = doc_feature_table(pipe.features, end, pipe.day, store=store)
    assert table["doc_id"].tolist() == sorted(end["doc_id"].tolist())
    assert set(DOC_FEATURE_COLUMNS) <= set(table.columns)
    assert table["title"].notna().all() and table["category_leaf"].notna().all()
    # statistics as of the day's start never count the day itself: the day-end table sees at least as many clicks
    late = doc_feature_table(pipe.features, end, pipe.day, "day_end", store=store)
    start_clicks = table.set_index("doc_id")["doc_clicks_30d"].fillna(0)
    end_clicks = late.set_index("doc_id")["doc_clicks_30d"].fillna(0)
    assert (end_clicks >= start_clicks).all() and (end_clicks > start_clicks).any()


def test_doc_table_names_docs_the_store_does_not_know(pipe):
    from ebr.features.doc_features import doc_feature_table

    corpus = pd.DataFrame({"doc_id": [987_654_321]})
    with pytest.raises(ValueError, match="987654321"):
        doc_feature_table(pipe.features, corpus, pipe.day)


def test_training_data_splits_requests_and_groups_negatives(pipe):
    from ebr.train.retrieval_data import load_training_data

    cfg = tiny_config(None, negatives={"use_exposed_unclicked": True})
    data = load_training_data(pipe.samples, pipe.features, cfg)
    train_requests = set(data.train.frame["request_id"])
    valid_requests = set(data.valid.rows.frame["request_id"])
    assert valid_requests and not (train_requests & valid_requests)
    last = pd.to_datetime(data.valid.rows.frame["event_timestamp"], utc=True).dt.strftime("%Y-%m-%d")
    assert (last == data.train_days[-1]).all()
    negatives = pd.read_parquet(pipe.samples / "negatives.parquet")
    assert data.docs.ids.tolist() == sorted(negatives["doc_id"])
    assert np.isclose(data.docs.prob.sum(), 1.0)
    hard = pd.read_parquet(pipe.samples / "hard_negatives.parquet")
    code = data.train.request_code[0]
    rid = data.train.frame["request_id"].iloc[0]
    want = sorted(hard.loc[hard["request_id"] == rid, "doc_id"])
    assert sorted(data.docs.ids[data.hard[code]].tolist()) == want
    assert data.counts["exposed_unclicked_rows"] > 0 and data.counts["rewrite_negatives"] > 0


def test_list_columns_kept_as_arrow_featurize_exactly_like_object_columns(pipe):
    """The trainer reads the joined positives' query-side lists as Arrow (memory); the arrays must not change."""
    from ebr.models.inputs import doc_arrays, query_arrays
    from ebr.train.retrieval_data import read_samples_manifest, sample_table

    featurizer = tiny_config(None).model.featurizer
    manifest = read_samples_manifest(pipe.samples)
    plain = sample_table(pipe.samples, manifest, "retrieval_features")
    arrow = sample_table(pipe.samples, manifest, "retrieval_features", arrow_lists=True)
    lists = [c for c in arrow.columns if isinstance(arrow[c].dtype, pd.ArrowDtype)]
    assert list(arrow.columns) == list(plain.columns)
    assert {"seq_rt_doc_ids", "seq_st_doc_ids", "recent_queries"} <= set(lists)
    assert not {"attributes", "tags"} & set(lists)  # the doc side stays objects (filled from the doc table)
    pd.testing.assert_frame_equal(arrow.drop(columns=lists), plain.drop(columns=lists))
    arrow.loc[0, "seq_st_doc_ids"], plain.at[0, "seq_st_doc_ids"] = pd.NA, None  # a null list: NA vs None
    assert arrow["seq_st_doc_ids"].isna().sum() == 1
    want, got = query_arrays(plain, featurizer), query_arrays(arrow, featurizer)
    assert want.keys() == got.keys() and want["seq_st_doc_ids"].any()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    for k, v in doc_arrays(plain, featurizer).items():
        np.testing.assert_array_equal(doc_arrays(arrow, featurizer)[k], v, err_msg=k)


def test_query_rows_featurized_in_chunks_give_the_same_arrays(pipe):
    from ebr.models.inputs import query_arrays
    from ebr.train.retrieval_data import _narrow, query_arrays_chunked, read_samples_manifest, sample_table

    featurizer = tiny_config(None).model.featurizer
    frame = sample_table(pipe.samples, read_samples_manifest(pipe.samples), "retrieval_features", arrow_lists=True)
    want = _narrow(query_arrays(frame, featurizer))
    got = query_arrays_chunked(frame, featurizer, chunk_rows=97)  # uneven chunks, the last one short
    assert len(frame) > 5 * 97 and want.keys() == got.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_chunked_query_arrays_widen_when_a_later_chunk_needs_int64(monkeypatch):
    from ebr.train import retrieval_data

    def fake(rows, featurizer):  # ids of the rows' own positions; the last rows' ids need 64 bits
        pos = rows["pos"].to_numpy(dtype=np.int64)
        return {"ids": np.where(pos >= 20, pos + 2**40, pos)[:, None].repeat(3, axis=1), "one": pos}

    monkeypatch.setattr(retrieval_data, "query_arrays", fake)
    frame = pd.DataFrame({"pos": np.arange(25)})
    got = retrieval_data.query_arrays_chunked(frame, None, chunk_rows=8)
    assert got["ids"].dtype == np.int64 and got["one"].dtype == np.int32
    np.testing.assert_array_equal(got["ids"][:, 0], np.where(np.arange(25) >= 20, np.arange(25) + 2**40, np.arange(25)))
    np.testing.assert_array_equal(got["one"], np.arange(25))


def test_positives_are_joined_from_the_store_when_the_samples_lack_features(pipe, tmp_path):
    from ebr.features.doc_features import doc_feature_table
    from ebr.train.retrieval_data import positives_with_features, read_samples_manifest, sample_table

    copy = tmp_path / "samples"
    shutil.copytree(pipe.samples, copy)
    manifest = read_samples_manifest(copy)
    joined = sample_table(copy, manifest, "retrieval_features")
    del manifest["tables"]["retrieval_features"]
    table = doc_feature_table(pipe.features, pd.read_parquet(copy / "negatives.parquet")[["doc_id"]], pipe.day)
    frame, notes = positives_with_features(copy, manifest, pipe.features, table)
    assert any("joined from the feature store" in n for n in notes)
    assert len(frame) == len(joined)
    had = joined["title"].notna().to_numpy()

    def plain(values: pd.Series) -> list:
        return [list(v) if isinstance(v, list | np.ndarray) else (None if pd.isna(v) else v) for v in values[had]]

    for col in ("title", "user_gender", "recent_queries", "seq_st_doc_ids", "doc_clicks_30d"):
        assert plain(frame[col]) == plain(joined[col]), col
    assert frame["title"].notna().all()  # rows the join left without doc features took them from the doc table
