"""Hard-label ranking losses of the coarse ranker over padded candidate lists (seed 002, "损失函数").

Every loss takes scores and labels [B, C] and a mask [B, C] (true = a candidate, false = padding):
- pointwise: binary cross-entropy of each candidate's score as a logit (formulas 15, 24);
- pairwise: RankNet, -log sigma(sigma_s * (s_i - s_j)) over pairs with y_i > y_j (formula 26 with p_ij = 1);
- listwise: LambdaRank, RankNet pairs weighted by |delta NDCG| of swapping i and j in the current order
  (formulas 27-32; delta normalized by the list's ideal DCG so lists weigh alike). Its gradient on s_i is
  -sum_j lambda_ij with lambda_ij = |delta NDCG_ij| * sigma(s_j - s_i) (formula 28).
torch is imported inside functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

HardLoss = Literal["pointwise", "pairwise", "listwise"]


def _check(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape != labels.shape or scores.shape != mask.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)}, labels {tuple(labels.shape)} and mask {tuple(mask.shape)} must all be "
            "[lists, candidates]"
        )


def pointwise_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the candidates (labels in [0, 1])."""
    import torch.nn.functional as F

    _check(scores, labels, mask)
    per = F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype).clamp(0, 1), reduction="none")
    m = mask.to(scores.dtype)
    return (per * m).sum() / m.sum().clamp(min=1)


def ordered_pairs(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bool [B, C, C]: (i, j) where both are candidates and y_i > y_j."""
    valid = mask.unsqueeze(2) & mask.unsqueeze(1)
    return (labels.unsqueeze(2) > labels.unsqueeze(1)) & valid


def ranknet_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, sigma: float = 1.0
) -> torch.Tensor:
    """Mean over ordered pairs of log(1 + exp(-sigma * (s_i - s_j))); 0 (with a graph) without pairs."""
    import torch.nn.functional as F

    _check(scores, labels, mask)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    pairs = ordered_pairs(labels, mask).to(scores.dtype)
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)
    return (F.softplus(-sigma * diff) * pairs).sum() / pairs.sum().clamp(min=1)


def delta_ndcg(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """|NDCG change| [B, C, C] from swapping candidates i and j in the order of the current scores (no grad).

    Gains 2^y - 1, discount 1 / log2(1 + rank); with `k`, ranks beyond k have discount 0 (NDCG@k).
    """
    import torch

    _check(scores, labels, mask)
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    with torch.no_grad():
        s = scores.detach().masked_fill(~mask, float("-inf"))
        order = torch.argsort(s, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        c = scores.shape[1]
        rank.scatter_(1, order, torch.arange(c, device=scores.device).expand_as(order))
        disc = 1.0 / torch.log2(rank.to(scores.dtype) + 2.0)
        if k is not None:
            disc = disc.masked_fill(rank >= k, 0.0)
        disc = disc.masked_fill(~mask, 0.0)
        gains = (torch.pow(2.0, labels.to(scores.dtype)) - 1.0).masked_fill(~mask, 0.0)
        ideal_gains = torch.sort(gains, dim=1, descending=True).values
        ideal_disc = 1.0 / torch.log2(torch.arange(c, device=scores.device, dtype=scores.dtype) + 2.0)
        if k is not None:
            ideal_disc = ideal_disc.masked_fill(torch.arange(c, device=scores.device) >= k, 0.0)
        idcg = (ideal_gains * ideal_disc).sum(dim=1).clamp(min=1e-12)
        delta = (gains.unsqueeze(2) - gains.unsqueeze(1)).abs() * (disc.unsqueeze(2) - disc.unsqueeze(1)).abs()
        return delta / idcg[:, None, None]


def lambdarank_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, sigma: float = 1.0, k: int | None = None
) -> torch.Tensor:
    """Sum over ordered pairs of |delta NDCG_ij| * log(1 + exp(-sigma (s_i - s_j))), averaged over the lists
    that have a pair; 0 (with a graph) without pairs."""
    import torch.nn.functional as F

    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    pairs = ordered_pairs(labels, mask)
    weights = delta_ndcg(scores, labels, mask, k) * pairs.to(scores.dtype)
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)
    lists = pairs.flatten(1).any(dim=1).sum()
    return (F.softplus(-sigma * diff) * weights).sum() / lists.clamp(min=1).to(scores.dtype)


def hard_loss(
    kind: HardLoss,
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    sigma: float = 1.0,
    k: int | None = None,
) -> torch.Tensor:
    """The hard-label loss `kind` (pointwise, pairwise = RankNet, listwise = LambdaRank)."""
    if kind == "pointwise":
        return pointwise_loss(scores, labels, mask)
    if kind == "pairwise":
        return ranknet_loss(scores, labels, mask, sigma)
    if kind == "listwise":
        return lambdarank_loss(scores, labels, mask, sigma, k)
    raise ValueError(f"hard loss must be pointwise, pairwise or listwise, got {kind!r}")
