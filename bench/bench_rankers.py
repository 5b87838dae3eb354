"""Benchmark of ranker scoring cost: the fine ranker (teacher) vs the coarse ranker (student, two and three
towers), milliseconds to score 1,000 candidates of one request, at 1 and 2 torch threads.

The models have the production default configs (`FineRankerConfig()`, `CoarseRankerConfig()`); weights do not
change the cost, so they are untrained. Inputs are real featurized candidates of a simulated day. Timings
exclude featurization and cross features (measured on their own, from raw doc rows and with the doc side
prepared once); the student's doc vectors are precomputed (the shipped matrix), and its query tower runs once
per request (also reported alone, as is the per-candidate part). Each number is the median of `--repeats`
timings.

    python bench/bench_rankers.py [--data DATA_ROOT] [--features FEATURES_DIR] [--candidates 1000] [--repeats 30]
                                  [--out bench/results]

Without --data a tiny dataset is simulated into a temporary folder; without --features its feature store is built
there (the candidates' features come from it, as in the rankers' evaluation). Writes OUT/rankers.json and
OUT/rankers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="data root in the contract layout (default: simulate a tiny one)")
    p.add_argument("--day", help="day whose logged candidates are scored (default: the last day)")
    p.add_argument("--features", type=Path,
                   help="feature directory that has built the day (default: build one in a temporary folder)")
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    return p.parse_args(argv)


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def run(args: argparse.Namespace) -> dict:
    import torch

    from ebr.contract import list_days
    from ebr.models.rankers.coarse_ranker import CoarseRanker
    from ebr.models.rankers.config import CoarseRankerConfig, FineRankerConfig
    from ebr.models.rankers.cost import candidate_slice, student_cost_ms, teacher_cost_ms
    from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES, compute_cross_features, prepare_docs
    from ebr.models.rankers.fine_ranker import FineRanker
    from ebr.models.rankers.rows import load_eval_rows
    from ebr.models.rankers.tensors import build_tensors, rows_cross_features

    tmp = None
    data = args.data
    if data is None:
        from ebr.simulate import simulate
        from ebr.simulate.config import SimulateConfig

        tmp = tempfile.TemporaryDirectory(prefix="bench-rankers-")
        data = Path(tmp.name) / "data"
        simulate(data, SimulateConfig(scale="tiny", days=3, seed=0), progress=False)
    day = args.day or list_days(data, "search_requests")[-1]
    features = args.features
    if features is None:
        from ebr.features import FeaturesConfig, build_features

        if tmp is None:
            tmp = tempfile.TemporaryDirectory(prefix="bench-rankers-")
        features = Path(tmp.name) / "features"
        build_features(data, day, features, FeaturesConfig(materialize=False))
    fine_cfg, two_cfg = FineRankerConfig(), CoarseRankerConfig()
    three_cfg = CoarseRankerConfig(kind="three_tower")
    rows = load_eval_rows(data, day, features)
    cross = rows_cross_features(rows, CROSS_FEATURE_NAMES)
    t = build_tensors(rows, two_cfg.featurizer, cross, list(CROSS_FEATURE_NAMES))
    teacher = FineRanker(fine_cfg).eval()
    two, three = CoarseRanker(two_cfg).eval(), CoarseRanker(three_cfg).eval()
    n = args.candidates

    # cross features of one request against n of its day's docs (numpy, single process)
    req = rows.requests.iloc[:1]
    docs = rows.docs.sample(n=n, replace=True, random_state=0).reset_index(drop=True)
    cross_ms = _median_ms(lambda: compute_cross_features(req, docs), max(3, args.repeats // 5))
    prepared = prepare_docs(docs)
    cross_prepared_ms = _median_ms(lambda: compute_cross_features(req, prepared), max(3, args.repeats // 5))

    results = []
    one = candidate_slice(t, 1)["query"]
    x = candidate_slice(t, n)
    with torch.no_grad():
        d_vecs = two.encode_docs(x["doc"])
        q_vec = two.encode_queries(one).expand(n, -1)
        d3 = three.encode_docs(x["doc"])
        q3 = three.encode_queries(one).expand(n, -1)
    for threads in args.threads:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        with torch.no_grad():
            q_ms = _median_ms(lambda: two.encode_queries(one), args.repeats)
            dot_ms = _median_ms(lambda: two.score_pairs(q_vec, d_vecs), args.repeats)
            three_ms = _median_ms(lambda: three.score_pairs(q3, d3, x["cross"], x["cross_buckets"]), args.repeats)
        torch.set_num_threads(before)
        row = {
            "threads": threads,
            "teacher_ms_per_1k": teacher_cost_ms(teacher, t, n, args.repeats, threads) * 1000.0 / n,
            "student_two_tower_ms_per_1k": student_cost_ms(two, t, n, args.repeats, threads) * 1000.0 / n,
            "student_three_tower_ms_per_1k": student_cost_ms(three, t, n, args.repeats, threads) * 1000.0 / n,
            "student_query_tower_ms": q_ms,
            "student_two_tower_per_candidate_ms_per_1k": dot_ms * 1000.0 / n,
            "student_three_tower_per_candidate_ms_per_1k": three_ms * 1000.0 / n,
        }
        row["teacher_over_two_tower"] = row["teacher_ms_per_1k"] / row["student_two_tower_ms_per_1k"]
        row["teacher_over_two_tower_per_candidate"] = (row["teacher_ms_per_1k"]
                                                       / row["student_two_tower_per_candidate_ms_per_1k"])
        results.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    out = {
        "what": "ms to score the candidates of one request, per 1,000 candidates (median of repeats)",
        "candidates": n, "repeats": args.repeats, "day": day,
        "data": "simulated tiny" if args.data is None else str(data),
        "cross_features_ms_per_1k": round(cross_ms * 1000.0 / n, 3),
        "cross_features_prepared_docs_ms_per_1k": round(cross_prepared_ms * 1000.0 / n, 3),
        "params": {"teacher": sum(p.numel() for p in teacher.parameters()),
                   "student_two_tower": sum(p.numel() for p in two.parameters()),
                   "student_three_tower": sum(p.numel() for p in three.parameters())},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
        "results": results,
    }
    if tmp is not None:
        tmp.cleanup()
    return out


def render(res: dict) -> str:
    lines = [
        "# Ranker scoring cost", "",
        f"{res['what']}; {res['candidates']} candidates, {res['repeats']} repeats, data: {res['data']} "
        f"(day {res['day']}). Production default configs, untrained weights (cost does not depend on them).", "",
        "| threads | teacher (fine ranker) | student two-tower | student three-tower | of which: student query "
        "tower (once per request) | two-tower per-candidate part | three-tower per-candidate part | teacher / "
        "two-tower (total, per-candidate part) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["results"]:
        lines.append(f"| {r['threads']} | {r['teacher_ms_per_1k']:.2f} ms | {r['student_two_tower_ms_per_1k']:.2f} ms"
                     f" | {r['student_three_tower_ms_per_1k']:.2f} ms | {r['student_query_tower_ms']:.2f} ms"
                     f" | {r['student_two_tower_per_candidate_ms_per_1k']:.3f} ms"
                     f" | {r['student_three_tower_per_candidate_ms_per_1k']:.3f} ms"
                     f" | {r['teacher_over_two_tower']:.1f}x, {r['teacher_over_two_tower_per_candidate']:.0f}x |")
    p = res["params"]
    lines += [
        "",
        f"Cross features (Python/numpy; the teacher and the three-tower student need them, not included above): "
        f"{res['cross_features_ms_per_1k']:.2f} ms per 1,000 candidates from raw doc rows, "
        f"{res['cross_features_prepared_docs_ms_per_1k']:.2f} ms with the doc side prepared once "
        "(`prepare_docs`, as a server would at bundle load).",
        f"Parameters: teacher {p['teacher']:,}, two-tower {p['student_two_tower']:,}, "
        f"three-tower {p['student_three_tower']:,} (mostly hashed embedding tables).",
        f"Machine: {res['machine']['cpus']} CPUs, torch {res['machine']['torch']}, "
        f"Python {res['machine']['python']}. Each cell is the median of its own timings on a shared machine: "
        "they vary run to run, and the parts need not add up to the totals.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("rankers.json", json.dumps(res, indent=2) + "\n"), ("rankers.md", render(res))):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, args.out / name)
    print(render(res))


if __name__ == "__main__":
    main()
