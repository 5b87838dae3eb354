"""Retrieval losses: sampled softmax / InfoNCE with temperature, log-Q correction and accidental-hit masking,
MGDSPR hard-negative mixing, NCE, triplet with cosine-distance margin, and multi-task BCE.

Seeds: Taobao MGDSPR (001) for softmax with temperature tau = 2 and I_mix = a i+ + (1 - a) I_hard,
a ~ U(0.4, 0.6); the vector-recall overview (000) for NCE (formula 14), InfoNCE (15), sampled softmax (16),
triplet (17) and the multi-task weighted loss (18); Facebook EBR (004) for the triplet distance 1 - cos.

Candidates of the softmax are the batch's positives (in-batch negatives) followed by sampled negatives,
shared by all rows ([M, k]) or per row ([B, K, k], with an optional validity mask for empty slots; a
`RowNegatives` holds a per-row set whose first M columns every row shares without repeating them B times). With log-Q
correction each candidate's logit loses the log of its expected count under the sampler that produced it
(`sampling_log_q`): in-batch candidates log(B * p_batch) (p_batch = the share of training draws whose positive is
that doc), random negatives log(M * q) (q = the exposure table's probability), candidates not drawn at random (ANN
hard negatives, exposed-unclicked docs, MGDSPR mixed negatives) nothing. This removes the sampling bias: a popular
doc drawn often is not pushed down for being drawn often. torch is imported inside functions so that the config
can be imported at CLI start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ebr.settings import Section

if TYPE_CHECKING:
    import torch


class RetrievalLossConfig(Section):
    """Which retrieval loss to train with, and its parameters."""

    kind: Literal["sampled_softmax", "nce", "triplet"] = Field(
        "sampled_softmax", description="MGDSPR uses softmax cross-entropy for global comparison (seed 001)"
    )
    temperature: float = Field(2.0, gt=0, description="logits = cos / tau; Taobao MGDSPR tau = 2 (seed 001)")
    use_temperature: bool = Field(True, description="off: tau = 1")
    log_q_correction: bool = Field(
        False,
        description="subtract from each sampled candidate's logit the log of its expected count under its sampler: "
        "in-batch log(B * p_batch), random log(M * q); ANN hard and exposed-unclicked negatives uncorrected. Off "
        "by default: on the small day it cost true_recall@100 -0.059, ndcg@10 -0.036, p_good@100 -0.067 for "
        "click_recall@100 +0.010 (3 seeds, docs/ablations.md, row log_q_on)",
    )
    mask_accidental_hits: bool = Field(True, description="mask candidates equal to the row's positive")
    hard_negative_mixing: bool = Field(True, description="MGDSPR relevance-enhanced hard negatives I_mix")
    num_hard_negatives: int = Field(
        684, ge=1, description="MGDSPR: 684 generated hard negatives (capped at the negatives available)"
    )
    mix_low: float = Field(0.4, ge=0, le=1, description="MGDSPR: a ~ U(0.4, 0.6)")
    mix_high: float = Field(0.6, ge=0, le=1, description="MGDSPR: a ~ U(0.4, 0.6)")
    detach_mixed: bool = Field(False, description="stop gradients through the mixed negatives")
    triplet_margin: float = Field(
        0.2, ge=0, description="margin m on D = 1 - cos; Facebook EBR gives no value, only that it matters"
    )

    @model_validator(mode="after")
    def _check(self) -> RetrievalLossConfig:
        if self.mix_low >= self.mix_high:
            raise ValueError(f"mix_low ({self.mix_low}) must be below mix_high ({self.mix_high})")
        return self

    @property
    def effective_temperature(self) -> float:
        """`temperature`, or 1.0 when switched off."""
        return self.temperature if self.use_temperature else 1.0


@dataclass(frozen=True)
class RowNegatives:
    """Per-row negatives [B, M + S, k] kept as their two parts: `shared` [M, k] (every row's random negatives)
    and `own` [B, S, k] (each row's own, e.g. ANN hard negatives). Stands wherever a [B, K, k] tensor does, in
    the same column order, without materializing the shared part B times: the shared logits are one [B, k] x
    [k, M] product and their gradient one [M, B] x [B, k] product, where the [B, M + S, k] tensor cost a copy,
    a batched product and a reduction over B of tensors B times the size."""

    shared: torch.Tensor
    own: torch.Tensor

    def __post_init__(self) -> None:
        if self.shared.dim() != 2 or self.own.dim() != 3 or self.shared.shape[1] != self.own.shape[2]:
            raise ValueError(f"RowNegatives needs shared [M, k] and own [B, S, k], got "
                             f"{tuple(self.shared.shape)} and {tuple(self.own.shape)}")  # fmt: skip

    @property
    def shape(self) -> tuple[int, int, int]:
        b, s, k = self.own.shape
        return (b, self.shared.shape[0] + s, k)

    def dim(self) -> int:
        return 3

    def normalized(self) -> RowNegatives:
        import torch.nn.functional as F

        return RowNegatives(F.normalize(self.shared, dim=-1), F.normalize(self.own, dim=-1))

    def scores(self, query: torch.Tensor) -> torch.Tensor:
        """query [B, k] . each row's negatives -> [B, M + S]."""
        import torch

        return torch.cat([query @ self.shared.T, torch.einsum("bd,bkd->bk", query, self.own)], dim=1)


def _check_2d(name: str, t: torch.Tensor) -> None:
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D [batch, dim], got shape {tuple(t.shape)}")


def candidate_logits(
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Similarities / tau of every row against its candidates: [B, B + M] (in-batch, then negatives).

    Column i of row i is the row's positive. `neg_docs` is [M, k] (shared) or [B, K, k] (per row).
    """
    import torch

    _check_2d("query", query)
    _check_2d("pos_docs", pos_docs)
    if query.shape != pos_docs.shape:
        raise ValueError(
            f"query {tuple(query.shape)} and pos_docs {tuple(pos_docs.shape)} must have one shape"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    parts = [query @ pos_docs.T]
    if isinstance(neg_docs, RowNegatives):
        if neg_docs.shape[0] != query.shape[0] or neg_docs.shape[2] != query.shape[1]:
            raise ValueError(f"neg_docs must be [{query.shape[0]}, K, {query.shape[1]}], got {neg_docs.shape}")
        parts.append(neg_docs.scores(query))
    elif neg_docs is not None:
        if neg_docs.dim() == 2 and neg_docs.shape[1] == query.shape[1]:
            parts.append(query @ neg_docs.T)
        elif (
            neg_docs.dim() == 3
            and neg_docs.shape[0] == query.shape[0]
            and neg_docs.shape[2] == query.shape[1]
        ):
            parts.append(torch.einsum("bd,bkd->bk", query, neg_docs))
        else:
            raise ValueError(
                f"neg_docs must be [M, {query.shape[1]}] or [{query.shape[0]}, K, {query.shape[1]}], "
                f"got {tuple(neg_docs.shape)}"
            )
    return torch.cat(parts, dim=1) / temperature


def log_q_matrix(
    batch: int, pos_log_q: torch.Tensor, neg_log_q: torch.Tensor | None, num_neg: int, per_row: bool
) -> torch.Tensor:
    """Log sampling probabilities laid out like `candidate_logits`: [B, B + M] (broadcast where shared)."""
    import torch

    if pos_log_q.shape != (batch,):
        raise ValueError(f"pos_log_q must have shape [{batch}], got {tuple(pos_log_q.shape)}")
    parts = [pos_log_q.unsqueeze(0).expand(batch, -1)]
    if num_neg:
        if neg_log_q is None:
            raise ValueError("neg_log_q is required for log-Q correction when negatives are given")
        want = (batch, num_neg) if per_row else (num_neg,)
        if tuple(neg_log_q.shape) != want:
            raise ValueError(f"neg_log_q must have shape {list(want)}, got {tuple(neg_log_q.shape)}")
        parts.append(neg_log_q if per_row else neg_log_q.unsqueeze(0).expand(batch, -1))
    return torch.cat(parts, dim=1)


def sampling_log_q(
    inbatch_prob: torch.Tensor,
    random_prob: torch.Tensor | None = None,
    unsampled: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-Q of each candidate kind, laid out for `sampled_softmax_loss`: (pos_log_q [B], neg_log_q).

    - in-batch candidates (the B positives, the row's own included): log(B * p_batch), p_batch [B] the probability
      that one draw of the epoch's positives is that doc (the positive frequency);
    - random negatives [M], drawn with replacement by q: log(M * q);
    - `unsampled` per-row candidates after them (ANN hard negatives, exposed-unclicked docs): 0, no correction
      (they are chosen per request, not drawn from a distribution over the corpus).

    neg_log_q is [M] when `unsampled` is 0 (shared negatives), else [B, M + unsampled]; None without negatives.
    """
    import torch

    if inbatch_prob.dim() != 1:
        raise ValueError(f"inbatch_prob must be 1-D [batch], got shape {tuple(inbatch_prob.shape)}")
    if (inbatch_prob <= 0).any() or (random_prob is not None and (random_prob <= 0).any()):
        raise ValueError("sampling probabilities must be > 0")
    b = inbatch_prob.shape[0]
    pos = torch.log(b * inbatch_prob)
    rand = None if random_prob is None or not len(random_prob) else torch.log(len(random_prob) * random_prob)
    if unsampled < 0:
        raise ValueError(f"unsampled must be >= 0, got {unsampled}")
    if not unsampled:
        return pos, rand
    zeros = torch.zeros(b, unsampled, dtype=pos.dtype, device=pos.device)
    if rand is None:
        return pos, zeros
    return pos, torch.cat([rand.to(pos.dtype).unsqueeze(0).expand(b, -1), zeros], dim=1)


def accidental_hits(
    pos_ids: torch.Tensor, neg_ids: torch.Tensor | None, num_neg: int, per_row: bool
) -> torch.Tensor:
    """Bool [B, B + M]: candidates that are the row's positive doc but not its label column."""
    import torch

    b = pos_ids.shape[0]
    if pos_ids.dim() != 1:
        raise ValueError(f"pos_ids must be 1-D [batch], got shape {tuple(pos_ids.shape)}")
    inbatch = (pos_ids.unsqueeze(0) == pos_ids.unsqueeze(1)) & ~torch.eye(
        b, dtype=torch.bool, device=pos_ids.device
    )
    parts = [inbatch]
    if num_neg:
        if neg_ids is None:
            raise ValueError("neg_ids is required to mask accidental hits when negatives are given")
        want = (b, num_neg) if per_row else (num_neg,)
        if tuple(neg_ids.shape) != want:
            raise ValueError(f"neg_ids must have shape {list(want)}, got {tuple(neg_ids.shape)}")
        cand = neg_ids if per_row else neg_ids.unsqueeze(0)
        parts.append(cand == pos_ids.unsqueeze(1))
    return torch.cat(parts, dim=1)


def _squared_norms(pos_docs: torch.Tensor, neg_docs: torch.Tensor | RowNegatives | None) -> torch.Tensor:
    """|c|^2 of every candidate, laid out like `candidate_logits`: [B, B + M]."""
    import torch

    b = pos_docs.shape[0]
    parts = [(pos_docs * pos_docs).sum(-1).unsqueeze(0).expand(b, -1)]
    if isinstance(neg_docs, RowNegatives):
        parts += [(neg_docs.shared * neg_docs.shared).sum(-1).unsqueeze(0).expand(b, -1),
                  (neg_docs.own * neg_docs.own).sum(-1)]  # fmt: skip
    elif neg_docs is not None:
        n2 = (neg_docs * neg_docs).sum(-1)
        parts.append(n2 if neg_docs.dim() == 3 else n2.unsqueeze(0).expand(b, -1))
    return torch.cat(parts, dim=1)


def mixed_negative_logits(
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None,
    negative_mask: torch.Tensor,
    num: int,
    low: float = 0.4,
    high: float = 0.6,
    generator: torch.Generator | None = None,
    detach: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MGDSPR I_mix: per row, the top-`num` usable negatives h by inner product with the query (`negative_mask`
    [B, B + M] marks the usable ones), each mixed with the positive as m = normalize(a p + (1 - a) h),
    a ~ U(low, high). Returns (q . m [B, N], a [B, N], valid [B, N]), N = min(num, candidates); a pick is invalid
    when its row has fewer usable negatives than N.

    The mixed vectors are never built: q . m = (a q.p + (1 - a) q.h) / |a p + (1 - a) h| with |a p + (1 - a) h|^2 =
    a^2 |p|^2 + (1 - a)^2 |h|^2 + 2 a (1 - a) p.h, each term gathered from a [B, B + M] product (at batch 256 with
    517 negatives and 64 picks, one thread: 8 ms forward and backward instead of 41 for the [B, N, k] vectors;
    tests/train/test_losses.py checks values and gradients against them). `detach` stops the gradient through m
    to the docs (the query still learns from it)."""
    import torch

    if detach:
        pos_docs = pos_docs.detach()
        if isinstance(neg_docs, RowNegatives):
            neg_docs = RowNegatives(neg_docs.shared.detach(), neg_docs.own.detach())
        elif neg_docs is not None:
            neg_docs = neg_docs.detach()
    if not 0 <= low < high <= 1:
        raise ValueError(f"mixing needs 0 <= low < high <= 1, got low={low}, high={high}")
    if num < 1:
        raise ValueError(f"num (hard negatives) must be >= 1, got {num}")
    qc = candidate_logits(query, pos_docs, neg_docs)
    # the picks: per row the top-`num` usable candidates by q.c, each with its own a ~ U(low, high)
    top, idx = qc.detach().masked_fill(~negative_mask, float("-inf")).topk(min(num, qc.shape[1]), dim=1)
    valid = torch.isfinite(top)
    a = torch.rand(idx.shape, generator=generator, device=qc.device, dtype=qc.dtype) * (high - low) + low
    pc = candidate_logits(pos_docs, pos_docs, neg_docs)
    qh, ph, hh = qc.gather(1, idx), pc.gather(1, idx), _squared_norms(pos_docs, neg_docs).gather(1, idx)
    qp = (query * pos_docs).sum(-1, keepdim=True)
    pp = (pos_docs * pos_docs).sum(-1, keepdim=True)
    b = 1 - a
    norm = (a * a * pp + b * b * hh + 2 * a * b * ph).clamp_min(0).sqrt().clamp_min(1e-12)  # F.normalize's eps
    return (a * qp + b * qh) / norm, a, valid


def _softmax_candidates(
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None,
    temperature: float,
    pos_log_q: torch.Tensor | None,
    neg_log_q: torch.Tensor | None,
    pos_ids: torch.Tensor | None,
    neg_ids: torch.Tensor | None,
    neg_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrected logits [B, B + M], usable-negative mask [B, B + M]) shared by softmax and NCE."""
    import torch

    logits = candidate_logits(query, pos_docs, neg_docs, temperature)
    b = query.shape[0]
    per_row = neg_docs is not None and neg_docs.dim() == 3
    num_neg = 0 if neg_docs is None else neg_docs.shape[-2]
    if pos_log_q is not None:
        logits = logits - log_q_matrix(b, pos_log_q, neg_log_q, num_neg, per_row)
    elif neg_log_q is not None:
        raise ValueError("neg_log_q was given without pos_log_q: log-Q correction needs both")
    usable = ~torch.eye(b, logits.shape[1], dtype=torch.bool, device=logits.device)
    if pos_ids is not None:
        usable &= ~accidental_hits(pos_ids, neg_ids, num_neg, per_row)
    return logits, _only_valid(usable, neg_valid, b, num_neg, per_row)


def _only_valid(
    usable: torch.Tensor, neg_valid: torch.Tensor | None, b: int, num_neg: int, per_row: bool
) -> torch.Tensor:
    """`usable` with the negatives' empty slots (`neg_valid` False: [B, K] per row or [M] shared) switched off."""
    import torch

    if neg_valid is None:
        return usable
    want = (b, num_neg) if per_row else (num_neg,)
    if tuple(neg_valid.shape) != want:
        raise ValueError(f"neg_valid must have shape {list(want)}, got {tuple(neg_valid.shape)}")
    usable = usable.clone()
    usable[:, b:] &= neg_valid.to(torch.bool) if per_row else neg_valid.to(torch.bool).unsqueeze(0)
    return usable


def sampled_softmax_loss(
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None = None,
    *,
    temperature: float = 1.0,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    pos_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
    neg_valid: torch.Tensor | None = None,
    num_hard_negatives: int = 0,
    mix_low: float = 0.4,
    mix_high: float = 0.6,
    detach_mixed: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean sampled-softmax (InfoNCE) loss -log softmax(logits)[positive] over in-batch + sampled negatives.

    logits = sim / tau - log Q (when `pos_log_q` is given), accidental hits masked (when `pos_ids` is
    given), empty slots (`neg_valid` False) left out, plus `num_hard_negatives` MGDSPR mixed negatives (0 = none;
    these are synthetic, so no log Q).
    """
    import torch
    import torch.nn.functional as F

    logits, usable = _softmax_candidates(
        query, pos_docs, neg_docs, temperature, pos_log_q, neg_log_q, pos_ids, neg_ids, neg_valid
    )
    b = query.shape[0]
    masked = torch.eye(b, logits.shape[1], dtype=torch.bool, device=logits.device) | usable
    logits = logits.masked_fill(~masked, float("-inf"))
    if num_hard_negatives > 0:
        mix, _, valid = mixed_negative_logits(
            query, pos_docs, neg_docs, usable, num_hard_negatives, mix_low, mix_high, generator, detach_mixed
        )
        mix_logits = mix / temperature
        logits = torch.cat([logits, mix_logits.masked_fill(~valid, float("-inf"))], dim=1)
    target = torch.arange(b, device=logits.device)
    return F.cross_entropy(logits, target)


def nce_loss(
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None = None,
    *,
    temperature: float = 1.0,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    pos_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
    neg_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary NCE (seed 000, formula 14): mean over rows of -log sigma(s+) - sum_neg log sigma(-s-).

    s = sim / tau - log Q (pass log(K * Q) for textbook NCE); negatives as in `sampled_softmax_loss`.
    """
    import torch
    import torch.nn.functional as F

    logits, usable = _softmax_candidates(
        query, pos_docs, neg_docs, temperature, pos_log_q, neg_log_q, pos_ids, neg_ids, neg_valid
    )
    pos = torch.diagonal(logits[:, : query.shape[0]])
    neg = (F.logsigmoid(-logits) * usable.to(logits.dtype)).sum(dim=1)
    return -(F.logsigmoid(pos) + neg).mean()


def triplet_loss(
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None = None,
    *,
    margin: float = 0.2,
    pos_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
    neg_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Facebook EBR triplet loss (seed 004): mean of max(0, D(q, d+) - D(q, d-) + m), D = 1 - cos.

    Negatives: `neg_docs` [B, K, k] per row or [M, k] shared, else the other rows' positives (in-batch);
    accidental hits (same id as the positive) are left out when ids are given.
    """
    import torch
    import torch.nn.functional as F

    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    q = F.normalize(query, dim=-1)
    cos = candidate_logits(
        q, F.normalize(pos_docs, dim=-1),
        None if neg_docs is None else neg_docs.normalized() if isinstance(neg_docs, RowNegatives)
        else F.normalize(neg_docs, dim=-1),
    )  # fmt: skip
    b = q.shape[0]
    d_pos = 1 - torch.diagonal(cos[:, :b])
    d_neg = 1 - cos
    usable = ~torch.eye(b, cos.shape[1], dtype=torch.bool, device=cos.device)
    if neg_docs is not None:
        usable[:, :b] = False  # explicit negatives replace in-batch ones
    per_row = neg_docs is not None and neg_docs.dim() == 3
    num_neg = 0 if neg_docs is None else neg_docs.shape[-2]
    if pos_ids is not None:
        usable &= ~accidental_hits(pos_ids, neg_ids, num_neg, per_row)
    usable = _only_valid(usable, neg_valid, b, num_neg, per_row)
    hinge = torch.relu(d_pos.unsqueeze(1) - d_neg + margin) * usable.to(cos.dtype)
    return hinge.sum() / usable.sum().clamp(min=1)


def multitask_bce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: Sequence[float] | torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted multi-task BCE (seed 000, formula 18): sum_t w_t * mean_rows BCE(logit_t, label_t).

    `mask` [B, T] (optional) drops rows of a task whose label is unknown.
    """
    import torch
    import torch.nn.functional as F

    if logits.dim() != 2 or logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must both be [B, T]")
    w = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
    if w.shape != (logits.shape[1],):
        raise ValueError(f"weights must have one entry per task ({logits.shape[1]}), got {tuple(w.shape)}")
    per = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    m = torch.ones_like(per) if mask is None else mask.to(per.dtype)
    per_task = (per * m).sum(dim=0) / m.sum(dim=0).clamp(min=1)
    return (per_task * w).sum()


def retrieval_loss(
    config: RetrievalLossConfig,
    query: torch.Tensor,
    pos_docs: torch.Tensor,
    neg_docs: torch.Tensor | RowNegatives | None = None,
    *,
    pos_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    neg_valid: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The configured retrieval loss on query/doc vectors; names any input a switched-on option lacks.

    `neg_valid` ([B, K] or [M] bool, optional) marks negative slots that hold a doc; False slots are no candidates.
    """
    if config.log_q_correction and config.kind != "triplet" and pos_log_q is None:
        raise ValueError(
            "log_q_correction is on: pass pos_log_q (and neg_log_q with negatives), or switch it off"
        )
    if config.mask_accidental_hits and pos_ids is None:
        raise ValueError(
            "mask_accidental_hits is on: pass pos_ids (and neg_ids with negatives), or switch it off"
        )
    ids = dict(pos_ids=pos_ids if config.mask_accidental_hits else None,
               neg_ids=neg_ids if config.mask_accidental_hits else None)  # fmt: skip
    if config.kind == "triplet":
        return triplet_loss(query, pos_docs, neg_docs, margin=config.triplet_margin, neg_valid=neg_valid, **ids)
    logq = dict(pos_log_q=pos_log_q if config.log_q_correction else None,
                neg_log_q=neg_log_q if config.log_q_correction else None)  # fmt: skip
    tau = config.effective_temperature
    if config.kind == "nce":
        return nce_loss(query, pos_docs, neg_docs, temperature=tau, neg_valid=neg_valid, **logq, **ids)
    return sampled_softmax_loss(
        query, pos_docs, neg_docs, temperature=tau, **logq, **ids, neg_valid=neg_valid,
        num_hard_negatives=config.num_hard_negatives if config.hard_negative_mixing else 0,
        mix_low=config.mix_low, mix_high=config.mix_high, detach_mixed=config.detach_mixed,
        generator=generator,
    )  # fmt: skip
