"""Export of the coarse ranker through ebr.models.export: exported programs match the eager model within 1e-5."""

from __future__ import annotations

import json

import pytest
import torch

from ebr.models.export import load_exported
from ebr.models.rankers.coarse_ranker import CoarseRanker
from ebr.models.rankers.tensors import make_batch
from ebr.train.rankers import export_student
from tests.rankers.conftest import coarse_config


@pytest.mark.parametrize("kind", ["two_tower", pytest.param("three_tower", marks=pytest.mark.slow)])
def test_exported_student_matches_eager_scores(small_tensors, tmp_path, kind):
    model = CoarseRanker(coarse_config(kind=kind, seed=2)).eval()
    out = export_student(model, small_tensors, tmp_path / "export", "coarse-test", n=4)
    bundle = load_exported(out)
    assert set(bundle.modules) == {"query_tower", "doc_tower", "scorer"}
    want_scorer = {"query", "doc"} | ({"cross", "cross_buckets"} if kind == "three_tower" else set())
    assert set(bundle["scorer"].input_spec) == want_scorer
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["config"]["coarse_ranker"]["kind"] == kind
    # other requests and another batch size than the export examples
    b = make_batch(small_tensors, torch.arange(5, 12))
    with torch.no_grad():
        q_eager = model.encode_queries(b.query)
        d_eager = model.encode_docs(b.doc)
        s_eager = model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
    q = bundle["query_tower"](b.query)
    d = bundle["doc_tower"](b.doc)
    inputs = {"query": q[b.pair_request], "doc": d, "cross": b.cross, "cross_buckets": b.cross_buckets}
    s = bundle["scorer"](inputs)
    torch.testing.assert_close(q, q_eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(d, d_eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(s, s_eager, atol=1e-5, rtol=0)
    assert s.shape == (len(b.pair_index),)
    # the scorer holds the scoring head alone, not the towers' weights
    assert (out / "scorer.pt2").stat().st_size < (out / "doc_tower.pt2").stat().st_size / 2
