"""Query selection: ID-like queries run only the lexical channel, long queries only the embedding channel."""

from __future__ import annotations

import pytest

from ebr.hybrid import CHANNELS, QuerySelection, select_channels


def _split(q: str) -> list[str]:
    return q.split()


@pytest.mark.parametrize(("query", "want"), [
    ("SKU-12345", ("lexical",)),
    ("9787115428028", ("lexical",)),
    ("iphone15", CHANNELS),  # two digits: a model name, not an id
    ("red dress", CHANNELS),
    ("红色 连衣裙", CHANNELS),
    ("a warm waterproof jacket for hiking in the rain with hood", ("ann",)),
    ("AB12 34", CHANNELS),  # two tokens: not an id
])
def test_rule(query, want):
    assert select_channels(query, _split) == want


def test_disabled_rule_runs_every_channel_and_thresholds_move_the_rule():
    assert select_channels("SKU-12345", _split, QuerySelection(enabled=False)) == CHANNELS
    assert select_channels("iphone15", _split, QuerySelection(id_min_digits=2)) == ("lexical",)
    assert select_channels("red summer dress", _split, QuerySelection(long_query_tokens=3)) == ("ann",)


def test_bad_rule_parameters_are_named():
    with pytest.raises(ValueError, match="id_min_digits must be >= 1, got 0"):
        QuerySelection(id_min_digits=0)
    with pytest.raises(ValueError, match="long_query_tokens must be >= 2, got 1"):
        QuerySelection(long_query_tokens=1)
