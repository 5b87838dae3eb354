"""Offline evaluation of hybrid retrieval: the embedding channel and the lexical (BM25) channel merged per
request with the server's own fusion and query-selection code (ebr.hybrid), on the holdout requests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebr.hybrid import ChannelHits, QuerySelection, fuse_many, select_channels
from ebr.hybrid.defaults import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT
from ebr.judgements.corpus import Corpus
from ebr.judgements.evalset import EvalSet
from ebr.lexical import LexicalIndex

EMPTY = -1
SCORE_CHUNK = 256  # requests scored at once (scores_of: 256 x k x dim floats)
# scores held at once by the served channel's exact search (requests x allowed docs): 16M floats, 64 MB, plus the
# top-k selection's int64 positions; at `large` 256 requests x 1M unconstrained docs took ~4.5 GB at a time
SCORE_BUDGET = 1 << 24


@dataclass(frozen=True)
class HybridVariant:
    """One way of merging: fusion rule, lexical weight (embedding = 1), and whether query selection runs."""

    name: str
    fusion: str = DEFAULT_FUSION
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT
    selection: bool = True


SERVED = HybridVariant("hybrid")  # what the server does by default (retrieval=auto)


def scores_of(doc_ids: np.ndarray, doc_vectors: np.ndarray, queries: np.ndarray, retrieved: np.ndarray) -> np.ndarray:
    """Inner products of each query with its retrieved docs ([n, k]; -inf where the id is -1 padding)."""
    order = np.argsort(doc_ids, kind="stable")
    scores = np.empty(retrieved.shape, dtype=np.float32)
    for start in range(0, len(retrieved), SCORE_CHUNK):  # bounded memory: chunk x k x dim gathered vectors
        part = retrieved[start : start + SCORE_CHUNK]
        pos = order[np.searchsorted(doc_ids, np.maximum(part, 0), sorter=order)]
        scores[start : start + len(part)] = np.einsum("nd,nkd->nk", queries[start : start + len(part)].astype(
            np.float32), doc_vectors[pos].astype(np.float32))
    return np.where(retrieved >= 0, scores, -np.inf)


def hybrid_ids(
    queries: Sequence[str],
    ann: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    variant: HybridVariant,
    tokenize: Callable[[str], list[str]],
    lexical_weights: np.ndarray | None = None,
) -> np.ndarray:
    """[n, k] merged doc ids (-1 pads) of every request; `ann` and `lexical` are (ids, scores) [n, >= k];
    `lexical_weights` [n], when given, is each request's lexical weight instead of the variant's."""
    return hybrid_systems(queries, ann, lexical, k, tokenize, (variant,), lexical_weights)[variant.name]


def hybrid_systems(
    queries: Sequence[str],
    ann: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    tokenize: Callable[[str], list[str]],
    variants: Sequence[HybridVariant] = (SERVED,),
    lexical_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """{variant name: [n, k] ids} for each variant (`lexical_weights`: per-request weights, see `hybrid_ids`).

    Each request's channels are selected and unioned once for all variants (`fuse_many`), the merge itself is
    the server's per variant."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"hybrid variant names must be distinct, got {names}")
    out = {v.name: np.full((len(queries), k), EMPTY, dtype=np.int64) for v in variants}
    groups: dict[bool, dict[str, list[HybridVariant]]] = {}
    for v in variants:
        groups.setdefault(v.selection, {}).setdefault(v.fusion, []).append(v)
    rules = {selection: QuerySelection(enabled=selection) for selection in groups}
    for i, query in enumerate(queries):
        for selection, by_fusion in groups.items():
            channels = select_channels(query, tokenize, rules[selection])
            hits = []
            if "ann" in channels:
                hits.append(ChannelHits("ann", ann[0][i], ann[1][i]))
            if "lexical" in channels:
                hits.append(ChannelHits("lexical", lexical[0][i], lexical[1][i]))
            for fusion, group in by_fusion.items():
                if len(hits) == 1:  # one channel: its own list, as the server answers it
                    ids = hits[0].valid()[0][:k]
                    for v in group:
                        out[v.name][i, : len(ids)] = ids
                    continue
                weights = [{"ann": 1.0, "lexical": float(lexical_weights[i]) if lexical_weights is not None
                            else v.lexical_weight} for v in group]
                for v, fused in zip(group, fuse_many(fusion, hits, k, weights), strict=True):
                    out[v.name][i, : len(fused.ids)] = fused.ids
    return out


def relax_fill(constrained: np.ndarray, loose: np.ndarray) -> np.ndarray:
    """[n, k] lists: each request's constrained list, then, where it is shorter than k, the loose list's docs not
    already in it (query relaxation, the server's `relax`); -1 pads."""
    if constrained.shape != loose.shape:
        raise ValueError(f"constrained {constrained.shape} and loose {loose.shape} lists differ in shape")
    out = np.full(constrained.shape, EMPTY, dtype=np.int64)
    k = constrained.shape[1]
    for i in range(len(constrained)):
        head = constrained[i][constrained[i] >= 0]
        tail = loose[i][(loose[i] >= 0) & ~np.isin(loose[i], head)]
        row = np.concatenate([head, tail])[:k]
        out[i, : len(row)] = row
    return out


# --------------------------------------------------------------------------------------- the tuned lexical weight

WEIGHT_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)  # lexical weights tried (embedding = 1)
TUNE_RECALL, TUNE_TOP = "true_recall@100", "ndcg@10"  # coverage must not fall below the embedding channel's,
# the top of the list not below BM25's
TUNE_FOLDS = 2


@dataclass(frozen=True)
class FusionTuning:
    """The lexical weight chosen on a day and the honest estimate of what choosing it is worth.

    `lexical_weight` is chosen on every request (what the bundle ships, served from the next day on);
    `fold_weights[f]` on the requests outside fold f (folds by query), and `weights` [n] holds, per request, the
    weight chosen without its fold, so the `hybrid` lists merged with them measure the procedure out of sample.
    `grid` holds the merges' metrics on every request."""

    lexical_weight: float
    fold_weights: list[float]
    weights: np.ndarray
    ids: np.ndarray  # [n, k] each request merged at its weight (the `hybrid` system's lists)
    grid: dict[str, dict[str, float | None]]
    channels: dict[str, dict[str, float | None]]

    def to_json(self) -> dict:
        return {"fusion": DEFAULT_FUSION, "lexical_weight": self.lexical_weight, "fold_weights": self.fold_weights,
                "rule": f"merges with {TUNE_RECALL} >= the embedding channel's and {TUNE_TOP} >= BM25's, the "
                        f"best {TUNE_RECALL} + {TUNE_TOP} among them (else among all); folds by query",
                "grid": self.grid, "channels": self.channels}


def choose_weight(merges: dict[float, dict[str, float | None]], ann: dict[str, float | None],
                  lexical: dict[str, float | None]) -> float:
    """The lexical weight whose merge beats both channels (true_recall@100 >= the embedding channel's, ndcg@10
    >= BM25's) with the best sum of the two; when none does, the best sum; ties go to the smaller weight."""
    def val(m: dict[str, float | None], key: str) -> float:
        return float(m.get(key) or 0.0)

    both = [w for w, m in merges.items()
            if val(m, TUNE_RECALL) >= val(ann, TUNE_RECALL) and val(m, TUNE_TOP) >= val(lexical, TUNE_TOP)]
    pool = both or list(merges)
    return max(sorted(pool), key=lambda w: val(merges[w], TUNE_RECALL) + val(merges[w], TUNE_TOP))


def tune_lexical_weight(
    evalset: EvalSet,
    ann: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    ks: Sequence[int],
    tokenize: Callable[[str], list[str]],
    grid: Sequence[float] = WEIGHT_GRID,
    folds: int = TUNE_FOLDS,
) -> FusionTuning:
    """Choose the served merge's lexical weight on the day's requests (`choose_weight` over `grid`), with
    cross-fitting: each fold of queries (crc32 of the query) gets the weight chosen on the other folds."""
    import zlib

    from ebr.judgements.metrics import ndcg_rows, parse_metric_key, true_recall_rows

    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if not grid or any(w < 0 for w in grid):
        raise ValueError(f"the weight grid must be non-empty and >= 0, got {list(grid)}")
    queries = evalset.queries
    grid_systems = hybrid_systems(queries, ann, lexical, k, tokenize,
                                  [HybridVariant(f"w{w:g}", lexical_weight=float(w)) for w in grid])
    merged = {float(w): grid_systems[f"w{w:g}"] for w in grid}
    channel_ids = {"ann": ann[0][:, :k], "lexical": lexical[0][:, :k]}
    fold = np.array([zlib.crc32(q.encode("utf-8")) % folds for q in queries], dtype=np.int64)
    # each system's two tuning metrics per request, once: a fold's metric is their mean over its requests
    per_row = {"true_recall": true_recall_rows, "ndcg": ndcg_rows}
    labels = evalset.labels()
    cuts = {key: parse_metric_key(key) for key in (TUNE_RECALL, TUNE_TOP)}
    scored = {name: {key: per_row[metric](ids, labels, [cut])[cut] for key, (metric, cut) in cuts.items()
                     if cut in ks}
              for name, ids in ({f"w{w:g}": ids for w, ids in merged.items()} | channel_ids).items()}

    def metrics(rows: np.ndarray) -> tuple[dict[float, dict], dict[str, dict]]:
        def pick(name: str) -> dict[str, float | None]:
            return {key: (scored[name][key].mean(rows).value if key in scored[name] else None) for key in cuts}

        return {w: pick(f"w{w:g}") for w in merged}, {n: pick(n) for n in channel_ids}

    by_w, ch = metrics(np.arange(len(queries)))
    overall = choose_weight(by_w, ch["ann"], ch["lexical"])
    fold_weights = []
    weights = np.full(len(queries), overall, dtype=np.float64)
    ids = merged[overall].copy()
    for f in range(folds):
        inside, outside = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if not len(inside) or not len(outside):  # every query in one fold (tiny days): nothing to hold out
            fold_weights.append(overall)
            continue
        f_w, f_ch = metrics(outside)
        fold_weights.append(choose_weight(f_w, f_ch["ann"], f_ch["lexical"]))
        weights[inside] = fold_weights[-1]
        ids[inside] = merged[fold_weights[-1]][inside]
    return FusionTuning(overall, fold_weights, weights, ids, {f"{w:g}": m for w, m in by_w.items()}, ch)


def allowed_positions(corpus: Corpus, category_leaf: object, brand: object) -> np.ndarray | None:
    """Corpus positions a request's query-understanding fields allow (the rule of `relevance_removed`: equal
    leaf category and brand where predicted); None when neither is predicted (no constraint)."""
    cat = None if category_leaf is None or pd.isna(category_leaf) else category_leaf
    brand_ = None if brand is None or pd.isna(brand) else brand
    if cat is None and brand_ is None:
        return None
    keep = np.ones(len(corpus), dtype=bool)
    if cat is not None:
        keep &= corpus.category_leaf == cat
    if brand_ is not None:
        keep &= corpus.brand == brand_
    return np.flatnonzero(keep)


def served_channels(
    evalset: EvalSet,
    corpus: Corpus,
    doc_ids: np.ndarray,
    doc_vectors: np.ndarray,
    queries: np.ndarray,
    lexical: LexicalIndex,
    k: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each channel as the server answers with relevance control on: the embedding channel's exact top k among
    the docs the request's query-understanding fields allow, and BM25's among the same docs (constraints inside
    retrieval); ((ann ids, scores), (lexical ids, scores)), [n, k] each, -1 padded."""
    n = len(evalset)
    ann_ids = np.full((n, k), EMPTY, np.int64)
    ann_sc = np.full((n, k), -np.inf, np.float32)
    lex_ids = np.full((n, k), EMPTY, np.int64)
    lex_sc = np.zeros((n, k), np.float32)
    pos_of = pd.Series(np.arange(len(doc_ids)), index=np.asarray(doc_ids, dtype=np.int64))
    frame = evalset.frame
    keys = list(zip(frame["query_category_leaf"].astype(object), frame["query_brand"].astype(object), strict=True))
    groups: dict[tuple[object, object], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(tuple(None if pd.isna(v) else v for v in key), []).append(i)
    for (cat, brand), rows in groups.items():
        allowed = allowed_positions(corpus, cat, brand)
        allowed_ids = corpus.doc_ids if allowed is None else corpus.doc_ids[allowed]
        vec_pos = pos_of.reindex(allowed_ids).dropna().to_numpy(dtype=np.int64)
        if len(vec_pos):
            allowed_vectors = doc_vectors[vec_pos]
            kk = min(k, len(vec_pos))
            chunk = max(1, min(SCORE_CHUNK, SCORE_BUDGET // len(vec_pos)))  # bounded: chunk x allowed scores
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                scores = queries[part] @ allowed_vectors.T
                cand = np.argpartition(scores, scores.shape[1] - kk, axis=1)[:, -kk:] if kk < scores.shape[1] \
                    else np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
                cand_sc = np.take_along_axis(scores, cand, axis=1)
                order = np.lexsort((cand, -cand_sc), axis=1)  # best first, ties by position
                top = np.take_along_axis(cand, order, axis=1)
                ann_ids[part, :kk] = np.asarray(doc_ids, dtype=np.int64)[vec_pos[top]]
                ann_sc[part, :kk] = np.take_along_axis(scores, top, axis=1)
        restrict = None if allowed is None else allowed_ids
        done: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i in rows:
            query = evalset.queries[i]
            if query not in done:  # a query repeats across requests: score it once per constraint set
                done[query] = lexical.search(query, k, allowed=restrict)
            lex_ids[i], lex_sc[i] = done[query]
    return (ann_ids, ann_sc), (lex_ids, lex_sc)
