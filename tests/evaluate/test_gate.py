"""The publish gate's rule: better, worse beyond tolerance, within tolerance, first run, unmeasured keys."""

from __future__ import annotations

import pytest

from ebr.evaluate import MetricValue, compare

KEYS = ["click_recall@100", "true_recall@100"]


def _m(click: float, true: float, n_true: int = 50) -> dict[str, MetricValue]:
    return {"click_recall@100": MetricValue(click, 200), "true_recall@100": MetricValue(true, n_true)}


def test_better_model_publishes() -> None:
    d = compare(_m(0.50, 0.40), _m(0.45, 0.38), KEYS, tolerance=0.005)
    assert d.publish
    assert len(d.reasons) == 2 and all("not worse" in r for r in d.reasons)


def test_worse_beyond_tolerance_blocks_and_names_the_metric() -> None:
    d = compare(_m(0.50, 0.37), _m(0.45, 0.38), KEYS, tolerance=0.005)
    assert not d.publish
    blocking = [r for r in d.reasons if "worse beyond tolerance" in r]
    assert len(blocking) == 1 and blocking[0].startswith("true_recall@100")


def test_drop_within_tolerance_publishes() -> None:
    # a drop of exactly the tolerance is allowed
    d = compare(_m(0.445, 0.378), _m(0.45, 0.38), KEYS, tolerance=0.005)
    assert d.publish
    assert not compare(_m(0.445, 0.378), _m(0.45, 0.38), KEYS, tolerance=0.001).publish


def test_first_run_always_publishes() -> None:
    d = compare(_m(0.0, 0.0), None, KEYS, tolerance=0.0)
    assert d.publish and "first run" in d.reasons[0]


def test_lower_is_better_for_filtered_share() -> None:
    new = {"filtered_share@100": 0.30}
    assert compare(new, {"filtered_share@100": 0.35}, ["filtered_share@100"], tolerance=0.0).publish
    assert not compare(new, {"filtered_share@100": 0.25}, ["filtered_share@100"], tolerance=0.01).publish


def test_unmeasured_metrics() -> None:
    # too few labelled requests on both sides: true recall is skipped, click recall decides
    d = compare(_m(0.5, 0.1, n_true=3), _m(0.4, 0.9, n_true=3), KEYS, tolerance=0.0, min_requests=10)
    assert d.publish and any("skipped" in r for r in d.reasons)
    # measured for the champion but not for the new model: blocks
    d = compare(_m(0.5, 0.1, n_true=3), _m(0.4, 0.9, n_true=30), KEYS, tolerance=0.0, min_requests=10)
    assert not d.publish
    # nothing comparable at all: does not publish
    d = compare(_m(0.5, 0.1, n_true=0), _m(0.4, 0.9, n_true=0), ["true_recall@100"], 0.0, min_requests=1)
    assert not d.publish


def test_missing_key_is_an_error_naming_it() -> None:
    with pytest.raises(KeyError, match="ndcg@10"):
        compare(_m(0.5, 0.4), _m(0.5, 0.4), ["ndcg@10"], tolerance=0.0)
