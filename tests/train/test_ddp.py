"""Data-parallel two-tower training (ebr/train/distributed.py, ebr/train/ddp_main.py): launch environment,
sharding, DDP over sparse embedding gradients with gloo (two spawned ranks on loopback), and a two-rank torchrun
run of the tiny pipeline against the one-process run (rank 0 featurizes the day once into the cache, rank 1 maps it).

Tolerance of the two-rank run: |click_recall@50 (2 ranks) - click_recall@50 (1 process)| <= 0.10 on the tiny
day's 48 held-out requests (one request moves recall by about 0.02). Measured with the tiny config, one epoch,
unweighted epochs, train seeds 1..4: differences -0.024, -0.083, +0.017, +0.052 (one process: 0.589, 0.589,
0.557, 0.505); the test runs seed 1. Two ranks take the same number of steps as one process (each rank takes
batch_size / 2 rows per step) but each rank's softmax sees half the in-batch negatives and its own random
negatives, so the runs differ by more than rounding.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ebr.train.distributed import (
    SINGLE,
    DistContext,
    DistributedSetupError,
    launch_env,
    process_group,
    resolve_backend,
    shard_positions,
)
from tests.train.test_two_tower_pipeline import pipe, tiny_config  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RECALL = "valid_click_recall_at_50"
RECALL_TOLERANCE = 0.10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ launch environment


def test_launch_env_reads_torchrun_variables_and_defaults_to_one_process():
    assert launch_env({}) == launch_env({"WORLD_SIZE": "1"})
    assert launch_env({}).world_size == 1 and launch_env({}).rank == 0
    env = launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                      "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "23456"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size, env.master_addr, env.master_port) == (
        3, 4, 1, 2, "10.0.0.5", 23456)


@pytest.mark.parametrize(("env", "message"), [
    ({"WORLD_SIZE": "two"}, r"WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, r"RANK=2 must be < WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_PORT": "29500"}, r"MASTER_ADDR not set: start the trainer with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "-1"}, r"RANK=-1 must be >= 0"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, r"MASTER_PORT=70000 is not a TCP port"),
])
def test_bad_launch_env_names_the_variable(env, message):
    with pytest.raises(DistributedSetupError, match=message):
        launch_env(env)


def test_backend_is_gloo_for_the_cpu_trainer_and_nccl_needs_cuda():
    assert resolve_backend("auto", "cpu") == "gloo" and resolve_backend("gloo") == "gloo"
    with pytest.raises(DistributedSetupError, match="backend 'nccl' reduces CUDA tensors only"):
        resolve_backend("nccl", "cpu")
    with pytest.raises(DistributedSetupError, match="backend must be one of auto, gloo, nccl"):
        resolve_backend("mpi")


def test_one_process_gets_no_process_group_and_no_op_helpers():
    with process_group("auto", environ={}) as ctx:
        assert ctx is SINGLE and not torch.distributed.is_initialized()
    assert (SINGLE.is_main, SINGLE.distributed, SINGLE.per_rank_batch(64)) == (True, False, 64)
    assert SINGLE.seed_key(1, 2, 3) == [1, 2, 3] and SINGLE.torch_seed(7) == 7
    assert SINGLE.on_main(lambda x: x + 1, 1) == 2 and SINGLE.all_gather("a") == ["a"]
    fn = lambda model, x: x  # noqa: E731
    assert SINGLE.wrap_loss(nn.Linear(1, 1), fn) is fn


def test_shards_are_disjoint_equal_and_cover_the_epoch_but_the_tail():
    for n, world in [(2701, 2), (10, 3), (8, 4), (5, 5)]:
        shards = [shard_positions(n, r, world) for r in range(world)]
        assert len({len(s) for s in shards}) == 1 and len(shards[0]) == n // world
        joined = np.concatenate(shards)
        assert len(np.unique(joined)) == len(joined)
        assert sorted(joined.tolist()) == list(range(n - n % world))
    with pytest.raises(ValueError, match="leaves 1 per rank, fewer than 2"):
        DistContext(rank=0, world_size=2).shard(3)
    with pytest.raises(ValueError, match=r"train.batch_size = 3 over 2 ranks leaves 1 row"):
        DistContext(rank=1, world_size=2).per_rank_batch(3)


def test_ranks_draw_their_own_negatives_and_dropout():
    a, b = DistContext(rank=0, world_size=2), DistContext(rank=1, world_size=2)
    assert a.seed_key(1, 1, 2) == [1, 1, 2, 0] and b.seed_key(1, 1, 2) == [1, 1, 2, 1]
    assert a.torch_seed(1) != b.torch_seed(1) and a.torch_seed(1) == DistContext(0, 2).torch_seed(1)


def test_entry_point_reads_the_section_or_a_whole_run_config(tmp_path):
    from ebr.settings import ConfigError
    from ebr.train.ddp_main import load_train_config

    section, whole = tmp_path / "tt.yaml", tmp_path / "run.yaml"
    section.write_text("train:\n  epochs: 2\n")
    whole.write_text("two_tower:\n  train:\n    epochs: 3\nsamples:\n  days_back: 2\n")
    assert load_train_config(section, ["train.batch_size=32"]).train.batch_size == 32
    assert load_train_config(section).train.epochs == 2
    assert load_train_config(whole, ["train.seed=4"]).train.epochs == 3
    assert load_train_config(whole, ["train.seed=4"]).train.seed == 4
    assert load_train_config(None).train.epochs == 1
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------ DDP over sparse gradients (gloo)


class _Towers(nn.Module):
    """Two towers sharing a sparse id table, like the two-tower model's, and a layer no loss uses."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.ids = nn.Embedding(40, 4, sparse=True)
        self.query = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)

    def encode_queries(self, x: torch.Tensor) -> torch.Tensor:
        return self.query(self.ids(x))

    def encode_docs(self, x: torch.Tensor) -> torch.Tensor:
        return self.ids(x)


def _loss(model: _Towers, q: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Several tower calls per step, as batch_loss makes (queries, docs, rewrite queries)."""
    scores = model.encode_queries(q) @ model.encode_docs(d).T
    loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(q))) + model.encode_queries(d).pow(2).mean()
    return loss, {"loss": float(loss.detach())}


def _batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * rank + step)
    return torch.randint(0, 40, (6,), generator=g), torch.randint(0, 40, (6,), generator=g)


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    from ebr.train.optimizers import clip_grad_norm, make_optimizers
    from ebr.train.two_tower_config import OptimizerConfig

    torch.set_num_threads(1)
    env = {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    with process_group("auto", timeout_s=120, environ=env) as ctx:
        model = _Towers()
        step = ctx.wrap_loss(model, _loss)
        opts = make_optimizers(model, OptimizerConfig())
        first = None
        for i in range(3):
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss, _ = step(model, *_batch(rank, i))
            loss.backward()
            if first is None:
                first = {"sparse": model.ids.weight.grad.is_sparse, "ids": model.ids.weight.grad.to_dense(),
                         "query": model.query.weight.grad.clone(), "unused": model.unused.weight.grad}
            clip_grad_norm([p for p in model.parameters() if p.requires_grad], 1.0)
            for o in opts:
                o.step()
        torch.save({"first": first, "state": model.state_dict(), "backend": ctx.backend},
                   Path(out) / f"rank{rank}.pt")


def test_ddp_with_gloo_averages_sparse_gradients_and_keeps_ranks_in_step(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    reference = {"ids": torch.zeros(40, 4), "query": torch.zeros(4, 4)}
    for r in range(2):  # the average of each rank's own gradient, from the same initial weights
        model = _Towers()
        loss, _ = _loss(model, *_batch(r, 0))
        loss.backward()
        reference["ids"] += model.ids.weight.grad.to_dense() / 2
        reference["query"] += model.query.weight.grad / 2
    for got in ranks:
        assert got["backend"] == "gloo"
        assert got["first"]["sparse"]  # still sparse after the all-reduce: SparseAdam takes it
        assert torch.allclose(got["first"]["ids"], reference["ids"], atol=1e-6)
        assert torch.allclose(got["first"]["query"], reference["query"], atol=1e-6)
        assert got["first"]["unused"] is None
    assert all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])


# ------------------------------------------------------------------------- two ranks on the tiny pipeline


@pytest.mark.slow
def test_two_ranks_train_disjoint_shards_and_match_the_one_process_run(pipe, tmp_path):  # noqa: F811
    import yaml

    from ebr.train.featurized_cache import read_featurized
    from ebr.train.retrieval_data import load_training_data
    from ebr.train.two_tower import _ORDER, epoch_order, train_two_tower
    from ebr.train.two_tower_config import TEMPERATURE_FIELDS

    over = {"train": {"epochs": 1}, "data": {"use_weights": False}}  # a permutation: rows are disjoint too
    one = train_two_tower(pipe.samples, pipe.features, tmp_path / "one" / "model", tiny_config(None, **over))

    work, mlflow_dir = tmp_path / "two", tmp_path / "mlflow"
    work.mkdir()
    cfg = tiny_config(mlflow_dir, **over)
    (work / "two_tower.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json",
                                                                       exclude={"loss": set(TEMPERATURE_FIELDS)})))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RANK", "WORLD_SIZE")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "ebr.train.ddp_main", "--samples", str(pipe.samples), "--features", str(pipe.features),
           "--out", str(work / "model"), "--config", str(work / "two_tower.yaml"),
           "--result", str(work / "result.json"), "--record-rows", str(work / "rows.json")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads((work / "result.json").read_text())

    # the same initial weights, then recall within the stated tolerance of the one-process run
    assert two["metrics"][f"untrained_{RECALL}"] == one["metrics"][f"untrained_{RECALL}"]
    assert abs(two["metrics"][RECALL] - one["metrics"][RECALL]) <= RECALL_TOLERANCE, (two["metrics"], one["metrics"])
    assert two["metrics"][RECALL] > two["metrics"][f"untrained_{RECALL}"] + 0.2
    assert two["summary"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert "distributed" not in one["summary"]

    # the day was featurized once: rank 0 built the cache entry, rank 1 memory-mapped it
    (entry,) = list((work / "featurized").iterdir())
    built = json.loads((entry / "manifest.json").read_text())
    assert built["built_by"] == {"rank": 0, "world_size": 2}
    assert proc.stderr.count("training data featurized") == 1
    assert "rank 0 of 2: training data featurized and cached" in proc.stderr
    assert "rank 1 of 2: training data memory-mapped from the featurization cache" in proc.stderr

    # each rank trained on its own shard of the epoch order: disjoint, the same size, together the whole epoch
    # but the one row (2701 % 2) left out so that both ranks take the same number of steps
    data = read_featurized(entry)
    assert data.counts == load_training_data(pipe.samples, pipe.features, cfg).counts
    order = epoch_order(data.train, False, np.random.default_rng([cfg.train.seed, 1, _ORDER]))
    record = json.loads((work / "rows.json").read_text())
    assert record["world_size"] == 2
    (r0,), (r1,) = record["ranks"]
    assert (r0["rank"], r1["rank"], r0["epoch"], r1["epoch"]) == (0, 1, 1, 1)
    assert len(r0["rows"]) == len(r1["rows"]) == len(order) // 2
    assert set(r0["positions"]).isdisjoint(r1["positions"])
    assert sorted(r0["positions"] + r1["positions"]) == list(range(len(order) - len(order) % 2))
    for r in (r0, r1):
        assert r["rows"] == order[r["positions"]].tolist()
    assert set(r0["rows"]).isdisjoint(r1["rows"])
    assert set(r0["rows"]) | set(r1["rows"]) == set(order[: len(order) - len(order) % 2].tolist())

    # rank 0 alone wrote the model directory (and the cache beside it) and tracked one MLflow run
    assert {p.name for p in work.iterdir()} == {"model", "featurized", "result.json", "rows.json", "two_tower.yaml"}
    names = {p.name for p in (work / "model").iterdir()}
    assert {"checkpoint.pt", "model_config.json", "export", "metrics.json", "curves.png", "manifest.json"} <= names
    manifest = json.loads((work / "model" / "manifest.json").read_text())
    assert manifest["summary"]["distributed"]["world_size"] == 2 and manifest["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [manifest["mlflow_run_id"]]
    assert runs[0].data.metrics[f"final.{RECALL}"] == two["metrics"][RECALL]
