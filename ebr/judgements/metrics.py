"""Offline retrieval and coarse-ranking metrics, vectorized over [R, K] doc-id arrays (best first, -1 = empty).
Each returns, per K, a `MetricValue`: the mean over the requests it is defined for, and their number."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

EMPTY = -1
_KEY_RE = re.compile(r"^([a-z][a-z0-9_]*)@([1-9][0-9]*)$")
LOWER_IS_BETTER = frozenset({"filtered_share"})


@dataclass(frozen=True)
class MetricValue:
    """A metric's mean (NaN when no request qualifies) and the number of requests it averages over."""

    value: float
    n_requests: int

    def to_json(self) -> dict[str, float | int | None]:
        return {"value": None if math.isnan(self.value) else float(self.value), "n_requests": int(self.n_requests)}

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> MetricValue:
        v = obj["value"]
        return cls(float("nan") if v is None else float(v), int(obj["n_requests"]))  # type: ignore[arg-type]


def metric_key(name: str, k: int) -> str:
    """`name@K`, the key of a metric at a cut-off (e.g. `true_recall@100`)."""
    return f"{name}@{k}"


def parse_metric_key(key: str) -> tuple[str, int]:
    """Split `name@K` into (name, K); a malformed key is a ValueError naming it."""
    m = _KEY_RE.match(key)
    if not m:
        raise ValueError(f"metric key {key!r} must look like name@K, e.g. true_recall@100")
    return m.group(1), int(m.group(2))


def _pack_codes(ids: np.ndarray, n_rows: int) -> tuple[np.ndarray, int, np.ndarray | None]:
    """How doc ids pack with their row into one sortable int64 (`row * span + code`): the ids' codes (1-based, -1
    -> 0), the span, and the sorted distinct ids when the ids are too large to pack as they are (codes are then
    ranks)."""
    span = int(ids.max()) + 2 if ids.size else 1
    if n_rows and span > (2**62) // n_rows:  # huge ids: compress them to ranks first
        uniq, inv = np.unique(ids, return_inverse=True)
        return inv.reshape(ids.shape) + 1, len(uniq) + 1, uniq
    return ids + 1, span, None


def _lookup_codes(docs: np.ndarray, span: int, uniq: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(valid, codes) of doc ids to look up in a set packed by `_pack_codes`: valid where the id can be in it."""
    if uniq is None:
        return (docs >= 0) & (docs <= span - 2), docs + 1
    i = np.minimum(np.searchsorted(uniq, docs), len(uniq) - 1)
    return (docs >= 0) & (uniq[i] == docs), i + 1


@dataclass(frozen=True)
class Judgements:
    """Ground truth as flat (row, doc, grade >= 1) triples plus which rows are judged: for clicks, rows with a
    click; for labels, rows whose query has complete labels (unlisted docs are grade 0)."""

    n_rows: int
    rows: np.ndarray
    docs: np.ndarray
    grades: np.ndarray
    judged: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.rows) == len(self.docs) == len(self.grades)):
            raise ValueError("judgements: rows, docs and grades must have the same length")
        if self.judged.shape != (self.n_rows,):
            raise ValueError(f"judgements: judged must have shape ({self.n_rows},), got {self.judged.shape}")
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= self.n_rows):
            raise ValueError(f"judgements: rows must lie in [0, {self.n_rows})")
        if len(self.grades) and self.grades.min() < 1:
            raise ValueError("judgements: grades must be >= 1 (grade-0 docs are simply not listed)")
        if len(self.rows) and not self.judged[self.rows].all():
            raise ValueError("judgements: a row with graded docs must be judged")

    @classmethod
    def from_arrays(
        cls, n_rows: int, rows: np.ndarray, docs: np.ndarray, grades: np.ndarray, judged: np.ndarray
    ) -> Judgements:
        """Drop grade-0 triples and duplicate (row, doc) pairs (the highest grade wins)."""
        rows = np.asarray(rows, dtype=np.int64)
        docs = np.asarray(docs, dtype=np.int64)
        grades = np.asarray(grades, dtype=np.int64)
        if len(grades) and grades.min() < 0:
            raise ValueError("judgements: grades must be >= 0")
        keep = grades >= 1
        rows, docs, grades = rows[keep], docs[keep], grades[keep]
        order = np.lexsort((-grades, docs, rows))
        rows, docs, grades = rows[order], docs[order], grades[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (docs[1:] != docs[:-1])
        return cls(n_rows, rows[first], docs[first], grades[first], np.asarray(judged, dtype=bool))

    def _packed(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
        """(packed (row, doc) keys ascending, their grades, the span, the doc ids' ranks when the ids are too
        large to pack), computed once: every system of an evaluation is looked up in the same labels."""
        cache = self.__dict__.get("_packed_keys")
        if cache is None:
            codes, span, uniq = _pack_codes(self.docs, self.n_rows)
            keys = self.rows * span + codes
            grades = self.grades
            if len(keys) > 1 and (keys[1:] < keys[:-1]).any():  # built directly, not through from_arrays
                order = np.argsort(keys, kind="stable")
                keys, grades = keys[order], grades[order]
            cache = (keys, grades, span, uniq)
            self.__dict__["_packed_keys"] = cache
        return cache

    def slot_grades(self, ids: np.ndarray) -> np.ndarray:
        """The grade of every retrieved slot of `ids` [R, K] (rows are this object's rows): 0 for an unlisted doc
        or an empty slot. Memory is the size of `ids`, not of the labels (~1,000 per request at `large`)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape, dtype=np.int64)
        keys, grades, span, uniq = self._packed()
        if not len(keys) or ids.size == 0:
            return out
        valid, codes = _lookup_codes(ids, span, uniq)
        q = np.arange(ids.shape[0], dtype=np.int64)[:, None] * span + np.where(valid, codes, 0)
        j = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        found = valid & (keys[j] == q)
        out[found] = grades[j[found]]
        return out

    def count_at_least(self, min_grade: int) -> np.ndarray:
        """Per row, how many docs have grade >= `min_grade` (cached per grade)."""
        cache = self.__dict__.setdefault("_counts", {})
        if min_grade not in cache:
            rows = self.rows if min_grade <= 1 else self.rows[self.grades >= min_grade]
            cache[min_grade] = np.bincount(rows, minlength=self.n_rows)
        return cache[min_grade]

    @classmethod
    def from_clicks(cls, clicked: Sequence[Iterable[int]]) -> Judgements:
        """Clicked doc ids per request; a request without clicks is not judged."""
        lists = [list(c) for c in clicked]
        lengths = np.array([len(c) for c in lists], dtype=np.int64)
        rows = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
        docs = np.array([d for c in lists for d in c], dtype=np.int64)
        return cls.from_arrays(len(lists), rows, docs, np.ones(len(docs), dtype=np.int64), lengths > 0)

    @classmethod
    def from_labels(cls, labels: Sequence[Mapping[int, int] | None]) -> Judgements:
        """Complete labels per request as {doc_id: label}; None = the query has no complete labels."""
        rows, docs, grades = [], [], []
        for i, lab in enumerate(labels):
            for d, g in (lab or {}).items():
                rows.append(i)
                docs.append(d)
                grades.append(g)
        judged = np.array([lab is not None for lab in labels], dtype=bool)
        return cls.from_arrays(len(labels), np.array(rows), np.array(docs), np.array(grades), judged)


class TopK:
    """Retrieved doc ids [R, K] (-1 = empty slot) with a per-row sorted index for fast (row, doc) lookups.

    Build it once per system and pass it to several metrics; a doc repeated within a row is a ValueError."""

    def __init__(self, ids: np.ndarray, what: str = "retrieved") -> None:
        arr = np.asarray(ids)
        if arr.ndim != 2:
            raise ValueError(f"{what} must be a 2-D [requests, K] array of doc ids, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{what} must hold integer doc ids (-1 = empty), got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and arr.min() < EMPTY:
            raise ValueError(f"{what} holds negative ids other than {EMPTY} (the empty slot)")
        self.ids, self.what = arr, what
        n_rows, k = arr.shape
        order = np.argsort(arr, axis=1, kind="stable")
        ordered = np.take_along_axis(arr, order, axis=1)
        dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != EMPTY)
        if dup.any():
            r, c = np.argwhere(dup)[0]
            raise ValueError(f"{what}: request row {r} holds doc id {ordered[r, c + 1]} more than once")
        codes, self._span, self._uniq = _pack_codes(ordered, n_rows)
        self._keys = (np.arange(n_rows, dtype=np.int64)[:, None] * self._span + codes).ravel()
        self._cols = order.ravel()

    @property
    def shape(self) -> tuple[int, int]:
        return self.ids.shape

    def positions(self, rows: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """0-based column of each (row, doc) pair, or K when the doc is not in that row."""
        n_rows, k = self.ids.shape
        out = np.full(len(rows), k, dtype=np.int64)
        if len(rows) == 0 or self.ids.size == 0:
            return out
        valid, codes = _lookup_codes(np.asarray(docs, dtype=np.int64), self._span, self._uniq)
        q = np.asarray(rows, dtype=np.int64) * self._span + codes
        j = np.minimum(np.searchsorted(self._keys, q), len(self._keys) - 1)
        found = valid & (self._keys[j] == q)
        out[found] = self._cols[j[found]]
        return out


def _topk(retrieved: np.ndarray | TopK, ks: Sequence[int], what: str = "retrieved") -> TopK:
    top = retrieved if isinstance(retrieved, TopK) else TopK(retrieved, what)
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be >= 1, got {k}")
        if k > top.shape[1]:
            raise ValueError(f"{top.what} has {top.shape[1]} columns; K={k} needs at least {k}")
    return top


def _mean(per_row: np.ndarray, eligible: np.ndarray) -> MetricValue:
    n = int(eligible.sum())
    return MetricValue(float(per_row[eligible].mean()) if n else float("nan"), n)


@dataclass(frozen=True)
class PerRequest:
    """A metric's value on every request and which requests it is defined for: the mean over any subset of the
    requests equals the metric computed on that subset alone (cross-fitting scores folds without recomputing)."""

    values: np.ndarray
    eligible: np.ndarray

    def mean(self, rows: np.ndarray | None = None) -> MetricValue:
        """The metric over all requests, or over the request rows `rows` (ascending)."""
        if rows is None:
            return _mean(self.values, self.eligible)
        return _mean(self.values[rows], self.eligible[rows])


def _recall_rows(top: TopK, truth: Judgements, ks: Sequence[int], min_grade: int) -> dict[int, PerRequest]:
    hits = np.cumsum(truth.slot_grades(top.ids) >= min_grade, axis=1)
    n_rel = truth.count_at_least(min_grade)
    eligible = truth.judged & (n_rel > 0)
    denom = np.maximum(n_rel, 1)
    return {k: PerRequest(hits[:, k - 1] / denom, eligible) for k in ks}


def _recall(top: TopK, truth: Judgements, ks: Sequence[int], min_grade: int) -> dict[int, MetricValue]:
    return {k: per.mean() for k, per in _recall_rows(top, truth, ks, min_grade).items()}


def _check_rows(top: TopK, truth: Judgements) -> None:
    if top.shape[0] != truth.n_rows:
        raise ValueError(f"{top.what} has {top.shape[0]} rows but the ground truth has {truth.n_rows} requests")


def click_recall(retrieved: np.ndarray | TopK, clicks: Judgements, ks: Sequence[int]) -> dict[int, MetricValue]:
    """Per request with >= 1 click: share of its clicked docs in the top-K; mean over those requests."""
    top = _topk(retrieved, ks)
    _check_rows(top, clicks)
    return _recall(top, clicks, ks, 1)


def true_recall(retrieved: np.ndarray | TopK, labels: Judgements, ks: Sequence[int]) -> dict[int, MetricValue]:
    """Per request with complete labels and >= 1 doc of label >= 1: share of those docs in the top-K."""
    top = _topk(retrieved, ks)
    _check_rows(top, labels)
    return _recall(top, labels, ks, 1)


def true_recall_rows(retrieved: np.ndarray | TopK, labels: Judgements, ks: Sequence[int]) -> dict[int, PerRequest]:
    """`true_recall` per request (`PerRequest.mean()` is `true_recall`)."""
    top = _topk(retrieved, ks)
    _check_rows(top, labels)
    return _recall_rows(top, labels, ks, 1)


def p_good(
    retrieved: np.ndarray | TopK, labels: Judgements, ks: Sequence[int], min_label: int = 1
) -> dict[int, MetricValue]:
    """Per request with complete labels: (docs of label >= min_label in the top-K) / K; empty slots count as bad."""
    top = _topk(retrieved, ks)
    _check_rows(top, labels)
    good = np.cumsum(labels.slot_grades(top.ids) >= min_label, axis=1)
    return {k: _mean(good[:, k - 1] / k, labels.judged) for k in ks}


def p_good_exact(retrieved: np.ndarray | TopK, labels: Judgements, ks: Sequence[int]) -> dict[int, MetricValue]:
    """p_good with label = 2 (exact match) as good."""
    return p_good(retrieved, labels, ks, min_label=2)


def _ideal_dcg(rows: np.ndarray, grades: np.ndarray, n_rows: int, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Per row, the DCG of its labels in grade order: from the count of each grade (no sort of the labels)."""
    cum_disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(max(ks)) + 2.0))])  # first n discounts
    out = {k: np.zeros(n_rows) for k in ks}
    above = np.zeros(n_rows, dtype=np.int64)
    for g in np.unique(grades)[::-1]:
        n = np.bincount(rows[grades == g], minlength=n_rows)
        gain = 2.0 ** float(g) - 1.0
        for k in ks:
            out[k] += gain * (cum_disc[np.minimum(above + n, k)] - cum_disc[np.minimum(above, k)])
        above += n
    return out


def _ideal_dcg_of(labels: Judgements, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """The ideal DCG of `labels` (it depends on the labels alone), computed once per judgements object and Ks:
    an evaluation scores every system against the same day's labels."""
    cache = labels.__dict__.setdefault("_ideal_dcg", {})
    key = tuple(ks)
    if key not in cache:
        cache[key] = _ideal_dcg(labels.rows, labels.grades, labels.n_rows, ks)
    return cache[key]


def ndcg(retrieved: np.ndarray | TopK, labels: Judgements, ks: Sequence[int]) -> dict[int, MetricValue]:
    """NDCG@K with gains 2^label - 1 and discount 1/log2(rank + 1); requests with complete labels and IDCG > 0."""
    return {k: per.mean() for k, per in ndcg_rows(retrieved, labels, ks).items()}


def ndcg_rows(retrieved: np.ndarray | TopK, labels: Judgements, ks: Sequence[int]) -> dict[int, PerRequest]:
    """`ndcg` per request (`PerRequest.mean()` is `ndcg`)."""
    top = _topk(retrieved, ks)
    _check_rows(top, labels)
    gains = np.exp2(labels.slot_grades(top.ids).astype(np.float64)) - 1.0
    dcg = np.cumsum(gains / np.log2(np.arange(gains.shape[1]) + 2.0), axis=1)
    ideal = _ideal_dcg_of(labels, ks)
    out = {}
    for k in ks:
        out[k] = PerRequest(dcg[:, k - 1] / np.where(ideal[k] > 0, ideal[k], 1.0), labels.judged & (ideal[k] > 0))
    return out


def filtered_share(retrieved: np.ndarray | TopK, removed: np.ndarray, ks: Sequence[int]) -> dict[int, MetricValue]:
    """Per request with >= 1 filled slot in the top-K: share of its filled top-K slots that relevance control
    removes (`removed` is a bool [R, K_ret] mask aligned with `retrieved`)."""
    retrieved = _topk(retrieved, ks).ids
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != retrieved.shape:
        raise ValueError(f"removed mask has shape {removed.shape}, retrieved has {retrieved.shape}")
    filled = retrieved != EMPTY
    out = {}
    for k in ks:
        n_filled = filled[:, :k].sum(axis=1)
        n_removed = (removed[:, :k] & filled[:, :k]).sum(axis=1)
        out[k] = _mean(n_removed / np.maximum(n_filled, 1), n_filled > 0)
    return out


def ann_recall(ann: np.ndarray | TopK, exact: np.ndarray | TopK, ks: Sequence[int]) -> dict[int, MetricValue]:
    """|ANN top-K ∩ exact top-K| / K per query (K = filled exact slots if the corpus is smaller); mean."""
    ann_top = _topk(ann, ks, "ann")
    exact = _topk(exact, ks, "exact").ids
    if ann_top.shape[0] != exact.shape[0]:
        raise ValueError(f"ann has {ann_top.shape[0]} rows, exact has {exact.shape[0]}; they must be the same queries")
    n_rows, k_ex = exact.shape
    flat = exact.ravel()
    valid = flat != EMPTY
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), k_ex)[valid]
    cols = np.tile(np.arange(k_ex, dtype=np.int64), n_rows)[valid]
    pos = ann_top.positions(rows, flat[valid])
    out = {}
    for k in ks:
        in_exact = cols < k
        hits = np.bincount(rows, weights=in_exact & (pos < k), minlength=n_rows)
        n_exact = np.bincount(rows, weights=in_exact, minlength=n_rows)
        out[k] = _mean(hits / np.maximum(n_exact, 1), n_exact > 0)
    return out


def teacher_gains(teacher_scores: np.ndarray) -> np.ndarray:
    """Non-negative gains: each score minus its request's lowest candidate score (NaN stays NaN); NDCG ignores
    the gains' scale, so this equals min-max normalization per request."""
    t = np.asarray(teacher_scores, dtype=np.float64)
    lowest = np.min(np.where(np.isnan(t), np.inf, t), axis=1, keepdims=True)
    return t - np.where(np.isfinite(lowest), lowest, 0.0)


def teacher_agreement(
    student_scores: np.ndarray, teacher_scores: np.ndarray, ks: Sequence[int]
) -> dict[int, MetricValue]:
    """NDCG@K of the student's order of [R, C] candidates (NaN = padding; ties keep candidate order) with
    `teacher_gains` as gains; requests whose candidates all share one teacher score (IDCG = 0) are excluded."""
    s = np.asarray(student_scores, dtype=np.float64)
    t = np.asarray(teacher_scores, dtype=np.float64)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"student and teacher scores must be 2-D of the same shape, got {s.shape} and {t.shape}")
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be >= 1, got {k}")
    pad = np.isnan(s) | np.isnan(t)
    gains = np.where(pad, 0.0, teacher_gains(np.where(pad, np.nan, t)))
    order = np.argsort(np.where(pad, np.inf, -s), axis=1, kind="stable")
    got = np.take_along_axis(gains, order, axis=1)
    ideal = -np.sort(-gains, axis=1)
    disc = 1.0 / np.log2(np.arange(s.shape[1]) + 2.0)
    out = {}
    for k in ks:
        dcg = (got[:, :k] * disc[:k]).sum(axis=1)
        idcg = (ideal[:, :k] * disc[:k]).sum(axis=1)
        out[k] = _mean(dcg / np.where(idcg > 0, idcg, 1.0), idcg > 0)
    return out
