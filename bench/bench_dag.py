"""Per-step cost of a daily DAG run, set against the requests and limits the compiled DAG asks the cluster for.

Reads the step records a run wrote (`<workspace>/reports/<day>/steps/*.json`: wall time, CPU time, peak RSS of
the task's own process, imports included) of one or more runs, e.g. the `small` run of `make run`, and writes
a table per step: measured wall s, CPU s and peak RSS per scale, next to `pipelines/cluster.py`'s memory
request and limit, flagging any step whose measured peak exceeds its request (it would be OOM-prone under
pressure) or comes within 80% of its limit.

    python bench/bench_dag.py --run small=data/workspace:2026-01-08 [--run medium=WS:DAY] [--out bench/results]

Writes OUT/dag.json and OUT/dag.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cluster import RESOURCES  # noqa: E402

_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (e.g. `4Gi`, `512Mi`) in MiB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?", quantity)
    if not m:
        raise ValueError(f"memory quantity {quantity!r}: expected a number with Ki/Mi/Gi/Ti")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "", 1) / 2**20


def task_of(record_name: str) -> str:
    """The DAG task a step record belongs to (`export_embedding_shard_3` -> `export-embedding-shard`)."""
    name = re.sub(r"_\d+$", "", record_name) if record_name.startswith("export_embedding_shard_") else record_name
    return name.replace("_", "-")


def read_run(workspace: Path, day: str) -> dict[str, dict]:
    """task -> {wall_s, cpu_s, peak_rss_mb, n}: the maximum over the task's records (shards are one task each)."""
    steps_dir = workspace / "reports" / day / "steps"
    if not steps_dir.is_dir():
        raise FileNotFoundError(f"{steps_dir}: no step records (run the DAG for {day} first)")
    out: dict[str, dict] = {}
    for p in sorted(steps_dir.glob("*.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        if rec.get("status") != "ok":
            continue
        task = task_of(rec.get("step", p.stem))
        cur = out.setdefault(task, {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "n": 0})
        for key in ("wall_s", "cpu_s", "peak_rss_mb"):
            cur[key] = max(cur[key], float(rec.get(key) or 0.0))
        cur["n"] += 1
    return out


def table(runs: dict[str, dict[str, dict]]) -> tuple[list[dict], list[str]]:
    """Rows per task (in RESOURCES order) and the warnings."""
    rows, warnings = [], []
    for task, res in RESOURCES.items():
        row = {"task": task, "memory_request": res.memory_request, "memory_limit": res.memory_limit,
               "cpu_request": res.cpu_request, "cpu_limit": res.cpu_limit, "measured": {}}
        for scale, steps in runs.items():
            if task in steps:
                row["measured"][scale] = steps[task]
                peak = steps[task]["peak_rss_mb"]
                if peak > mebibytes(res.memory_request):
                    warnings.append(f"{task} at {scale}: peak {peak:.0f} MiB > request {res.memory_request}")
                if peak > 0.8 * mebibytes(res.memory_limit):
                    warnings.append(f"{task} at {scale}: peak {peak:.0f} MiB within 80% of limit {res.memory_limit}")
        rows.append(row)
    return rows, warnings


def render(doc: dict) -> str:
    scales = list(doc["runs"])
    head = " | ".join(f"{s} wall s | {s} CPU s | {s} peak RSS MiB" for s in scales)
    lines = [
        "# Daily DAG: measured cost per step vs. the compiled requests and limits",
        "",
        f"Runs: {', '.join(f'{s} = {r}' for s, r in doc['runs'].items())}. Machine: {doc['machine']['cpus']} CPUs, "
        f"Python {doc['machine']['python']}; load average (1/5/15 min) when read: {doc['machine']['loadavg']}. "
        "Peak RSS is the task process's own (getrusage maxrss, imports included); an export shard row is the "
        "largest of its shards. Requests and limits: pipelines/cluster.py.",
        "",
        f"| step | {head} | memory request | memory limit | CPU request | CPU limit |",
        "|---|" + "---:|" * (3 * len(scales)) + "---|---|---|---|",
    ]
    for row in doc["rows"]:
        cells = []
        for s in scales:
            m = row["measured"].get(s)
            cells += [f"{m['wall_s']:.1f}", f"{m['cpu_s']:.1f}", f"{m['peak_rss_mb']:.0f}"] if m else ["-"] * 3
        lines.append(f"| {row['task']} | {' | '.join(cells)} | {row['memory_request']} | {row['memory_limit']} | "
                     f"{row['cpu_request']} | {row['cpu_limit']} |")
    lines += ["", "Warnings: " + ("; ".join(doc["warnings"]) if doc["warnings"] else "none (every measured peak "
                                  "is below its request and under 80% of its limit).")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="SCALE=WORKSPACE:DAY",
                   help="a finished run to read, e.g. small=data/workspace:2026-01-08 (repeat per scale)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args(argv)
    runs, sources = {}, {}
    for spec in args.run:
        scale, _, rest = spec.partition("=")
        ws, _, day = rest.rpartition(":")
        if not scale or not ws or not day:
            raise SystemExit(f"--run {spec!r}: expected SCALE=WORKSPACE:DAY")
        runs[scale], sources[scale] = read_run(Path(ws), day), f"{ws} day {day}"
    rows, warnings = table(runs)
    doc = {"runs": sources, "rows": rows, "warnings": warnings,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg": [round(x, 2) for x in os.getloadavg()]}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dag.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "dag.md").write_text(render(doc), encoding="utf-8")
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
