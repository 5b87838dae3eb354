"""Render a daily run's report for the terminal: step times, the evaluation table, the release, examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STEP_ORDER = ["data_fingerprint", "validate_data", "build_features", "build_samples", "validate_samples",
              "train_two_tower", "train_fine_ranker", "distill_coarse_ranker", "plan_export_shards",
              "export_embedding_shard", "finalize_embeddings", "build_index", "evaluate", "publish", "rollout",
              "keep_champion"]


def _order(name: str) -> tuple[int, str]:
    """Position of a step record in the DAG (shard records `export_embedding_shard_<n>` sort by shard)."""
    base = name.rsplit("_", 1)[0] if name.startswith("export_embedding_shard_") else name
    return (STEP_ORDER.index(base) if base in STEP_ORDER else 99, name.rjust(40))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render_run(report: dict[str, Any], data_root: str | Path | None = None) -> str:
    """Text of a run report (see pipelines.local.write_run_report)."""
    lines = [f"== daily run for {report['day']} ({report['wall_s']} s)", "", "step                      wall (s)"]
    steps = report.get("steps", {})
    for name in sorted(steps, key=_order):
        s = steps[name]
        extra = s.get("verdict") or ""
        if s.get("rows"):
            extra = "rows: " + ", ".join(f"{k} {v}" for k, v in s["rows"].items())
        if s.get("easy_hard"):
            extra = f"{extra}  {s['easy_hard']}".strip()
        if s.get("status") != "ok" and s.get("report"):
            extra = f"report: {s['report']}"
        lines.append(f"  {name:<24}{s.get('wall_s', 0.0):>8.1f}  {s.get('status', '')}  {extra}".rstrip())
    ev = report.get("evaluation") or {}
    table = ev.get("table")
    if table:
        lines += ["", f"evaluation on {report['day']} (temporal holdout; n = requests averaged over)", table]
    fusion = ev.get("fusion") or {}
    if fusion.get("lexical_weight") is not None:
        folds = ", ".join(f"{w:g}" for w in fusion.get("fold_weights", []))
        lines.append(f"hybrid: {fusion.get('fusion')} fusion at lexical weight {fusion['lexical_weight']:g}, chosen on "
                     f"this day (each half of the queries merged with the other half's choice: {folds}); the "
                     "bundle serves it")
    decision = report.get("decision") or {}
    if decision:
        verb = "PUBLISHED" if decision.get("publish") else "KEPT CHAMPION"
        lines += ["", f"gate: {verb}: {decision.get('reason', '')}"]
        if decision.get("bundle"):
            lines.append(f"bundle: {decision['bundle']} (version {decision.get('version')})")
    status = report.get("run_status") or {}
    if status.get("state") and status["state"] != "SUCCEEDED":
        lines.append(f"run state: {status['state']}: {status.get('error_message') or ''}".rstrip())
    bundle = report.get("bundle") or {}
    lines.append(f"serving bundle (CURRENT): {bundle.get('current')} under {bundle.get('root')}")
    for ex in ev.get("examples", []):
        lines += ["", f"query {ex['query']!r} (user {ex.get('user_id') or 'logged-out'}; "
                      f"understood category {ex.get('query_category_leaf')})"]
        for i, item in enumerate(ex["items"], 1):
            label = item.get("label")
            lines.append(f"  {i:>2}. doc {item['doc_id']:<8} score {item['score']:.3f}  label {_fmt(label)}  "
                         f"{item.get('title', '')}")
    return "\n".join(lines)
