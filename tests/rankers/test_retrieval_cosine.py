"""The retrieval model's cosine as a feature of the coarse ranker: per-pair cosines, the head's learned term,
export parity, and the errors that name what is missing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ebr.models.export import load_exported
from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.rankers.coarse_ranker import CoarseRanker, PairScorer
from ebr.models.rankers.retrieval_cosine import retrieval_cosines
from ebr.models.rankers.tensors import make_batch
from ebr.train.checkpoint import load_two_tower
from ebr.train.rankers import CoarseRankerStepConfig, distill_coarse_ranker, export_student, forward_batch
from tests.rankers.conftest import coarse_config


@pytest.fixture(scope="module")
def cosines(small_rows, retrieval_model_dir):
    return retrieval_cosines(load_two_tower(retrieval_model_dir), small_rows, batch_size=7)


@pytest.fixture(scope="module")
def rc_tensors(small_tensors, cosines):
    return dataclasses.replace(small_tensors, retrieval_cosine=torch.from_numpy(cosines))


def test_retrieval_cosines_are_the_retrieval_models_pair_scores(small_rows, retrieval_model_dir, cosines):
    model = load_two_tower(retrieval_model_dir)
    assert cosines.shape == (len(small_rows.pairs),) and cosines.dtype == np.float32
    assert np.all(np.abs(cosines) <= 1 + 1e-5) and np.std(cosines) > 0
    pick = np.arange(0, len(small_rows.pairs), 37)
    pairs = small_rows.pairs.iloc[pick]
    requests = small_rows.requests.iloc[pairs["request_row"].to_numpy()].reset_index(drop=True)
    docs = small_rows.docs.iloc[pairs["doc_row"].to_numpy()].reset_index(drop=True)
    fz = model.config.featurizer
    with torch.no_grad():
        out = model(featurize_queries(requests, fz), featurize_docs(docs, fz))
    want = (out["score"] * model.temperature).numpy()  # score = cos / tau
    np.testing.assert_allclose(cosines[pick], want, atol=1e-5)


def test_head_adds_a_learned_multiple_of_the_retrieval_cosine(rc_tensors):
    plain = CoarseRanker(coarse_config(seed=2)).eval()
    model = CoarseRanker(coarse_config(seed=2, retrieval_cosine=True, retrieval_cosine_init=0.75)).eval()
    assert model.uses_retrieval_cosine and not plain.uses_retrieval_cosine
    b = make_batch(rc_tensors, torch.arange(4))
    with torch.no_grad():
        base = plain(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
        with_rc = forward_batch(model, b)
        zero = model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request, torch.zeros_like(b.retrieval_cosine))
    torch.testing.assert_close(zero, base, atol=1e-6, rtol=0)  # same seed: same towers, w * 0 adds nothing
    torch.testing.assert_close(with_rc - base, 0.75 * b.retrieval_cosine, atol=1e-5, rtol=0)
    assert dict(model.named_parameters())["head.retrieval_weight"].requires_grad
    with pytest.raises(ValueError, match="retrieval_cosine"):
        model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
    with pytest.raises(ValueError, match="retrieval_model_dir"):
        forward_batch(model, dataclasses.replace(b, retrieval_cosine=None))


def test_the_switch_is_off_by_default():
    assert CoarseRankerStepConfig().model.retrieval_cosine is False  # see docs/rankers.md for the measurement


@pytest.mark.parametrize("kind", ["two_tower", pytest.param("three_tower", marks=pytest.mark.slow)])
def test_exported_scorer_matches_the_eager_head_with_the_retrieval_cosine(rc_tensors, tmp_path, kind):
    model = CoarseRanker(coarse_config(kind=kind, seed=5, retrieval_cosine=True)).eval()
    with torch.no_grad():
        model.head.retrieval_weight.fill_(-1.7)
    out = export_student(model, rc_tensors, tmp_path / "export", "coarse-rc", n=4)
    bundle = load_exported(out)
    want = {"query", "doc", "retrieval_cosine"} | ({"cross", "cross_buckets"} if kind == "three_tower" else set())
    assert set(bundle["scorer"].input_spec) == want
    b = make_batch(rc_tensors, torch.arange(3, 11))  # other requests and another size than the examples
    with torch.no_grad():
        eager = forward_batch(model, b)
        q = model.encode_queries(b.query)[b.pair_request]
        d = model.encode_docs(b.doc)
        inputs = {"query": q, "doc": d, "cross": b.cross, "cross_buckets": b.cross_buckets,
                  "retrieval_cosine": b.retrieval_cosine}
        head = PairScorer(model)(inputs)
    exported = bundle["scorer"](inputs)
    torch.testing.assert_close(head, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(exported, eager, atol=1e-5, rtol=0)
    shifted = bundle["scorer"]({**inputs, "retrieval_cosine": b.retrieval_cosine + 1.0})
    torch.testing.assert_close(shifted - exported, torch.full_like(exported, -1.7), atol=1e-5, rtol=0)


def test_export_without_cosines_in_the_tensors_names_them(small_tensors, tmp_path):
    model = CoarseRanker(coarse_config(retrieval_cosine=True)).eval()
    with pytest.raises(ValueError, match="retrieval_cosine"):
        export_student(model, small_tensors, tmp_path / "export", "coarse-rc")
    assert not (tmp_path / "export").exists()


def test_distill_with_the_switch_on_and_no_retrieval_model_names_the_parameter(tmp_path):
    cfg = CoarseRankerStepConfig(model=coarse_config(retrieval_cosine=True))
    out = tmp_path / "coarse"
    with pytest.raises(ValueError, match="retrieval_model_dir"):
        distill_coarse_ranker(tmp_path / "no-samples", tmp_path / "no-teacher", out, cfg)
    assert not out.exists()

