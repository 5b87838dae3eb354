"""Metrics of rankers on candidate lists (shared/spec/metrics.md), through `ebr.judgements.metrics`.

- `ndcg@K`: each request judged by its relevance labels when its query has complete labels, else by its
  clicks (gain 1 per clicked candidate); `true_ndcg@K` and `click_ndcg@K` use one kind only. Labels are
  restricted to the request's candidates, so IDCG is that of the best order of the list (a re-ranking metric).
- `teacher_agreement@K`: NDCG@K of a model's order with the teacher's scores as gains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ebr.judgements.metrics import Judgements, MetricValue, metric_key, ndcg, teacher_agreement
from ebr.models.rankers.rows import RankingRows


def list_matrix(values: np.ndarray, request_row: np.ndarray, n_requests: int, fill: float = np.nan) -> np.ndarray:
    """Per-pair values [N] (pairs grouped by request) as a padded [R, C] matrix in pair order."""
    values = np.asarray(values)
    request_row = np.asarray(request_row, dtype=np.int64)
    counts = np.bincount(request_row, minlength=n_requests)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = np.arange(len(request_row)) - starts[request_row]
    out = np.full((n_requests, width), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    out[request_row, within] = values
    return out


def ranked_doc_ids(scores: np.ndarray, rows: RankingRows) -> np.ndarray:
    """Candidate doc ids [R, C] of each request, best score first; -1 pads short lists."""
    r = rows.pairs["request_row"].to_numpy()
    s = list_matrix(np.asarray(scores, dtype=np.float64), r, rows.n_requests)
    ids = list_matrix(rows.pairs["doc_id"].to_numpy(dtype=np.int64), r, rows.n_requests, fill=-1)
    order = np.argsort(np.where(np.isnan(s), np.inf, -s), axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1)


def judgements(rows: RankingRows) -> dict[str, Judgements]:
    """{"true": complete labels, "click": clicks, "mixed": labels where complete else clicks}, per request.

    `rows.requests` may carry `labels_complete`, `label_doc_ids` and `label_values` (evaluation rows); without
    them every request falls back to its clicks."""
    pairs = rows.pairs
    cand = pairs.groupby("request_row")["doc_id"].agg(lambda s: set(s.tolist()))
    clicked = pairs[pairs["label_click"] > 0].groupby("request_row")["doc_id"].agg(list)
    req = rows.requests
    has_labels = "labels_complete" in req.columns
    true: list[dict[int, int] | None] = []
    click: list[dict[int, int] | None] = []
    for i in range(rows.n_requests):
        docs = cand.get(i, set())
        c = clicked.get(i, [])
        click.append({int(d): 1 for d in c} if len(c) else None)
        lab: dict[int, int] | None = None
        if has_labels and bool(req["labels_complete"].iat[i]):
            ids, vals = req["label_doc_ids"].iat[i], req["label_values"].iat[i]
            lab = {int(d): int(v) for d, v in zip(ids, vals, strict=True) if int(d) in docs and int(v) >= 1}
        true.append(lab)
    mixed = [t if t is not None else c for t, c in zip(true, click, strict=True)]
    return {"true": Judgements.from_labels(true), "click": Judgements.from_labels(click),
            "mixed": Judgements.from_labels(mixed)}


NDCG_KINDS = {"ndcg": "mixed", "true_ndcg": "true", "click_ndcg": "click"}


def ranking_metrics(
    scores: np.ndarray, rows: RankingRows, ks: Sequence[int], teacher_scores: np.ndarray | None = None,
    judged: dict[str, Judgements] | None = None, names: Sequence[str] = tuple(NDCG_KINDS),
) -> dict[str, MetricValue]:
    """The NDCG variants `names` (ndcg, true_ndcg, click_ndcg) and, with teacher scores, `teacher_agreement`
    at every K."""
    judged = judged if judged is not None else judgements(rows)
    width = max(ks)
    ranked = ranked_doc_ids(scores, rows)
    if ranked.shape[1] < width:
        ranked = np.pad(ranked, ((0, 0), (0, width - ranked.shape[1])), constant_values=-1)
    out: dict[str, MetricValue] = {}
    for name in names:
        if name not in NDCG_KINDS:
            raise ValueError(f"unknown NDCG variant {name!r}; known: {list(NDCG_KINDS)}")
        for k, mv in ndcg(ranked, judged[NDCG_KINDS[name]], ks).items():
            out[metric_key(name, k)] = mv
    if teacher_scores is not None:
        r = rows.pairs["request_row"].to_numpy()
        s = list_matrix(np.asarray(scores, dtype=np.float64), r, rows.n_requests)
        t = list_matrix(np.asarray(teacher_scores, dtype=np.float64), r, rows.n_requests)
        for k, mv in teacher_agreement(s, t, ks).items():
            out[metric_key("teacher_agreement", k)] = mv
    return out


def judgement_counts(rows: RankingRows) -> dict[str, int]:
    """How many requests each judgement kind covers."""
    j = judgements(rows)
    return {k: int(v.judged.sum()) for k, v in j.items()}

