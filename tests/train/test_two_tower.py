"""train_two_tower on the tiny pipeline: learning, determinism, warm start, the model directory and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train.test_two_tower_pipeline import pipe, tiny_config, trained  # noqa: F401

pytestmark = pytest.mark.slow
RECALL = "valid_click_recall_at_50"


def test_training_lowers_the_loss_and_beats_the_untrained_model(pipe):  # noqa: F811
    result = trained(pipe, "base")
    history = result["history"]
    assert [int(h["epoch"]) for h in history] == [0, 1, 2, 3]
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    best = result["summary"]["best_epoch"]
    assert best >= 1 and history[best][RECALL] > history[0][RECALL]
    assert result["metrics"][RECALL] == history[best][RECALL]
    assert result["metrics"][f"untrained_{RECALL}"] == history[0][RECALL]


def test_model_directory_is_complete_and_loads_back(pipe):  # noqa: F811
    from ebr.models.export import load_exported
    from ebr.train.checkpoint import load_two_tower

    result = trained(pipe, "base")
    out = Path(result["model_dir"])
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint.pt", "model_config.json", "export", "metrics.json", "curves.png", "manifest.json"} <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dir left beside it
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_version"] == result["model_version"] and result["model_version"].startswith(pipe.day)
    assert manifest["day"] == pipe.day and manifest["train_days"][-1] < pipe.day
    assert manifest["rows"]["train_rows"] > 0 and manifest["seed"] == {"model": 5, "train": 1}
    assert manifest["config"]["train"]["batch_size"] == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 4
    bundle = load_exported(out / "export")
    assert bundle.model_version == result["model_version"]
    from ebr.models.inputs import featurize_queries
    from ebr.models.runtime import load_query_tower_onnx, parity_rows

    onnx_tower = load_query_tower_onnx(out / "export")  # converted for serving, checked against the program
    x = featurize_queries(parity_rows(32, seed=3), bundle.featurizer)
    assert (onnx_tower(x) - bundle["query_tower"](x)).abs().max().item() <= 1e-5
    model = load_two_tower(out)
    assert model.config.query_tower.hidden_dim == 16


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(pipe, tmp_path):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.retrieval_data import load_training_data
    from ebr.train.two_tower import fit_two_tower

    cfg = tiny_config(None, train={"epochs": 1})
    data = load_training_data(pipe.samples, pipe.features, cfg)

    def weights(c):
        model = TwoTowerModel(c.model)
        fit_two_tower(model, data, c)
        return model.state_dict()

    a, b = weights(cfg), weights(cfg)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = weights(tiny_config(None, train={"epochs": 1, "seed": 2}))
    assert any(not torch.equal(a[k], other[k]) for k in a)


def test_warm_start_loads_the_previous_weights(pipe, tmp_path):  # noqa: F811
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.checkpoint import load_two_tower, warm_start
    from ebr.train.two_tower import train_two_tower

    first = trained(pipe, "base")
    previous = load_two_tower(first["model_dir"]).state_dict()
    fresh = TwoTowerModel(tiny_config(None).model)
    assert any(not torch.equal(fresh.state_dict()[k], previous[k]) for k in previous)
    info = warm_start(fresh, first["model_dir"])
    assert info["loaded"] == len(previous) and not info["shape_mismatch"]
    assert all(torch.equal(fresh.state_dict()[k], previous[k]) for k in previous)

    cfg = tiny_config(None, train={"epochs": 1})
    second = train_two_tower(pipe.samples, pipe.features, tmp_path / "warm", cfg, warm_start=first["model_dir"])
    # before any step the warm-started model is the previous best model: same validation recall
    assert second["history"][0][RECALL] == pytest.approx(first["metrics"][RECALL], abs=1e-12)
    manifest = json.loads((tmp_path / "warm" / "manifest.json").read_text())
    assert manifest["warm_start"]["loaded"] == len(previous)

    other = TwoTowerModel(tiny_config(None, model={"query_tower": {"hidden_dim": 8, "out_dim": 8},
                                                  "doc_tower": {"out_dim": 8}}).model)
    info = warm_start(other, first["model_dir"])
    assert info["shape_mismatch"] and info["loaded"] < len(previous)


def test_mlflow_run_has_params_epoch_metrics_files_and_a_registered_version(pipe):  # noqa: F811
    from mlflow.tracking import MlflowClient

    result = trained(pipe, "base")
    client = MlflowClient(tracking_uri=f"sqlite:///{pipe.base / 'base'}/mlflow.db")
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.name"] == "adam" and run.data.params["loss.log_q_correction"] == "False"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, RECALL)]
    assert steps == [0, 1, 2, 3]
    files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/checkpoint.pt", "model/curves.png", "model/manifest.json", "model/export"} <= files
    assert result["registered_version"] is not None
    version = client.get_model_version("ebr-two-tower", result["registered_version"])
    assert version.run_id == run.info.run_id


def test_each_training_registers_a_new_version(pipe, tmp_path):  # noqa: F811
    from ebr.train.two_tower import train_two_tower

    cfg = tiny_config(tmp_path, train={"epochs": 1}, mlflow={"registered_model": "ebr-two-tower-test"})
    versions = [train_two_tower(pipe.samples, pipe.features, tmp_path / f"m{i}", cfg)["registered_version"]
                for i in range(2)]
    assert versions == ["1", "2"]


def test_a_bad_output_dir_is_refused_and_left_untouched(pipe, tmp_path):  # noqa: F811
    from ebr.train.two_tower import train_two_tower

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="manifest.json"):
        train_two_tower(pipe.samples, pipe.features, out, tiny_config(None, train={"epochs": 1}))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_config_errors_name_the_field(pipe, tmp_path):  # noqa: F811
    from ebr.train.two_tower import train_two_tower

    with pytest.raises(ValueError, match="loss.temperature"):
        tiny_config(None, loss={"temperature": 3.0})
    with pytest.raises(ValueError, match="multi_objective: the retrieval model has no multi-objective heads"):
        tiny_config(None, model={"multi_objective": {"enabled": True}})  # not an option any more
    empty = tmp_path / "samples"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        train_two_tower(empty, pipe.features, tmp_path / "m", tiny_config(None))


def test_untracked_runs_are_noted(pipe, tmp_path, monkeypatch):  # noqa: F811
    from ebr.train.two_tower import train_two_tower

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train_two_tower(pipe.samples, pipe.features, tmp_path / "m", tiny_config(None, train={"epochs": 1}))
    assert result["mlflow_run_id"] is None and result["registered_version"] is None
    assert any("not tracked" in n for n in result["notes"])
    assert np.isfinite(result["metrics"]["train_loss"])
