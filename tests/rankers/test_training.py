"""The training loop: same seeds give the same weights, the loss goes down, the caller's RNG is untouched."""

from __future__ import annotations

import numpy as np
import torch

from ebr.models.rankers.coarse_ranker import CoarseRanker
from ebr.models.rankers.fine_ranker import FineRanker
from ebr.models.rankers.tensors import TASKS
from ebr.train.distill import DistillConfig, distillation_loss
from ebr.train.losses import multitask_bce_loss
from ebr.train.rankers import RankerTrainConfig, fit, score_all_pairs, split_requests
from tests.rankers.conftest import coarse_config, fine_config


def _train_teacher(t, model_seed: int, train_seed: int, epochs: int = 1) -> tuple[FineRanker, list[dict]]:
    model = FineRanker(fine_config(seed=model_seed))
    cfg = RankerTrainConfig(epochs=epochs, batch_requests=16, seed=train_seed, num_threads=1, progress=False)

    def loss_fn(b):
        logits = model.task_logits(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
        return multitask_bce_loss(logits, b.labels, [1.0] * len(TASKS)), {}

    return model, fit(model, t, cfg, loss_fn, lambda: {}, "test")


def _weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_same_seeds_give_the_same_weights_and_other_seeds_do_not(small_tensors):
    a, _ = _train_teacher(small_tensors, 0, 0)
    b, _ = _train_teacher(small_tensors, 0, 0)
    c, _ = _train_teacher(small_tensors, 0, 1)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_training_lowers_the_loss_and_leaves_the_global_rng_alone(small_tensors):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    _, history = _train_teacher(small_tensors, 0, 0, epochs=3)
    assert torch.equal(torch.rand(3), before)
    losses = [h["train_loss"] for h in history]
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0]
    assert losses[-1] < losses[0]


def test_student_with_distillation_is_deterministic_and_moves_towards_the_teacher(small_tensors):
    teacher = torch.from_numpy(np.random.default_rng(0).normal(size=small_tensors.n_pairs).astype(np.float32))
    cfg = RankerTrainConfig(epochs=2, batch_requests=16, num_threads=1, progress=False)
    distill = DistillConfig(alpha=0.0, beta=1.0)

    def run() -> tuple[CoarseRanker, list[dict]]:
        model = CoarseRanker(coarse_config())

        def loss_fn(b):
            s = model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
            return distillation_loss(distill, b.lists(s), b.lists(teacher[b.pair_index]), b.lists(b.labels[:, 0]),
                                     b.mask)

        return model, fit(model, small_tensors, cfg, loss_fn, lambda: {}, "test")

    (m1, h1), (m2, _) = run(), run()
    w1, w2 = _weights(m1), _weights(m2)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1[-1]["train_soft"] < h1[0]["train_soft"]
    np.testing.assert_array_equal(score_all_pairs(m1, small_tensors), score_all_pairs(m2, small_tensors))


def test_validation_split_is_stable_and_disjoint(rows):
    train, valid = split_requests(rows, 0.2)
    again = split_requests(rows, 0.2)
    assert np.array_equal(train, again[0]) and np.array_equal(valid, again[1])
    assert not set(train) & set(valid) and len(train) + len(valid) == rows.n_requests
    assert 0.1 < len(valid) / rows.n_requests < 0.3
    assert len(split_requests(rows, 0.0)[1]) == 0


def test_requests_per_epoch_bounds_each_epoch_and_draws_afresh(small_tensors):
    model = FineRanker(fine_config())
    seen: list[set[int]] = []

    def loss_fn(b):
        seen[-1].update(small_tensors.request_row[b.pair_index].tolist())
        logits = model.task_logits(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
        return multitask_bce_loss(logits, b.labels, [1.0] * len(TASKS)), {}

    def new_epoch() -> dict:
        seen.append(set())
        return {}

    new_epoch()
    cfg = RankerTrainConfig(epochs=2, batch_requests=8, requests_per_epoch=12, num_threads=1, progress=False)
    fit(model, small_tensors, cfg, loss_fn, new_epoch, "test")
    first, second = seen[0], seen[1]
    assert len(first) == 12 and len(second) == 12 and first != second
