"""Save and load a lexical index directory: bm25s' own files, the doc ids in corpus order and a manifest.

    <dir>/lexical.json            format, method, idf_method, k1, b, tokenizer, n_docs, n_vocab, file names
    <dir>/doc_ids.npy             int64 [n_docs]: the doc id of each bm25s doc index
    <dir>/params.index.json       bm25s parameters
    <dir>/vocab.index.json        bm25s vocabulary (token -> column)
    <dir>/{data,indices,indptr}.csc.index.npy   bm25s' precomputed per-(token, doc) scores, CSC by token
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ebr.artifacts.atomic import atomic_output_dir, save_npy_atomic, write_json_atomic
from ebr.lexical.index import IDF_METHOD, TF_METHOD, LexicalIndex, import_bm25s
from ebr.lexical.tokens import tokenizer_by_name

LEXICAL_FORMAT = 1
MANIFEST = "lexical.json"
DOC_IDS_FILE = "doc_ids.npy"
BM25S_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json",
               "params.index.json")  # fmt: skip
_REQUIRED_KEYS = ("format", "method", "idf_method", "k1", "b", "tokenizer", "n_docs", "n_vocab", "files")


class LexicalIndexError(ValueError):
    """A lexical index directory that is incomplete, corrupt or inconsistent; the message names the file."""


def lexical_summary(index: LexicalIndex) -> dict[str, Any]:
    """The parameters and sizes of an index (what its manifest and a bundle manifest record)."""
    return {
        "method": TF_METHOD,
        "idf_method": IDF_METHOD,
        "k1": index.k1,
        "b": index.b,
        "tokenizer": index.tokenizer,
        "n_docs": index.n_docs,
        "n_vocab": index.n_vocab,
    }


def save_lexical_index(index: LexicalIndex, dest: str | Path) -> dict[str, Any]:
    """Write `index` to the directory `dest` atomically (replacing an earlier lexical index there); returns the
    manifest. The tokenizer must be a registered one so that a loaded index tokenizes queries the same way."""
    summary = lexical_summary(index)
    if summary["tokenizer"] is None:
        raise ValueError("lexical index built with an unregistered tokenizer cannot be saved: use one of "
                         "ebr.lexical.TOKENIZERS")
    manifest = {"format": LEXICAL_FORMAT, **summary, "doc_ids_file": DOC_IDS_FILE, "files": list(BM25S_FILES)}
    with atomic_output_dir(dest, MANIFEST) as tmp:
        index.bm25.save(tmp, show_progress=False)
        save_npy_atomic(tmp / DOC_IDS_FILE, index.doc_ids.astype(np.int64))
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def _fail(path: Path, message: str) -> LexicalIndexError:
    return LexicalIndexError(f"lexical index {path}: {message}")


def read_lexical_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a lexical index directory, with its required keys checked."""
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise _fail(path, f"{MANIFEST} is missing")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"{MANIFEST} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise _fail(path, f"{MANIFEST} must hold a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise _fail(path, f"{MANIFEST} lacks keys {missing}")
    if manifest["format"] != LEXICAL_FORMAT:
        raise _fail(path, f"{MANIFEST}: unsupported format {manifest['format']!r} (expected {LEXICAL_FORMAT})")
    if (manifest["method"], manifest["idf_method"]) != (TF_METHOD, IDF_METHOD):
        raise _fail(path, f"{MANIFEST}: method {manifest['method']!r}/{manifest['idf_method']!r} is not "
                          f"{TF_METHOD!r}/{IDF_METHOD!r}")
    return manifest


def _check_consistency(path: Path, manifest: dict[str, Any], bm25: Any, doc_ids: np.ndarray) -> None:
    n_docs, n_vocab = int(manifest["n_docs"]), int(manifest["n_vocab"])
    doc_ids_file = manifest.get("doc_ids_file", DOC_IDS_FILE)
    if doc_ids.ndim != 1 or not np.issubdtype(doc_ids.dtype, np.integer):
        raise _fail(path, f"{doc_ids_file} must be a 1-D integer array, got {doc_ids.dtype} {doc_ids.shape}")
    if len(doc_ids) != n_docs:
        raise _fail(path, f"{doc_ids_file} holds {len(doc_ids)} ids but {MANIFEST} says n_docs={n_docs}")
    if len(np.unique(doc_ids)) != n_docs or (doc_ids < 0).any():
        raise _fail(path, f"{doc_ids_file} holds a negative or repeated doc id")
    if bm25.scores.get("num_docs") != n_docs:
        raise _fail(path, f"params.index.json says num_docs={bm25.scores.get('num_docs')}, {MANIFEST} n_docs={n_docs}")
    if (bm25.method, bm25.idf_method) != (TF_METHOD, IDF_METHOD) or (bm25.k1, bm25.b) != (manifest["k1"],
                                                                                             manifest["b"]):
        raise _fail(path, f"params.index.json (method {bm25.method}/{bm25.idf_method}, k1 {bm25.k1}, b {bm25.b}) "
                          f"disagrees with {MANIFEST}")
    vocab = bm25.vocab_dict
    if len(vocab) != n_vocab or sorted(vocab.values()) != list(range(n_vocab)):
        raise _fail(path, f"vocab.index.json holds {len(vocab)} tokens, not columns 0..{n_vocab - 1} "
                          f"({MANIFEST} n_vocab={n_vocab})")
    data, indices, indptr = (np.asarray(bm25.scores[k]) for k in ("data", "indices", "indptr"))
    if indptr.ndim != 1 or len(indptr) != n_vocab + 1:
        raise _fail(path, f"indptr.csc.index.npy has {indptr.shape} entries, expected n_vocab + 1 = {n_vocab + 1}")
    if len(indptr) and (indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(data)):
        raise _fail(path, "indptr.csc.index.npy is not a non-decreasing pointer array ending at len(data)")
    if len(indices) != len(data):
        raise _fail(path, f"indices.csc.index.npy has {len(indices)} entries, data.csc.index.npy {len(data)}")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_docs):
        raise _fail(path, f"indices.csc.index.npy points outside 0..{n_docs - 1}")
    if not np.isfinite(data).all():
        raise _fail(path, "data.csc.index.npy holds a non-finite score")


def load_lexical_index(path: str | Path) -> LexicalIndex:
    """Load a directory written by `save_lexical_index`; a LexicalIndexError naming the file when a file is
    missing, unreadable or inconsistent with the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise LexicalIndexError(f"lexical index {path} is not a directory")
    manifest = read_lexical_manifest(path)
    doc_ids_file = str(manifest.get("doc_ids_file", DOC_IDS_FILE))
    for name in [*manifest["files"], doc_ids_file]:
        if not (path / name).is_file():
            raise _fail(path, f"file {name} is missing")
    try:
        tokenize = tokenizer_by_name(manifest["tokenizer"])
    except ValueError as e:
        raise _fail(path, f"{MANIFEST}: {e}") from e
    try:
        bm25 = import_bm25s().BM25.load(path, load_corpus=False, mmap=False, show_progress=False)
    except (OSError, EOFError, ValueError, TypeError, KeyError) as e:
        raise _fail(path, f"bm25s files unreadable ({type(e).__name__}: {e})") from e
    try:
        doc_ids = np.load(path / doc_ids_file, allow_pickle=False)
    except (OSError, EOFError, ValueError) as e:
        raise _fail(path, f"{doc_ids_file} unreadable ({type(e).__name__}: {e})") from e
    _check_consistency(path, manifest, bm25, doc_ids)
    return LexicalIndex(bm25=bm25, doc_ids=doc_ids.astype(np.int64), tokenize=tokenize, k1=float(manifest["k1"]),
                        b=float(manifest["b"]))
