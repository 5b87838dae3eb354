"""Distillation loss: the KL term against hand-computed values, temperature softening, alpha/beta weighting."""

from __future__ import annotations

import math

import pytest
import torch

from ebr.train.distill import DistillConfig, distillation_kl, distillation_loss, soften
from ebr.train.ranking_losses import pointwise_loss


def _softmax(xs: list[float], t: float) -> list[float]:
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_kl_matches_hand_computed_value_and_ignores_padding(temperature):
    teacher = torch.tensor([[1.0, 0.0, 99.0], [2.0, -1.0, 0.5]])
    student = torch.tensor([[0.0, 0.0, -7.0], [0.3, 0.1, -0.2]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    want = (
        _kl(_softmax([1.0, 0.0], temperature), _softmax([0.0, 0.0], temperature))
        + _kl(_softmax([2.0, -1.0, 0.5], temperature), _softmax([0.3, 0.1, -0.2], temperature))
    ) / 2
    got = distillation_kl(student, teacher, temperature, mask)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_kl_is_zero_when_student_matches_teacher_up_to_a_shift():
    teacher = torch.tensor([[3.0, 1.0, -2.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert float(distillation_kl(teacher + 4.0, teacher, 2.0, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_kl(teacher.flip(1), teacher, 2.0, mask)) > 0.1


def test_higher_temperature_gives_a_flatter_teacher_distribution():
    logits = torch.tensor([[3.0, 1.0, 0.0, -2.0]])
    mask = torch.ones_like(logits, dtype=torch.bool)
    entropies, tops = [], []
    for t in (0.5, 1.0, 2.0, 4.0, 8.0):
        p = soften(logits, t, mask)[0]
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
        assert torch.equal(torch.argsort(p, descending=True), torch.arange(4))  # order kept
        entropies.append(float(-(p * p.log()).sum()))
        tops.append(float(p.max()))
    assert all(a < b for a, b in zip(entropies, entropies[1:], strict=False))
    assert all(a > b for a, b in zip(tops, tops[1:], strict=False))
    near_uniform = soften(logits, 1e4, mask)[0]
    assert torch.allclose(near_uniform, torch.full((4,), 0.25), atol=1e-3)


def test_soften_zeroes_padding_and_empty_lists():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    p = soften(logits, 2.0, mask)
    assert float(p[0, 1]) == 0.0 and torch.all(p[1] == 0)
    assert float(p[0].sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="temperature"):
        soften(logits, 0.0, mask)


def test_loss_is_alpha_hard_plus_beta_t2_kl():
    student = torch.tensor([[0.2, -0.4, 1.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    cfg = DistillConfig(alpha=0.7, beta=0.3, temperature=3.0)
    loss, parts = distillation_loss(cfg, student, teacher, labels, mask)
    hard = float(pointwise_loss(student.detach(), labels, mask))
    kl = float(distillation_kl(student.detach(), teacher, 3.0, mask))
    assert parts["hard"] == pytest.approx(hard) and parts["soft"] == pytest.approx(9.0 * kl, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(0.7 * hard + 0.3 * 9.0 * kl, rel=1e-5)
    unscaled, _ = distillation_loss(cfg.model_copy(update={"scale_soft_by_t2": False}), student, teacher, labels, mask)
    assert float(unscaled.detach()) == pytest.approx(0.7 * hard + 0.3 * kl, rel=1e-5)


def test_beta_zero_is_the_hard_loss_alone_and_needs_no_teacher():
    student = torch.tensor([[0.5, 0.1]])
    labels = torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, parts = distillation_loss(DistillConfig(beta=0.0), student, None, labels, mask)
    assert float(loss) == pytest.approx(float(pointwise_loss(student, labels, mask)))
    assert "soft" not in parts
    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(DistillConfig(beta=1.0), student, None, labels, mask)


def test_kl_gradient_pulls_the_student_towards_the_teacher_order():
    student = torch.zeros(1, 2, requires_grad=True)
    teacher = torch.tensor([[2.0, -2.0]])
    distillation_kl(student, teacher, 2.0, torch.ones(1, 2, dtype=torch.bool)).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]
    assert teacher.grad is None


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(ValueError, match="hard_loss"):
        DistillConfig(hard_loss="listwise_softmax")
