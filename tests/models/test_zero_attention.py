"""MGDSPR zero-vector attention: when no behaviour relates to the query, the weight goes to the zero slot."""

from __future__ import annotations

import torch

from ebr.models.blocks import ZeroVectorAttention

D, T = 16, 5


def _batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, histories, a related-slot index (-1 = none) and the target output.

    Unrelated keys are random unit vectors orthogonal to the query; a related history holds the query's own
    direction in one slot, and the target is that behaviour's vector (zero when nothing is related).
    """
    q = torch.nn.functional.normalize(torch.randn(n, D, generator=g), dim=-1)
    keys = torch.randn(n, T, D, generator=g)
    keys = keys - (keys * q.unsqueeze(1)).sum(-1, keepdim=True) * q.unsqueeze(1)
    keys = torch.nn.functional.normalize(keys, dim=-1)
    related = torch.where(torch.rand(n, generator=g) < 0.5, torch.randint(0, T, (n,), generator=g), -1)
    rows = torch.nonzero(related >= 0).squeeze(1)
    keys[rows, related[rows]] = q[rows]
    target = torch.zeros(n, D)
    target[rows] = q[rows]
    return q.unsqueeze(1), keys, related, target


def _zero_slot_weight(m: ZeroVectorAttention, g: torch.Generator) -> tuple[float, float, float]:
    """(mean zero-slot weight on unrelated rows, on related rows, mean weight on the related slot)."""
    q, keys, related, _ = _batch(512, g)
    with torch.no_grad():
        _, w = m(q, keys, torch.ones(len(q), T, dtype=torch.bool), need_weights=True)
    w = w.mean(dim=1)[:, 0]  # average heads; the single query -> [n, T + 1]
    unrel = related < 0
    rows = torch.nonzero(~unrel).squeeze(1)
    return (
        float(w[unrel, 0].mean()),
        float(w[~unrel, 0].mean()),
        float(w[rows, related[rows] + 1].mean()),
    )


def test_unrelated_history_sends_the_weight_to_the_zero_vector():
    torch.manual_seed(0)
    m = ZeroVectorAttention(D, num_heads=1)
    before_unrelated, _, _ = _zero_slot_weight(m, torch.Generator().manual_seed(1))
    assert before_unrelated < 0.35  # untrained: the zero slot is one of T + 1 similar options

    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(2)
    for _ in range(300):
        q, keys, _, target = _batch(64, g)
        out, _ = m(q, keys, torch.ones(64, T, dtype=torch.bool))
        loss = ((out.squeeze(1) - target) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    unrelated, related_zero, related_slot = _zero_slot_weight(m, torch.Generator().manual_seed(3))
    assert unrelated > 0.75  # nothing related: attend to "nothing"
    assert related_slot > 0.75  # something related: attend to it ...
    assert related_zero < 0.2  # ... and not to the zero vector
