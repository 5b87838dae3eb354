"""Hybrid retrieval on a holdout day: each channel alone, the merges, and query selection, side by side.

Takes a published bundle (its query tower and Faiss index: the embedding channel exactly as served), the
day's raw logs and the workspace's feature store (the query features as of each request), builds the
lexical channel over the corpus as of the day (the bundle's own lexical index when it has one), and
evaluates on the day's requests with the evaluation step's metrics:
- `ann` (the served index) and `lexical` alone;
- reciprocal-rank fusion and weighted score fusion at several lexical weights, with and without query
  selection;
plus the share of queries each selection rule routes to each channel and the per-query cost of each channel
(tower + search vs BM25), so the defaults in ebr/hybrid/defaults.py come from one table.

    python bench/bench_hybrid.py --data data/bench-scale/small/data \
        --workspace data/bench-scale/small/workspace [--day 2026-11-08] [--out bench/results]

Writes OUT/hybrid.json and OUT/hybrid.md (OUT/hybrid_<name>.* with `--name`, e.g. one per kind of logs). A merge
"beats both channels" when its true_recall@100 is at least the embedding channel's and its ndcg@10 at least
BM25's: the served default is the merge that does so on every kind of logs measured (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

KEYS = ("click_recall@100", "true_recall@100", "ndcg@10", "p_good@100", "filtered_share@100")
WEIGHTS = (0.5, 1.0, 2.0)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="raw data root (the contract's tables)")
    p.add_argument("--workspace", type=Path, required=True, help="workspace with bundles/ and features/")
    p.add_argument("--bundle", type=Path, help="bundle directory (default: the one <workspace>/bundles/CURRENT names)")
    p.add_argument("--day", help="holdout day (default: the bundle's evaluation day, else the last day of the logs)")
    p.add_argument("--k", type=int, default=200, help="list length per channel and merge (default 200)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", help="suffix of the output files (hybrid_<name>.json/.md), e.g. the kind of logs")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[bench_hybrid {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    import torch

    from ebr.bundle import current_version
    from ebr.contract import list_days
    from ebr.evaluate import EvaluateConfig, build_evalset, evaluate_systems, load_corpus
    from ebr.evaluate.hybrid import HybridVariant, hybrid_systems, tune_lexical_weight
    from ebr.evaluate.two_tower import encode_queries, query_feature_rows
    from ebr.hybrid import QuerySelection, select_channels
    from ebr.index import load_index
    from ebr.lexical import LexicalIndex, load_lexical_index
    from ebr.models.export import load_exported

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    bundle_dir = args.bundle or args.workspace / "bundles" / (current_version(args.workspace / "bundles") or "")
    manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
    day = args.day or manifest.get("info", {}).get("day") or list_days(args.data, "search_requests")[-1]
    _log(f"bundle {bundle_dir.name}, day {day}")
    ec = EvaluateConfig()
    corpus = load_corpus(args.data, day)
    evalset = build_evalset(args.data, day, ec.label_days, corpus)
    queries = evalset.queries

    t0 = time.perf_counter()
    exported = load_exported(bundle_dir / "model" / "export")
    rows = query_feature_rows(args.workspace / "features", evalset.frame)
    t_tower = time.perf_counter()
    vectors = encode_queries(exported, rows, 1)  # batch 1: the server's per-request cost
    tower_ms = (time.perf_counter() - t_tower) * 1000 / len(rows)
    searcher = load_index(bundle_dir / "index")
    t_ann = time.perf_counter()
    ann_scores, ann_ids = searcher.search(vectors, args.k)
    ann_ms = (time.perf_counter() - t_ann) * 1000 / len(rows)
    _log(f"embedding channel: {len(rows)} requests in {time.perf_counter() - t0:.1f}s")

    lexical_dir = bundle_dir / "lexical"
    lex = (load_lexical_index(lexical_dir) if lexical_dir.is_dir()
           else LexicalIndex.build(corpus.doc_ids, corpus.titles, k1=ec.bm25_k1, b=ec.bm25_b))
    t_lex = time.perf_counter()
    lex_ids, lex_scores = lex.search_many(queries, args.k)
    lex_ms = (time.perf_counter() - t_lex) * 1000 / len(rows)
    distinct = len(set(queries))
    _log(f"lexical channel: {lex.n_docs} docs, {distinct} distinct queries")

    variants = [HybridVariant(f"{f}_w{w:g}{'' if sel else '_all'}", f, w, sel)
                for f in ("rrf", "weighted") for w in WEIGHTS for sel in (True, False)]
    systems = {"ann": ann_ids, "lexical": lex_ids}
    t_fuse = time.perf_counter()
    systems.update(hybrid_systems(queries, (ann_ids, ann_scores), (lex_ids, lex_scores), args.k, lex.tokenize,
                                  variants))
    fuse_ms = (time.perf_counter() - t_fuse) * 1000 / (len(rows) * len(variants))
    # what the daily evaluation serves: the weight chosen on the day, each fold of queries merged with the weight
    # the other fold chose (out of sample)
    tuning = tune_lexical_weight(evalset, (ann_ids, ann_scores), (lex_ids, lex_scores), args.k, ec.ks, lex.tokenize)
    systems["tuned"] = tuning.ids
    report = evaluate_systems(evalset, systems, ec.ks, corpus)
    table = {name: {key: (report.systems[name][key].value if key in report.systems[name] else None)
                    for key in KEYS} for name in systems}

    rule = QuerySelection()
    routes = [select_channels(q, lex.tokenize, rule) for q in queries]
    share = {"both": sum(len(r) == 2 for r in routes) / len(routes),
             "ann_only": sum(r == ("ann",) for r in routes) / len(routes),
             "lexical_only": sum(r == ("lexical",) for r in routes) / len(routes)}
    merges = [n for n in systems if n not in ("ann", "lexical", "tuned")]
    best = max(merges, key=lambda n: (table[n]["true_recall@100"] or 0) + (table[n]["ndcg@10"] or 0))
    beats_both = [n for n in merges if (table[n]["true_recall@100"] or 0) >= (table["ann"]["true_recall@100"] or 0)
                  and (table[n]["ndcg@10"] or 0) >= (table["lexical"]["ndcg@10"] or 0)]
    doc = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "setup": {"bundle": bundle_dir.name, "day": day, "requests": len(rows), "distinct_queries": distinct,
                  "corpus_docs": len(corpus), "index": manifest.get("index", {}).get("factory"), "k": args.k,
                  "lexical": "bundle" if lexical_dir.is_dir() else "built from the corpus as of the day"},
        "metrics": table,
        "selection_share": {k: round(v, 4) for k, v in share.items()},
        "cost_ms_per_query": {"tower_batch1": round(tower_ms, 3), "ann_search": round(ann_ms, 3),
                              "lexical_search": round(lex_ms, 3), "fusion": round(fuse_ms, 3)},
        "best_by_true_recall_plus_ndcg": best,
        "beats_both_channels": beats_both,
        "tuned": {"lexical_weight": tuning.lexical_weight, "fold_weights": tuning.fold_weights,
                  "beats_both_channels": bool(
                      (table["tuned"]["true_recall@100"] or 0) >= (table["ann"]["true_recall@100"] or 0)
                      and (table["tuned"]["ndcg@10"] or 0) >= (table["lexical"]["ndcg@10"] or 0))},
        "logs": args.name,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"hybrid_{args.name}" if args.name else "hybrid"
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{stem}.md").write_text(_md(doc), encoding="utf-8")
    print(_md(doc))
    return 0


def _md(doc: dict[str, Any]) -> str:
    s, c = doc["setup"], doc["cost_ms_per_query"]
    lines = [
        "# Hybrid retrieval on the holdout day" + (f" ({doc['logs']} logs)" if doc.get("logs") else ""),
        "",
        f"{doc['created_at']} · {doc['machine']['cpus']} CPUs · load average before/after "
        f"{doc['machine']['loadavg_before']} / {doc['machine']['loadavg_after']} · `python bench/bench_hybrid.py`",
        "",
        f"Bundle `{s['bundle']}` (index `{s['index']}`), day {s['day']}: {s['requests']:,} requests "
        f"({s['distinct_queries']:,} distinct queries), {s['corpus_docs']:,} docs; lexical index: {s['lexical']}. "
        "`ann` is the served Faiss index, `lexical` BM25 over titles; `rrf_wW` / `weighted_wW` merge both with "
        "lexical weight W (embedding 1) after query selection, `_all` without it (both channels for every query). "
        "Metrics as in the evaluation report (docs/evaluation.md).",
        "",
        "| system | " + " | ".join(KEYS) + " |",
        "|---|" + "---:|" * len(KEYS),
    ]
    for name, row in doc["metrics"].items():
        cells = [("" if v is None else f"{v:.4f}") for v in row.values()]
        mark = (" (best)" if name == doc["best_by_true_recall_plus_ndcg"] else "") + \
            (" *" if name in doc.get("beats_both_channels", []) else "")
        lines.append(f"| {name}{mark} | " + " | ".join(cells) + " |")
    sh = doc["selection_share"]
    lines += [
        "",
        f"Query selection routes {sh['both']:.1%} of requests to both channels, {sh['ann_only']:.1%} to the "
        f"embedding only (long queries) and {sh['lexical_only']:.1%} to the lexical channel only (ID-like).",
        "",
        f"Per-query cost on one thread: query tower at batch 1 {c['tower_batch1']:.2f} ms, ANN search "
        f"{c['ann_search']:.2f} ms (batched over all requests), BM25 {c['lexical_search']:.2f} ms, fusion "
        f"{c['fusion']:.3f} ms. A lexical-only request skips the tower and the ANN search.",
        "",
        f"Best merge by true_recall@100 + ndcg@10: `{doc['best_by_true_recall_plus_ndcg']}`. Marked `*`: the "
        "merges that beat both channels (true_recall@100 at least the embedding channel's, ndcg@10 at least "
        "BM25's): " + (", ".join(f"`{n}`" for n in doc.get("beats_both_channels", [])) or "none") + ".",
    ]
    if doc.get("tuned"):
        t = doc["tuned"]
        folds = ", ".join(f"{w:g}" for w in t["fold_weights"])
        lines += ["", f"`tuned`: what the daily evaluation serves, the weighted merge at the lexical weight chosen on "
                      f"the day (ebr.evaluate.hybrid.tune_lexical_weight: {t['lexical_weight']:g}; each half of the "
                      f"queries merged with the weight the other half chose, {folds}: out of sample); it beats both "
                      f"channels: {'yes' if t['beats_both_channels'] else 'no'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
