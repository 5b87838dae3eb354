"""Query-doc and user-doc cross features of the fine ranker and the coarse ranker's cross tower (seed 002,
"交叉塔特征输入": query-doc text match and category/brand match, user-doc match and interaction counts).

One function serves training and the online server alike: `compute_cross_features(requests, docs, pairs)`
takes request rows (query, query-understanding fields, the user's profile tags and behaviour sequences) and
doc rows (title, categories, brand, attributes, tags, author) and returns a float32 matrix [pairs, features].
Online, one request row is paired with every candidate doc. Pure numpy/pandas (no torch).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebr.models.config import NumericFeature
from ebr.models.inputs import analyzer_for
from ebr.text.analyzer import TRIGRAM_MARK, TextConfig

Rows = pd.DataFrame | Sequence[Mapping[str, Any]]

COUNT_EDGES = [0.5, 1.5, 2.5, 3.5, 5.5, 8.5, 16.5, 32.5]
RATIO_EDGES = [1e-6, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0 - 1e-6]
MATCH_EDGES = [-0.5, 0.5]  # -1 unknown, 0 mismatch, 1 match


@dataclass(frozen=True)
class CrossFeature:
    """One cross feature: its name, what it measures and the fixed bucket edges its embedding uses."""

    name: str
    kind: str  # "count", "ratio" or "match"
    description: str

    @property
    def bucketizer(self) -> NumericFeature:
        """Fixed boundaries (null -> 0, then one id per boundary passed), the featurizer's bucket rule."""
        edges = {"count": COUNT_EDGES, "ratio": RATIO_EDGES, "match": MATCH_EDGES}[self.kind]
        return NumericFeature(name=self.name, boundaries=edges)


FEATURES: tuple[CrossFeature, ...] = (
    CrossFeature("qd_shared_words", "count", "query words found among the title words"),
    CrossFeature("qd_word_jaccard", "ratio", "Jaccard similarity of the query and title word sets"),
    CrossFeature("qd_word_coverage", "ratio", "share of the query's words found in the title"),
    CrossFeature("qd_bigram_coverage", "ratio", "share of the query's char bigrams found in the title"),
    CrossFeature("qd_category_match", "match", "query-understanding leaf category == doc leaf (-1: QU unknown)"),
    CrossFeature("qd_brand_match", "match", "query-understanding brand == doc brand (-1: QU has no brand)"),
    CrossFeature("qd_attribute_matches", "count", "doc attribute values (key=value) whose words are in the query"),
    CrossFeature("ud_category_events", "count", "events of the user's sequences in the doc's leaf category"),
    CrossFeature("ud_category_share", "ratio", "share of the user's sequence events in the doc's leaf category"),
    CrossFeature("ud_author_events", "count", "events of the user's sequences on docs of the doc's author"),
    CrossFeature("ud_doc_events", "count", "events of the user's sequences on this very doc"),
    CrossFeature("ud_profile_tag_matches", "count", "user profile tags among the doc's categories and tags"),
)
FEATURE_BY_NAME: dict[str, CrossFeature] = {f.name: f for f in FEATURES}
CROSS_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CROSS_INPUTS = frozenset({"cross", "cross_buckets"})  # the scorer inputs of a three-tower coarse ranker
SEQUENCE_WINDOWS = ("rt", "st", "lt")


def check_names(names: Sequence[str]) -> list[str]:
    """Validate a list of cross-feature names (known, unique, non-empty); errors list the known names."""
    names = list(names)
    if not names:
        raise ValueError("cross features: the list must not be empty")
    unknown = [n for n in names if n not in FEATURE_BY_NAME]
    if unknown:
        raise ValueError(f"unknown cross feature(s) {unknown}; known: {list(CROSS_FEATURE_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"cross features must be unique, got {names}")
    return names


def num_buckets(names: Sequence[str]) -> list[int]:
    """Embedding rows per feature (null, below the first edge, one per edge passed)."""
    return [FEATURE_BY_NAME[n].bucketizer.num_ids for n in check_names(names)]


def bucketize(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Bucket ids [N, F] of cross-feature values [N, F] on each feature's fixed edges; NaN -> 0."""
    names = check_names(names)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"cross values must be [N, {len(names)}], got shape {values.shape}")
    out = np.zeros(values.shape, dtype=np.int64)
    for j, n in enumerate(names):
        edges = np.asarray(FEATURE_BY_NAME[n].bucketizer.edges(), dtype=np.float64)
        col = values[:, j]
        ids = np.searchsorted(edges, np.nan_to_num(col, nan=0.0), side="right").astype(np.int64) + 1
        ids[np.isnan(col)] = 0
        out[:, j] = ids
    return out


def _frame(rows: Rows, what: str) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows.reset_index(drop=True)
    if isinstance(rows, Mapping):
        raise TypeError(f"{what} rows must be a DataFrame or a list of dicts, got a single dict (wrap it in [])")
    return pd.DataFrame.from_records(list(rows))


def _null(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float | np.floating) and math.isnan(v))


def _list(v: Any) -> list[Any]:
    if _null(v):
        return []
    if isinstance(v, list | tuple | np.ndarray | pd.Series):
        return list(v)
    raise ValueError(f"expected a list, got {type(v).__name__} ({v!r})")


def _column(df: pd.DataFrame, name: str) -> list[Any]:
    return df[name].tolist() if name in df.columns else [None] * len(df)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} rows are missing column(s) needed by the cross features: {', '.join(missing)}")


def _word_set(analyzer: Any, text: Any) -> frozenset[str]:
    if _null(text):
        return frozenset()
    return frozenset(w for w in analyzer.words(str(text)) if not w.startswith(TRIGRAM_MARK))


def _key(v: Any) -> Any:
    """A hashable, type-stable key for categorical values (ints stay ints, strings stay strings)."""
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass
class _RequestSide:
    words: list[frozenset[str]]
    bigrams: list[frozenset[str]]
    category: list[Any]
    brand: list[Any]
    seq_categories: list[Counter]
    seq_authors: list[Counter]
    seq_docs: list[Counter]
    seq_total: np.ndarray
    profile_tags: list[frozenset[str]]


@dataclass
class _DocSide:
    words: list[frozenset[str]]
    bigrams: list[frozenset[str]]
    category: list[Any]
    brand: list[Any]
    author: list[Any]
    doc_id: list[Any]
    attribute_words: list[list[frozenset[str]]]
    labels: list[frozenset[str]]


def _request_side(req: pd.DataFrame, analyzer: Any) -> _RequestSide:
    _require(req, ["query"], "request")
    queries = req["query"].tolist()
    cats: list[Counter] = []
    auths: list[Counter] = []
    docs: list[Counter] = []
    fields = ("categories", "authors", "doc_ids")
    cols = {(w, f): _column(req, f"seq_{w}_{f}") for w in SEQUENCE_WINDOWS for f in fields}
    for i in range(len(req)):
        c: Counter = Counter()
        a: Counter = Counter()
        d: Counter = Counter()
        for w in SEQUENCE_WINDOWS:
            c.update(_key(x) for x in _list(cols[(w, "categories")][i]) if not _null(x))
            a.update(_key(x) for x in _list(cols[(w, "authors")][i]) if not _null(x))
            d.update(_key(x) for x in _list(cols[(w, "doc_ids")][i]) if not _null(x))
        cats.append(c)
        auths.append(a)
        docs.append(d)
    return _RequestSide(
        words=[_word_set(analyzer, q) for q in queries],
        bigrams=[frozenset(analyzer.analyze(str(q)).bigrams) for q in queries],
        category=[None if _null(v) else v for v in _column(req, "query_category_leaf")],
        brand=[None if _null(v) else v for v in _column(req, "query_brand")],
        seq_categories=cats,
        seq_authors=auths,
        seq_docs=docs,
        seq_total=np.array([sum(d.values()) for d in docs], dtype=np.float64),
        profile_tags=[frozenset(str(t) for t in _list(v)) for v in _column(req, "user_profile_tags")],
    )


def _doc_side(docs: pd.DataFrame, analyzer: Any) -> _DocSide:
    _require(docs, ["doc_id", "title", "category_leaf", "author_id"], "doc")
    titles = docs["title"].tolist()
    attr_words: list[list[frozenset[str]]] = []
    for v in _column(docs, "attributes"):
        values = [str(a).split("=", 1)[-1] for a in _list(v)]
        attr_words.append([ws for ws in (_word_set(analyzer, x) for x in values) if ws])
    labels = []
    for l1, l2, leaf, tags in zip(_column(docs, "category_l1"), _column(docs, "category_l2"),
                                  docs["category_leaf"].tolist(), _column(docs, "tags"), strict=True):
        labels.append(frozenset(str(x) for x in [l1, l2, leaf, *_list(tags)] if not _null(x)))
    return _DocSide(
        words=[_word_set(analyzer, t) for t in titles],
        bigrams=[frozenset(analyzer.analyze(str(t)).bigrams) for t in titles],
        category=docs["category_leaf"].tolist(),
        brand=[None if _null(v) else v for v in _column(docs, "brand")],
        author=[_key(v) for v in docs["author_id"].tolist()],
        doc_id=[_key(v) for v in docs["doc_id"].tolist()],
        attribute_words=attr_words,
        labels=labels,
    )


@dataclass(frozen=True)
class PreparedDocs:
    """The doc side of the cross features (token sets, categories, attributes), computed once per doc set:
    online, once per bundle for the whole corpus; then each request only pays for its pairs."""

    side: _DocSide
    text: TextConfig

    def __len__(self) -> int:
        return len(self.side.doc_id)


def prepare_docs(docs: Rows, text: TextConfig | None = None) -> PreparedDocs:
    """Doc rows (doc_id, title, category_l1/l2/leaf, brand, attributes, tags, author_id) made ready for pairing."""
    cfg = text or TextConfig()
    return PreparedDocs(_doc_side(_frame(docs, "doc"), analyzer_for(cfg)), cfg)


def _index(values: np.ndarray | Sequence[int] | None, n: int, size: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{what} must be a 1-D array of {n} row numbers, got shape {arr.shape}")
    if n and (arr.min() < 0 or arr.max() >= size):
        raise ValueError(f"{what} must lie in [0, {size}), got values in [{arr.min()}, {arr.max()}]")
    return arr


def compute_cross_features(
    requests: Rows,
    docs: Rows | PreparedDocs,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    names: Sequence[str] = CROSS_FEATURE_NAMES,
    text: TextConfig | None = None,
) -> np.ndarray:
    """Cross features float32 [N, F] of N (request row, doc row) pairs, columns in `names` order.

    `pairs` = (request row numbers, doc row numbers), one entry per pair; None pairs the single request row
    with every doc row (the online case: one request, its candidates). `docs` may be `prepare_docs` output
    (its text config then wins over `text`).
    """
    names = check_names(names)
    req = _frame(requests, "request")
    prepared = docs if isinstance(docs, PreparedDocs) else prepare_docs(docs, text)
    n_docs = len(prepared)
    if pairs is None:
        if len(req) != 1:
            raise ValueError(f"pairs=None pairs one request with every doc, but {len(req)} request rows were given")
        r_idx = np.zeros(n_docs, dtype=np.int64)
        d_idx = np.arange(n_docs, dtype=np.int64)
    else:
        r_raw, d_raw = pairs
        n = len(np.asarray(r_raw))
        r_idx = _index(r_raw, n, len(req), "pairs[0] (request rows)")
        d_idx = _index(d_raw, n, n_docs, "pairs[1] (doc rows)")
    rs = _request_side(req, analyzer_for(prepared.text))
    ds = prepared.side
    n = len(r_idx)
    shared = np.zeros(n)
    jacc = np.zeros(n)
    cover = np.zeros(n)
    bi_cover = np.zeros(n)
    attrs = np.zeros(n)
    cat_ev = np.zeros(n)
    auth_ev = np.zeros(n)
    doc_ev = np.zeros(n)
    tag_match = np.zeros(n)
    cat_match = np.zeros(n)
    brand_match = np.zeros(n)
    for k in range(n):
        i, j = r_idx[k], d_idx[k]
        qw, tw = rs.words[i], ds.words[j]
        inter = len(qw & tw)
        shared[k] = inter
        union = len(qw | tw)
        jacc[k] = inter / union if union else 0.0
        cover[k] = inter / len(qw) if qw else 0.0
        qb = rs.bigrams[i]
        bi_cover[k] = len(qb & ds.bigrams[j]) / len(qb) if qb else 0.0
        attrs[k] = sum(1 for ws in ds.attribute_words[j] if ws <= qw)
        cat = ds.category[j]
        cat_ev[k] = rs.seq_categories[i].get(cat, 0)
        auth_ev[k] = rs.seq_authors[i].get(ds.author[j], 0)
        doc_ev[k] = rs.seq_docs[i].get(ds.doc_id[j], 0)
        tag_match[k] = len(rs.profile_tags[i] & ds.labels[j])
        qc = rs.category[i]
        cat_match[k] = -1.0 if qc is None else float(qc == cat)
        qbnd = rs.brand[i]
        brand_match[k] = -1.0 if qbnd is None else float(qbnd == ds.brand[j])
    total = rs.seq_total[r_idx] if n else np.zeros(0)
    cols = {
        "qd_shared_words": shared,
        "qd_word_jaccard": jacc,
        "qd_word_coverage": cover,
        "qd_bigram_coverage": bi_cover,
        "qd_category_match": cat_match,
        "qd_brand_match": brand_match,
        "qd_attribute_matches": attrs,
        "ud_category_events": cat_ev,
        "ud_category_share": np.where(total > 0, cat_ev / np.maximum(total, 1.0), 0.0),
        "ud_author_events": auth_ev,
        "ud_doc_events": doc_ev,
        "ud_profile_tag_matches": tag_match,
    }
    if not n:
        return np.zeros((0, len(names)), dtype=np.float32)
    return np.stack([cols[name] for name in names], axis=1).astype(np.float32)


class CrossDocs:
    """The doc side of a three-tower coarse ranker's cross features, prepared once per doc set and looked up by
    doc id: the server (per request) and the offline funnel (per holdout day) pair request rows with it."""

    def __init__(self, prepared: PreparedDocs, doc_ids: np.ndarray, names: Sequence[str]) -> None:
        self.prepared = prepared
        self.names = check_names(names)
        order = np.argsort(doc_ids, kind="stable")
        self._ids = np.ascontiguousarray(np.asarray(doc_ids)[order], dtype=np.int64)
        self._rows = order.astype(np.int64)

    @classmethod
    def open(cls, path: str | Path, names: Sequence[str], text: TextConfig | None = None) -> CrossDocs:
        """Read a doc-rows parquet file (doc_id, title, category_l1/l2/leaf, brand, attributes, tags, author_id),
        the one the distill step writes beside a three-tower ranker."""
        rows = pd.read_parquet(path)
        if "doc_id" not in rows.columns:
            raise ValueError(f"{path}: no doc_id column")
        ids = rows["doc_id"].to_numpy(dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{path}: doc ids are not distinct")
        return cls(prepare_docs(rows, text), ids, names)

    def rows_of(self, doc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prepared row numbers of the docs found, mask [n] of the docs found)."""
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        if not len(self._ids):
            return np.zeros(0, np.int64), np.zeros(len(doc_ids), dtype=bool)
        pos = np.minimum(np.searchsorted(self._ids, doc_ids), len(self._ids) - 1)
        found = self._ids[pos] == doc_ids
        return self._rows[pos[found]], found

    def features(self, requests: Rows, request_rows: np.ndarray, doc_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values float32 [n, F], bucket ids int64 [n, F]) of the pairs (request_rows[i], doc_rows[i]), doc rows
        as `rows_of` gives them."""
        values = compute_cross_features(requests, self.prepared, (request_rows, doc_rows), self.names)
        return values, bucketize(values, self.names)
