"""A BM25 index over doc titles on bm25s, and its searcher.

The scoring variant is classic Okapi BM25: for each query token t present in doc d,
`idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))` with the Robertson idf
`log((N - df + 0.5) / (df + 0.5))` floored at 0 (bm25s: tf method "atire", idf method "robertson").
A repeated query token counts once per occurrence. Only docs with a positive score are returned, best first,
ties by doc id; scores are float32. The vocabulary is sorted, so a build is byte-for-byte reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ebr.lexical.tokens import bm25_tokens, tokenizer_name

TF_METHOD = "atire"  # tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
IDF_METHOD = "robertson"  # log((N - df + 0.5) / (df + 0.5)), floored at 0
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
EMPTY = -1


def import_bm25s() -> Any:
    """bm25s, imported on first use (it pulls scipy) and kept quiet."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _title_text(title: Any) -> str:
    """A title as text; a missing title (None/NaN) is empty."""
    if title is None or (not isinstance(title, str) and pd.isna(title)):
        return ""
    return str(title)


def _members(ids: np.ndarray, allowed: np.ndarray, allowed_sorted: bool) -> np.ndarray:
    """Which of `ids` are in `allowed` (a boolean mask over `ids`)."""
    if not allowed_sorted:
        return np.isin(ids, allowed)
    if len(allowed) == 0:
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(allowed, ids), len(allowed) - 1)
    return allowed[at] == ids


@dataclass(frozen=True)
class LexicalIndex:
    """BM25 over one token list per doc; `doc_ids[i]` is the id of corpus position i (the bm25s doc index)."""

    bm25: Any  # bm25s.BM25 with `scores` (CSC arrays) and `vocab_dict` (token -> column)
    doc_ids: np.ndarray
    tokenize: Callable[[str], list[str]]
    k1: float
    b: float

    @classmethod
    def build(
        cls,
        doc_ids: Sequence[int] | np.ndarray,
        titles: Sequence[Any] | np.ndarray,
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        tokenize: Callable[[str], list[str]] = bm25_tokens,
    ) -> LexicalIndex:
        """Index `titles` (one per doc, corpus order) under `doc_ids` (distinct, >= 0); deterministic."""
        ids = np.asarray(doc_ids)
        if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"doc_ids must be a 1-D integer array, got dtype {ids.dtype} shape {ids.shape}")
        ids = ids.astype(np.int64)
        if len(ids) == 0:
            raise ValueError("lexical index corpus is empty: doc_ids holds no doc")
        if len(titles) != len(ids):
            raise ValueError(f"titles has {len(titles)} entries but doc_ids has {len(ids)}")
        if (ids < 0).any():
            raise ValueError(f"doc_ids must be >= 0 (-1 marks an empty slot), got {int(ids[ids < 0][0])}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("doc_ids holds a doc id more than once")
        if not k1 > 0:
            raise ValueError(f"k1 must be > 0, got {k1}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1], got {b}")
        tokens = [tokenize(_title_text(t)) for t in titles]
        vocab = {t: i for i, t in enumerate(sorted({t for doc in tokens for t in doc}))}
        token_ids = [[vocab[t] for t in doc] for doc in tokens]
        bm25 = import_bm25s().BM25(k1=float(k1), b=float(b), method=TF_METHOD, idf_method=IDF_METHOD)
        with np.errstate(invalid="ignore", divide="ignore"):  # only an all-empty corpus divides 0 by avgdl 0
            bm25.index((token_ids, vocab), create_empty_token=False, show_progress=False)
        return cls(bm25=bm25, doc_ids=ids, tokenize=tokenize, k1=float(k1), b=float(b))

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def n_vocab(self) -> int:
        return len(self.bm25.vocab_dict)

    @property
    def tokenizer(self) -> str | None:
        """The registered name of the tokenizer (None: a custom callable; such an index cannot be saved)."""
        return tokenizer_name(self.tokenize)

    def token_ids(self, query: str) -> np.ndarray:
        """Vocabulary columns of the query's tokens (unknown tokens dropped, repeats kept)."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        vocab = self.bm25.vocab_dict
        return np.asarray([vocab[t] for t in self.tokenize(query) if t in vocab], dtype=np.int64)

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(corpus positions, float32 BM25 scores) of the docs whose score for `query` is positive.

        Summed over the query tokens' posting lists only (bm25s' CSC columns), not over a dense corpus-sized
        vector: the cost follows the postings the query touches, not the corpus size."""
        cols = self.token_ids(query)
        if len(cols) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        m = self.bm25.scores
        indptr, indices, data = m["indptr"], m["indices"], m["data"]
        docs = np.concatenate([indices[indptr[c] : indptr[c + 1]] for c in cols])
        vals = np.concatenate([data[indptr[c] : indptr[c + 1]] for c in cols])
        if len(docs) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        pos, inverse = np.unique(docs, return_inverse=True)
        sc = np.bincount(inverse, weights=vals.astype(np.float64), minlength=len(pos)).astype(np.float32)
        keep = sc > 0
        return pos[keep].astype(np.int64), sc[keep]

    def _top(self, pos: np.ndarray, sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(sc) > k:
            kth = np.partition(sc, len(sc) - k)[len(sc) - k]
            keep = sc >= kth
            pos, sc = pos[keep], sc[keep]
        ids = self.doc_ids[pos]
        order = np.lexsort((ids, -sc))[:k]
        out_ids = np.full(k, EMPTY, dtype=np.int64)
        out_sc = np.zeros(k, dtype=np.float32)
        out_ids[: len(order)] = ids[order]
        out_sc[: len(order)] = sc[order]
        return out_ids, out_sc

    def search(self, query: str, k: int, allowed: np.ndarray | None = None,
               allowed_sorted: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids int64 [k], scores float32 [k]) of the top-k docs by BM25, positive scores only, ties by doc
        id; empty slots hold id -1 and score 0. With `allowed` (doc ids), the top k among those docs only;
        `allowed_sorted` says they are sorted ascending (a server's cached constraint), so membership is a binary
        search per scored doc instead of a sort of the allowed set on every request."""
        _check_k(k)
        pos, sc = self.scores(query)
        if allowed is not None and len(pos):
            keep = _members(self.doc_ids[pos], np.asarray(allowed, dtype=np.int64), allowed_sorted)
            pos, sc = pos[keep], sc[keep]
        return self._top(pos, sc, k)

    def search_many(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids int64 [len(queries), k], scores float32 [len(queries), k]); each distinct query scored once."""
        _check_k(k)
        if isinstance(queries, str):
            raise TypeError("queries must be a sequence of strings, got one string")
        queries = list(queries)
        if not queries:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        cache = {q: self.search(q, k) for q in dict.fromkeys(queries)}
        return (np.stack([cache[q][0] for q in queries]), np.stack([cache[q][1] for q in queries]))
