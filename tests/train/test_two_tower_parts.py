"""Fast checks of the trainer's parts: sparse-aware clipping, optimizers, weighted epochs, tracking helpers and
config merging (no feature store needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ebr.train.optimizers import clip_grad_norm, make_optimizers, split_sparse
from ebr.train.tracking import MlflowConfig, flatten_params, load_checkpoint, mlflow_run, save_checkpoint
from ebr.train.two_tower_config import OptimizerConfig, TwoTowerTrainConfig


def _model(sparse: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(50, 4, sparse=sparse), nn.Linear(4, 1))


def _backward(model: nn.Module) -> None:
    ids = torch.tensor([1, 1, 2, 7, 7, 7])  # repeated rows: an uncoalesced sparse gradient sums them
    model(ids).sum().backward()


def test_clipping_sparse_gradients_matches_the_dense_norm():
    dense, sparse = _model(False), _model(True)
    _backward(dense)
    _backward(sparse)
    assert sparse[0].weight.grad.is_sparse
    want = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.5).item()
    got = clip_grad_norm(sparse.parameters(), 0.5)
    assert got == pytest.approx(want, rel=1e-6)
    assert torch.allclose(sparse[0].weight.grad.to_dense(), dense[0].weight.grad, atol=1e-7)
    assert torch.allclose(sparse[1].weight.grad, dense[1].weight.grad, atol=1e-7)
    norm_after = torch.linalg.vector_norm(torch.cat([p.grad.to_dense().flatten() for p in sparse.parameters()]))
    assert norm_after.item() == pytest.approx(0.5, rel=1e-4)


def test_optimizers_route_sparse_tables_and_step():
    model = _model(True)
    dense, sparse = split_sparse(model)
    assert [p.shape for p in sparse] == [torch.Size([50, 4])] and len(dense) == 2
    adam = make_optimizers(model, OptimizerConfig())
    assert [type(o).__name__ for o in adam] == ["Adam", "SparseAdam"]
    adagrad = make_optimizers(model, OptimizerConfig(name="adagrad", lr=0.1, sparse_lr=None))
    assert len(adagrad) == 1 and [g["lr"] for g in adagrad[0].param_groups] == [0.1, 0.1]
    before = model[0].weight.detach().clone()
    _backward(model)
    for o in adagrad:
        o.step()
    changed = (model[0].weight.detach() != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [1, 2, 7]  # a sparse step touches only the used rows


def test_partial_sections_override_the_trainer_defaults():
    cfg = TwoTowerTrainConfig.model_validate({"model": {"query_tower": {"personalization": False}},
                                              "mlflow": {"tracking_uri": "sqlite:///x.db"}})
    default = TwoTowerTrainConfig()
    assert cfg.model.query_tower.personalization is False
    assert cfg.model.query_tower.hidden_dim == default.model.query_tower.hidden_dim
    assert cfg.model.featurizer == default.model.featurizer
    assert cfg.mlflow.registered_model == default.mlflow.registered_model
    assert TwoTowerTrainConfig.model_validate({"model": {"use_temperature": False}}).loss_config(
    ).effective_temperature == 1.0
    with pytest.raises(ValueError, match="loss.use_temperature"):
        TwoTowerTrainConfig.model_validate({"loss": {"use_temperature": False}})


def test_flatten_params_and_checkpoints(tmp_path):
    flat = flatten_params({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "d": "None", "e": "{}"}
    path = save_checkpoint(tmp_path / "ck.pt", {"model": {"w": torch.ones(2)}, "epoch": 3})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_failing_block_marks_the_run_failed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="t",
                       artifact_location=str(tmp_path / "art"))
    with pytest.raises(RuntimeError, match="boom"), mlflow_run(cfg, "step") as run:
        run.log_metrics({"m": 1.0, "skipped": float("nan")}, step=2)
        run_id = run.run_id
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    got = client.get_run(run_id)
    assert got.info.status == "FAILED" and got.data.metrics == {"m": 1.0}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with mlflow_run(MlflowConfig(), "untracked") as none:
        assert none is None


def test_weighted_epochs_draw_rows_by_weight():
    from ebr.train.two_tower import epoch_order

    class Rows:
        weights = np.array([1.0, 1.0, 4.0, 2.0])

        def __len__(self) -> int:
            return 4

    counts = np.zeros(4)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts += np.bincount(epoch_order(Rows(), True, rng), minlength=4)
    assert np.allclose(counts / counts.sum(), Rows.weights / Rows.weights.sum(), atol=0.01)
    assert sorted(epoch_order(Rows(), False, rng).tolist()) == [0, 1, 2, 3]
