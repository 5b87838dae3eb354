"""Saving and loading a lexical index: identical results after a round trip, reproducible files, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ebr.artifacts.checksums import sha256_file
from ebr.lexical import (
    MANIFEST,
    LexicalIndex,
    LexicalIndexError,
    load_lexical_index,
    read_lexical_manifest,
    save_lexical_index,
)

TITLES = [
    "红色 连衣裙 夏季 新款",
    "跑步鞋 男款 透气",
    "红色 跑步鞋",
    "连衣裙 长款 显瘦 红色 夏季 连衣裙",
    "蓝牙 耳机 降噪",
    "夏季 防晒衣",
    "wireless earbuds noise cancelling",
    "running shoes men",
]
DOC_IDS = [50, 30, 90, 120, 200, 310, 7, 64]
QUERIES = ["红色 连衣裙", "夏季 夏季 跑步鞋", "耳机", "手机 壳", "红色连衣裙夏季", "Running Shoes", "noise"]


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.build(DOC_IDS, TITLES)


@pytest.fixture
def saved(tmp_path, index) -> Path:
    save_lexical_index(index, tmp_path / "lexical")
    return tmp_path / "lexical"


def test_round_trip_gives_identical_results(index, saved) -> None:
    loaded = load_lexical_index(saved)
    assert (loaded.n_docs, loaded.n_vocab, loaded.k1, loaded.b) == (index.n_docs, index.n_vocab, 1.5, 0.75)
    assert loaded.tokenizer == "words"
    np.testing.assert_array_equal(loaded.doc_ids, DOC_IDS)
    for got, want in zip(loaded.search_many(QUERIES, 5), index.search_many(QUERIES, 5), strict=True):
        np.testing.assert_array_equal(got, want)
    assert (index.search_many(QUERIES, 5)[0][:, 0] != -1).sum() == len(QUERIES) - 1  # only "手机 壳" finds nothing
    manifest = read_lexical_manifest(saved)
    assert manifest["n_docs"] == len(DOC_IDS) and manifest["n_vocab"] == index.n_vocab
    assert (manifest["method"], manifest["idf_method"], manifest["tokenizer"]) == ("atire", "robertson", "words")
    assert sorted(p.name for p in saved.iterdir()) == sorted([MANIFEST, manifest["doc_ids_file"], *manifest["files"]])


def test_saving_replaces_an_earlier_index_and_never_an_unrelated_directory(index, saved, tmp_path) -> None:
    other = LexicalIndex.build([1, 2, 3], ["alpha", "beta", "gamma"], tokenize=str.split)
    save_lexical_index(other, saved)
    assert load_lexical_index(saved).search("beta", 2)[0].tolist() == [2, -1]
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError, match="holds no lexical.json"):
        save_lexical_index(index, unrelated)
    assert (unrelated / "keep.txt").is_file()


def test_an_index_with_an_unregistered_tokenizer_is_not_saved(tmp_path) -> None:
    custom = LexicalIndex.build([1], ["a b"], tokenize=lambda s: s.split())
    with pytest.raises(ValueError, match="unregistered tokenizer"):
        save_lexical_index(custom, tmp_path / "lexical")
    assert not (tmp_path / "lexical").exists()


def _digests(path: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(path.iterdir())}


_BUILD = """
import sys
from ebr.lexical import LexicalIndex, save_lexical_index
titles = [f"w{i % 7} w{i % 11} w{i % 3} t{i}" for i in range(60)]
save_lexical_index(LexicalIndex.build(list(range(60)), titles, tokenize=str.split), sys.argv[1])
"""


def test_builds_are_byte_identical_across_processes_and_hash_seeds(tmp_path) -> None:
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", _BUILD, str(tmp_path / seed)], check=True, env=env, timeout=300)
    assert _digests(tmp_path / "1") == _digests(tmp_path / "2")


def _rewrite_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    manifest.update(changes)
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (lambda p: (p / MANIFEST).unlink(), "lexical.json is missing"),
        (lambda p: (p / "vocab.index.json").unlink(), "file vocab.index.json is missing"),
        (lambda p: (p / "doc_ids.npy").unlink(), "file doc_ids.npy is missing"),
        (lambda p: (p / MANIFEST).write_text("{not json", encoding="utf-8"), "lexical.json is not valid JSON"),
        (lambda p: _rewrite_manifest(p, format=99), "unsupported format 99"),
        (lambda p: _rewrite_manifest(p, method="bm25+"), "method 'bm25\\+'"),
        (lambda p: _rewrite_manifest(p, tokenizer="chars"), "unknown lexical tokenizer 'chars'"),
        (lambda p: _rewrite_manifest(p, n_docs=9), "doc_ids.npy holds 8 ids but lexical.json says n_docs=9"),
        (lambda p: _rewrite_manifest(p, n_vocab=3), "vocab.index.json holds"),
        (lambda p: _rewrite_manifest(p, k1=1.2), "params.index.json .* disagrees with lexical.json"),
        (lambda p: np.save(p / "doc_ids.npy", np.array([1, 1, 2, 3, 4, 5, 6, 7])), "negative or repeated doc id"),
        (lambda p: _truncate(p / "indptr.csc.index.npy"), "bm25s files unreadable"),
        (lambda p: _truncate(p / "doc_ids.npy"), "doc_ids.npy unreadable"),
        (lambda p: np.save(p / "indices.csc.index.npy", np.load(p / "indices.csc.index.npy") + 100),
         "indices.csc.index.npy points outside"),
        (lambda p: np.save(p / "indptr.csc.index.npy", np.load(p / "indptr.csc.index.npy")[::-1].copy()),
         "indptr.csc.index.npy is not a non-decreasing"),
        (lambda p: np.save(p / "data.csc.index.npy", np.load(p / "data.csc.index.npy")[:-1]),
         "ending at len\\(data\\)"),
    ],
)
def test_a_missing_or_inconsistent_file_is_a_clear_error(saved, fault, match) -> None:
    fault(saved)
    with pytest.raises(LexicalIndexError, match=match) as err:
        load_lexical_index(saved)
    assert str(saved) in str(err.value)


def test_a_path_that_is_not_a_directory_is_named(tmp_path) -> None:
    with pytest.raises(LexicalIndexError, match="is not a directory"):
        load_lexical_index(tmp_path / "nowhere")
