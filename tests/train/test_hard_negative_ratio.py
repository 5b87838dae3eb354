"""The easy:hard ratio the trainer uses: exactly the configured one when the requests have enough mined
negatives, and a reported shortfall when they do not (synthetic rows through the trainer's own featurization)."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.train.two_tower import HardNegativeStats, NegativeSampler, easy_hard_line, fit_two_tower, hard_slots_for
from tests.train.synthetic import small_config, training_data

# batch 8 and 193 random negatives: 7 + 193 = 200 easy candidates per row, 2 hard slots at 100:1
RATIO_100 = {"negatives": {"random_negatives": 193, "easy_hard_ratio": 100.0}, "train": {"batch_size": 8}}


def _epoch(data, cfg, seed: int = 0) -> tuple[HardNegativeStats, list]:
    sampler = NegativeSampler(data, cfg)
    stats = HardNegativeStats(cfg.negatives.easy_hard_ratio)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.train))
    b = cfg.train.batch_size
    batches = [sampler.batch(data.train, order[s : s + b], rng) for s in range(0, len(order), b)]
    for batch in batches:
        stats.add(batch)
    return stats, batches


def test_hard_slots_follow_the_ratio():
    assert hard_slots_for(200, 100.0) == 2
    assert hard_slots_for(1023, 100.0) == 11  # the defaults: batch 512, 512 random negatives (10.23 a row)
    assert hard_slots_for(767, 100.0) == 8  # batch 256 (7.67 a row)
    assert hard_slots_for(511, 50.0) == 11  # the hard-heavy ablation row
    assert hard_slots_for(50, 100.0) == 1


def test_the_effective_ratio_is_the_configured_one_with_enough_mined_negatives():
    cfg = small_config(**RATIO_100)
    data = training_data(cfg, n_rows=32, rows_per_request=2, mined=[5])
    stats, batches = _epoch(data, cfg)
    summary = stats.summary()
    assert summary["effective_easy_hard_ratio"] == pytest.approx(100.0)
    assert summary["hard_negatives_per_row"] == 2 and summary["easy_candidates_per_row"] == 200
    assert summary["hard_shortfall"]["missing_slots"] == 0 and summary["hard_slots_filled"] == 1.0
    for batch in batches:
        assert batch.hard_slots == 2 and batch.per_row.shape == (8, 2) and batch.per_row_valid.all()
        for i, row in enumerate(batch.idx):
            own = data.hard[data.train.request_code[row]]
            picked = batch.per_row[i]
            # each row's hard candidates are its own request's mined negatives, all different
            assert set(picked.tolist()) <= set(own.tolist()) and len(set(picked.tolist())) == 2
    # another ratio, another slot count: 200 / 40 = 5 slots
    cfg40 = small_config(**{**RATIO_100, "negatives": {"random_negatives": 193, "easy_hard_ratio": 40.0}})
    stats40, _ = _epoch(data, cfg40)
    assert stats40.summary()["effective_easy_hard_ratio"] == pytest.approx(40.0)


def test_a_ratio_that_does_not_divide_the_easy_candidates_is_still_exact_over_training():
    # batch 8 and 160 random negatives: 167 easy candidates a row, 1.67 hard slots at 100:1 (rounding each row
    # up to 2 would train at 83.5:1)
    cfg = small_config(**{**RATIO_100, "negatives": {"random_negatives": 160, "easy_hard_ratio": 100.0}})
    data = training_data(cfg, n_rows=400, rows_per_request=2, mined=[5])
    stats, batches = _epoch(data, cfg)
    summary = stats.summary()
    assert summary["effective_easy_hard_ratio"] == pytest.approx(100.0, rel=1e-3)
    assert summary["hard_slots_given_per_row"] == pytest.approx(1.67, rel=1e-3)
    assert summary["hard_slots_filled"] == 1.0 and summary["hard_shortfall"]["missing_slots"] == 0
    assert easy_hard_line(summary).startswith("easy:hard 100:1 effective (configured 100.0:1")
    given = np.concatenate([b.hard_allotted for b in batches])
    assert set(given.tolist()) == {1, 2} and all(b.per_row.shape == (8, 2) for b in batches)
    for b in batches:  # each row's candidates are exactly its allotment of its own request's mined negatives
        assert (b.per_row_valid.sum(axis=1) == b.hard_allotted).all()
    # which rows get the extra slot is drawn (not always the first rows), and the same seed draws the same
    assert len({tuple(np.flatnonzero(b.hard_allotted == 2)) for b in batches}) > 1
    again = np.concatenate([b.hard_allotted for b in _epoch(data, cfg)[1]])
    assert (again == given).all()


def test_a_shortfall_of_mined_negatives_is_reported_not_hidden():
    cfg = small_config(**{**RATIO_100, "negatives": {**RATIO_100["negatives"], "refill_hard_slots": False}})
    # requests alternate: 5 mined, 1 mined, none
    data = training_data(cfg, n_rows=24, rows_per_request=2, mined=[5, 1, 0])
    stats, batches = _epoch(data, cfg)
    s = stats.summary()
    hard_per_request = [min(2, n) for n in (5, 1, 0)]
    rows_each = 24 // 3
    assert s["hard_shortfall"] == {"rows_short": 2 * rows_each, "rows_without_hard": rows_each,
                                   "missing_slots": rows_each * (2 - 1) + rows_each * 2, "rows": 24,
                                   "refilled": 0}
    assert s["hard_negatives_per_row"] == pytest.approx(sum(hard_per_request) / 3)
    assert s["effective_easy_hard_ratio"] == pytest.approx(200 * 24 / (rows_each * sum(hard_per_request)))
    assert s["effective_easy_hard_ratio"] > 100.0 and s["hard_slots_filled"] == pytest.approx(0.5)
    # the run summary's line shows the shortfall instead of the configured 100:1
    line = easy_hard_line(s)
    ratio = s["effective_easy_hard_ratio"]
    assert line == f"easy:hard {ratio:.0f}:1 effective (configured 100.0:1, hard slots 50% filled)"
    assert easy_hard_line({**s, "effective_easy_hard_ratio": None}).startswith("easy:hard -, no hard negative")
    # empty slots are masked, never a repeated or foreign doc
    for batch in batches:
        for i, row in enumerate(batch.idx):
            n = len(data.hard[data.train.request_code[row]])
            assert batch.per_row_valid[i].sum() == min(2, n)


def test_slots_a_request_cannot_fill_go_to_other_rows_of_the_batch():
    cfg = small_config(**RATIO_100)  # refill_hard_slots is the default
    # requests alternate: 16 mined, 1 mined, none; each batch of 8 rows asks for 16 slots and its rows' requests
    # hold enough (a third of the rows can take 16) to fill them all
    data = training_data(cfg, n_rows=24, rows_per_request=2, mined=[16, 1, 0])
    stats, batches = _epoch(data, cfg)
    s = stats.summary()
    assert s["effective_easy_hard_ratio"] == pytest.approx(100.0) and s["hard_slots_filled"] == 1.0
    assert easy_hard_line(s).startswith("easy:hard 100:1 effective (configured 100.0:1, hard slots 100% filled)")
    rows_each = 24 // 3
    # the empty slots (rows with 1 mined: 1 each, rows with none: 2 each) went to the rows with 16 mined
    assert s["hard_shortfall"]["refilled"] == rows_each * 1 + rows_each * 2
    assert s["hard_shortfall"]["missing_slots"] == 0
    for batch in batches:
        assert batch.hard_per_row.sum() == batch.hard_allotted.sum()
        assert batch.per_row.shape[1] == batch.hard_slots == batch.hard_per_row.max() >= 2
        for i, row in enumerate(batch.idx):
            own = data.hard[data.train.request_code[row]]
            picked = batch.per_row[i, : batch.hard_per_row[i]]
            # a row never holds more than its request mined, never a repeat, never another request's doc
            assert len(set(picked.tolist())) == len(picked) <= len(own)
            assert set(picked.tolist()) <= set(own.tolist())
            assert not batch.per_row_valid[i, batch.hard_per_row[i]:].any()
    # the same seed refills the same way
    again = [b.per_row for b in _epoch(data, cfg)[1]]
    assert all((a == b.per_row).all() for a, b in zip(again, batches, strict=True))


def test_a_batch_whose_requests_run_out_keeps_the_rest_empty():
    cfg = small_config(**RATIO_100)
    # every request mined 1: 8 rows x 2 slots asks for 16, the batch holds 8
    data = training_data(cfg, n_rows=16, rows_per_request=2, mined=[1])
    s = _epoch(data, cfg)[0].summary()
    assert s["hard_slots_filled"] == pytest.approx(0.5) and s["hard_shortfall"]["refilled"] == 0
    assert s["effective_easy_hard_ratio"] == pytest.approx(200.0)


def test_no_mined_negatives_means_no_hard_slots_and_no_ratio():
    cfg = small_config(**RATIO_100)
    data = training_data(cfg, n_rows=16, rows_per_request=2, mined=[5])
    data.hard = None
    stats, batches = _epoch(data, cfg)
    assert all(b.per_row is None for b in batches)
    assert stats.summary()["effective_easy_hard_ratio"] is None and stats.summary()["hard_slots_filled"] == 0.0


def test_training_reports_the_effective_ratio_in_its_summary():
    cfg = small_config(**RATIO_100)
    data = training_data(cfg, n_rows=32, rows_per_request=2, mined=[6])
    from ebr.models.two_tower import TwoTowerModel

    history, summary = fit_two_tower(TwoTowerModel(cfg.model), data, cfg)
    assert summary["effective_easy_hard_ratio"] == pytest.approx(100.0)
    assert summary["hard_slots_per_row"] == 2 and summary["configured_easy_hard_ratio"] == 100.0
    assert summary["hard_shortfall"]["missing_slots"] == 0 and summary["hard_shortfall"]["rows"] == 32
    assert np.isfinite(history[-1]["train_loss"])
