"""Baselines reported beside the model: category popularity and lexical BM25 over titles.
Both return [R, k] doc-id arrays (-1 = empty slot) like a model, through the `Retriever` protocol."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from rank_bm25 import BM25Okapi

from ebr.contract import list_days, load
from ebr.evaluate.config import EvaluateConfig
from ebr.evaluate.corpus import Corpus, load_corpus
from ebr.evaluate.evalset import EvalSet
from ebr.evaluate.metrics import EMPTY


class Retriever(Protocol):
    """Anything that returns the top-k doc ids of every request of an evaluation set."""

    def retrieve(self, evalset: EvalSet, k: int) -> np.ndarray:
        """int64 [n_requests, k] doc ids, best first; -1 = empty slot."""
        ...


def bm25_tokens(text: str) -> list[str]:
    """Tokens of a title or query for BM25: the project's word segmentation (normalized, jieba for Han runs)."""
    from ebr.text import segment_words

    return segment_words(text)


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


class PopularityRetriever:
    """Most-exposed docs of the query's predicted category over the training days; global popularity when the
    category is null or unseen. A short category list is padded with the globally most exposed other docs."""

    def __init__(self, global_ids: np.ndarray, by_category: dict[str, np.ndarray]) -> None:
        self.global_ids = np.asarray(global_ids, dtype=np.int64)
        self.by_category = {c: np.asarray(v, dtype=np.int64) for c, v in by_category.items()}

    @classmethod
    def fit(cls, impressions: pd.DataFrame, corpus: Corpus) -> PopularityRetriever:
        """Rank docs by exposure count (rows with stage `exposed`), ties by doc id; category from `corpus`."""
        for col in ("doc_id", "stage"):
            if col not in impressions.columns:
                raise ValueError(f"impressions frame has no column {col!r}")
        exposed = impressions.loc[impressions["stage"] == "exposed", "doc_id"].to_numpy(dtype=np.int64)
        ids, counts = np.unique(exposed, return_counts=True)
        order = np.lexsort((ids, -counts))
        ids = ids[order]
        codes, names = pd.factorize(corpus.category_leaf[corpus.positions(ids, "exposed doc ids")])
        grouped = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[grouped], np.arange(1, len(names)))
        return cls(ids, {str(c): ids[g] for c, g in zip(names, np.split(grouped, bounds), strict=True)})

    @classmethod
    def from_logs(cls, root: str | Path, day: str, window_days: int | None = None) -> PopularityRetriever:
        """Fit on the impressions of the days before `day` only (no look-ahead), categories as of `day`'s start."""
        days = training_days(root, day, window_days)
        if not days:
            raise ValueError(f"no impressions partition before day {day} under {root}: popularity needs training days")
        impressions = load(root, "impressions", days)
        return cls.fit(impressions, load_corpus(root, day, include_day=False))

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
    """BM25Okapi (rank-bm25) over a corpus' titles, scoring only docs that share a token with the query through
    an inverted index (all others score 0); a doc is retrieved when its score is positive, ties by doc id."""

    def __init__(
        self,
        corpus: Corpus,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        tokenize: Callable[[str], list[str]] = bm25_tokens,
    ) -> None:
        if len(corpus) == 0:
            raise ValueError("BM25 corpus is empty")
        self.doc_ids = corpus.doc_ids
        self.tokenize = tokenize
        tokens = [tokenize(str(t)) for t in corpus.titles]
        bm25 = BM25Okapi(tokens, k1=k1, b=b, epsilon=epsilon)
        self.idf: dict[str, float] = bm25.idf
        self.avgdl: float = bm25.avgdl
        self.vocab: dict[str, int] = {w: i for i, w in enumerate(bm25.idf)}
        self._build_postings(bm25)  # bm25's per-doc dicts are dropped afterwards: postings replace them

    def _build_postings(self, bm: BM25Okapi) -> None:
        term, doc, tf = [], [], []
        for j, freqs in enumerate(bm.doc_freqs):
            for w, f in freqs.items():
                term.append(self.vocab[w])
                doc.append(j)
                tf.append(f)
        term_a = np.asarray(term, dtype=np.int64)
        doc_a = np.asarray(doc, dtype=np.int64)
        tf_a = np.asarray(tf, dtype=np.float64)
        idf = np.array([bm.idf[w] for w in self.vocab], dtype=np.float64)
        doc_len = np.asarray(bm.doc_len, dtype=np.float64)
        norm = bm.k1 * (1 - bm.b + bm.b * doc_len[doc_a] / bm.avgdl) if bm.avgdl > 0 else np.zeros(len(doc_a))
        weight = idf[term_a] * (tf_a * (bm.k1 + 1) / (tf_a + norm))
        order = np.argsort(term_a, kind="stable")
        self._post_doc = doc_a[order]
        self._post_weight = weight[order]
        self._offsets = np.searchsorted(term_a[order], np.arange(len(self.vocab) + 1))

    def _accumulate(self, query: str, acc: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum the query's postings into the dense buffers; return (positions, scores) and reset the buffers."""
        counts = Counter(t for t in self.tokenize(query) if t in self.vocab)
        touched = []
        for t, c in counts.items():
            i = self.vocab[t]
            docs = self._post_doc[self._offsets[i] : self._offsets[i + 1]]
            touched.append(docs[~seen[docs]])
            seen[docs] = True
            acc[docs] += self._post_weight[self._offsets[i] : self._offsets[i + 1]] * c  # unique docs per token
        pos = np.concatenate(touched) if touched else np.zeros(0, dtype=np.int64)
        scores = acc[pos].copy()
        acc[pos] = 0.0
        seen[pos] = False
        return pos, scores

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(self.doc_ids)), np.zeros(len(self.doc_ids), dtype=bool)

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(corpus positions, BM25 scores) of the docs sharing a token with `query`, as `get_scores` computes."""
        return self._accumulate(query, *self._buffers())

    def _top(self, pos: np.ndarray, sc: np.ndarray, k: int) -> np.ndarray:
        keep = sc > 0
        pos, sc = pos[keep], sc[keep]
        if len(sc) > k:
            kth = np.partition(sc, len(sc) - k)[len(sc) - k]
            keep = sc >= kth
            pos, sc = pos[keep], sc[keep]
        ids = self.doc_ids[pos]
        return _pad(ids[np.lexsort((ids, -sc))], k)

    def search(self, query: str, k: int) -> np.ndarray:
        """Top-k doc ids of one query by BM25 score (positive scores only), ties by doc id; -1 pads."""
        _check_k(k)
        return self._top(*self.scores(query), k)

    def search_many(self, queries: Sequence[str], k: int) -> np.ndarray:
        """[len(queries), k] top-k doc ids; each distinct query is scored once."""
        _check_k(k)
        acc, seen = self._buffers()
        cache = {q: self._top(*self._accumulate(q, acc, seen), k) for q in dict.fromkeys(queries)}
        if not queries:
            return np.zeros((0, k), dtype=np.int64)
        return np.stack([cache[q] for q in queries])

    def retrieve(self, evalset: EvalSet, k: int) -> np.ndarray:
        return self.search_many(evalset.queries, k)


def baseline_systems(
    root: str | Path, evalset: EvalSet, k: int, corpus: Corpus | None = None, cfg: EvaluateConfig | None = None
) -> dict[str, np.ndarray]:
    """{"popularity": ids, "bm25": ids} for every request of `evalset`; BM25 over the docs known as of its day."""
    cfg = cfg or EvaluateConfig()
    corpus = corpus if corpus is not None else load_corpus(root, evalset.day)
    pop = PopularityRetriever.from_logs(root, evalset.day, cfg.popularity_window_days)
    bm25 = BM25Retriever(corpus, k1=cfg.bm25_k1, b=cfg.bm25_b, epsilon=cfg.bm25_epsilon)
    return {"popularity": pop.retrieve(evalset, k), "bm25": bm25.retrieve(evalset, k)}
