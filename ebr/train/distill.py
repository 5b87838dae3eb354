"""Distillation of the fine ranker (teacher) into the coarse ranker (student), seed 002 "精排蒸馏粗排":

    L = alpha * L_hard + beta * KL(p_t || p_s),    p = softmax(z / T) over each request's candidate list

(formulas 15-18). The teacher's scores are softened by the temperature T (formula 18, T > 1 flattens them) and
so are the student's; the hard loss is pointwise, pairwise (RankNet) or listwise (LambdaRank), see
`ebr.train.ranking_losses`. torch is imported inside functions so the config loads without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ebr.settings import Section
from ebr.train.ranking_losses import HardLoss, hard_loss

if TYPE_CHECKING:
    import torch


class DistillConfig(Section):
    """Weights and options of the distillation loss; beta = 0 trains the student on the hard labels alone."""

    temperature: float = Field(
        2.0, gt=0,
        description="T of softmax(z / T) for teacher and student (seed 002 formula 18: usually T > 1, a flatter "
        "teacher distribution that keeps the order of the tail, not only the top); 2 is the smallest round T > 1 "
        "that keeps the teacher's preference among its low-scored candidates visible",
    )
    alpha: float = Field(1.0, ge=0, description="weight of the hard-label loss (seed 002 formula 17)")
    beta: float = Field(
        1.0, ge=0,
        description="weight of KL(teacher_T || student_T) (formula 17); 0 = no distillation (the plain student)",
    )
    hard_loss: HardLoss = Field(
        "pointwise",
        description="seed 002: the hard loss is the cross-entropy of the click label (formulas 15, 24); pairwise "
        "(RankNet, formula 26) and listwise (LambdaRank, formulas 27-32) are the seed's alternatives",
    )
    scale_soft_by_t2: bool = Field(
        True,
        description="multiply the KL term by T^2: its gradients shrink as 1/T^2, so alpha and beta keep their "
        "meaning when T is tuned (formula 17 is the T = 1 case)",
    )
    ranknet_sigma: float = Field(1.0, gt=0, description="sigma of RankNet/LambdaRank's sigmoid (formula 30: 1)")
    lambdarank_k: int | None = Field(
        None, ge=1, description="NDCG cut-off of LambdaRank's |delta NDCG|; None = the whole candidate list"
    )


def soften(logits: torch.Tensor, temperature: float, mask: torch.Tensor) -> torch.Tensor:
    """softmax(logits / T) over each list's candidates [B, C]; padding and empty lists get probability 0."""
    import torch

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits.shape != mask.shape or logits.dim() != 2:
        raise ValueError(f"logits {tuple(logits.shape)} and mask {tuple(mask.shape)} must both be [lists, candidates]")
    z = (logits / temperature).masked_fill(~mask, float("-inf"))
    p = torch.softmax(z, dim=1)
    return torch.where(mask, p, torch.zeros_like(p))


def distillation_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over lists with >= 1 candidate of KL(softmax(teacher / T) || softmax(student / T)) (formula 16).

    The teacher's distribution is a constant (no gradient flows into the teacher)."""
    import torch

    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} scores differ in shape")
    p_t = soften(teacher.detach(), temperature, mask)
    neg_inf = float("-inf")
    log_s = torch.log_softmax((student / temperature).masked_fill(~mask, neg_inf), dim=1)
    log_t = torch.log_softmax((teacher.detach() / temperature).masked_fill(~mask, neg_inf), dim=1)
    terms = torch.where(mask, p_t * (log_t - log_s), torch.zeros_like(p_t))
    lists = mask.any(dim=1)
    return terms.sum(dim=1)[lists].sum() / lists.sum().clamp(min=1).to(student.dtype)


def distillation_loss(
    config: DistillConfig,
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    labels: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """alpha * hard + beta * (T^2 *) KL over padded lists [B, C]; returns (loss, {"hard", "soft"} values).

    `teacher` may be None only when beta = 0."""
    hard = hard_loss(config.hard_loss, student, labels, mask, config.ranknet_sigma, config.lambdarank_k)
    loss = config.alpha * hard
    parts = {"hard": float(hard.detach())}
    if config.beta > 0:
        if teacher is None:
            raise ValueError("distillation.beta > 0 needs the teacher's scores")
        soft = distillation_kl(student, teacher, config.temperature, mask)
        if config.scale_soft_by_t2:
            soft = soft * config.temperature**2
        loss = loss + config.beta * soft
        parts["soft"] = float(soft.detach())
    return loss, parts
