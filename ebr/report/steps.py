"""The steps of one run as their records in `<reports>/<day>/steps/` describe them: order and one-line results."""

from __future__ import annotations

from typing import Any


def result_line(rec: dict[str, Any]) -> str:
    """The one-line result of a finished step record: rows, a verdict, the index factory, the gate, the bundle."""
    if rec.get("status") == "failed":
        return f"FAILED{'; report: ' + str(rec['report']) if rec.get('report') else ''}"
    if rec.get("verdict"):
        return str(rec["verdict"])
    if isinstance(rec.get("rows"), dict):
        return "rows: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in rec["rows"].items())
    if rec.get("fingerprint"):
        return f"sha256 {str(rec['fingerprint'])[:12]}"
    for key, label in (("count", "docs"), ("shards", "shards"), ("factory", "index"), ("publish", "publish"),
                       ("bundle", "bundle"), ("skipped", "skipped"), ("shard_counts", "docs per shard"),
                       ("model_version", "model")):
        if key in rec:
            return f"{label}: {rec[key]}"
    return ""


def step_started(rec: dict[str, Any], written_at: float) -> float:
    """When a step started: its `started_at` (a running record), else its record's write time minus its wall time."""
    if isinstance(rec.get("started_at"), (int, float)):
        return float(rec["started_at"])
    wall = rec.get("wall_s")
    return written_at - (float(wall) if isinstance(wall, (int, float)) else 0.0)


def step_state(rec: dict[str, Any]) -> str:
    """`ok`, `failed`, or `unfinished` for a record still saying `running` (the step never wrote its end)."""
    status = str(rec.get("status", ""))
    return "unfinished" if status == "running" else status or "unknown"
