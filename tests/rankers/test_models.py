"""Fine ranker and coarse ranker modules: shapes, score definitions, seeds, the precomputed doc matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ebr.models.rankers.coarse_ranker import CoarseRanker, PairScorer, encode_corpus
from ebr.models.rankers.fine_ranker import FineRanker
from ebr.models.rankers.tensors import make_batch
from tests.rankers.conftest import TINY_FEATURIZER, coarse_config, fine_config


def _batch(t, n=3):
    return make_batch(t, torch.arange(n))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("interaction", ["dcn", "fibinet"])
def test_fine_ranker_scores_every_pair_with_task_logits(small_tensors, interaction):
    model = FineRanker(fine_config(interaction=interaction)).eval()
    b = _batch(small_tensors)
    logits = model.task_logits(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
    assert logits.shape == (len(b.pair_index), 4) and torch.isfinite(logits).all()
    torch.testing.assert_close(model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request), logits[:, 0])
    # per-pair query rows give the same logits as the per-request rows gathered by pair_request
    per_pair_query = {k: v[b.pair_request] for k, v in b.query.items()}
    torch.testing.assert_close(model.task_logits(per_pair_query, b.doc, b.cross, b.cross_buckets), logits)


def test_fine_ranker_score_weights_and_single_head(small_tensors):
    b = _batch(small_tensors, 2)
    model = FineRanker(fine_config(score_weights=[1.0, 0.5, 0.0, 2.0])).eval()
    logits = model.task_logits(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
    want = logits[:, 0] + 0.5 * logits[:, 1] + 2.0 * logits[:, 3]
    torch.testing.assert_close(model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request), want)
    single = FineRanker(fine_config(multi_task=fine_config().multi_task.model_copy(update={"enabled": False})))
    assert single.tasks == ["click"]
    assert single.task_logits(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request).shape[1] == 1


def test_seed_fixes_the_initial_weights():
    assert _same_weights(FineRanker(fine_config(seed=3)), FineRanker(fine_config(seed=3)))
    assert not _same_weights(FineRanker(fine_config(seed=3)), FineRanker(fine_config(seed=4)))
    assert _same_weights(CoarseRanker(coarse_config(seed=1)), CoarseRanker(coarse_config(seed=1)))
    assert not _same_weights(CoarseRanker(coarse_config(seed=1)), CoarseRanker(coarse_config(seed=2)))


def test_two_tower_score_is_scaled_cosine(small_tensors):
    model = CoarseRanker(coarse_config(scale_init=7.0)).eval()
    b = _batch(small_tensors)
    with torch.no_grad():
        q = model.encode_queries(b.query)
        d = model.encode_docs(b.doc)
        got = model(b.query, b.doc, pair_request=b.pair_request)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(len(q)))
    torch.testing.assert_close(got, 7.0 * (q[b.pair_request] * d).sum(dim=1))
    assert not model.three_tower and model.head.cross_tower is None


def test_three_tower_adds_the_cross_tower_and_needs_cross_features(small_tensors):
    model = CoarseRanker(coarse_config(kind="three_tower")).eval()
    b = _batch(small_tensors)
    with torch.no_grad():
        q = model.encode_queries(b.query)[b.pair_request]
        d = model.encode_docs(b.doc)
        full = model.score_pairs(q, d, b.cross, b.cross_buckets)
        cos_part = torch.exp(model.head.log_scale) * (q * d).sum(dim=1) + model.head.bias
        other = b.cross.flip(0), b.cross_buckets.flip(0)
        changed = model.score_pairs(q, d, *other)
    assert not torch.allclose(full, cos_part)  # the post-interaction MLP contributes
    assert not torch.allclose(full, changed)  # and it reads the cross features
    with pytest.raises(ValueError, match="cross"):
        model.score_pairs(q, d)
    scorer = PairScorer(model)
    torch.testing.assert_close(scorer({"query": q, "doc": d, "cross": b.cross, "cross_buckets": b.cross_buckets}),
                               full)


def test_encode_corpus_is_the_doc_tower_over_every_doc(small_rows):
    model = CoarseRanker(coarse_config())
    docs = small_rows.docs.drop_duplicates("doc_id").reset_index(drop=True)
    ids, mat = encode_corpus(model, docs, TINY_FEATURIZER, batch_size=7)
    assert mat.shape == (len(docs), 8) and mat.dtype == np.float32
    np.testing.assert_array_equal(ids, docs["doc_id"].to_numpy())
    from ebr.models.inputs import featurize_docs

    with torch.no_grad():
        want = model.eval().encode_docs(featurize_docs(docs.iloc[:5], TINY_FEATURIZER)).numpy()
    np.testing.assert_allclose(mat[:5], want, atol=1e-6)
    with pytest.raises(ValueError, match="distinct"):
        encode_corpus(model, small_rows.docs.iloc[[0, 0]], TINY_FEATURIZER)


def test_batches_lay_candidates_out_as_padded_lists(small_tensors):
    counts = small_tensors.offsets[1:] - small_tensors.offsets[:-1]
    short, long = int(torch.argmin(counts)), int(torch.argmax(counts))
    assert counts[short] < counts[long]
    b = make_batch(small_tensors, torch.tensor([long, short]))
    assert b.slots.shape == (2, int(counts[long]))
    assert b.mask.sum(dim=1).tolist() == [int(counts[long]), int(counts[short])]
    assert int(b.pair_index[b.slots[0, 0]]) == int(small_tensors.offsets[long])
    assert torch.equal(small_tensors.request_row[b.pair_index], torch.tensor([long, short])[b.pair_request])
    laid = b.lists(torch.arange(len(b.pair_index), dtype=torch.float32), fill=-5.0)
    assert (laid[~b.mask] == -5.0).all() and (~b.mask).any()
    assert laid[b.mask].tolist() == list(range(len(b.pair_index)))
