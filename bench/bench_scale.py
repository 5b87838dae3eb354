"""How the daily DAG's cost grows with the work: the whole DAG at `small` and `medium` (and `large` with
`--large`), per step wall time, CPU time and peak RSS per scale, and the growth ratio between scales.

For each scale it simulates `--days` days (seed `--seed`; kept in `--work`/<scale>/data and reused), runs the
daily DAG on the last day exactly as `make run` does (`ebr pipeline run --local`, a child process; its output
goes to `--work`/<scale>/run.log), then reads the step records the run wrote (`bench_dag.read_run`: the task
process's own wall, CPU and getrusage peak RSS). Every step's peak is checked against the per-step memory
budget (`--budget-gib`, default 8).

    python bench/bench_scale.py [--scales small medium] [--large] [--days 8] [--work data/bench-scale]

Writes OUT/scale.json and OUT/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dag import read_run  # noqa: E402

from pipelines.cluster import RESOURCES  # noqa: E402

EBR = str(Path(sys.executable).with_name("ebr"))


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", nargs="+", default=["small", "medium"], choices=["tiny", "small", "medium", "large"])
    p.add_argument("--large", action="store_true", help="also run `large` (1M docs; hours on 2 cores)")
    p.add_argument("--days", type=int, default=8, help="simulated days per scale (the DAG runs on the last)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--work", type=Path, default=Path("data/bench-scale"))
    p.add_argument("--budget-gib", type=float, default=8.0, help="per-step peak RSS budget (GiB)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--render", action="store_true", help="only rewrite scale.md from OUT/scale.json")
    return p.parse_args(argv)


def _simulate(scale: str, data: Path, days: int, seed: int) -> float:
    if (data / "_meta" / "simulation.json").is_file():
        return 0.0
    t0 = time.perf_counter()
    subprocess.run([EBR, "simulate", "--out", str(data), "--scale", scale, "--days", str(days), "--seed", str(seed),
                    "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def index_manifest(workspace: Path) -> dict | None:
    """The newest Faiss index manifest the run's build_index step wrote (under the KFP pipeline root)."""
    found = []
    for path in (workspace / "kfp").rglob("manifest.json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "factory" in doc and "ann_recall" in doc:
            found.append((path.stat().st_mtime, doc))
    if not found:
        return None
    doc = max(found, key=lambda x: x[0])[1]
    keep = ("n", "factory", "search_params", "ann_recall", "tuned_on", "bytes_per_vector")
    return {k: doc[k] for k in keep if k in doc}


def run_scale(scale: str, args: argparse.Namespace) -> dict:
    """Simulate (unless present), run the DAG on the last day, and read its step records."""
    root = args.work / scale
    data, workspace = root / "data", root / "workspace"
    root.mkdir(parents=True, exist_ok=True)
    sim_s = _simulate(scale, data, args.days, args.seed)
    meta = json.loads((data / "_meta" / "simulation.json").read_text(encoding="utf-8"))
    day = max(meta["days"]) if "days" in meta else None
    log = root / "run.log"
    print(f"[{scale}] running the daily DAG (log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run([EBR, "pipeline", "run", "--local", "--data", str(data), "--day", day or "latest",
                               "--workspace", str(workspace)], stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if day is None:
        day = sorted(p.name for p in (workspace / "reports").iterdir())[-1]
    steps = read_run(workspace, day)
    result = {"scale": scale, "day": day, "returncode": proc.returncode, "dag_wall_s": round(wall, 1),
              "simulate_s": round(sim_s, 1), "steps": steps, "tables": meta.get("tables", {}),
              "docs": meta.get("world", {}).get("docs_total", 0)}
    run_json = workspace / "reports" / day / "run.json"
    if run_json.is_file():
        decision = json.loads(run_json.read_text(encoding="utf-8")).get("decision") or {}
        result["gate"] = {"publish": decision.get("publish"), "reason": decision.get("reason")}
    result["index"] = index_manifest(workspace)
    print(f"[{scale}] DAG exit {proc.returncode} in {wall:.0f} s", flush=True)
    return result


def _order(results: list[dict]) -> list[str]:
    seen = [t for t in RESOURCES if any(t in r["steps"] for r in results)]
    return seen + sorted({t for r in results for t in r["steps"]} - set(seen))


def render(doc: dict) -> str:
    results, budget = doc["results"], doc["budget_gib"] * 1024
    scales = [r["scale"] for r in results]
    lines = [
        "# Daily DAG cost by scale",
        "",
        f"The whole DAG (`ebr pipeline run --local`) per scale, {doc['days']} simulated days (seed {doc['seed']}), "
        f"run on the last; {doc['machine']['cpus']} CPUs, Python {doc['machine']['python']}. Load average "
        f"(1/5/15 min) at start {doc['machine']['load_start']}, at end {doc['machine']['load_end']}. Wall, CPU "
        "and peak RSS are each task process's own (imports included; an export shard row is the largest shard). "
        f"Per-step memory budget: {doc['budget_gib']:g} GiB.",
        "",
        "| scale | docs | requests/day | DAG wall s | exit | steps over budget |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        over = [t for t, m in r["steps"].items() if m["peak_rss_mb"] > budget]
        per_day = r.get("tables", {}).get("search_requests", 0) // max(1, doc["days"])
        lines.append(f"| {r['scale']} | {r.get('docs', 0):,} | {per_day:,} | {r['dag_wall_s']:,} | {r['returncode']} "
                     f"| {', '.join(over) or 'none'} |")
    head = " | ".join(f"{s} wall s | {s} CPU s | {s} peak MiB" for s in scales)
    growth = [f"{b}/{a}" for a, b in zip(scales, scales[1:], strict=False)]
    lines += ["", f"| step | {head} | " + " | ".join(f"wall {g}" for g in growth) + " |",
              "|---|" + "---:|" * (3 * len(scales) + len(growth))]
    for task in _order(results):
        cells = []
        for r in results:
            m = r["steps"].get(task)
            cells += [f"{m['wall_s']:.1f}", f"{m['cpu_s']:.1f}", f"{m['peak_rss_mb']:.0f}"] if m else ["-"] * 3
        for a, b in zip(results, results[1:], strict=False):
            ma, mb = a["steps"].get(task), b["steps"].get(task)
            cells.append(f"{mb['wall_s'] / ma['wall_s']:.1f}x" if ma and mb and ma["wall_s"] > 0.5 else "-")
        lines.append(f"| {task} | {' | '.join(cells)} |")
    lines += ["", "Index and gate per scale:", ""]
    for r in results:
        idx = r.get("index") or {}
        gate = r.get("gate") or {}
        verdict = {True: "published", False: "kept the champion"}.get(gate.get("publish"), "?")
        lines.append(f"- {r['scale']}: index `{idx.get('factory', '?')}` over {idx.get('n', '?')} docs, "
                     f"search {idx.get('search_params', {})}, ann_recall {idx.get('ann_recall', '?')} "
                     f"(tuned on {idx.get('tuned_on', '?')}); gate {verdict}: {gate.get('reason', '')}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.render:
        doc = json.loads((args.out / "scale.json").read_text(encoding="utf-8"))
        (args.out / "scale.md").write_text(render(doc), encoding="utf-8")
        return 0
    scales = list(dict.fromkeys([*args.scales, *(["large"] if args.large else [])]))
    load_start = [round(x, 2) for x in os.getloadavg()]
    results = [run_scale(s, args) for s in scales]
    doc = {"days": args.days, "seed": args.seed, "budget_gib": args.budget_gib, "results": results,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                       "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()]}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "scale.md").write_text(render(doc), encoding="utf-8")
    print(render(doc))
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
