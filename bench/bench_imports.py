"""Benchmark of what a fresh process pays to import the heavy tools: every pipeline step runs in its own process
(the KFP runner's, or a pod), so on tiny and small days these imports are a large share of a step.

Each case runs in a fresh interpreter `--repeats` times, the cases interleaved so a busy moment hits them alike;
the child times its own imports (wall and CPU). Feast is measured as ebr imports it (typeguard's instrumentation
of Feast's classes skipped, ebr/features/feast_import.py) and with Feast's run-time checks kept
(`EBR_FEAST_TYPECHECKS=1`), side by side.

    python bench/bench_imports.py [--repeats 5] [--out bench/results]

Writes OUT/imports.json and OUT/imports.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

CASES: dict[str, tuple[str, dict[str, str]]] = {
    "feast (as ebr imports it)": ("import ebr.features; import feast", {"EBR_FEAST_TYPECHECKS": ""}),
    "feast with its run-time type checks": ("import ebr.features; import feast", {"EBR_FEAST_TYPECHECKS": "1"}),
    "great_expectations": ("import great_expectations", {}),
    "mlflow": ("import mlflow", {}),
    "torch": ("import torch", {}),
    "faiss": ("import faiss", {}),
    "kfp": ("import kfp.dsl", {}),
}
CHILD = """
import json, resource, time
t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
{code}
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall_s": time.perf_counter() - t0,
                  "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}}))
"""


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="fresh processes per case (default 5)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    return p.parse_args(argv)


def _once(code: str, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD.format(code=code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# Import cost of a fresh process",
        "",
        f"Median of {doc['repeats']} fresh processes per case, cases interleaved; {m['cpus']} CPUs, Python "
        f"{m['python']}; load average (1/5/15 min) before {m['loadavg_before']}, after {m['loadavg_after']}. "
        "`python bench/bench_imports.py` (`make bench-imports`).",
        "",
        "| import | wall s (median) | CPU s (median) | wall s (min-max) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in doc["results"].items():
        lines.append(f"| {name} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['wall_min']:.2f}-{r['wall_max']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure every case and write JSON and markdown results."""
    args = _args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
    for i in range(args.repeats):
        for name, (code, env) in CASES.items():
            runs[name].append(_once(code, env))
        print(f"round {i + 1}/{args.repeats} done", flush=True)
    results = {
        name: {"wall_s": statistics.median(r["wall_s"] for r in rs), "cpu_s": statistics.median(r["cpu_s"] for r in rs),
               "wall_min": min(r["wall_s"] for r in rs), "wall_max": max(r["wall_s"] for r in rs)}
        for name, rs in runs.items()
    }
    doc = {"repeats": args.repeats, "results": results,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_before": load_before,
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()]}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "imports.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "imports.md").write_text(_markdown(doc), encoding="utf-8")
    for name, r in results.items():
        print(f"{name}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
