"""Relevance control on retrieved candidates, with the rule evaluation uses (`ebr.judgements.relevance`).

A candidate is dropped when its leaf category differs from the expected one, or when a brand is expected and
the doc does not carry it; an expected field that is null checks nothing. The expectations come from the
query-understanding features (`qu_category_leaf`, `qu_brand`) and from the request's filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebr.judgements.corpus import Corpus
from ebr.judgements.relevance import relevance_removed

EMPTY_POSITIONS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Expectation:
    """Structured fields a candidate must not contradict (None: no constraint on that field)."""

    category_leaf: str | None = None
    brand: str | None = None

    @property
    def active(self) -> bool:
        return self.category_leaf is not None or self.brand is not None


class DocFields:
    """The bundle's docs sorted by id with the fields relevance control reads (from docs.parquet)."""

    def __init__(self, docs: pd.DataFrame) -> None:
        df = docs.sort_values("doc_id", kind="stable")
        self.doc_ids = df["doc_id"].to_numpy(dtype=np.int64)
        if len(self.doc_ids) and (np.diff(self.doc_ids) == 0).any():
            raise ValueError("docs.parquet holds a doc id more than once")
        self.category_leaf = _objects(df["category_leaf"])
        self.brand = _objects(df["brand"])
        self._positions = {"category_leaf": _positions(self.category_leaf), "brand": _positions(self.brand)}

    def allowed(self, expectations: list[Expectation]) -> np.ndarray:
        """Sorted doc ids that contradict none of the active expectations (the rule of `removed`: equal leaf
        category and brand where expected), for the search to apply inside retrieval."""
        key = constraint_key(expectations)
        sets = [self._positions[name].get(value, EMPTY_POSITIONS) for e in key
                for name, value in (("category_leaf", e.category_leaf), ("brand", e.brand)) if value is not None]
        pos = sets[0] if sets else np.arange(len(self.doc_ids))
        for other in sets[1:]:
            pos = np.intersect1d(pos, other, assume_unique=True)
        return self.doc_ids[pos]

    def __len__(self) -> int:
        return len(self.doc_ids)

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """The ids among `ids` that have no row."""
        pos = np.minimum(np.searchsorted(self.doc_ids, ids), max(len(self.doc_ids) - 1, 0))
        found = self.doc_ids[pos] == ids if len(self.doc_ids) else np.zeros(len(ids), dtype=bool)
        return np.asarray(ids)[~found]

    def corpus_of(self, ids: np.ndarray) -> Corpus:
        """A `Corpus` of just these (known, distinct) doc ids, sorted by id as `Corpus` requires."""
        ids = np.sort(np.asarray(ids, dtype=np.int64))
        pos = np.searchsorted(self.doc_ids, ids)
        return Corpus(
            doc_ids=ids,
            titles=np.full(len(ids), None, dtype=object),
            category_leaf=self.category_leaf[pos],
            brand=self.brand[pos],
        )


def constraint_key(expectations: list[Expectation]) -> tuple[Expectation, ...]:
    """The active expectations as a canonical tuple (same constraints, same key, whatever their order)."""
    return tuple(sorted({e for e in expectations if e.active}, key=lambda e: (e.category_leaf or "", e.brand or "")))


def _positions(values: np.ndarray) -> dict[object, np.ndarray]:
    """Value -> sorted positions holding it (nulls left out: a null field never satisfies an expectation)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {u: order[bounds[i]:bounds[i + 1]] for i, u in enumerate(uniques)}


def _objects(column: pd.Series) -> np.ndarray:
    values = column.astype(object).to_numpy()
    return np.where(pd.isna(values), None, values)


def removed(ids: np.ndarray, docs: DocFields, expectations: list[Expectation]) -> np.ndarray:
    """Bool [n]: True where a candidate contradicts any of the expectations (ids must be in `docs`)."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(len(ids), dtype=bool)
    active = [e for e in expectations if e.active]
    if not active or not len(ids):
        return out
    corpus = docs.corpus_of(ids)
    row = ids[None, :]
    for e in active:
        out |= relevance_removed(row, [e.category_leaf], [e.brand], corpus)[0]
    return out
