"""Relevance control's rule: the docs a structured-field match with the query's understanding would remove.

The metrics (filtered_share), the server's filter and the relevance-filtered positives of the samples apply it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ebr.judgements.corpus import Corpus
from ebr.judgements.metrics import EMPTY


def _codes(values: np.ndarray, vocab: dict[object, int]) -> np.ndarray:
    return np.array([vocab.setdefault(v, len(vocab)) if v is not None else -1 for v in values], dtype=np.int64)


def _none_for_na(values: Sequence[object] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    return np.where(pd.isna(arr), None, arr) if arr.size else arr


def relevance_removed(
    retrieved: np.ndarray,
    query_category_leaf: Sequence[str | None] | np.ndarray,
    query_brand: Sequence[str | None] | np.ndarray,
    corpus: Corpus,
) -> np.ndarray:
    """Bool [R, K]: True where the doc's category_leaf differs from the query's predicted one, or the query has a
    predicted brand the doc does not carry (a doc without brand differs). A null query field checks nothing."""
    retrieved = np.asarray(retrieved, dtype=np.int64)
    q_cat = _none_for_na(query_category_leaf)
    q_brand = _none_for_na(query_brand)
    if retrieved.ndim != 2 or len(q_cat) != retrieved.shape[0] or len(q_brand) != retrieved.shape[0]:
        raise ValueError(
            f"retrieved {retrieved.shape} needs one query_category_leaf and one query_brand per row "
            f"(got {len(q_cat)} and {len(q_brand)})"
        )
    pos = corpus.positions(retrieved, "retrieved ids")
    filled = retrieved != EMPTY
    safe = np.where(filled, pos, 0)
    cat_vocab: dict[object, int] = {}
    brand_vocab: dict[object, int] = {}
    doc_cat = _codes(corpus.category_leaf, cat_vocab)
    doc_brand = _codes(corpus.brand, brand_vocab)
    qc = _codes(q_cat, cat_vocab)[:, None]
    qb = _codes(q_brand, brand_vocab)[:, None]
    if len(corpus) == 0:
        return np.zeros(retrieved.shape, dtype=bool)
    return filled & mismatch_codes(qc, qb, doc_cat[safe], doc_brand[safe])


def understanding_mismatch(
    query_category_leaf: Sequence[str | None] | np.ndarray,
    query_brand: Sequence[str | None] | np.ndarray,
    doc_category_leaf: Sequence[str | None] | np.ndarray,
    doc_brand: Sequence[str | None] | np.ndarray,
) -> np.ndarray:
    """Bool per (query, doc) pair, row by row: the rule of `relevance_removed` on aligned columns (a click and the
    request it answered), for the samples to tell the clicks the relevance control would have removed."""
    cols = [_none_for_na(c) for c in (query_category_leaf, query_brand, doc_category_leaf, doc_brand)]
    if len({len(c) for c in cols}) > 1:
        raise ValueError(f"query_category_leaf, query_brand, doc_category_leaf and doc_brand need the same length, "
                         f"got {[len(c) for c in cols]}")
    cat_vocab: dict[object, int] = {}
    brand_vocab: dict[object, int] = {}
    return mismatch_codes(_codes(cols[0], cat_vocab), _codes(cols[1], brand_vocab), _codes(cols[2], cat_vocab),
                     _codes(cols[3], brand_vocab))


def mismatch_codes(q_cat: np.ndarray, q_brand: np.ndarray, doc_cat: np.ndarray, doc_brand: np.ndarray) -> np.ndarray:
    """The rule on integer codes (-1 = null; query and doc fields coded from one vocabulary each), broadcast: a doc
    off the query's leaf category, or without its brand."""
    return ((q_cat != -1) & (doc_cat != q_cat)) | ((q_brand != -1) & (doc_brand != q_brand))
