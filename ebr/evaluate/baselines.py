"""Baselines reported beside the model: category popularity and lexical BM25 over titles (the lexical channel's
index, `ebr.lexical`). Both return [R, k] doc-id arrays (-1 = empty slot) like a model, through the `Retriever`
protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from ebr.contract import list_days, load
from ebr.evaluate.config import EvaluateConfig
from ebr.judgements.corpus import Corpus, load_corpus
from ebr.judgements.evalset import EvalSet
from ebr.judgements.metrics import EMPTY
from ebr.lexical import LexicalIndex, bm25_tokens


class Retriever(Protocol):
    """Anything that returns the top-k doc ids of every request of an evaluation set."""

    def retrieve(self, evalset: EvalSet, k: int) -> np.ndarray:
        """int64 [n_requests, k] doc ids, best first; -1 = empty slot."""
        ...


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full(k, EMPTY, dtype=np.int64)
    out[: min(k, len(ids))] = ids[:k]
    return out


def training_days(root: str | Path, day: str, window_days: int | None = None) -> list[str]:
    """Impression days strictly before `day` (the last `window_days` calendar days when set)."""
    first = date.fromisoformat(day) - timedelta(days=window_days) if window_days else date.min
    return [d for d in list_days(root, "impressions") if first.isoformat() <= d < day]


def exposure_counts(impressions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(doc ids, how often each was exposed): the rows of `impressions` with stage `exposed`, ids ascending."""
    for col in ("doc_id", "stage"):
        if col not in impressions.columns:
            raise ValueError(f"impressions frame has no column {col!r}")
    exposed = impressions.loc[impressions["stage"] == "exposed", "doc_id"].to_numpy(dtype=np.int64)
    return np.unique(exposed, return_counts=True)


class PopularityRetriever:
    """Most-exposed docs of the query's predicted category over the training days; global popularity when the
    category is null or unseen. A short category list is padded with the globally most exposed other docs."""

    def __init__(self, global_ids: np.ndarray, by_category: dict[str, np.ndarray]) -> None:
        self.global_ids = np.asarray(global_ids, dtype=np.int64)
        self.by_category = {c: np.asarray(v, dtype=np.int64) for c, v in by_category.items()}

    @classmethod
    def fit(cls, impressions: pd.DataFrame, corpus: Corpus) -> PopularityRetriever:
        """Rank docs by exposure count (rows with stage `exposed`), ties by doc id; category from `corpus`."""
        ids, counts = exposure_counts(impressions)
        return cls.from_counts(ids, counts, corpus)

    @classmethod
    def from_counts(cls, ids: np.ndarray, counts: np.ndarray, corpus: Corpus) -> PopularityRetriever:
        """Rank the docs `ids` by their exposure `counts`, ties by doc id; category from `corpus`."""
        order = np.lexsort((ids, -counts))
        ids = np.asarray(ids, dtype=np.int64)[order]
        codes, names = pd.factorize(corpus.category_leaf[corpus.positions(ids, "exposed doc ids")])
        grouped = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[grouped], np.arange(1, len(names)))
        return cls(ids, {str(c): ids[g] for c, g in zip(names, np.split(grouped, bounds), strict=True)})

    @classmethod
    def from_logs(cls, root: str | Path, day: str, window_days: int | None = None) -> PopularityRetriever:
        """Fit on the impressions of the days before `day` only (no look-ahead), categories as of `day`'s start.

        Read and checked a day at a time, only each day's exposure counts kept: at `large` the seven days'
        28M impression rows at once took ~4.5 GB for what is one count per doc."""
        days = training_days(root, day, window_days)
        if not days:
            raise ValueError(f"no impressions partition before day {day} under {root}: popularity needs training days")
        per_day = [exposure_counts(load(root, "impressions", [d])) for d in days]
        ids, inverse = np.unique(np.concatenate([i for i, _ in per_day]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([c for _, c in per_day])).astype(np.int64)
        return cls.from_counts(ids, counts, load_corpus(root, day, include_day=False))

    def ranked(self, category: str | None, k: int) -> np.ndarray:
        """The k most exposed docs of `category` (padded with global popularity), or global popularity."""
        _check_k(k)
        own = self.by_category.get(category) if category is not None else None
        if own is None:
            return _pad(self.global_ids, k)
        if len(own) < k:
            rest = self.global_ids[~np.isin(self.global_ids, own)]
            own = np.concatenate([own, rest])
        return _pad(own, k)

    def retrieve(self, evalset: EvalSet, k: int) -> np.ndarray:
        cats = evalset.frame["query_category_leaf"].astype(object)
        cats = cats.where(cats.notna(), None).tolist()
        cache = {c: self.ranked(c, k) for c in set(cats)}
        if not cats:
            return np.zeros((0, k), dtype=np.int64)
        return np.stack([cache[c] for c in cats])


class BM25Retriever:
    """BM25 over a corpus' titles through the lexical channel's index (`ebr.lexical.LexicalIndex`, bm25s):
    Okapi BM25 with the Robertson idf floored at 0; a doc is retrieved when its score is positive, ties by doc id."""

    def __init__(
        self,
        corpus: Corpus,
        k1: float = 1.5,
        b: float = 0.75,
        tokenize: Callable[[str], list[str]] = bm25_tokens,
    ) -> None:
        if len(corpus) == 0:
            raise ValueError("BM25 corpus is empty")
        self._use(LexicalIndex.build(corpus.doc_ids, corpus.titles, k1=k1, b=b, tokenize=tokenize))

    @classmethod
    def from_index(cls, index: LexicalIndex) -> BM25Retriever:
        """A retriever over an already built or loaded index (e.g. a bundle's `lexical/`)."""
        retriever = cls.__new__(cls)
        retriever._use(index)
        return retriever

    def _use(self, index: LexicalIndex) -> None:
        self.index = index
        self.doc_ids = index.doc_ids
        self.tokenize = index.tokenize

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(corpus positions, float32 BM25 scores) of the docs whose score for `query` is positive."""
        return self.index.scores(query)

    def search(self, query: str, k: int) -> np.ndarray:
        """Top-k doc ids of one query by BM25 score (positive scores only), ties by doc id; -1 pads."""
        _check_k(k)
        return self.index.search(query, k)[0]

    def search_many(self, queries: Sequence[str], k: int) -> np.ndarray:
        """[len(queries), k] top-k doc ids; each distinct query is scored once."""
        _check_k(k)
        return self.index.search_many(queries, k)[0]

    def retrieve(self, evalset: EvalSet, k: int) -> np.ndarray:
        return self.search_many(evalset.queries, k)


def baseline_systems(
    root: str | Path, evalset: EvalSet, k: int, corpus: Corpus | None = None, cfg: EvaluateConfig | None = None,
    bm25: BM25Retriever | None = None,
) -> dict[str, np.ndarray]:
    """{"popularity": ids, "bm25": ids} for every request of `evalset`; BM25 over the docs known as of its day
    (or `bm25`, already built over them)."""
    cfg = cfg or EvaluateConfig()
    corpus = corpus if corpus is not None else load_corpus(root, evalset.day)
    pop = PopularityRetriever.from_logs(root, evalset.day, cfg.popularity_window_days)
    bm25 = bm25 if bm25 is not None else BM25Retriever(corpus, k1=cfg.bm25_k1, b=cfg.bm25_b)
    return {"popularity": pop.retrieve(evalset, k), "bm25": bm25.retrieve(evalset, k)}
