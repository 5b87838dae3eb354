"""Stable hashed vocabularies: same ids in every process, never out of vocabulary, 0 only for padding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebr.text import HashedVocab, stable_hash64

TOKENS = ["红色", "连衣裙", "iphone15", "~red", "color=red", "", "🙂", "a" * 300]


def _ids_in_subprocess(hash_seed: str) -> dict:
    code = (
        "import json, sys\n"
        "from ebr.text import HashedVocab, TextAnalyzer\n"
        "v = HashedVocab('word', 1000)\n"
        f"toks = {TOKENS!r}\n"
        "a = TextAnalyzer()\n"
        "words = list(a.analyze('红色连衣裙 iPhone15手机壳').words)\n"
        "print(json.dumps({'ids': [v.id(t) for t in toks], 'words': words}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return {"out": json.loads(res.stdout), "stderr": res.stderr}


def test_ids_and_segmentation_are_identical_across_processes_with_different_hash_seeds():
    from ebr.text import TextAnalyzer

    here = {
        "ids": [HashedVocab("word", 1000).id(t) for t in TOKENS],
        "words": list(TextAnalyzer().analyze("红色连衣裙 iPhone15手机壳").words),
    }
    first = _ids_in_subprocess("1")
    second = _ids_in_subprocess("12345")
    assert first["out"] == second["out"] == here
    # jieba's "Building prefix dict ..." chatter is silenced.
    assert "prefix dict" not in first["stderr"]
    assert first["stderr"].strip() == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=1, max_value=5000))
def test_any_string_maps_into_the_buckets_and_never_to_padding(token, buckets):
    vocab = HashedVocab("tag", buckets)
    i = vocab.id(token)
    assert 1 <= i <= buckets
    assert vocab.num_embeddings == buckets + 1


def test_namespaces_hash_independently():
    a, b = HashedVocab("word", 10_000), HashedVocab("brand", 10_000)
    toks = [f"token{i}" for i in range(200)]
    same = sum(a.id(t) == b.id(t) for t in toks)
    assert same < 5
    assert stable_hash64("x", "word") != stable_hash64("x", "brand")


def test_buckets_fill_evenly():
    vocab = HashedVocab("word", 10)
    counts = Counter(vocab.id(f"w{i}") for i in range(20_000))
    assert set(counts) == set(range(1, 11))
    assert all(1700 < c < 2300 for c in counts.values())


def test_ids_pad_with_zero_and_truncate():
    vocab = HashedVocab("word", 50)
    padded = vocab.ids(["a", "b"], max_len=5)
    assert padded[2:] == [0, 0, 0] and all(x > 0 for x in padded[:2])
    assert vocab.ids(["a", "b", "c", "d"], max_len=2) == [vocab.id("a"), vocab.id("b")]
    assert vocab.ids([], max_len=3) == [0, 0, 0]


@pytest.mark.parametrize("buckets", [0, -3])
def test_bad_bucket_count_is_rejected_by_name(buckets):
    with pytest.raises(ValueError, match="buckets"):
        HashedVocab("word", buckets)


def test_namespace_longer_than_blake2b_personalization_is_rejected():
    with pytest.raises(ValueError, match="namespace"):
        HashedVocab("a_namespace_that_is_too_long", 10)
