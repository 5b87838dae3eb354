"""The one place that turns feature rows into model tensors, for training, export and serving alike.

`featurize_queries` and `featurize_docs` take a pandas DataFrame (a batch) or a list of dicts (one online
request) and return a dict of int64 tensors with fixed padded shapes; id 0 is always padding/null.

Query side columns: `query` (str, required); `qu_category_leaf`, `qu_brand` (the query's understood leaf
category and brand, str or null); `user_id` (int or null => logged-out), `user_gender`
(`m`/`f`/`u` or null), `user_age` (int or null), `user_city`, `user_profile_tags` (list[str]),
`recent_queries` (list[str], newest first), behaviour sequences `seq_{rt,st,lt}_{doc_ids,categories,authors,
event_types}` (lists, newest first; categories are leaf categories) and the configured `user_numeric`
columns. Only `query` is required: a logged-out request may omit every user, sequence and user-numeric
column (absent reads as null).

Doc side columns: `doc_id`, `title`, `category_l1`, `category_l2`, `category_leaf`, `author_id` (required,
non-null), `brand` (nullable), `attributes`, `tags` (list[str]) and the configured `doc_numeric` columns
(present; null -> bucket 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.contract.schema import EVENT_TYPES, GENDERS
from ebr.models.config import SEQUENCE_FIELDS, SEQUENCE_WINDOWS, FeaturizerConfig, NumericFeature
from ebr.text.analyzer import TextAnalyzer, TextConfig
from ebr.text.hashing import HashedVocab

if TYPE_CHECKING:
    import torch

Rows = pd.DataFrame | Sequence[Mapping[str, Any]]

GENDER_IDS = {g: i + 1 for i, g in enumerate(GENDERS)}
EVENT_TYPE_IDS = {e: i + 1 for i, e in enumerate(EVENT_TYPES)}
OTHER_EVENT_TYPE_ID = len(EVENT_TYPES) + 1
NUM_GENDER_IDS = len(GENDERS) + 1
NUM_EVENT_TYPE_IDS = len(EVENT_TYPES) + 2

# Hash namespaces (<= 16 bytes): tokens of different fields land in independent buckets.
NS = {
    "unigram": "uni",
    "bigram": "bi",
    "word": "word",
    "user_id": "user_id",
    "city": "city",
    "profile_tag": "profile_tag",
    "doc_id": "doc_id",
    "category_l1": "cat_l1",
    "category_l2": "cat_l2",
    "category": "category",
    "author_id": "author_id",
    "brand": "brand",
    "attribute": "attr",
    "tag": "tag",
}

QUERY_REQUIRED = ("query",)
USER_COLUMNS = ("user_id", "user_gender", "user_age", "user_city", "user_profile_tags", "recent_queries")
# query understanding of the query text (the feature store's query_stats view; null for a query never seen)
QUERY_UNDERSTANDING_COLUMNS = ("qu_category_leaf", "qu_brand")
SEQUENCE_COLUMNS = tuple(f"seq_{w}_{f}" for w in SEQUENCE_WINDOWS for f in SEQUENCE_FIELDS)
DOC_REQUIRED = ("doc_id", "title", "category_l1", "category_l2", "category_leaf", "author_id")
DOC_COLUMNS = DOC_REQUIRED + ("brand", "attributes", "tags")


def query_tensor_keys(config: FeaturizerConfig) -> list[str]:
    """Keys of the dict `featurize_queries` returns (the query tower's input)."""
    del config  # the key set is fixed; shapes depend on the config
    return [
        "query_unigrams", "query_bigrams", "query_words", "recent_query_words", "query_category", "query_brand",
        "user_id", "user_gender", "user_age", "user_city", "user_profile_tags", "user_numeric",
        *SEQUENCE_COLUMNS,
    ]  # fmt: skip


def doc_tensor_keys(config: FeaturizerConfig) -> list[str]:
    """Keys of the dict `featurize_docs` returns (the doc tower's input)."""
    del config
    return [
        "doc_id", "title_words", "category_l1", "category_l2", "category_leaf", "brand",
        "attributes", "tags", "author_id", "doc_numeric",
    ]  # fmt: skip


def vocabularies(config: FeaturizerConfig) -> dict[str, HashedVocab]:
    """The hashed vocabularies of every id field, sized by `config.vocab`."""
    v = config.vocab
    sizes = {
        "unigram": v.unigram, "bigram": v.bigram, "word": v.word, "user_id": v.user_id,
        "city": v.city, "profile_tag": v.profile_tag, "doc_id": v.doc_id, "category_l1": v.category,
        "category_l2": v.category, "category": v.category, "author_id": v.author_id, "brand": v.brand,
        "attribute": v.attribute, "tag": v.tag,
    }  # fmt: skip
    return {k: HashedVocab(NS[k], n) for k, n in sizes.items()}


_ANALYZERS: dict[str, TextAnalyzer] = {}


def analyzer_for(text: TextConfig) -> TextAnalyzer:
    """A cached analyzer per text config (the analyzer caches per distinct text)."""
    key = text.model_dump_json()
    if key not in _ANALYZERS:
        _ANALYZERS[key] = TextAnalyzer(text)
    return _ANALYZERS[key]


# ----------------------------------------------------------------------------------------------- helpers


# Type tuples built once: `int | np.integer` in isinstance builds a new union object on every call.
_BOOLS = (bool, np.bool_)
_INTS = (int, np.integer)
_FLOATS = (float, np.floating)
_SEQUENCES = (list, tuple, np.ndarray)


def _is_null(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, _FLOATS) and v != v  # NaN


# Below this many rows (online requests) plain Python beats pandas' per-call overhead.
_SMALL = 64


class _Table:
    """Column access over a DataFrame or a list of dicts; a request never pays for building a DataFrame."""

    def __init__(self, rows: Rows, side: str) -> None:
        self.side = side
        self._df: pd.DataFrame | None = None
        self._rows: list[Mapping[str, Any]] = []
        if isinstance(rows, pd.DataFrame):
            self._df = rows
            self.columns = set(rows.columns)
            self.n = len(rows)
            return
        if isinstance(rows, Mapping):
            raise TypeError(f"{side} rows must be a DataFrame or list of dicts, not one dict (wrap it in [])")
        self._rows = list(rows)
        for i, r in enumerate(self._rows):
            if not isinstance(r, Mapping):
                raise TypeError(f"{side} row {i} must be a dict, got {type(r).__name__}")
        self.columns = set().union(*(r.keys() for r in self._rows)) if self._rows else set()
        self.n = len(self._rows)

    def __len__(self) -> int:
        return self.n

    def require(self, columns: Sequence[str]) -> None:
        """Error naming every required column that is absent."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ValueError(f"{self.side} rows are missing required column(s): {', '.join(missing)}")

    def column(self, name: str) -> np.ndarray:
        """Column values as an object array; an absent optional column reads as all null."""
        if name not in self.columns:
            return np.full(self.n, None, dtype=object)
        if self._df is not None:
            return self._df[name].to_numpy(dtype=object)
        out = np.empty(self.n, dtype=object)
        for i, r in enumerate(self._rows):
            out[i] = r.get(name)
        return out


def _non_null(values: np.ndarray, name: str) -> None:
    bad = [i for i, v in enumerate(values) if _is_null(v)]
    if bad:
        raise ValueError(f"column {name!r} must not be null; {len(bad)} null row(s), e.g. rows {bad[:5]}")


def _token(v: Any, name: str) -> str:
    """The string a categorical/id value is hashed as: ints in decimal, strings as-is."""
    if isinstance(v, str):
        return v
    if isinstance(v, _BOOLS):
        raise ValueError(f"column {name!r}: expected an id or a string, got a bool ({v!r})")
    if isinstance(v, _INTS):
        return str(int(v))
    if isinstance(v, _FLOATS) and float(v).is_integer():
        return str(int(v))
    raise ValueError(f"column {name!r}: expected an int id or a string, got {type(v).__name__} ({v!r})")


# Bucket ids of the ints and strings seen before, per vocabulary: an online request hashes ~200 values (its
# behaviour sequences), and a dict hit costs a tenth of the checks and the keyed hash. Exact types only (a bool
# equals 1 but is refused; a float is checked every time). Bounded: a full memo starts over.
_MEMO_TYPES = frozenset({int, str, np.int64})
_MEMO_MAX = 1 << 20
_MEMOS: dict[HashedVocab, dict[Any, int]] = {}


def _small_ids(values: Sequence[Any], vocab: HashedVocab, name: str) -> list[int]:
    """Bucket ids of a few values (one request's), null -> 0, through the vocabulary's memo."""
    memo = _MEMOS.get(vocab)
    if memo is None:
        memo = _MEMOS.setdefault(vocab, {})
    out = []
    for v in values:
        memoable = type(v) in _MEMO_TYPES
        i = memo.get(v) if memoable else None
        if i is None:
            i = 0 if _is_null(v) else vocab.id(_token(v, name))
            if memoable:
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[v] = i
        out.append(i)
    return out


def _factorize(values: np.ndarray, name: str) -> tuple[np.ndarray, list[Any]]:
    """`pd.factorize` (codes, uniques in order of appearance, null -> -1), in plain Python for a few values."""
    if len(values) > _SMALL:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return codes, list(uniques)
    seen: dict[Any, int] = {}
    codes = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            codes[i] = -1 if _is_null(v) else seen.setdefault(v, len(seen))
        except TypeError as e:
            raise ValueError(f"column {name!r}: expected strings, got {type(v).__name__} ({v!r})") from e
    return codes, list(seen)


def _hash_scalars(values: np.ndarray, vocab: HashedVocab, name: str) -> np.ndarray:
    """Bucket ids of one value per row; null -> 0. Each distinct value is checked and hashed once."""
    out = np.zeros(len(values), dtype=np.int64)
    if len(values) == 0:
        return out
    if len(values) <= _SMALL:
        return np.array(_small_ids(values, vocab, name), dtype=np.int64)
    if values.dtype == object:
        # ids arrive as Python ints: a typed (int64/float64) array factorizes far faster than objects
        values = pd.Series(values, dtype=object).infer_objects().to_numpy()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques):
        ids = np.fromiter((vocab.id(_token(u, name)) for u in uniques), dtype=np.int64, count=len(uniques))
        valid = codes >= 0
        out[valid] = ids[codes[valid]]
    return out


def _flat(lists: list[Sequence[Any]]) -> np.ndarray:
    """All list entries, in order, as one 1-D array (numpy arrays from parquet are joined without copies
    through Python objects)."""
    if lists and all(isinstance(x, np.ndarray) for x in lists):
        return np.concatenate(lists)
    flat = list(chain.from_iterable(lists))
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr


_EMPTY = np.zeros(0, dtype=object)


def _lists(values: np.ndarray, name: str, max_len: int) -> list[Sequence[Any]]:
    """Each row's sequence truncated to `max_len` (lists stay lists, arrays stay arrays); None/NaN -> []."""
    out: list[Sequence[Any]] = []
    for i, v in enumerate(values):
        if isinstance(v, _SEQUENCES):
            out.append(v[:max_len])
        elif isinstance(v, pd.Series):
            out.append(v.to_numpy()[:max_len])
        elif _is_null(v):
            out.append(_EMPTY)
        else:
            raise ValueError(f"column {name!r} must hold lists; row {i} holds {type(v).__name__} ({v!r})")
    return out


def _scatter(lists: list[Sequence[Any]], ids: np.ndarray, max_len: int) -> np.ndarray:
    """Place the flat `ids` of the (truncated) `lists` into a [rows, max_len] zero-padded array."""
    out = np.zeros((len(lists), max_len), dtype=np.int64)
    if len(lists) == 1:  # one online request
        out[0, : len(ids)] = ids
        return out
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    if lengths.sum():
        rows = np.repeat(np.arange(len(lists)), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, np.arange(lengths.sum()) - starts] = ids
    return out


def _hash_lists(lists: list[Sequence[Any]], vocab: HashedVocab, max_len: int, name: str) -> np.ndarray:
    if len(lists) == 1 and len(lists[0]) <= _SMALL:  # one online request: no flattening
        return _scatter(lists, np.array(_small_ids(lists[0], vocab, name), dtype=np.int64), max_len)
    return _scatter(lists, _hash_scalars(_flat(lists), vocab, name), max_len)


def _bucketize(values: np.ndarray, feature: NumericFeature) -> np.ndarray:
    """Bucket ids on the feature's fixed boundaries; null/NaN -> 0."""
    try:
        if len(values) <= _SMALL:
            nums = np.array([np.nan if _is_null(v) else float(v) for v in values], dtype=np.float64)
        else:
            nums = pd.to_numeric(pd.Series(values, dtype=object), errors="raise").astype("float64").to_numpy()
    except (ValueError, TypeError) as e:
        raise ValueError(f"column {feature.name!r} must be numeric: {e}") from e
    edges = np.asarray(feature.edges(), dtype=np.float64)
    out = np.searchsorted(edges, np.nan_to_num(nums, nan=0.0), side="right").astype(np.int64) + 1
    out[np.isnan(nums)] = 0
    return out


def _numeric_block(table: _Table, features: Sequence[NumericFeature], required: bool) -> np.ndarray:
    if required:
        table.require([f.name for f in features])
    cols = [_bucketize(table.column(f.name), f) for f in features]
    return np.stack(cols, axis=1) if cols else np.zeros((len(table), 0), dtype=np.int64)


# Distinct texts analyzed at once by `_text_ids`: the whole corpus' titles at once (1M at `large`) held ~2.8 GB of
# analyzed strings; a chunk holds ~50 MB.
_TEXT_CHUNK = 20_000


def _text_ids(
    texts: np.ndarray, config: FeaturizerConfig, vocabs: dict[str, HashedVocab], parts: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """Padded id arrays per granularity (`parts`: granularity -> max length), analyzing each text once."""
    analyzer = analyzer_for(config.text)
    codes, uniques = _factorize(np.asarray(texts, dtype=object), "text")
    tables = {part: np.zeros((len(uniques), max_len), dtype=np.int64) for part, max_len in parts.items()}
    for lo in range(0, len(uniques), _TEXT_CHUNK):  # the analyses (~2.6 KB of strings a title) a chunk at a time
        granules = [analyzer.analyze(t) for t in uniques[lo : lo + _TEXT_CHUNK]]
        for part, max_len in parts.items():
            table, vocab = tables[part], vocabs[part]
            for i, g in enumerate(granules, start=lo):
                table[i] = vocab.ids(getattr(g, f"{part}s"), max_len)
    return {part: table[codes] if len(codes) else np.zeros((0, parts[part]), dtype=np.int64)
            for part, table in tables.items()}


def _check_strings(values: np.ndarray, name: str) -> None:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"column {name!r} must hold strings; row {i} holds {type(v).__name__} ({v!r})")


def _tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in arrays.items()}


# ------------------------------------------------------------------------------------------------ public


def query_arrays(rows: Rows, config: FeaturizerConfig) -> dict[str, np.ndarray]:
    """The query-side arrays (int64, zero-padded) of `featurize_queries`, without torch."""
    df = _Table(rows, "query")
    df.require(QUERY_REQUIRED)
    vocabs = vocabularies(config)
    ml = config.max_len
    n = len(df)

    queries = df.column("query")
    _non_null(queries, "query")
    _check_strings(queries, "query")
    text = _text_ids(
        queries,
        config,
        vocabs,
        {"unigram": ml.query_unigrams, "bigram": ml.query_bigrams, "word": ml.query_words},
    )
    out: dict[str, np.ndarray] = {
        "query_unigrams": text["unigram"],
        "query_bigrams": text["bigram"],
        "query_words": text["word"],
    }

    recent = _lists(df.column("recent_queries"), "recent_queries", ml.recent_queries)
    flat = _flat(recent)
    _check_strings(flat, "recent_queries")
    words = np.zeros((n, ml.recent_queries, ml.query_words), dtype=np.int64)
    if len(flat):
        flat_words = _text_ids(flat, config, vocabs, {"word": ml.query_words})["word"]
        lengths = np.array([len(x) for x in recent], dtype=np.int64)
        rows_idx = np.repeat(np.arange(n), lengths)
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        words[rows_idx, pos] = flat_words
    out["recent_query_words"] = words
    out["query_category"] = _hash_scalars(df.column("qu_category_leaf"), vocabs["category"], "qu_category_leaf")
    out["query_brand"] = _hash_scalars(df.column("qu_brand"), vocabs["brand"], "qu_brand")

    out["user_id"] = _hash_scalars(df.column("user_id"), vocabs["user_id"], "user_id")
    genders = df.column("user_gender")
    gender_ids = np.zeros(n, dtype=np.int64)
    for i, g in enumerate(genders):
        if _is_null(g):
            continue
        if g not in GENDER_IDS:
            raise ValueError(f"column 'user_gender' must be one of {list(GENDERS)} or null; row {i} is {g!r}")
        gender_ids[i] = GENDER_IDS[g]
    out["user_gender"] = gender_ids
    out["user_age"] = _bucketize(df.column("user_age"), config.user_age)
    out["user_city"] = _hash_scalars(df.column("user_city"), vocabs["city"], "user_city")
    tags = _lists(df.column("user_profile_tags"), "user_profile_tags", ml.profile_tags)
    out["user_profile_tags"] = _hash_lists(tags, vocabs["profile_tag"], ml.profile_tags, "user_profile_tags")
    out["user_numeric"] = _numeric_block(df, config.user_numeric, required=False)

    field_vocab = {"doc_ids": "doc_id", "categories": "category", "authors": "author_id"}
    for w in SEQUENCE_WINDOWS:
        max_len = ml.seq(w)
        doc_col = f"seq_{w}_doc_ids"
        doc_lists = _lists(df.column(doc_col), doc_col, max_len)
        for f in SEQUENCE_FIELDS:
            col = f"seq_{w}_{f}"
            lists = doc_lists if f == "doc_ids" else _lists(df.column(col), col, max_len)
            if f != "doc_ids":
                for i, (a, b) in enumerate(zip(lists, doc_lists, strict=True)):
                    if len(a) and len(a) != len(b):
                        raise ValueError(
                            f"row {i}: column {col!r} has {len(a)} entries but {doc_col!r} has {len(b)} "
                            "(side info must align with doc ids)"
                        )
            if f == "event_types":
                codes, uniques = _factorize(_flat(lists), col)
                for x in uniques:
                    if not isinstance(x, str):
                        raise ValueError(f"column {col!r} must hold strings, got {type(x).__name__} ({x!r})")
                table = np.array([0] + [EVENT_TYPE_IDS.get(x, OTHER_EVENT_TYPE_ID) for x in uniques])
                out[col] = _scatter(lists, table[codes + 1], max_len)
            else:
                out[col] = _hash_lists(lists, vocabs[field_vocab[f]], max_len, col)
    return out


def doc_arrays(rows: Rows, config: FeaturizerConfig) -> dict[str, np.ndarray]:
    """The doc-side arrays (int64, zero-padded) of `featurize_docs`, without torch."""
    df = _Table(rows, "doc")
    df.require(DOC_REQUIRED)
    vocabs = vocabularies(config)
    ml = config.max_len
    cols = {c: df.column(c) for c in DOC_COLUMNS}
    for c in DOC_REQUIRED:
        _non_null(cols[c], c)
    _check_strings(cols["title"], "title")
    out: dict[str, np.ndarray] = {
        "doc_id": _hash_scalars(cols["doc_id"], vocabs["doc_id"], "doc_id"),
        "title_words": _text_ids(cols["title"], config, vocabs, {"word": ml.title_words})["word"],
        "category_l1": _hash_scalars(cols["category_l1"], vocabs["category_l1"], "category_l1"),
        "category_l2": _hash_scalars(cols["category_l2"], vocabs["category_l2"], "category_l2"),
        "category_leaf": _hash_scalars(cols["category_leaf"], vocabs["category"], "category_leaf"),
        "brand": _hash_scalars(cols["brand"], vocabs["brand"], "brand"),
        "attributes": _hash_lists(
            _lists(cols["attributes"], "attributes", ml.attributes),
            vocabs["attribute"],
            ml.attributes,
            "attributes",
        ),
        "tags": _hash_lists(_lists(cols["tags"], "tags", ml.tags), vocabs["tag"], ml.tags, "tags"),
        "author_id": _hash_scalars(cols["author_id"], vocabs["author_id"], "author_id"),
        "doc_numeric": _numeric_block(df, config.doc_numeric, required=True),
    }
    return out


def featurize_queries(rows: Rows, config: FeaturizerConfig) -> dict[str, torch.Tensor]:
    """Query-tower input tensors (int64) for a batch of query rows or one online request."""
    return _tensors(query_arrays(rows, config))


def featurize_docs(rows: Rows, config: FeaturizerConfig) -> dict[str, torch.Tensor]:
    """Doc-tower input tensors (int64) for a batch of doc rows."""
    return _tensors(doc_arrays(rows, config))
