"""Benchmark of the search-log simulator: wall time, rows per second and peak memory per scale.

Each scale runs in a fresh child process (`--child`), so its peak resident memory (getrusage maxrss) is
the simulator's own, imports included; wall and CPU time cover `simulate()` only (CPU time is the steadier
number on a shared machine: the simulator is single-threaded numpy). Rows are all contract rows
written (docs, authors, users, search_requests, impressions, user_events, relevance_labels).

    python bench/bench_simulate.py [--scales small medium] [--days 2] [--out bench/results]

Writes OUT/simulate.json and OUT/simulate.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", nargs="+", default=["small", "medium"], choices=["tiny", "small", "medium", "large"])
    p.add_argument("--days", type=int, default=2, help="days simulated per scale (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lang", default="zh", choices=["zh", "en"])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--child", nargs=2, metavar=("SCALE", "DIR"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _child(scale: str, work: Path, days: int, seed: int, lang: str) -> None:
    """Run one simulation and print its measurements as one JSON line."""
    from ebr.simulate import SimulateConfig, simulate

    cfg = SimulateConfig(scale=scale, days=days, seed=seed, lang=lang)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    summary = simulate(work / "data", cfg, progress=False)
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    disk = sum(f.stat().st_size for f in (work / "data").rglob("*") if f.is_file())
    rows = sum(summary["tables"].values())
    print(json.dumps({
        "scale": scale, "days": days, "seconds": round(seconds, 2), "rows": rows,
        "cpu_seconds": round(cpu, 2), "rows_per_s": round(rows / seconds), "rows_per_cpu_s": round(rows / cpu),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "disk_mb": round(disk / 2**20, 1), "tables": summary["tables"], "world": summary["world"],
        "per_day": {
            "requests": summary["stats"]["requests"] // days,
            "impressions": summary["stats"]["impressions"] // days,
            "exposed": summary["stats"]["exposed"] // days,
            "clicks": summary["stats"]["clicks"] // days,
            "distinct_queries": round(summary["stats"]["distinct_queries_per_day"]),
        },
        "ctr": round(summary["stats"]["ctr"], 4),
    }))


def _markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Simulator benchmark",
        "",
        f"{meta['days']} simulated days per scale, lang `{meta['lang']}`, seed {meta['seed']}; one process per scale "
        f"on {meta['cpus']} CPUs ({meta['python']}). Peak RSS includes imports. Load average (1/5/15 min) "
        f"at start {meta['load_average_at_start']}, at end {meta['load_average_at_end']}: the machine is shared, "
        "so times are upper bounds.",
        "",
        "| scale | docs | users | requests/day | impressions/day | rows | wall s | CPU s | rows/s | rows/CPU-s "
        "| peak RSS MB | disk MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['scale']} | {r['world']['docs_total']:,} | {r['world']['users_total']:,} | "
            f"{r['per_day']['requests']:,} | {r['per_day']['impressions']:,} | {r['rows']:,} | {r['seconds']} | "
            f"{r['cpu_seconds']} | {r['rows_per_s']:,} | {r['rows_per_cpu_s']:,} | {r['peak_rss_mb']:,} | "
            f"{r['disk_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each requested scale and write JSON and markdown results."""
    args = _args(argv)
    if args.child:
        _child(args.child[0], Path(args.child[1]), args.days, args.seed, args.lang)
        return 0
    results = []
    load_start = [round(x, 2) for x in os.getloadavg()]
    for scale in args.scales:
        work = Path(tempfile.mkdtemp(prefix=f"bench-sim-{scale}-"))
        try:
            cmd = [sys.executable, __file__, "--child", scale, str(work), "--days", str(args.days),
                   "--seed", str(args.seed), "--lang", args.lang]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{scale}: {results[-1]['seconds']} s, {results[-1]['rows_per_s']:,} rows/s, "
                  f"{results[-1]['peak_rss_mb']} MB peak", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    meta = {"days": args.days, "seed": args.seed, "lang": args.lang, "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_average_at_start": load_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulate.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n",
                                            encoding="utf-8")
    (args.out / "simulate.md").write_text(_markdown(results, meta), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
