"""Query tower, doc tower and the two-tower model on featurized rows: shapes, switches, seeds, gradients."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from ebr.models.config import MultiObjectiveConfig, TwoTowerConfig
from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.two_tower import TwoTowerModel
from ebr.train.losses import sampled_softmax_loss
from tests.models.rows import doc_rows, logged_in_row, logged_out_row, small_config


@pytest.fixture(scope="module")
def cfg() -> TwoTowerConfig:
    return small_config()


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {
        "queries": [
            logged_in_row(),
            logged_out_row(),
            logged_in_row("Apple iPhone case"),
            logged_out_row("裙子"),
        ],
        "docs": doc_rows() + [doc_rows()[0] | {"doc_id": 99, "title": "运动鞋 男"}],
    }


def _encode(model: TwoTowerModel, cfg: TwoTowerConfig, rows: dict) -> tuple[torch.Tensor, torch.Tensor]:
    q = featurize_queries(rows["queries"], cfg.featurizer)
    d = featurize_docs(rows["docs"], cfg.featurizer)
    return model.encode_queries(q), model.encode_docs(d)


def test_towers_encode_logged_in_and_logged_out_rows(cfg, rows):
    model = TwoTowerModel(cfg).eval()
    q, d = _encode(model, cfg, rows)
    assert q.shape == (4, 8) and d.shape == (4, 8)
    assert torch.isfinite(q).all() and torch.isfinite(d).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(4))


def test_absent_user_columns_equal_explicit_nulls(cfg):
    model = TwoTowerModel(cfg).eval()
    explicit = {k: None for k in logged_in_row()} | {"query": "iPhone 15 手机壳"}
    a = model.encode_queries(featurize_queries([logged_out_row()], cfg.featurizer))
    b = model.encode_queries(featurize_queries([explicit], cfg.featurizer))
    torch.testing.assert_close(a, b)


def test_personalization_changes_the_query_vector_only_when_on(cfg):
    understood = {k: logged_in_row()[k] for k in ("qu_category_leaf", "qu_brand")}  # the query's, not the user's
    same_query = [logged_in_row("红色连衣裙"), logged_out_row("红色连衣裙") | understood]
    on = TwoTowerModel(cfg).eval()
    off_cfg = small_config(query_tower={"personalization": False})
    off = TwoTowerModel(off_cfg).eval()
    q_on = on.encode_queries(featurize_queries(same_query, cfg.featurizer))
    q_off = off.encode_queries(featurize_queries(same_query, off_cfg.featurizer))
    assert (q_on[0] - q_on[1]).abs().max() > 1e-4
    torch.testing.assert_close(q_off[0], q_off[1])


def test_query_understanding_is_a_token_of_its_own_read_only_when_on(rows):
    cfg = small_config()  # on by default
    model = TwoTowerModel(cfg).eval()
    assert model.query_tower.understanding is not None
    off = TwoTowerModel(small_config(query_tower={"query_understanding": False})).eval()
    assert model.query_tower.num_tokens == off.query_tower.num_tokens + 1
    base = logged_in_row("红色连衣裙")
    variants = [base, {**base, "qu_category_leaf": "半身裙"}, {**base, "qu_brand": None},
                {**base, "qu_category_leaf": None, "qu_brand": None}]
    q = model.encode_queries(featurize_queries(variants, cfg.featurizer))
    for i in (1, 2, 3):
        assert (q[0] - q[i]).abs().max() > 1e-4, i
    tokens = model.query_tower.tokens(featurize_queries(variants, cfg.featurizer))
    torch.testing.assert_close(tokens[3, -1], torch.zeros(cfg.query_tower.hidden_dim))  # nothing understood
    assert off.query_tower.understanding is None
    q_off = off.encode_queries(featurize_queries(variants, off.config.featurizer))
    for i in (1, 2, 3):
        torch.testing.assert_close(q_off[0], q_off[i])


QUERY_SWITCHES = {
    "personalization": ["user_profile", "realtime", "short_term", "long_term", "behavior_items",
                        "semantic.history_attention"],
    "multi_granular": ["semantic.unigram_emb", "semantic.bigram_emb", "semantic.word_transformer",
                       "semantic.history_attention"],
    "query_history": ["semantic.history_attention"],
    "user_profile": ["user_profile"],
    "realtime_sequence": ["realtime"],
    "short_term_sequence": ["short_term"],
    "long_term_sequence": ["long_term"],
    "senet": ["user_profile.senet"],
    "dcn": ["user_profile.cross"],
    "cls_fusion": ["fusion", "cls", "token_type"],
    "query_understanding": ["understanding"],
}  # fmt: skip

DOC_SWITCHES = {
    "use_id": ["doc_id"],
    "use_title": ["title_words", "title_proj"],
    "use_categories": ["categories"],
    "use_brand": ["brand"],
    "use_attributes": ["attributes"],
    "use_tags": ["tags"],
    "use_author": ["author"],
    "use_statistics": ["statistics"],
}


def _attr(module: torch.nn.Module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _run_and_check_absent(model: TwoTowerModel, tower: str, parts: list[str], cfg, rows) -> None:
    q, d = _encode(model, cfg, rows)
    assert torch.isfinite(q).all() and torch.isfinite(d).all()
    names = [n for n, _ in model.named_parameters()]
    for part in parts:
        assert _attr(getattr(model, tower), part) is None, part
        assert not any(n.startswith(f"{tower}.{part}.") or n == f"{tower}.{part}" for n in names), part


@pytest.mark.parametrize("flag", sorted(QUERY_SWITCHES))
def test_each_query_tower_switch_removes_its_part(flag, rows):
    on = TwoTowerModel(small_config())
    for part in QUERY_SWITCHES[flag]:
        assert _attr(on.query_tower, part) is not None, part
    cfg = small_config(query_tower={flag: False})
    model = TwoTowerModel(cfg).eval()
    _run_and_check_absent(model, "query_tower", QUERY_SWITCHES[flag], cfg, rows)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in on.parameters())


def test_all_sequences_off_drops_the_behaviour_embeddings(rows):
    cfg = small_config(
        query_tower={"realtime_sequence": False, "short_term_sequence": False, "long_term_sequence": False}
    )
    _run_and_check_absent(TwoTowerModel(cfg).eval(), "query_tower", ["behavior_items"], cfg, rows)


def test_multi_granular_off_falls_back_to_the_word_mean(rows):
    cfg = small_config(query_tower={"multi_granular": False})
    model = TwoTowerModel(cfg).eval()
    assert model.query_tower.semantic.num_granules == 1
    q = featurize_queries(rows["queries"], cfg.featurizer)
    words = q["query_words"]
    expected = (model.query_tower.semantic.word_emb(words) * (words > 0).unsqueeze(-1)).sum(1)
    expected = expected / (words > 0).sum(1, keepdim=True)
    torch.testing.assert_close(model.query_tower.semantic(q)[:, 0], expected)


@pytest.mark.parametrize("flag", sorted(DOC_SWITCHES))
def test_each_doc_tower_switch_removes_its_part(flag, rows):
    cfg = small_config(doc_tower={flag: False})
    _run_and_check_absent(TwoTowerModel(cfg).eval(), "doc_tower", DOC_SWITCHES[flag], cfg, rows)


def test_optional_parts_switch_on(rows):
    cfg = small_config(
        query_tower={"bilinear": True, "dcn_low_rank": 4},
        doc_tower={"senet": True},
    )
    model = TwoTowerModel(cfg).eval()
    assert model.query_tower.user_profile.bilinear is not None
    assert model.query_tower.user_profile.bilinear_senet is not None
    assert model.doc_tower.senet is not None
    q, d = _encode(model, cfg, rows)
    assert q.shape == d.shape == (4, cfg.query_tower.out_dim)


def test_backward_reaches_every_parameter(rows):
    cfg = small_config(query_tower={"bilinear": True}, doc_tower={"senet": True})
    model = TwoTowerModel(cfg).train()
    q, d = _encode(model, cfg, rows)
    sampled_softmax_loss(q, d, temperature=0.1).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_same_seed_gives_same_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = TwoTowerModel(small_config(seed=5)).state_dict()
    assert torch.equal(torch.rand(3), expected_next)
    b = TwoTowerModel(small_config(seed=5)).state_dict()
    c = TwoTowerModel(small_config(seed=6)).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_scores_are_inner_products_over_temperature(cfg, rows):
    model = TwoTowerModel(cfg).eval()
    q, d = _encode(model, cfg, rows)
    assert model.temperature == cfg.temperature == 2.0
    torch.testing.assert_close(model.score(q, d), (q * d).sum(-1) / 2.0)
    torch.testing.assert_close(model.score_matrix(q, d).diagonal(), model.score(q, d))
    assert model.score_matrix(q, d).abs().max() <= 0.5 + 1e-6  # |cos| <= 1, tau = 2
    off = TwoTowerModel(small_config(use_temperature=False))
    assert off.temperature == 1.0
    torch.testing.assert_close(off.score(q, d), (q * d).sum(-1))


def test_the_model_has_exactly_its_two_towers(cfg, rows):
    model = TwoTowerModel(cfg)
    assert [name for name, _ in model.named_children()] == ["query_tower", "doc_tower"]
    out = model(featurize_queries(rows["queries"], cfg.featurizer), featurize_docs(rows["docs"], cfg.featurizer))
    assert set(out) == {"query", "doc", "score"}


def test_config_errors_name_the_field():
    with pytest.raises(ValidationError, match="out_dim"):
        small_config(doc_tower={"out_dim": 16})
    with pytest.raises(ValidationError, match="num_heads"):
        small_config(query_tower={"num_heads": 3})
    with pytest.raises(ValidationError, match="multi_objective"):  # not an option of the retrieval model
        small_config(multi_objective={"enabled": True})
    # a model saved while the option existed (disabled) still loads, to the same config
    saved = json.loads(small_config().model_dump_json())
    assert TwoTowerConfig.model_validate({**saved, "multi_objective": {"enabled": False}}) == small_config()
    with pytest.raises(ValidationError, match="task_weights"):
        MultiObjectiveConfig(task_weights=[1.0])
    with pytest.raises(ValidationError, match="at least one input field"):
        small_config(doc_tower={k: False for k in DOC_SWITCHES})


def test_config_round_trips_through_yaml(tmp_path):
    from ebr.settings import dump_config, load_config

    cfg = small_config(query_tower={"dcn": False}, temperature=0.5)
    path = tmp_path / "model.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    assert load_config(TwoTowerConfig, path) == cfg
    assert load_config(TwoTowerConfig, path, ["query_tower.num_heads=4"]).query_tower.num_heads == 4


def test_behaviour_windows_looked_up_together_equal_each_window_alone(cfg: TwoTowerConfig, rows: dict):
    """The query tower embeds the three behaviour windows with one lookup per table and projects real-time and
    short-term items in one product; each window's vectors equal those of its own lookup and projection."""
    from ebr.models.behavior import BehaviorItemEmbedding
    from ebr.models.config import SEQUENCE_FIELDS

    items = BehaviorItemEmbedding(cfg.featurizer, 8)
    inputs = featurize_queries(rows["queries"], cfg.featurizer)
    assert (inputs["seq_rt_doc_ids"] > 0).any() and (inputs["seq_lt_doc_ids"] > 0).any()
    together = items.windows(inputs, ["rt", "st", "lt"], project=("rt", "st"))
    for w in ("rt", "st"):
        tables = (items.doc_ids, items.categories, items.authors, items.event_types)
        fields = [table(inputs[f"seq_{w}_{f}"]) for table, f in zip(tables, SEQUENCE_FIELDS, strict=True)]
        alone = items.project(torch.cat(fields, dim=-1))
        torch.testing.assert_close(together[w], alone)
        torch.testing.assert_close(items(inputs, w), alone)
    for a, b in zip(together["lt"], items.fields(inputs, "lt"), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="must lead"):
        items.windows(inputs, ["rt", "st", "lt"], project=("st",))


def test_shared_word_embeddings_are_one_table_trained_by_both_towers(rows):
    cfg = small_config(share_word_embeddings=True)
    model = TwoTowerModel(cfg).train()
    shared = model.query_tower.semantic.word_emb.weight
    assert model.doc_tower.title_words.weight is shared
    assert sum(p is shared for p in model.parameters()) == 1  # the optimizer sees it once
    # the doc side alone moves the shared table (the query side reads it as its word embedding)
    d = model.encode_docs(featurize_docs(rows["docs"], cfg.featurizer))
    d.sum().backward()
    assert shared.grad is not None and shared.grad.abs().sum() > 0
    # everything but the title table is initialized as without sharing (same seed, same other weights)
    alone = TwoTowerModel(small_config()).state_dict()
    both = model.state_dict()
    assert torch.equal(both["doc_tower.title_words.weight"], both["query_tower.semantic.word_emb.weight"])
    assert not torch.equal(alone["doc_tower.title_words.weight"], alone["query_tower.semantic.word_emb.weight"])
    assert all(torch.equal(alone[k], both[k]) for k in alone if k != "doc_tower.title_words.weight")
    # a saved model loads into a fresh shared model and stays shared
    again = TwoTowerModel(cfg)
    again.load_state_dict(both)
    assert again.doc_tower.title_words.weight is again.query_tower.semantic.word_emb.weight
    assert torch.equal(again.doc_tower.title_words.weight, shared.detach())


def test_sharing_word_embeddings_needs_a_title_and_equal_widths():
    with pytest.raises(ValidationError, match="use_title"):
        small_config(share_word_embeddings=True, doc_tower={"use_title": False})
    with pytest.raises(ValidationError, match="hidden_dim"):
        small_config(share_word_embeddings=True, doc_tower={"hidden_dim": 32})
