"""Offline hard negatives: docs at ANN ranks [rank_min, rank_max] of the previous model's index (seed 004).

For every training request (a request with at least one positive) the previous query tower encodes the request
with the query-side features training encodes it with (`build_samples` hands the miner the request's row of the
point-in-time joined retrieval table: user profile, sequences and query features as of the request), the
previous index returns its top `rank_max` docs, and the docs at ranks rank_min..rank_max that are neither a click
of the request nor (optionally) a click of the same query text are candidates. With `relevance_filter` a
candidate must also be off the request's understanding (`category`: its understood leaf category; `control`: the
relevance control's rule, leaf or brand): a doc that matches it may be relevant and only unclicked, a false
negative. Each request keeps up to `per_request` of them in a random order; the trainer fills each row's hard
slots from its request's (easy:hard 100:1 per row, seeds 000 and 004; docs/training.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from ebr.judgements.relevance import mismatch_codes
from ebr.samples.config import HardNegativesConfig
from ebr.samples.tables import columns, empty

HARD_NEGATIVE_COLUMNS = columns("hard_negatives")

QueryEncoder = Callable[[pd.DataFrame], np.ndarray]


class Searcher(Protocol):
    """What the miner needs of an index: top-k doc ids (and scores) per query vector, -1 where fewer exist."""

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def empty_hard_negatives() -> pd.DataFrame:
    """The hard-negative table with no rows (no previous index yet)."""
    return empty("hard_negatives")


def hard_negative_quota(n_requests: int, cfg: HardNegativesConfig) -> int:
    """Hard negatives to keep: `per_request` for each training request."""
    return int(n_requests) * cfg.per_request


def _search(searcher: Searcher, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    res = searcher.search(vectors, k)
    if not (isinstance(res, tuple) and len(res) == 2):
        raise TypeError("prev_index.search(query_vectors, k) must return (scores, doc_ids)")
    scores, ids = (np.asarray(a) for a in res)
    if ids.shape != (len(vectors), k) or scores.shape != ids.shape:
        raise ValueError(f"prev_index.search returned shapes {scores.shape}, {ids.shape}; want ({len(vectors)}, {k})")
    return scores, ids


def _encode(encode_queries: QueryEncoder, frame: pd.DataFrame) -> np.ndarray:
    vec = np.ascontiguousarray(np.asarray(encode_queries(frame), dtype="float32"))
    if vec.ndim != 2 or len(vec) != len(frame):
        raise ValueError(f"encode_queries returned shape {vec.shape}; want ({len(frame)}, dim), one row per request")
    return vec


def _codes(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Position of each value in `sorted_ids`, -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(len(values), -1, dtype="int64")
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == values, pos, -1)


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    return _codes(keys, sorted_keys) >= 0


def _understanding_codes(
    train_req: pd.DataFrame, docs: pd.DataFrame | None, doc_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes (-1 = null) of each request's understood category and brand and of each doc's (in the order of
    `doc_ids`), one vocabulary per field, for the relevance control's rule."""
    if docs is None or not {"doc_id", "category_leaf", "brand"} <= set(docs.columns):
        raise ValueError("samples.hard_negatives.relevance_filter needs the docs table (doc_id, category_leaf, brand)")
    at = pd.Index(docs["doc_id"]).get_indexer(doc_ids)
    if (at < 0).any():
        raise ValueError(f"doc_id not in the docs table, no fields for the relevance filter: "
                         f"{doc_ids[at < 0][:5].tolist()}")
    out = []
    for q_col, d_col in (("query_category_leaf", "category_leaf"), ("query_brand", "brand")):
        q = train_req[q_col].astype(object) if q_col in train_req.columns else pd.Series([None] * len(train_req))
        codes, _ = pd.factorize(pd.concat([q, docs[d_col].astype(object).iloc[at]], ignore_index=True))
        out += [codes[: len(train_req)].astype("int64"), codes[len(train_req) :].astype("int64")]
    return out[0], out[2], out[1], out[3]


def mine_hard_negatives(
    requests: pd.DataFrame,
    positives: pd.DataFrame,
    clicks: pd.DataFrame,
    corpus: pd.DataFrame,
    searcher: Searcher,
    encode_queries: QueryEncoder,
    quota: int,
    cfg: HardNegativesConfig,
    rng: np.random.Generator,
    doc_fields: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Hard negatives for the requests that have positives; `clicks` = every clicked (request_id, query, doc_id)
    of the window, `corpus` = the negative table (doc_id, author_id). `encode_queries` gets the rows of `requests`
    with every column they carry (query-side features included); at most ceil(quota / requests) per request are
    kept, in a random order within each request's band. `doc_fields` (doc_id, category_leaf, brand) is read by the
    relevance filter; how many candidates it skipped, and how many training requests it left unmined for want of
    an understood field, are in the frame's `attrs` (`relevance_filtered`, `requests_not_understood`)."""
    train_req = requests[requests["request_id"].isin(positives["request_id"])].reset_index(drop=True)
    if quota <= 0 or train_req.empty:
        return empty_hard_negatives()
    k = cfg.rank_max
    lo = cfg.rank_min - 1
    cap = math.ceil(quota / len(train_req))
    # integer keys: request row * n_docs + doc code, query code * n_docs + doc code
    docs = np.unique(corpus["doc_id"].to_numpy(dtype="int64"))
    n_docs = len(docs)
    req_index = pd.Index(train_req["request_id"])
    excl = pd.concat([positives[["request_id", "doc_id"]], clicks[["request_id", "doc_id"]]])
    r, d = req_index.get_indexer(excl["request_id"]), _codes(excl["doc_id"].to_numpy(dtype="int64"), docs)
    excl_req = np.unique(r[(r >= 0) & (d >= 0)].astype("int64") * n_docs + d[(r >= 0) & (d >= 0)])
    q_codes, _ = pd.factorize(pd.concat([train_req["query"], clicks["query"]], ignore_index=True))
    req_q, click_q = q_codes[: len(train_req)].astype("int64"), q_codes[len(train_req) :].astype("int64")
    cd = _codes(clicks["doc_id"].to_numpy(dtype="int64"), docs)
    excl_query = np.unique(click_q[cd >= 0] * n_docs + cd[cd >= 0]) if cfg.exclude_query_clicks else None
    filtered = blind = 0
    if cfg.relevance_filter != "none":
        req_cat, req_brand, doc_cat, doc_brand = _understanding_codes(train_req, doc_fields, docs)
        if cfg.relevance_filter == "category":  # a null understood brand checks nothing
            req_brand = np.full(len(req_brand), -1, dtype="int64")
        understood = (req_cat != -1) | (req_brand != -1)
        blind = int((~understood).sum())
    parts = []
    for start in range(0, len(train_req), cfg.batch_size):
        batch = train_req.iloc[start : start + cfg.batch_size]
        scores, ids = _search(searcher, _encode(encode_queries, batch.reset_index(drop=True)), k)
        band_ids, band_scores = ids[:, lo:], scores[:, lo:]
        width = band_ids.shape[1]
        if width == 0:
            continue
        perm = np.argsort(rng.random(band_ids.shape), axis=1, kind="stable")
        taken = np.zeros(len(batch), dtype="int64")
        active = np.arange(len(batch))
        if cfg.relevance_filter != "none":  # a request with nothing understood has no candidate: skip its walk
            active = active[understood[start : start + len(batch)]]
        step = 2 * cap + 16
        # walk each request's band in its random order, a slice of columns at a time, until `cap` are kept
        for c0 in range(0, width, step):
            w = min(step, width - c0)
            local = np.repeat(active, w)
            cols = perm[active, c0 : c0 + w].ravel()
            doc_ids = band_ids[local, cols].astype("int64")
            rows = local + start
            dcode = _codes(doc_ids, docs)
            keep = (dcode >= 0) & ~_member(rows.astype("int64") * n_docs + dcode, excl_req)
            if excl_query is not None:
                keep &= ~_member(req_q[rows] * n_docs + dcode, excl_query)
            if cfg.relevance_filter != "none":
                ok = keep.copy()
                r_ok, d_ok = rows[ok], dcode[ok]
                keep[ok] = mismatch_codes(req_cat[r_ok], req_brand[r_ok], doc_cat[d_ok], doc_brand[d_ok])
                filtered += int(ok.sum() - keep.sum())
            local, cols, doc_ids = local[keep], cols[keep], doc_ids[keep]
            rnd = np.arange(len(local)) - np.searchsorted(local, local, side="left") + taken[local]
            sel = rnd < cap
            parts.append(pd.DataFrame({
                "row": local[sel] + start, "doc_id": doc_ids[sel], "ann_rank": (cols[sel] + lo + 1).astype("int32"),
                "ann_score": band_scores[local[sel], cols[sel]].astype("float32"), "round": rnd[sel],
            }))
            taken += np.bincount(local[sel], minlength=len(batch))
            active = active[taken[active] < cap]
            if len(active) == 0:
                break
    if not parts:
        out = empty_hard_negatives()
        out.attrs.update(relevance_filtered=filtered, requests_not_understood=blind)
        return out
    pool = pd.concat(parts, ignore_index=True).drop_duplicates(["row", "doc_id"])
    pool["tie"] = rng.random(len(pool))
    chosen = pool.sort_values(["round", "tie"], kind="mergesort").head(quota)
    out = train_req.iloc[chosen["row"].to_numpy()].reset_index(drop=True)
    for c in ("doc_id", "ann_rank", "ann_score"):
        out[c] = chosen[c].to_numpy()
    out["author_id"] = corpus.set_index("doc_id")["author_id"].reindex(out["doc_id"]).to_numpy(dtype="int64")
    out["kind"] = "ann_hard"
    out = out.sort_values(["event_timestamp", "request_id", "ann_rank"], kind="mergesort")
    out = out[HARD_NEGATIVE_COLUMNS].reset_index(drop=True)
    out.attrs.update(relevance_filtered=filtered, requests_not_understood=blind)
    return out
