"""Blocks: output shapes, gradients reaching every parameter, and each block's defining behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebr.models.blocks import (
    MLP,
    BilinearInteraction,
    BucketEmbedding,
    CrossNetwork,
    MMoE,
    MultiHeadAttention,
    ResidualLSTM,
    SENet,
    TransformerLayer,
    ZeroVectorAttention,
    bag_mean,
    hashed_embedding,
    masked_mean,
    reverse_padded,
)

B, F, D, L = 3, 5, 8, 6


def _assert_all_params_get_gradient(module: nn.Module, out: torch.Tensor) -> None:
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_senet_reweights_fields_by_weights_in_unit_interval():
    m = SENet(F, reduction_ratio=2)
    x = torch.randn(B, F, D)
    out = m(x)
    assert out.shape == (B, F, D)
    w = m.field_weights(x)
    assert w.shape == (B, F) and bool(((w > 0) & (w < 1)).all())
    torch.testing.assert_close(out, x * w.unsqueeze(-1))
    _assert_all_params_get_gradient(m, m(x))


@pytest.mark.parametrize("low_rank", [None, 4])
def test_cross_network_shapes_and_gradients(low_rank):
    m = CrossNetwork(F * D, num_layers=2, low_rank=low_rank)
    x = torch.randn(B, F * D)
    out = m(x)
    assert out.shape == (B, F * D)
    _assert_all_params_get_gradient(m, out)


def test_cross_layer_is_x0_times_linear_plus_residual():
    m = CrossNetwork(4, num_layers=1)
    x = torch.randn(B, 4)
    lin = m.layers[0]
    torch.testing.assert_close(m(x), x * (x @ lin.weight.T + lin.bias) + x)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
    torch.testing.assert_close(m(x), x)  # zero cross weights leave the input unchanged


@pytest.mark.parametrize("kind", ["field_all", "field_each", "field_interaction"])
def test_bilinear_interaction_pairs(kind):
    m = BilinearInteraction(F, D, kind)
    x = torch.randn(B, F, D)
    out = m(x)
    assert out.shape == (B, F * (F - 1) // 2, D)
    w = m.weight[0]
    # pair (0, 1) is (v_0 W) * v_1 for the weight of that pair/field
    torch.testing.assert_close(out[:, 0], (x[:, 0] @ w) * x[:, 1])
    _assert_all_params_get_gradient(m, m(x))


def test_bilinear_needs_two_fields_and_a_known_kind():
    with pytest.raises(ValueError, match="2 fields"):
        BilinearInteraction(1, D)
    with pytest.raises(ValueError, match="kind"):
        BilinearInteraction(3, D, "diagonal")  # type: ignore[arg-type]


def test_multi_head_attention_ignores_masked_keys():
    m = MultiHeadAttention(D, num_heads=2)
    q, k = torch.randn(B, 2, D), torch.randn(B, L, D)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[:, 4:] = False
    out, w = m(q, k, k, mask, need_weights=True)
    assert out.shape == (B, 2, D) and w.shape == (B, 2, 2, L)
    assert w[..., 4:].abs().max() == 0
    torch.testing.assert_close(w.sum(-1), torch.ones(B, 2, 2))
    k2 = k.clone()
    k2[:, 4:] = 100.0  # changing masked keys changes nothing
    torch.testing.assert_close(m(q, k2, k2, mask)[0], out)
    _assert_all_params_get_gradient(m, out)


def _outputs_and_grads(m: torch.nn.Module, *args: torch.Tensor, **kw) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Outputs and parameter gradients of a weighted sum of the outputs, row 2 left out of the sum."""
    m.zero_grad()
    out, _ = m(*args, **kw)
    upstream = torch.linspace(-1, 1, out.numel()).view(out.shape).clone()
    upstream[2] = 0.0
    (out * upstream).sum().backward()
    return out.detach(), [p.grad.clone() for p in m.parameters()]


def test_fused_attention_equals_the_weighted_path_with_empty_rows():
    """The fused kernel (no weights asked) gives the explicit softmax's outputs and gradients for self-attention
    (one q/k/v product), distinct keys and values, and the zero-vector attention over a shared key/value history.
    A fully masked row (row 2) gets the same output (uniform weights, as documented) but no gradient is sent
    through it: every caller masks such rows downstream (the behaviour encoders attend over them with the same
    mask, the word Transformer always sees position 0), so the fused path's gradient there is never used."""
    g = torch.Generator().manual_seed(3)
    n = 8
    x, q, v = (torch.randn(n, L, D, generator=g) for _ in range(3))
    mask = torch.rand(n, L, generator=g) < 0.6
    mask[2] = False
    mha = MultiHeadAttention(D, num_heads=2)
    for args in ((x, x, x, mask), (q, x, x, mask), (q, x, v, mask), (x, x, x, None)):
        fused, fused_grads = _outputs_and_grads(mha, *args)
        # clones defeat the identity checks, so each projection runs on its own
        explicit, explicit_grads = _outputs_and_grads(mha, *(a.clone() if a is not None else None for a in args),
                                                      need_weights=True)
        torch.testing.assert_close(fused, explicit)
        for a, b in zip(fused_grads, explicit_grads, strict=True):
            torch.testing.assert_close(a, b)
    zva = ZeroVectorAttention(D, num_heads=2)
    fused, fused_grads = _outputs_and_grads(zva, q[:, :3], x, mask)
    explicit, explicit_grads = _outputs_and_grads(zva, q[:, :3], x, mask, x.clone(), need_weights=True)
    torch.testing.assert_close(fused, explicit)
    for a, b in zip(fused_grads, explicit_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert fused[2].abs().max() == 0  # no history: exactly zero


def test_attention_with_every_key_masked_stays_finite():
    m = MultiHeadAttention(D, num_heads=2)
    x = torch.randn(B, L, D)
    out, _ = m(x, x, x, torch.zeros(B, L, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_zero_vector_attention_shapes_gradients_and_empty_history():
    m = ZeroVectorAttention(D, num_heads=2)
    q, h = torch.randn(B, 6, D), torch.randn(B, L, D)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1] = False  # row 1: no history at all
    out, w = m(q, h, mask, need_weights=True)
    assert out.shape == (B, 6, D) and w.shape == (B, 2, 6, L + 1)
    # with no history the zero slot takes all the weight and the output is exactly zero
    torch.testing.assert_close(w[1, :, :, 0], torch.ones(2, 6))
    assert out[1].abs().max() == 0
    _assert_all_params_get_gradient(m, out)


def test_transformer_layer_shapes_and_gradients():
    m = TransformerLayer(D, num_heads=2)
    x = torch.randn(B, L, D)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False
    out = m(x, mask)
    assert out.shape == (B, L, D)
    _assert_all_params_get_gradient(m, out)



def test_transformer_layer_first_token_is_row_0_of_the_whole_layer_with_its_gradients():
    torch.manual_seed(0)
    m = TransformerLayer(D, num_heads=2)
    x = torch.randn(B, L, D, requires_grad=True)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False
    whole = m(x, mask)[:, :1]
    alone = m.first_token(x, mask)
    assert alone.shape == (B, 1, D)
    torch.testing.assert_close(alone, whole, rtol=1e-5, atol=1e-6)
    # the same gradients reach the input and every weight: the read-out trains the layer as before
    grads = []
    for out in (whole, alone):
        m.zero_grad()
        x.grad = None
        out.pow(2).sum().backward()
        grads.append([x.grad.clone(), *(p.grad.clone() for p in m.parameters())])
    for g_whole, g_alone in zip(*grads, strict=True):
        torch.testing.assert_close(g_alone, g_whole, rtol=1e-4, atol=1e-5)
    # the other rows do matter to row 0 (it attends over them)
    y = x.detach().clone()
    y[1, 2] += 1.0
    assert not torch.allclose(m.first_token(y, mask)[1], alone[1].detach())

def test_mmoe_gates_are_distributions_and_every_tower_learns():
    m = MMoE(D, num_tasks=4, num_experts=3, expert_dims=[16], tower_dims=[8])
    x = torch.randn(B, D)
    out = m(x)
    assert out.shape == (B, 4)
    g = m.gate_weights(x)
    assert g.shape == (B, 4, 3)
    torch.testing.assert_close(g.sum(-1), torch.ones(B, 4))
    _assert_all_params_get_gradient(m, out)


def test_mlp_shapes_and_gradients():
    m = MLP(D, [16, 4], dropout=0.1)
    out = m(torch.randn(B, D))
    assert out.shape == (B, 4) and m.out_dim == 4
    _assert_all_params_get_gradient(m, out)
    with pytest.raises(ValueError, match="layer sizes"):
        MLP(D, [])


def test_masked_mean_ignores_padding_and_gives_zero_for_empty_rows():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def test_reverse_padded_reverses_only_the_valid_prefix():
    x = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    assert reverse_padded(x, mask)[..., 0].tolist() == [[2.0, 1.0, 0.0, 3.0], [4.0, 5.0, 6.0, 7.0]]


def test_residual_lstm_valid_steps_ignore_what_follows():
    m = ResidualLSTM(D, num_layers=2, dropout=0.2).eval()
    x = torch.randn(1, L, D)
    y = x.clone()
    y[:, 3:] = torch.randn(1, L - 3, D)  # different padding content after 3 valid steps
    torch.testing.assert_close(m(x)[:, :3], m(y)[:, :3])
    m.train()
    _assert_all_params_get_gradient(m, m(x))


def test_hashed_embedding_padding_row_is_zero_and_gets_no_gradient():
    e = hashed_embedding(10, D)
    assert e.weight[0].abs().max() == 0
    e(torch.tensor([[0, 3, 0]])).sum().backward()
    assert e.weight.grad[0].abs().max() == 0 and e.weight.grad[3].abs().max() > 0


def test_bucket_embedding_offsets_columns_apart():
    e = BucketEmbedding([3, 5], D)
    out = e(torch.tensor([[0, 0], [2, 4]]))
    assert out.shape == (2, 2, D)
    torch.testing.assert_close(out[0, 1], e.table.weight[3])  # column 1 starts after column 0's 3 ids
    _assert_all_params_get_gradient(e, out)


@pytest.mark.parametrize("sparse", [False, True])
def test_bag_mean_equals_the_masked_mean_of_the_lookup(sparse: bool):
    """One-kernel bag means (empty bags and 3-D id arrays included) give the lookup-then-mask values and the same
    table gradient; a graph export takes the two-step form (ONNX has no bag with a padding id)."""
    g = torch.Generator().manual_seed(4)
    table = hashed_embedding(40, D, sparse)
    ids = torch.randint(0, 40, (5, 3, L), generator=g)
    ids[0, 1] = 0  # an empty bag
    ids[2, :, 3:] = 0
    upstream = torch.randn(5, 3, D, generator=g)
    grads = []
    for pool in (lambda t, i: bag_mean(t, i), lambda t, i: masked_mean(t(i), i > 0)):
        table.zero_grad()
        out = pool(table, ids)
        (out * upstream).sum().backward()
        grads.append((out.detach(), table.weight.grad.to_dense().clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    assert grads[0][0][0, 1].abs().max() == 0
    program = torch.export.export(_BagMean(table), (ids,))
    assert "embedding_bag" not in str(program.graph)
    torch.testing.assert_close(program.module()(ids), grads[1][0])
    with pytest.raises(ValueError, match="padding_idx=None"):
        bag_mean(nn.Embedding(4, D), ids.clamp(max=3))


class _BagMean(nn.Module):
    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return bag_mean(self.table, ids)
