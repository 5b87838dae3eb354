"""The logging policy: today's production search system whose logs the pipeline learns from.

Recall = an inverted index over title words (idf-weighted match, ties broken by popularity) plus the most
popular docs of the QU-predicted category; the coarse ranker scores lexical match, popularity and the user's
category preference; the fine ranker adds QU category/brand agreement and doc quality. Exposure therefore
concentrates on popular docs that share words with the query: the bias that downstream sampling must undo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ebr.simulate.config import SimulateConfig
from ebr.simulate.corpus import T_MAX, Docs
from ebr.simulate.queries import UNMATCHED, QueryPool


class LexicalIndex:
    """Inverted index over the title terms of every doc, with idf and each leaf's most popular docs."""

    def __init__(self, docs: Docs, n_terms: int, n_leaves: int, cfg: SimulateConfig) -> None:
        n = docs.n
        flat = docs.title.ravel()
        rows = np.repeat(np.arange(n, dtype=np.int64), T_MAX)
        keep = flat >= 0
        flat, rows = flat[keep], rows[keep]
        order = np.lexsort((-docs.popularity[rows], flat))  # postings ordered by popularity (impact order)
        self.post_docs = rows[order]
        self.df = np.bincount(flat, minlength=n_terms)
        self.offsets = np.concatenate([[0], np.cumsum(self.df)])
        self.idf = np.log(1.0 + (n - self.df + 0.5) / (self.df + 0.5))
        self.max_df = max(1.0, cfg.lexical_max_df * n)
        self.docs = docs
        self.cfg = cfg
        self._acc = np.zeros(n, dtype=np.float64)
        self._mark = np.zeros(n, dtype=bool)
        self.log_pop = np.log(docs.popularity)
        by_leaf = np.lexsort((-docs.popularity, docs.leaf))
        counts = np.bincount(docs.leaf, minlength=n_leaves)
        starts = np.concatenate([[0], np.cumsum(counts)])
        k = cfg.n_popular_recall
        self.popular = [by_leaf[starts[i] : starts[i] + min(k, counts[i])] for i in range(n_leaves)]

    def postings(self, term: int) -> np.ndarray:
        return self.post_docs[self.offsets[term] : self.offsets[term + 1]]

    def match(self, cand: np.ndarray, terms: np.ndarray, denom: float) -> np.ndarray:
        """Share of the query's idf mass that each candidate's title matches (0..1), by comparing titles."""
        score = np.zeros(len(cand), dtype=np.float64)
        if len(cand):
            titles = self.docs.title[cand]
            for t in terms.tolist():
                score += (titles == t).any(axis=1) * self.idf[t]
        return (score / denom).astype(np.float32)

    def _pool_match(self, pool: np.ndarray, rare: np.ndarray, common: np.ndarray, denom: float) -> np.ndarray:
        """`match` for a pool holding the full postings of the `rare` terms: accumulate their idf over postings,
        compare titles for the `common` ones."""
        acc = self._acc
        for t in rare.tolist():
            acc[self.postings(t)] += self.idf[t]  # a term occurs once per title: no repeated indices
        score = acc[pool]
        for t in rare.tolist():
            acc[self.postings(t)] = 0.0
        if len(common):
            titles = self.docs.title[pool]
            for t in common.tolist():
                score += (titles == t).any(axis=1) * self.idf[t]
        return (score / denom).astype(np.float32)

    def recall(self, q_terms: np.ndarray, qu_leaf: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidates (doc indices) and their lexical match for one query: lexical, then popular-in-category."""
        cfg = self.cfg
        real = q_terms[q_terms >= 0]
        real = real[self.df[real] > 0]
        n_miss = int((q_terms == UNMATCHED).sum())
        mean_idf = float(self.idf[real].mean()) if len(real) else 1.0
        denom = float(self.idf[real].sum()) + n_miss * mean_idf
        by_df = real[np.argsort(self.df[real], kind="stable")]
        rare = by_df[self.df[by_df] <= self.max_df]
        if len(rare) == 0 and len(real):
            rare = by_df[:1]
        n_lex = cfg.n_recall - cfg.n_popular_recall if qu_leaf >= 0 else cfg.n_recall
        if len(rare) and n_lex > 0:
            # read postings rarest term first; stop once the pool is full (the last list is cut by popularity)
            parts, read, room = [], [], cfg.lexical_pool_max
            for t in rare.tolist():
                p = self.postings(t)
                parts.append(p[:room])
                if len(p) <= room:
                    read.append(t)
                room -= len(parts[-1])
                if room <= 0:
                    break
            pool = _union(parts)
            read_ = np.array(read, dtype=real.dtype)
            lex = self._pool_match(pool, read_, real[~np.isin(real, read_)], denom)
            score = cfg.coarse_w_lex * lex + cfg.coarse_w_pop * self.log_pop[pool]
            if len(pool) > n_lex:
                top = np.argpartition(-score, n_lex - 1)[:n_lex]
                pool, lex, score = pool[top], lex[top], score[top]
            keep = np.argsort(-score, kind="stable")
            pool, lex = pool[keep], lex[keep]
        else:
            pool, lex = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if qu_leaf >= 0 and cfg.n_popular_recall:
            pop = self.popular[qu_leaf]
            self._mark[pool] = True
            pop = pop[~self._mark[pop]][: cfg.n_recall - len(pool)]
            self._mark[pool] = False
            pool = np.concatenate([pool, pop])
            lex = np.concatenate([lex, self.match(pop, real, denom)])
        return pool, lex


def _union(postings: list[np.ndarray]) -> np.ndarray:
    """Union of doc index arrays without repeats (sorted when there is more than one array)."""
    if len(postings) == 1:
        return postings[0]
    cat = np.sort(np.concatenate(postings))
    return cat[np.concatenate(([True], cat[1:] != cat[:-1]))] if len(cat) else cat


@dataclass
class Served:
    """What the production system did for a batch of requests: logged rows in request order."""

    req: np.ndarray  # request index of each row
    doc: np.ndarray  # doc index
    stage: np.ndarray  # 0 preranked, 1 ranked, 2 exposed
    position: np.ndarray  # 1-based for exposed rows, 0 otherwise
    rank_score: np.ndarray  # float32, NaN = not scored by the fine ranker
    pref: np.ndarray  # user's preference for the doc's l1 (0 when logged out)


def candidate_table(
    index: LexicalIndex, pool: QueryPool, queries: np.ndarray, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(n_queries, n_recall) candidate doc indices (-1 padded) and lexical matches of distinct queries."""
    n_recall = index.cfg.n_recall
    cand = np.full((len(queries), n_recall), -1, dtype=np.int64)
    lex = np.zeros((len(queries), n_recall), dtype=np.float32)
    it = tqdm(queries.tolist(), desc="recall", leave=False, disable=not progress or len(queries) < 5000)
    for j, q in enumerate(it):
        c, s = index.recall(pool.terms[q], int(pool.qu_leaf[q]))
        cand[j, : len(c)] = c
        lex[j, : len(c)] = s
    return cand, lex


def serve(
    cfg: SimulateConfig, rng: np.random.Generator, index: LexicalIndex, docs: Docs, leaf_l1: np.ndarray,
    pool: QueryPool, cand: np.ndarray, lex: np.ndarray, qrow: np.ndarray, query: np.ndarray, ts: np.ndarray,
    pref_user: np.ndarray | None,
) -> Served:
    """Coarse then fine ranking of requests: their candidate row, query, timestamp and l1 preference rows."""
    r = len(query)
    c = cand[qrow]
    valid = c >= 0
    cc = np.maximum(c, 0)
    valid &= docs.valid_ts[cc] <= ts[:, None]
    doc_l1 = leaf_l1[docs.leaf[cc]]
    pref = (
        np.take_along_axis(pref_user, doc_l1, axis=1) if pref_user is not None else np.zeros(c.shape, np.float32)
    )
    coarse = (
        cfg.coarse_w_lex * lex[qrow] + cfg.coarse_w_pop * index.log_pop[cc] + cfg.coarse_w_pref * pref
        + rng.normal(0.0, cfg.coarse_noise, c.shape)
    )
    coarse[~valid] = -np.inf
    top = np.argsort(-coarse, axis=1, kind="stable")[:, : cfg.n_prerank]
    p_doc = np.take_along_axis(cc, top, axis=1)
    p_valid = np.take_along_axis(valid, top, axis=1)
    p_coarse = np.take_along_axis(coarse, top, axis=1)
    p_pref = np.take_along_axis(pref, top, axis=1)

    k = cfg.n_rank
    f_doc, f_valid, f_pref = p_doc[:, :k], p_valid[:, :k], p_pref[:, :k]
    qu_leaf, qu_brand = pool.qu_leaf[query][:, None], pool.qu_brand[query][:, None]
    fine = (
        p_coarse[:, :k] + cfg.fine_w_leaf * (docs.leaf[f_doc] == qu_leaf)
        + cfg.fine_w_brand * ((docs.brand[f_doc] == qu_brand) & (qu_brand >= 0))
        + cfg.fine_w_quality * docs.quality[f_doc] + cfg.fine_w_pref * f_pref
        + rng.normal(0.0, cfg.fine_noise, f_doc.shape)
    )
    fine[~f_valid] = -np.inf
    ford = np.argsort(-fine, axis=1, kind="stable")
    f_doc, f_valid, f_pref = (np.take_along_axis(a, ford, axis=1) for a in (f_doc, f_valid, f_pref))
    fine = np.take_along_axis(fine, ford, axis=1)

    e = cfg.n_exposed
    stage = np.concatenate(
        [np.full((r, e), 2), np.full((r, k - e), 1), np.zeros((r, cfg.n_prerank - k))], axis=1
    ).astype(np.int8)
    position = np.concatenate([np.broadcast_to(np.arange(1, e + 1), (r, e)), np.zeros((r, cfg.n_prerank - e))], 1)
    score = np.concatenate(
        [1.0 / (1.0 + np.exp(-np.clip(fine, -30, 30))), np.full((r, cfg.n_prerank - k), np.nan)], axis=1
    )
    doc = np.concatenate([f_doc, p_doc[:, k:]], axis=1)
    ok = np.concatenate([f_valid, p_valid[:, k:]], axis=1)
    prefs = np.concatenate([f_pref, p_pref[:, k:]], axis=1)
    req = np.broadcast_to(np.arange(r)[:, None], doc.shape)
    return Served(
        req=req[ok], doc=doc[ok], stage=np.broadcast_to(stage, doc.shape)[ok],
        position=position[ok].astype(np.int32), rank_score=score[ok].astype(np.float32), pref=prefs[ok],
    )
