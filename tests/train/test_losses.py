"""Retrieval losses against hand-computed values on tiny tensors, plus a small learning sanity check."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from ebr.train.losses import (
    RetrievalLossConfig,
    RowNegatives,
    accidental_hits,
    candidate_logits,
    log_q_matrix,
    mixed_negative_logits,
    multitask_bce_loss,
    nce_loss,
    retrieval_loss,
    sampled_softmax_loss,
    sampling_log_q,
    triplet_loss,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def softmax_nll(logits: list[float], target: int) -> float:
    """-log softmax(logits)[target], written out."""
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def log_sigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


# q0 = [1, 0], q1 = [0, 1]; positives p0 = [0.6, 0.8], p1 = [1, 0]; one sampled negative n = [0.8, 0.6]
Q = [[1.0, 0.0], [0.0, 1.0]]
P = [[0.6, 0.8], [1.0, 0.0]]
N = [[0.8, 0.6]]
# sims: q0.p0 = 0.6, q0.p1 = 1.0, q0.n = 0.8; q1.p0 = 0.8, q1.p1 = 0.0, q1.n = 0.6


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 2.0])
def test_in_batch_softmax_with_temperature(tau):
    expected = (softmax_nll([0.6 / tau, 1.0 / tau], 0) + softmax_nll([0.8 / tau, 0.0 / tau], 1)) / 2
    got = sampled_softmax_loss(t(Q), t(P), temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_sampled_negatives_join_the_denominator():
    tau = 0.5
    expected = (
        softmax_nll([0.6 / tau, 1.0 / tau, 0.8 / tau], 0) + softmax_nll([0.8 / tau, 0.0, 0.6 / tau], 1)
    ) / 2
    assert sampled_softmax_loss(t(Q), t(P), t(N), temperature=tau).item() == pytest.approx(expected, rel=1e-9)
    logits = candidate_logits(t(Q), t(P), t(N), temperature=tau)
    torch.testing.assert_close(logits, t([[1.2, 2.0, 1.6], [1.6, 0.0, 1.2]]))


def test_log_q_correction_subtracts_each_candidates_log_probability():
    tau = 1.0
    qp, qn = [0.5, 0.1], [0.2]  # sampling probabilities of p0, p1 (in-batch) and of n
    lq = [math.log(x) for x in qp + qn]
    row0 = [0.6 - lq[0], 1.0 - lq[1], 0.8 - lq[2]]
    row1 = [0.8 - lq[0], 0.0 - lq[1], 0.6 - lq[2]]
    expected = (softmax_nll(row0, 0) + softmax_nll(row1, 1)) / 2
    got = sampled_softmax_loss(
        t(Q), t(P), t(N), temperature=tau, pos_log_q=t(qp).log(), neg_log_q=t(qn).log()
    )
    assert got.item() == pytest.approx(expected, rel=1e-9)
    layout = log_q_matrix(2, t(qp).log(), t(qn).log(), 1, per_row=False)
    torch.testing.assert_close(layout, t([lq, lq]))


def test_log_q_sign_more_often_sampled_candidate_gets_lower_logit():
    q, p = t([[1.0, 0.0]]), t([[0.0, 1.0]])
    negs = t([[0.6, 0.8], [0.6, 0.8]])  # two identical negatives ...
    lq = t([0.5, 0.01]).log()  # ... the first sampled 50x more often
    corrected = candidate_logits(q, p, negs) - log_q_matrix(1, t([0.1]).log(), lq, 2, per_row=False)
    assert corrected[0, 1] < corrected[0, 2]
    # raising a negative's sampling probability lowers its corrected logit, hence the loss
    losses = [
        sampled_softmax_loss(q, p, negs, pos_log_q=t([0.1]).log(), neg_log_q=t([x, 0.01]).log()).item()
        for x in (0.01, 0.1, 0.5)
    ]
    assert losses[0] > losses[1] > losses[2]


def test_accidental_hits_are_masked_in_batch_and_among_sampled_negatives():
    q = t([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    p = t([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    pos_ids = torch.tensor([7, 7, 9])  # rows 0 and 1 share their positive doc
    n = t([[0.8, 0.6], [-1.0, 0.0]])
    neg_ids = torch.tensor([9, 4])  # the first sampled negative is row 2's positive
    s = (q @ p.T).tolist()
    sn = (q @ n.T).tolist()
    rows = [
        softmax_nll([s[0][0], s[0][2], sn[0][0], sn[0][1]], 0),  # col 1 is doc 7 again
        softmax_nll([s[1][1], s[1][2], sn[1][0], sn[1][1]], 0),  # col 0 is doc 7 again
        softmax_nll([s[2][0], s[2][1], s[2][2], sn[2][1]], 2),  # sampled doc 9 is its own positive
    ]
    got = sampled_softmax_loss(q, p, n, pos_ids=pos_ids, neg_ids=neg_ids)
    assert got.item() == pytest.approx(sum(rows) / 3, rel=1e-9)
    hits = accidental_hits(pos_ids, neg_ids, 2, per_row=False)
    assert hits.tolist() == [
        [False, True, False, False, False],
        [True, False, False, False, False],
        [False, False, False, True, False],
    ]


def test_per_row_negatives_with_log_q_and_ids():
    q, p = t([[1.0, 0.0], [0.0, 1.0]]), t(P)
    n = t([[[0.0, 1.0], [1.0, 0.0]], [[0.6, 0.8], [0.8, 0.6]]])  # [B=2, K=2, 2]
    lq = t([[0.1, 0.2], [0.3, 0.4]]).log()
    ids = torch.tensor([[5, 1], [6, 2]])
    pos_ids = torch.tensor([1, 2])  # each row's second negative is its own positive: masked
    plq = t([0.5, 0.5]).log()
    row0 = [0.6 - math.log(0.5), 1.0 - math.log(0.5), 0.0 - math.log(0.1)]
    row1 = [0.8 - math.log(0.5), 0.0 - math.log(0.5), 0.8 - math.log(0.3)]
    expected = (softmax_nll(row0, 0) + softmax_nll(row1, 1)) / 2
    got = sampled_softmax_loss(q, p, n, pos_log_q=plq, neg_log_q=lq, pos_ids=pos_ids, neg_ids=ids)
    assert got.item() == pytest.approx(expected, rel=1e-9)



@pytest.mark.parametrize("kind", ["sampled_softmax", "nce", "triplet"])
@pytest.mark.parametrize("m, s", [(6, 3), (0, 3), (6, 1)])
def test_shared_and_own_negatives_give_the_loss_and_gradients_of_the_whole_tensor(kind, m, s):
    """RowNegatives(shared, own) is the [B, M + S, k] tensor of each row's negatives without its B copies of the
    shared part: every loss (with log-Q, ids, empty slots and I_mix picking from both parts) is the same."""
    g = torch.Generator().manual_seed(0)
    b, k = 5, 4
    q = torch.randn(b, k, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(b, k, generator=g, dtype=torch.float64, requires_grad=True)
    shared = torch.randn(m, k, generator=g, dtype=torch.float64, requires_grad=True)
    own = torch.randn(b, s, k, generator=g, dtype=torch.float64, requires_grad=True)
    whole = torch.cat([shared.unsqueeze(0).expand(b, -1, -1), own], dim=1)
    ids = torch.randint(0, 8, (b, m + s), generator=g)
    pos_ids = torch.randint(0, 8, (b,), generator=g)
    valid = torch.rand(b, m + s, generator=g) > 0.2
    plq, nlq = torch.rand(b, generator=g, dtype=torch.float64).log(), torch.rand(b, m + s, dtype=torch.float64).log()
    cfg = RetrievalLossConfig(kind=kind, log_q_correction=kind != "triplet", num_hard_negatives=4)

    def loss_and_grads(neg):
        for x in (q, p, shared, own):
            x.grad = None
        loss = retrieval_loss(cfg, q, p, neg, pos_ids=pos_ids, neg_ids=ids, pos_log_q=plq, neg_log_q=nlq,
                              neg_valid=valid, generator=torch.Generator().manual_seed(1))  # fmt: skip
        loss.backward()
        return loss.detach(), [x.grad.clone() for x in (q, p, own) + ((shared,) if m else ())]

    want, want_grads = loss_and_grads(whole)
    got, got_grads = loss_and_grads(RowNegatives(shared, own))
    torch.testing.assert_close(got, want)
    for a, e in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, e)
    assert RowNegatives(shared, own).shape == (b, m + s, k)
    with pytest.raises(ValueError, match=r"shared \[M, k\] and own \[B, S, k\]"):
        RowNegatives(own, shared)


def mixed_vectors(q, p, neg, usable, num, low=0.4, high=0.6, generator=None):
    """MGDSPR I_mix written out, the vectors themselves: the row's candidates c (in-batch positives, then its
    negatives: [M, k] shared or [B, K, k] per row), the top-`num` usable ones by q.c, each mixed as
    normalize(a p + (1 - a) c) with a ~ U(low, high) drawn as the library draws it. -> (mixed [B, N, k], a, valid)."""
    b, k = p.shape
    parts = [p.unsqueeze(0).expand(b, -1, -1)]
    if neg is not None:
        parts.append(neg.unsqueeze(0).expand(b, -1, -1) if neg.dim() == 2 else neg)
    cand = torch.cat(parts, dim=1)
    sims = torch.einsum("bd,bcd->bc", q, cand).detach().masked_fill(~usable, float("-inf"))
    top, idx = sims.topk(min(num, cand.shape[1]), dim=1)
    a = torch.rand(idx.shape, generator=generator, dtype=q.dtype) * (high - low) + low
    hard = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, k))
    mixed = a.unsqueeze(-1) * p.unsqueeze(1) + (1 - a.unsqueeze(-1)) * hard
    return torch.nn.functional.normalize(mixed, dim=-1), a, torch.isfinite(top)


@pytest.mark.parametrize("negatives", ["none", "shared", "per_row", "row_negatives"])
@pytest.mark.parametrize("detach", [False, True])
def test_mixed_negative_logits_are_the_query_times_the_mixed_vectors_with_their_gradients(negatives, detach):
    """The I_mix logits from inner products alone equal q . the mixed vectors (same picks, same draws of a), and so
    do the gradients to the query and to every doc (none to the docs with `detach`)."""
    g = torch.Generator().manual_seed(0)
    b, m, s, k = 6, 5, 2, 4
    q = torch.randn(b, k, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(b, k, generator=g, dtype=torch.float64, requires_grad=True)
    shared = torch.randn(m, k, generator=g, dtype=torch.float64, requires_grad=True)
    own = torch.randn(b, s, k, generator=g, dtype=torch.float64, requires_grad=True)
    neg = {"none": None, "shared": shared, "per_row": own,
           "row_negatives": RowNegatives(shared, own)}[negatives]  # fmt: skip
    width = b + {"none": 0, "shared": m, "per_row": s, "row_negatives": m + s}[negatives]
    usable = (torch.rand(b, width, generator=g) > 0.3) & ~torch.eye(b, width, dtype=torch.bool)
    usable[0] = False
    usable[0, width - 1] = True  # one usable negative in row 0: three of its four picks are empty
    weights = torch.randn(b, 4, generator=g, dtype=torch.float64)

    def logits_and_grads(analytic: bool):
        for x in (q, p, shared, own):
            x.grad = None
        draws = torch.Generator().manual_seed(1)
        if analytic:
            got, a, valid = mixed_negative_logits(q, p, neg, usable, 4, generator=draws, detach=detach)
        else:
            whole = torch.cat([shared.unsqueeze(0).expand(b, -1, -1), own], dim=1) if negatives == "row_negatives" \
                else neg
            mixed, a, valid = mixed_vectors(q, p, whole, usable, 4, generator=draws)
            got = torch.einsum("bd,bnd->bn", q, mixed.detach() if detach else mixed)
        (got.masked_fill(~valid, 0) * weights).sum().backward()
        grads = [None if x.grad is None else x.grad.clone() for x in (q, p, shared, own)]
        return got.detach(), a, valid, grads

    want, want_a, want_valid, want_grads = logits_and_grads(False)
    got, a, valid, got_grads = logits_and_grads(True)
    assert torch.equal(valid, want_valid) and torch.equal(a, want_a) and valid.any() and not valid.all()
    torch.testing.assert_close(got[valid], want[valid])
    for x, e in zip(got_grads, want_grads, strict=True):
        assert (x is None) == (e is None)
        if x is not None:
            torch.testing.assert_close(x, e)
    assert (got_grads[1] is None) == detach  # the docs learn from the mixed negatives unless detached


def test_hard_negative_mixing_interpolates_positive_and_hardest_negative():
    q = t([[1.0, 0.0, 0.0]])
    p = t([[0.0, 1.0, 0.0]])
    negs = t([[0.9, 0.0, 0.1], [0.5, 0.0, 0.5], [0.99, 0.1, 0.0]])
    usable = torch.tensor([[False, True, True, False]])  # the last (most similar) one is an accidental hit
    got, a, valid = mixed_negative_logits(q, p, negs, usable, num=1, generator=torch.Generator().manual_seed(0))
    assert got.shape == (1, 1) and valid.all() and 0.4 <= a.item() <= 0.6
    # the hardest usable negative (0.9 > 0.5; the hit is skipped) mixed with the positive, then normalized
    for hard, picked in ((negs[0], True), (negs[1], False), (negs[2], False)):
        raw = a.item() * p[0] + (1 - a.item()) * hard
        assert (got.item() == pytest.approx(float(q[0] @ raw / raw.norm()), rel=1e-12)) == picked
    # between the positive's score (0) and the hard negative's own (0.9)
    assert 0 < got.item() < 0.9


def test_mixing_draws_a_within_bounds_and_caps_the_count():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    usable = ~torch.eye(4, dtype=torch.bool)
    got, a, valid = mixed_negative_logits(q, p, None, usable, num=684, low=0.4, high=0.6)
    assert got.shape == (4, 4)  # capped at the 4 in-batch candidates
    assert valid.sum(dim=1).tolist() == [3, 3, 3, 3]  # 3 usable negatives per row
    assert bool(((a >= 0.4) & (a <= 0.6)).all())
    assert bool((got[valid].abs() <= 1 + 1e-6).all())  # q . a unit vector
    with pytest.raises(ValueError, match="low"):
        mixed_negative_logits(q, p, None, usable, num=2, low=0.6, high=0.4)
    with pytest.raises(ValueError, match="num"):
        mixed_negative_logits(q, p, None, usable, num=0)


def test_softmax_with_mixed_negatives_matches_the_formula():
    q, p, n = t(Q), t(P), t(N)
    tau = 0.5
    usable = ~torch.eye(2, 3, dtype=torch.bool)
    mixed, _, valid = mixed_vectors(q, p, n, usable, num=1, generator=torch.Generator().manual_seed(3))
    assert valid.all()
    m = [float(q[i] @ mixed[i, 0]) / tau for i in range(2)]
    expected = (
        softmax_nll([0.6 / tau, 1.0 / tau, 0.8 / tau, m[0]], 0)
        + softmax_nll([0.8 / tau, 0.0, 0.6 / tau, m[1]], 1)
    ) / 2
    got = sampled_softmax_loss(
        q, p, n, temperature=tau, num_hard_negatives=1, generator=torch.Generator().manual_seed(3)
    )
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert got.item() > sampled_softmax_loss(q, p, n, temperature=tau).item()


def test_nce_matches_formula_14():
    tau = 1.0
    s = [[0.6, 1.0, 0.8], [0.8, 0.0, 0.6]]
    row0 = -log_sigmoid(s[0][0]) - log_sigmoid(-s[0][1]) - log_sigmoid(-s[0][2])
    row1 = -log_sigmoid(s[1][1]) - log_sigmoid(-s[1][0]) - log_sigmoid(-s[1][2])
    got = nce_loss(t(Q), t(P), t(N), temperature=tau)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-9)


def test_triplet_uses_cosine_distance_with_margin():
    q = t([[1.0, 0.0]])
    p = t([[0.6, 0.8]])  # D+ = 1 - 0.6 = 0.4
    n = t([[[0.8, 0.6], [-1.0, 0.0]]])  # D- = 0.2 and 2.0
    expected = (max(0.0, 0.4 - 0.2 + 0.3) + max(0.0, 0.4 - 2.0 + 0.3)) / 2
    assert triplet_loss(q, p, n, margin=0.3).item() == pytest.approx(expected, rel=1e-9)
    # cosine, so scale does not matter
    assert triplet_loss(3 * q, 5 * p, 2 * n, margin=0.3).item() == pytest.approx(expected, rel=1e-9)
    # in-batch: rows are each other's negatives
    qb, pb = t(Q), t(P)
    d = 1 - (qb @ pb.T)
    inb = (max(0.0, d[0, 0] - d[0, 1] + 0.1) + max(0.0, d[1, 1] - d[1, 0] + 0.1)) / 2
    assert triplet_loss(qb, pb, margin=0.1).item() == pytest.approx(float(inb), rel=1e-9)


def test_multitask_bce_weights_tasks_and_masks_unknown_labels():
    def bce(x: float, y: float) -> float:
        return -(y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))

    logits, labels = t([[0.0, 1.0], [2.0, -1.0]]), t([[1.0, 0.0], [0.0, 1.0]])
    expected = 1.0 * (bce(0, 1) + bce(2, 0)) / 2 + 0.5 * (bce(1, 0) + bce(-1, 1)) / 2
    assert multitask_bce_loss(logits, labels, [1.0, 0.5]).item() == pytest.approx(expected, rel=1e-9)
    mask = torch.tensor([[True, True], [True, False]])
    masked = 1.0 * (bce(0, 1) + bce(2, 0)) / 2 + 0.5 * bce(1, 0)
    assert multitask_bce_loss(logits, labels, [1.0, 0.5], mask).item() == pytest.approx(masked, rel=1e-9)
    with pytest.raises(ValueError, match="weights"):
        multitask_bce_loss(logits, labels, [1.0])


def test_retrieval_loss_dispatches_and_names_missing_inputs():
    q, p, n = t(Q), t(P), t(N)
    ids, nids = torch.tensor([1, 2]), torch.tensor([3])
    plq, nlq = t([0.5, 0.5]).log(), t([0.2]).log()
    cfg = RetrievalLossConfig(hard_negative_mixing=False, log_q_correction=True)
    assert cfg.temperature == 2.0  # Taobao MGDSPR tau
    got = retrieval_loss(cfg, q, p, n, pos_ids=ids, neg_ids=nids, pos_log_q=plq, neg_log_q=nlq)
    want = sampled_softmax_loss(
        q, p, n, temperature=2.0, pos_log_q=plq, neg_log_q=nlq, pos_ids=ids, neg_ids=nids
    )
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    with pytest.raises(ValueError, match="pos_log_q"):
        retrieval_loss(cfg, q, p, n, pos_ids=ids, neg_ids=nids)
    with pytest.raises(ValueError, match="pos_ids"):
        retrieval_loss(cfg, q, p, n, pos_log_q=plq, neg_log_q=nlq)
    with pytest.raises(ValueError, match="neg_log_q"):
        retrieval_loss(cfg, q, p, n, pos_ids=ids, neg_ids=nids, pos_log_q=plq)
    nce = RetrievalLossConfig(kind="nce", log_q_correction=False, mask_accidental_hits=False)
    assert retrieval_loss(nce, q, p, n).item() == pytest.approx(nce_loss(q, p, n, temperature=2.0).item())
    trip = RetrievalLossConfig(kind="triplet", triplet_margin=0.3, mask_accidental_hits=False)
    assert retrieval_loss(trip, q, p).item() == pytest.approx(triplet_loss(q, p, margin=0.3).item())
    mixing = RetrievalLossConfig(num_hard_negatives=1, log_q_correction=True)
    a = retrieval_loss(mixing, q, p, n, pos_ids=ids, neg_ids=nids, pos_log_q=plq, neg_log_q=nlq,
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
    b = retrieval_loss(mixing, q, p, n, pos_ids=ids, neg_ids=nids, pos_log_q=plq, neg_log_q=nlq,
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert a.item() == b.item() and a.item() > got.item() - 1e-12


def test_bad_shapes_and_config_are_named():
    with pytest.raises(ValueError, match="neg_docs"):
        sampled_softmax_loss(t(Q), t(P), t([[1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="pos_docs"):
        sampled_softmax_loss(t(Q), t([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="pos_log_q"):
        sampled_softmax_loss(t(Q), t(P), pos_log_q=t([0.1]))
    with pytest.raises(ValidationError, match="mix_low"):
        RetrievalLossConfig(mix_low=0.7, mix_high=0.6)
    with pytest.raises(ValidationError, match="temperature"):
        RetrievalLossConfig(temperature=0)


def test_gradients_flow_to_queries_and_docs():
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    p = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    n = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1).requires_grad_()
    sampled_softmax_loss(q, p, n, temperature=0.1, num_hard_negatives=3).backward()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0 and n.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ learning sanity


def _synthetic(num_docs: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Docs titled by 4 of 100 words; each query is 2 of its doc's title words (the doc is its positive)."""
    import random

    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(100)]
    docs, queries = [], []
    for i in range(num_docs):
        words = rng.sample(vocab, 4)
        docs.append({
            "doc_id": i, "title": " ".join(words), "category_l1": "c", "category_l2": "c",
            "category_leaf": "c", "brand": None, "attributes": [], "tags": [], "author_id": i % 7,
        })  # fmt: skip
        queries.append({"query": " ".join(rng.sample(words, 2))})
    return queries, docs


def _in_batch_recall_at_1(model, q_inputs, d_inputs) -> float:
    model.eval()
    with torch.no_grad():
        scores = model.encode_queries(q_inputs) @ model.encode_docs(d_inputs).T
    model.train()
    return float((scores.argmax(dim=1) == torch.arange(scores.shape[0])).float().mean())


def test_infonce_training_learns_to_match_title_words():
    from ebr.models.inputs import featurize_docs, featurize_queries
    from ebr.models.two_tower import TwoTowerModel
    from tests.models.rows import small_config

    featurizer = small_config().featurizer.model_dump()
    featurizer["doc_numeric"] = []
    featurizer["text"]["latin_trigrams_in_words"] = False
    cfg = small_config(
        query_tower={"personalization": False, "hidden_dim": 32, "num_heads": 4, "out_dim": 16},
        doc_tower={"hidden_dim": 32, "out_dim": 16, "use_id": False},
        featurizer=featurizer,
    )
    queries, docs = _synthetic(512, seed=0)
    qx, dx = featurize_queries(queries, cfg.featurizer), featurize_docs(docs, cfg.featurizer)
    n_train = 448

    def rows(x: dict, idx: torch.Tensor) -> dict:
        return {k: v[idx] for k, v in x.items()}

    seen, held_out = torch.arange(0, 64), torch.arange(n_train, 512)  # in-batch recall over 64 pairs each
    model = TwoTowerModel(cfg)
    before = [_in_batch_recall_at_1(model, rows(qx, i), rows(dx, i)) for i in (seen, held_out)]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        idx = torch.randperm(n_train, generator=g)[:32]
        q = model.encode_queries(rows(qx, idx))
        d = model.encode_docs(rows(dx, idx))
        loss = sampled_softmax_loss(q, d, temperature=0.1, pos_ids=idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = [_in_batch_recall_at_1(model, rows(qx, i), rows(dx, i)) for i in (seen, held_out)]
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    assert after[0] > before[0] + 0.5  # pairs it trained on
    assert after[1] > before[1] + 0.08  # unseen docs: it learned word matching, not just the pairs


def test_log_q_per_candidate_kind_on_a_hand_computed_batch():
    """In-batch candidates lose log(B * p_batch), random negatives log(M * q), ANN hard negatives nothing; an
    empty hard slot is no candidate."""
    q = [[1.0, 0.0], [0.0, 1.0]]
    p = [[0.8, 0.6], [0.6, 0.8]]
    rand = [[0.0, 1.0]]  # one random negative shared by both rows
    hard = [[[0.6, 0.8]], [[1.0, 0.0]]]  # one hard slot per row; row 1's is empty
    p_batch, q_rand = [0.5, 0.25], [0.1]
    pos_lq, neg_lq = sampling_log_q(t(p_batch), t(q_rand), unsampled=1)
    assert pos_lq.tolist() == pytest.approx([math.log(2 * 0.5), math.log(2 * 0.25)])
    assert neg_lq.flatten().tolist() == pytest.approx([math.log(1 * 0.1), 0.0, math.log(1 * 0.1), 0.0])
    neg = torch.cat([t(rand).unsqueeze(0).expand(2, 1, 2), t(hard)], dim=1)
    valid = torch.tensor([[True, True], [True, False]])
    tau = 0.5
    got = sampled_softmax_loss(t(q), t(p), neg, temperature=tau, pos_log_q=pos_lq, neg_log_q=neg_lq,
                               neg_valid=valid).item()
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    lb = [math.log(1.0), math.log(0.5)]
    row0 = [dot(q[0], p[0]) / tau - lb[0], dot(q[0], p[1]) / tau - lb[1], dot(q[0], rand[0]) / tau - math.log(0.1),
            dot(q[0], hard[0][0]) / tau]
    row1 = [dot(q[1], p[0]) / tau - lb[0], dot(q[1], p[1]) / tau - lb[1], dot(q[1], rand[0]) / tau - math.log(0.1)]
    want = (softmax_nll(row0, 0) + softmax_nll(row1, 1)) / 2
    assert got == pytest.approx(want, rel=1e-9)
    # the hard candidate is not corrected: correcting it like a random draw would change the loss
    wrong = neg_lq.clone()
    wrong[:, 1] = math.log(0.1)
    assert sampled_softmax_loss(t(q), t(p), neg, temperature=tau, pos_log_q=pos_lq, neg_log_q=wrong,
                                neg_valid=valid).item() != pytest.approx(want, rel=1e-6)
    # the empty slot is left out: filling row 1's hard slot adds a candidate and raises its loss
    assert sampled_softmax_loss(t(q), t(p), neg, temperature=tau, pos_log_q=pos_lq, neg_log_q=neg_lq).item() > got


def test_log_q_removes_the_sampling_bias_instead_of_suppressing_popular_docs():
    """Drawn in proportion to q, a hot doc (q = .4, 4 draws of 5) and a cold one (q = .1, 1 draw) with one score
    weigh the same in the corrected denominator: log-Q cancels the oversampling (no popularity penalty)."""
    q = t([[1.0, 0.0]])
    p = t([[1.0, 0.0]])
    doc = [0.6, 0.8]
    hot = sampling_log_q(t([1.0]), t([0.4] * 4 + [0.1]))[1]  # 4 draws of a hot doc (q = .4) and one of a cold one
    negs = t([doc] * 5)
    logits = candidate_logits(q, p, negs) - torch.cat([torch.zeros(1, 1), hot.unsqueeze(0)], dim=1)
    share_hot, share_cold = logits[0, 1:5].exp().sum().item(), logits[0, 5].exp().item()
    assert share_hot == pytest.approx(share_cold)
    raw = candidate_logits(q, p, negs)  # uncorrected: the hot doc weighs 4x in the denominator
    assert raw[0, 1:5].exp().sum().item() == pytest.approx(4 * raw[0, 5].exp().item())
