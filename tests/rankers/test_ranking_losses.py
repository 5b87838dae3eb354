"""Hard ranking losses: RankNet and LambdaRank push the better doc up; values against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from ebr.train.ranking_losses import delta_ndcg, hard_loss, lambdarank_loss, pointwise_loss, ranknet_loss

ONE_LIST = torch.ones(1, 2, dtype=torch.bool)


@pytest.mark.parametrize("kind", ["pointwise", "pairwise", "listwise"])
@pytest.mark.parametrize("start", [[0.0, 0.0], [-1.0, 1.0], [2.0, 1.5]])
def test_gradient_pushes_the_better_doc_up_and_the_worse_down(kind, start):
    scores = torch.tensor([start], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0]])
    hard_loss(kind, scores, labels, ONE_LIST).backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1]


@pytest.mark.parametrize("kind", ["pairwise", "listwise"])
def test_pair_gradient_is_larger_when_the_pair_is_inverted(kind):
    labels = torch.tensor([[1.0, 0.0]])
    grads = []
    for start in ([3.0, -3.0], [-3.0, 3.0]):
        s = torch.tensor([start], requires_grad=True)
        hard_loss(kind, s, labels, ONE_LIST).backward()
        grads.append(float(s.grad[0, 0].abs()))
    assert grads[1] > 10 * grads[0]


def test_ranknet_value_is_the_log_loss_of_the_pair_probability():
    s = torch.tensor([[0.3, 1.1, -0.5]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    want = (math.log1p(math.exp(-(0.3 - 1.1))) + math.log1p(math.exp(-(0.3 + 0.5)))) / 2
    assert float(ranknet_loss(s, y, mask)) == pytest.approx(want, rel=1e-6)
    sigma = 2.0
    want2 = (math.log1p(math.exp(-sigma * 0.8 * -1)) + math.log1p(math.exp(-sigma * 0.8))) / 2
    assert float(ranknet_loss(s, y, mask, sigma=sigma)) == pytest.approx(want2, rel=1e-6)


def test_lambdarank_weights_pairs_by_the_ndcg_change_of_swapping_them():
    s = torch.tensor([[0.4, 0.9]], requires_grad=True)  # the better doc is ranked 2nd
    y = torch.tensor([[1.0, 0.0]])
    d = 1.0 - 1.0 / math.log2(3.0)  # gains (1, 0), discounts 1 and 1/log2(3); IDCG = 1
    assert float(delta_ndcg(s, y, ONE_LIST)[0, 0, 1]) == pytest.approx(d, rel=1e-6)
    loss = lambdarank_loss(s, y, ONE_LIST)
    assert float(loss.detach()) == pytest.approx(d * math.log1p(math.exp(-(0.4 - 0.9))), rel=1e-6)
    loss.backward()
    lam = d / (1.0 + math.exp(0.4 - 0.9))  # seed 002 formula 28: |dZ| * sigma(s_j - s_i)
    assert float(s.grad[0, 0]) == pytest.approx(-lam, rel=1e-5)
    assert float(s.grad[0, 1]) == pytest.approx(lam, rel=1e-5)


def test_lambdarank_cutoff_only_counts_swaps_into_the_top_k():
    s = torch.tensor([[3.0, 2.0, 1.0]])
    y = torch.tensor([[0.0, 0.0, 2.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    full = delta_ndcg(s, y, mask)
    top1 = delta_ndcg(s, y, mask, k=1)
    assert float(top1[0, 1, 2]) == 0.0 < float(full[0, 1, 2])  # ranks 2 and 3 are both outside the top 1
    assert float(top1[0, 0, 2]) == pytest.approx(1.0)  # moving the only good doc to rank 1 makes NDCG@1 = 1


def test_pointwise_ignores_padding_and_lists_without_pairs_give_zero_with_a_graph():
    s = torch.tensor([[0.5, -1.0, 50.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    want = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.0))) / 2
    assert float(pointwise_loss(s, y, mask).detach()) == pytest.approx(want, rel=1e-6)
    no_pairs = torch.zeros(1, 3)
    for fn in (ranknet_loss, lambdarank_loss):
        out = fn(s, no_pairs, mask)
        assert float(out.detach()) == 0.0 and out.requires_grad


def test_bad_shapes_and_kinds_are_errors():
    with pytest.raises(ValueError, match="lists, candidates"):
        pointwise_loss(torch.zeros(3), torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="pointwise, pairwise or listwise"):
        hard_loss("softmax", torch.zeros(1, 2), torch.zeros(1, 2), ONE_LIST)  # type: ignore[arg-type]
