"""The ablation's outputs: `ablations.json` (every run, mean and standard deviation per metric, the delta to the
baseline, a significance hint and the verdict on each row's claim) and the results section of `ablations.md`,
rewritten between its markers so the hand-written rest of the page stays.

Significance hint: |delta| > 2 * pooled sd, pooled sd = sqrt((sd_row^2 + sd_baseline^2) / 2) over the seeds.
Verdict on a claim with direction `up` / `down`: `yes` when its metric moves that way and the move is significant,
`no` when it moves significantly the other way, `inconclusive` otherwise (and with fewer than two seeds);
`not_up`: `yes` unless the metric rises significantly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ebr.ablate.rows import BASELINE, METRICS, AblationRow
from ebr.artifacts.atomic import write_text_atomic

FORMAT = "ebr.ablation/1"
JSON_NAME = "ablations.json"
MD_NAME = "ablations.md"
BEGIN = "<!-- ablation results: begin"
END = "<!-- ablation results: end -->"
BEGIN_LINE = f"{BEGIN} (written by `ebr ablate`; a rerun replaces everything up to the end marker) -->"


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation, n) of the measured values; sd is None below two values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None, None, 0
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None, len(xs)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)), len(xs)


def compare(row: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Delta of one metric's mean to the baseline's, the pooled sd and whether |delta| > 2 * pooled sd."""
    if row.get("mean") is None or base.get("mean") is None:
        return {"delta": None, "pooled_sd": None, "significant": None}
    delta = row["mean"] - base["mean"]
    if row.get("sd") is None or base.get("sd") is None:
        return {"delta": delta, "pooled_sd": None, "significant": None}
    pooled = math.sqrt((row["sd"] ** 2 + base["sd"] ** 2) / 2)
    return {"delta": delta, "pooled_sd": pooled, "significant": abs(delta) > 2 * pooled}


def verdict(direction: str, cmp: Mapping[str, Any]) -> str:
    """`yes`, `no` or `inconclusive` for a claim predicting `direction` given its metric's comparison."""
    delta, significant = cmp.get("delta"), cmp.get("significant")
    if delta is None or significant is None:
        return "inconclusive"
    if direction == "not_up":
        return "no" if significant and delta > 0 else "yes"
    sign = 1 if direction == "up" else -1
    if significant and delta * sign > 0:
        return "yes"
    if significant and delta * sign < 0:
        return "no"
    return "inconclusive"


def build_document(rows: Sequence[AblationRow], results: Mapping[str, Mapping[str, Any]],
                   references: Mapping[str, Mapping[str, float | None]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document: meta, reference systems, and per row its definition, runs, statistics and verdict."""
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        res = results.get(r.name, {})
        if res.get("status") == "ok":
            stats[r.name] = {}
            for m in METRICS:
                mean, sd, n = mean_sd([run["metrics"].get(m) for run in res["runs"]])
                stats[r.name][m] = {"mean": mean, "sd": sd, "n": n}
    out_rows = []
    for r in rows:
        res = dict(results.get(r.name, {"status": "not run", "reason": "not requested"}))
        entry: dict[str, Any] = {
            "name": r.name, "overrides": list(r.overrides), "changes": r.changes, "note": r.note or None,
            "claim": None if r.claim is None else {"seed": r.claim.seed, "article": r.claim.article,
                                                   "text": r.claim.text, "metric": r.claim.metric,
                                                   "direction": r.claim.direction},
            "status": res.get("status"), "reason": res.get("reason"), "runs": res.get("runs", []),
            "metrics": stats.get(r.name), "reproduced": None, "reference": r.reference,
        }
        base = stats.get(r.reference)
        if r.name in stats and base is not None and r.name != BASELINE:
            for m in METRICS:
                entry["metrics"][m].update(compare(stats[r.name][m], base[m]))
            if r.claim is not None:
                entry["reproduced"] = verdict(r.claim.direction, entry["metrics"][r.claim.metric])
        elif r.name != BASELINE and r.claim is not None:
            entry["reproduced"] = "not run" if res.get("status") != "ok" else "inconclusive"
        out_rows.append(entry)
    return {"format": FORMAT, "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "metrics": list(METRICS), "significance": "|delta| > 2 * pooled sd over seeds",
            **dict(meta), "references": dict(references), "rows": out_rows}


def _num(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _cell(stat: Mapping[str, Any] | None, is_base: bool) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = _num(stat["mean"]) + (f" ± {_num(stat['sd'])}" if stat.get("sd") is not None else "")
    if not is_base and stat.get("delta") is not None:
        text += f" ({stat['delta']:+.4f}{'*' if stat.get('significant') else ''})"
    return text


def render_section(doc: Mapping[str, Any]) -> str:
    """The generated results section of ablations.md (between the markers)."""
    seeds = doc["seeds"]
    hard = "with" if doc.get("baseline_has_hard_negatives") else "without"
    lines = [
        f"Day {doc['day']} of `{doc['data_root']}` ({doc['n_requests']} requests, {doc['corpus_docs']} docs), "
        f"seeds {', '.join(map(str, seeds))}{' (quick mode: tiny model, one epoch)' if doc.get('quick') else ''}; "
        f"generated {doc['generated_at']} in {doc.get('elapsed_s', 0):.0f}s. The baseline trains {hard} offline "
        "hard negatives.",
        "",
        "Regenerate with:",
        "",
        "```",
        doc["command"],
        "```",
        "",
        f"Each cell: mean ± sd over {len(seeds)} seed(s), then (delta to the baseline, or to the row named after "
        "`vs`); `*` marks |delta| > 2 pooled "
        "sd. `expects` is the seed article's claim as a metric and a direction; `reproduced` is yes / no / "
        "inconclusive.",
        "",
        "| row | " + " | ".join(doc["metrics"]) + " | expects | reproduced |",
        "|---|" + "---:|" * len(doc["metrics"]) + "---|---|",
    ]
    for row in doc["rows"]:
        claim = row.get("claim")
        expects = "–" if claim is None else f"{claim['metric']} {claim['direction'].replace('_', ' ')}"
        if row["status"] != "ok":
            cells = ["not run"] * len(doc["metrics"])
        else:
            cells = [_cell(row["metrics"].get(m), row["name"] == BASELINE) for m in doc["metrics"]]
        ref = row.get("reference") or BASELINE
        name = f"`{row['name']}`" + (f" (vs `{ref}`)" if ref != BASELINE and row["name"] != BASELINE else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {expects} | {row.get('reproduced') or '–'} |")
    refs = doc.get("references") or {}
    if refs:
        lines += ["", "Reference systems of the evaluation on the same requests (one value, no training):", "",
                  "| system | " + " | ".join(doc["metrics"]) + " |", "|---|" + "---:|" * len(doc["metrics"])]
        for name, metrics in refs.items():
            lines.append(f"| {name} | " + " | ".join(_num(metrics.get(m)) for m in doc["metrics"]) + " |")
    not_run = [r for r in doc["rows"] if r["status"] != "ok"]
    if not_run:
        lines += ["", "Not run:", ""] + [f"- `{r['name']}`: {r.get('reason')}" for r in not_run]
    lines += ["", "Claims checked:", ""]
    for row in doc["rows"]:
        claim = row.get("claim")
        if claim is not None:
            lines.append(f"- `{row['name']}` ({', '.join(row['overrides'])}): {claim['article']}: {claim['text']}. "
                         f"Reproduced: {row.get('reproduced')}.")
    return "\n".join(lines) + "\n"


def replace_section(text: str | None, section: str, title: str = "# Ablations") -> str:
    """`text` with everything between the markers replaced by `section`; markers appended when missing."""
    block = f"{BEGIN_LINE}\n\n{section.rstrip()}\n\n{END}\n"
    if text is None:
        return f"{title}\n\n## Results\n\n{block}"
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return text.rstrip() + f"\n\n## Results\n\n{block}"
    rest = text[end + len(END):]
    return text[:start] + block + (rest[1:] if rest.startswith("\n") else rest)


def write_outputs(doc: Mapping[str, Any], out_dir: str | Path) -> dict[str, str]:
    """Write `ablations.json` and the results section of `ablations.md` into `out_dir` (each file atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / JSON_NAME, out / MD_NAME
    write_text_atomic(jpath, json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    old = mpath.read_text(encoding="utf-8") if mpath.is_file() else None
    write_text_atomic(mpath, replace_section(old, render_section(doc)))
    return {"json": str(jpath), "markdown": str(mpath)}
