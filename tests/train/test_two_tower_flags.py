"""Every technique of the trainer switches off by one flag, and the switched-off model or run differs as
docs/training.md says."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.train.test_two_tower_pipeline import Pipeline, pipe, tiny_config  # noqa: F401

pytestmark = pytest.mark.slow


@functools.cache
def _data(pipe: Pipeline, overrides_json: str = "{}"):  # noqa: F811
    from ebr.train.retrieval_data import load_training_data

    return load_training_data(pipe.samples, pipe.features, tiny_config(None, **json.loads(overrides_json)))


def _batch(data, cfg, seed: int = 0, size: int = 64):
    from ebr.train.two_tower import NegativeSampler

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.train), size, replace=False)
    return NegativeSampler(data, cfg).batch(data.train, idx, rng)


def _loss(model, data, cfg, batch, rewrite_weight: float = 0.0):
    from ebr.train.two_tower import batch_loss

    model.eval()  # no dropout: two calls on the same batch differ only by the config
    with torch.no_grad():
        loss, parts = batch_loss(model, data.train, data.docs, batch, cfg.loss_config(), rewrite_weight,
                                 torch.Generator().manual_seed(0))
    return float(loss), parts


def _query_rows(data, n: int = 8) -> pd.DataFrame:
    """Logged-in rows of the training data with their user-side features."""
    frame = data.train.frame
    return frame[frame["user_id"].notna()].head(n).reset_index(drop=True)


def _encode(model, rows: pd.DataFrame) -> torch.Tensor:
    from ebr.models.inputs import featurize_queries

    with torch.no_grad():
        return model.eval().encode_queries(featurize_queries(rows, model.config.featurizer))


def _swap_users(rows: pd.DataFrame) -> pd.DataFrame:
    """The same queries with the user-side columns of other rows (rolled by one)."""
    from ebr.models.inputs import SEQUENCE_COLUMNS, USER_COLUMNS

    out = rows.copy()
    for c in [*USER_COLUMNS, *SEQUENCE_COLUMNS]:
        if c in out.columns:
            out[c] = np.roll(rows[c].to_numpy(dtype=object), 1)
    return out


def test_the_default_tower_ignores_the_user_and_personalization_reads_it(pipe):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel

    data = _data(pipe)
    rows = _query_rows(data)
    from ebr.train.two_tower_config import TwoTowerTrainConfig

    assert TwoTowerTrainConfig().model.query_tower.personalization is False  # the default (docs/ablations.md)
    off = TwoTowerModel(tiny_config(None, model={"query_tower": {"personalization": False}}).model)
    on = TwoTowerModel(tiny_config(None).model)  # the tests' tower: personalized, every block exercised
    names = {n.split(".")[1] for n, _ in off.named_parameters() if n.startswith("query_tower.")}
    assert not names & {"user_profile", "behavior_items", "realtime", "short_term", "long_term"}
    assert off.query_tower.semantic.history_attention is None
    assert torch.allclose(_encode(off, rows), _encode(off, _swap_users(rows)), atol=1e-6)
    assert not torch.allclose(_encode(on, rows), _encode(on, _swap_users(rows)), atol=1e-4)


def test_multi_granular_off_keeps_only_the_word_mean(pipe):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel

    off = TwoTowerModel(tiny_config(None, model={"query_tower": {"multi_granular": False}}).model)
    on = TwoTowerModel(tiny_config(None).model)
    assert off.query_tower.semantic.num_granules == 1 and on.query_tower.semantic.num_granules == 6
    assert off.query_tower.semantic.unigram_emb is None and off.query_tower.semantic.bigram_emb is None
    assert sum(p.numel() for p in off.parameters()) < sum(p.numel() for p in on.parameters())


def test_temperature_off_scores_plain_cosines(pipe):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel

    data = _data(pipe)
    on_cfg = tiny_config(None)
    off_cfg = tiny_config(None, model={"use_temperature": False})
    tau = on_cfg.model.temperature
    assert tau != 1.0 and on_cfg.loss_config().effective_temperature == tau
    assert off_cfg.loss_config().effective_temperature == 1.0
    model_on, model_off = TwoTowerModel(on_cfg.model), TwoTowerModel(off_cfg.model)
    assert model_off.temperature == 1.0 and model_on.temperature == tau
    batch = _batch(data, on_cfg)
    assert _loss(model_on, data, on_cfg, batch)[0] != pytest.approx(_loss(model_on, data, off_cfg, batch)[0])


def test_hard_negative_mixing_off_removes_the_mixed_candidates(pipe):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel

    data = _data(pipe)
    on_cfg = tiny_config(None)
    off_cfg = tiny_config(None, loss={"hard_negative_mixing": False})
    model = TwoTowerModel(on_cfg.model)
    batch = _batch(data, on_cfg)
    # mixed negatives are extra softmax candidates: they can only raise the loss of the same batch
    assert _loss(model, data, on_cfg, batch)[0] > _loss(model, data, off_cfg, batch)[0]


def test_log_q_correction_changes_the_logits_of_sampled_docs(pipe):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel

    data = _data(pipe)
    on_cfg = tiny_config(None, loss={"hard_negative_mixing": False, "log_q_correction": True})
    off_cfg = tiny_config(None, loss={"hard_negative_mixing": False})
    assert off_cfg.loss.log_q_correction is False, "off by default (docs/ablations.md)"
    model = TwoTowerModel(on_cfg.model)
    batch = _batch(data, on_cfg)
    assert _loss(model, data, on_cfg, batch)[0] != pytest.approx(_loss(model, data, off_cfg, batch)[0], abs=1e-4)


def test_hard_negatives_fill_each_rows_own_slots_and_switch_off(pipe):  # noqa: F811
    data = _data(pipe)
    cfg = tiny_config(None)
    batch = _batch(data, cfg)
    m = cfg.negatives.random_negatives
    assert len(batch.shared) == m  # random negatives only: hard negatives are per row, not pooled
    h = batch.hard_slots
    assert h == -(-(64 - 1 + m) // int(cfg.negatives.easy_hard_ratio)) and batch.per_row.shape == (64, h)
    assert batch.hard_filled > 0
    for i, row in enumerate(batch.idx):
        own = data.hard[data.train.request_code[row]]
        got = batch.per_row[i][batch.per_row_valid[i]]
        assert set(got.tolist()) <= set(own.tolist()) and len(got) == min(batch.hard_allotted[i], len(own))
    easy = 64 - 1 + m  # the rows' hard slots follow easy:hard exactly (within half a slot), not rounded up per row
    assert abs(batch.hard_allotted.sum() - 64 * easy / cfg.negatives.easy_hard_ratio) <= 0.5
    assert set(batch.hard_allotted.tolist()) <= {h - 1, h}
    off = tiny_config(None, negatives={"hard_negatives": False})
    off_data = _data(pipe, json.dumps({"negatives": {"hard_negatives": False}}))
    assert off_data.hard is None
    off_batch = _batch(off_data, off)
    assert len(off_batch.shared) == m and off_batch.per_row is None


def test_exposed_unclicked_negatives_replace_random_ones(pipe):  # noqa: F811
    overrides = {"negatives": {"use_exposed_unclicked": True, "hard_negatives": False}}
    data = _data(pipe, json.dumps(overrides))
    cfg = tiny_config(None, **overrides)
    batch = _batch(data, cfg)
    assert len(batch.shared) == 0 and batch.per_row.shape == (64, cfg.negatives.exposed_unclicked_per_row)
    table = pd.read_parquet(pipe.samples / "exposed_unclicked.parquet")
    for i, row in enumerate(batch.idx[:10]):
        rid = data.train.frame["request_id"].iloc[row]
        shown = set(table.loc[table["request_id"] == rid, "doc_id"])
        if shown:
            assert set(data.docs.ids[batch.per_row[i]].tolist()) <= shown


def test_exposed_unclicked_needs_the_samples_table(pipe, tmp_path):  # noqa: F811
    import shutil

    from ebr.train.retrieval_data import load_training_data

    copy = tmp_path / "samples"
    shutil.copytree(pipe.samples, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["tables"]["exposed_unclicked"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="use_exposed_unclicked"):
        load_training_data(copy, pipe.features, tiny_config(None, negatives={"use_exposed_unclicked": True}))


def test_rewrites_off_trains_on_clicks_only(pipe):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel

    on = _data(pipe)
    off = _data(pipe, json.dumps({"data": {"use_rewrites": False}}))
    assert set(on.train.frame["kind"]) == {"click", "hard_positive"} and set(off.train.frame["kind"]) == {"click"}
    assert (on.train.rewrite_row >= 0).any() and off.train.rewrite_row is None
    cfg = tiny_config(None)
    model = TwoTowerModel(cfg.model)
    hits = np.flatnonzero(on.train.rewrite_row >= 0)[:32]
    # a rewrite keeps its click's request and user: every non-text array equals the click row's, the query differs
    rw, q = on.train.rewrite, on.train.query
    for i in hits:
        r, own = on.train.rewrite_row[i], on.train.query_row[i]
        for k in rw:
            if k.startswith(("user_", "seq_")) or k == "recent_query_words":
                np.testing.assert_array_equal(rw[k][r], q[k][own], err_msg=k)
    assert any(not np.array_equal(rw["query_words"][on.train.rewrite_row[i]], q["query_words"][on.train.query_row[i]])
               for i in hits)
    from ebr.train.two_tower import Batch

    _, parts = _loss(model, on, cfg, Batch(hits, on.docs.sample(8, np.random.default_rng(0)), None), 1.0)
    assert "loss_rewrite" in parts


def test_a_run_with_every_switch_off_trains_and_records_it(pipe, tmp_path):  # noqa: F811
    from ebr.train.checkpoint import load_two_tower
    from ebr.train.two_tower import train_two_tower

    off = {
        "model": {"use_temperature": False, "query_tower": {"personalization": False, "multi_granular": False}},
        "loss": {"hard_negative_mixing": False, "log_q_correction": False},
        "negatives": {"hard_negatives": False},
        "data": {"use_rewrites": False},
        "train": {"epochs": 1},
    }
    result = train_two_tower(pipe.samples, pipe.features, tmp_path / "m", tiny_config(None, **off))
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    cfg = manifest["config"]
    assert cfg["model"]["query_tower"]["personalization"] is False and cfg["loss"]["log_q_correction"] is False
    assert manifest["summary"]["hard_slots_per_row"] == 0 and manifest["rows"]["rewrite_negatives"] == 0
    assert set(manifest["rows"]["positives_by_kind"]) == {"click"}
    model = load_two_tower(tmp_path / "m")
    assert model.temperature == 1.0 and model.query_tower.user_profile is None
    assert np.isfinite(result["metrics"]["train_loss"])
