"""Relevance control as the metrics see it: which retrieved docs the structured-field match would remove."""

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
    cat_off = (qc != -1) & (doc_cat[safe] != qc)
    brand_off = (qb != -1) & (doc_brand[safe] != qb)
    return filled & (cat_off | brand_off)
