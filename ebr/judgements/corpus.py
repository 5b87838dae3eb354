"""The doc corpus as of a moment (latest version of every doc), with vectorized lookups by doc id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ebr.features.doc_features import corpus_docs

CORPUS_COLUMNS = ("title", "category_leaf", "brand")


@dataclass(frozen=True)
class Corpus:
    """Docs sorted by id: title and the structured fields relevance control matches (category_leaf, brand)."""

    doc_ids: np.ndarray
    titles: np.ndarray
    category_leaf: np.ndarray
    brand: np.ndarray

    def __len__(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def from_frame(cls, docs: pd.DataFrame) -> Corpus:
        """From docs rows (several versions allowed): the latest row per doc_id by event_timestamp wins."""
        for col in ("doc_id", "title", "category_leaf", "brand"):
            if col not in docs.columns:
                raise ValueError(f"docs frame has no column {col!r}")
        df = docs
        if "event_timestamp" in df.columns:
            df = df.sort_values(["doc_id", "event_timestamp"], kind="stable")
        df = df.drop_duplicates("doc_id", keep="last").sort_values("doc_id", kind="stable")
        brand = df["brand"].astype(object).to_numpy()
        brand = np.where(pd.isna(brand), None, brand)
        return cls(
            doc_ids=df["doc_id"].to_numpy(dtype=np.int64),
            titles=df["title"].astype(object).to_numpy(),
            category_leaf=df["category_leaf"].astype(object).to_numpy(),
            brand=brand,
        )

    def positions(self, ids: np.ndarray, what: str = "doc ids") -> np.ndarray:
        """Index of each id in the corpus; -1 stays -1 (empty slot); an unknown id is a ValueError naming it."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.doc_ids, ids)
        pos = np.minimum(pos, max(len(self.doc_ids) - 1, 0))
        found = (ids != -1) & (len(self.doc_ids) > 0)
        if len(self.doc_ids):
            found &= self.doc_ids[pos] == ids
        unknown = (ids != -1) & ~found
        if unknown.any():
            raise ValueError(f"{what}: doc id {int(ids[unknown].flat[0])} is not in the corpus ({int(unknown.sum())} "
                             "unknown ids)")
        return np.where(ids == -1, -1, pos)


def load_corpus(root: str | Path, day: str, include_day: bool = True) -> Corpus:
    """Docs known as of the end of `day` (include_day) or as of its start (not include_day), latest versions
    (`ebr.features.doc_features.corpus_docs`, the one corpus loader)."""
    return Corpus.from_frame(corpus_docs(root, day, include_day, columns=CORPUS_COLUMNS))
