"""The merge's lexical weight chosen on a day: the rule (beat both channels, then the best sum), and the
cross-fitting that makes the `hybrid` row an out-of-sample estimate (each fold of queries merged with the weight
the other fold chose)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from ebr.evaluate import EvalSet, evaluate_systems
from ebr.evaluate.hybrid import (
    TUNE_RECALL,
    TUNE_TOP,
    HybridVariant,
    choose_weight,
    hybrid_ids,
    tune_lexical_weight,
)
from tests.evaluate.handmade import make_evalset

R, T = TUNE_RECALL, TUNE_TOP


def test_the_weight_that_beats_both_channels_wins_over_a_better_sum():
    ann, lexical = {R: 0.55, T: 0.68}, {R: 0.34, T: 0.73}
    merges = {0.5: {R: 0.56, T: 0.75}, 1.0: {R: 0.545, T: 0.81}, 2.0: {R: 0.50, T: 0.82}}
    assert choose_weight(merges, ann, lexical) == 0.5, "1 and 2 lose coverage against the embedding channel"
    # when none beats both, the best sum; a tie goes to the smaller weight
    merges = {0.5: {R: 0.50, T: 0.70}, 1.0: {R: 0.52, T: 0.70}, 2.0: {R: 0.51, T: 0.71}}
    assert choose_weight(merges, ann, lexical) == 1.0
    assert choose_weight({1.0: {R: 0.6, T: 0.8}, 2.0: {R: 0.6, T: 0.8}}, ann, lexical) == 1.0
    assert choose_weight({1.0: {R: None, T: 0.8}}, ann, lexical) == 1.0  # an unmeasured metric counts as 0


@pytest.fixture(scope="module")
def day():
    """60 requests (distinct queries): the embedding channel finds the relevant docs in the middle of its list,
    BM25 puts one at the top and junk after it, so a heavy lexical weight buys the top and costs coverage."""
    rng = np.random.default_rng(7)
    n, k = 60, 100
    queries = [f"query {i} {rng.integers(1_000_000)}" for i in range(n)]
    labels, ann_ids, lex_ids = [], np.zeros((n, k), np.int64), np.zeros((n, k), np.int64)
    for i in range(n):
        base = 10_000 * (i + 1)
        relevant = base + np.arange(12)
        labels.append({int(d): int(rng.integers(1, 4)) for d in relevant})
        order = base + 100 + rng.permutation(400)[:k]
        pos = rng.choice(np.arange(10, 40), size=8, replace=False)
        order[pos] = relevant[:8]
        ann_ids[i] = order
        junk = base + 1000 + rng.permutation(400)[:k]
        junk[0] = relevant[int(rng.integers(8, 12))]  # a relevant doc the embedding channel missed
        lex_ids[i] = junk
    ann_sc = np.sort(rng.random((n, k)))[:, ::-1].astype(np.float32)
    lex_sc = np.sort(rng.random((n, k)) * 10)[:, ::-1].astype(np.float32)
    ev = make_evalset(queries, labels=labels)
    return ev, (ann_ids, ann_sc), (lex_ids, lex_sc), k


def _metrics(ev: EvalSet, rows: np.ndarray, systems: dict[str, np.ndarray]) -> dict[str, dict]:
    sub = EvalSet(ev.day, ev.frame.iloc[rows].reset_index(drop=True))
    rep = evaluate_systems(sub, {n: s[rows] for n, s in systems.items()}, (10, 100))
    return {n: {key: rep.systems[n][key].value for key in (R, T)} for n in systems}


def test_tuning_chooses_by_the_rule_and_cross_fits_by_query(day):
    ev, ann, lex, k = day
    grid = (0.25, 1.0, 4.0)
    tuning = tune_lexical_weight(ev, ann, lex, k, (10, 100), str.split, grid=grid, folds=2)
    merged = {w: hybrid_ids(ev.queries, ann, lex, k, HybridVariant("x", lexical_weight=w), str.split) for w in grid}
    systems = {f"{w:g}": ids for w, ids in merged.items()} | {"ann": ann[0], "lexical": lex[0]}

    everyone = _metrics(ev, np.arange(len(ev)), systems)
    want = choose_weight({w: everyone[f"{w:g}"] for w in grid}, everyone["ann"], everyone["lexical"])
    assert tuning.lexical_weight == want == 1.0, "0.25 never reaches the top, 4 loses the coverage"
    assert tuning.grid == {f"{w:g}": everyone[f"{w:g}"] for w in grid}
    # the heavy weight trades coverage for the top: the tuned one keeps coverage at least the embedding's
    assert everyone["4"][R] < everyone["ann"][R] <= everyone[f"{want:g}"][R]

    fold = np.array([zlib.crc32(q.encode()) % 2 for q in ev.queries])
    assert 0 < fold.sum() < len(fold)
    for f in (0, 1):
        other = _metrics(ev, np.flatnonzero(fold != f), systems)
        chosen = choose_weight({w: other[f"{w:g}"] for w in grid}, other["ann"], other["lexical"])
        assert tuning.fold_weights[f] == chosen
        assert (tuning.weights[fold == f] == chosen).all()
    # the per-request weights merge each request as hybrid_ids would with that request's weight
    lists = hybrid_ids(ev.queries, ann, lex, k, HybridVariant("x"), str.split, lexical_weights=tuning.weights)
    for i in (0, 17, 59):
        assert lists[i].tolist() == merged[float(tuning.weights[i])][i].tolist()
    np.testing.assert_array_equal(tuning.ids, lists)  # the reported `hybrid` lists are exactly these


def test_bad_tuning_arguments_are_refused(day):
    ev, ann, lex, k = day
    with pytest.raises(ValueError, match="folds"):
        tune_lexical_weight(ev, ann, lex, k, (10, 100), str.split, folds=1)
    with pytest.raises(ValueError, match="weight grid"):
        tune_lexical_weight(ev, ann, lex, k, (10, 100), str.split, grid=(-1.0,))
