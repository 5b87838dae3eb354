"""The run report as one self-contained HTML page, `<reports>/<day>/index.html`: inline CSS, figures inlined as
base64 PNG, no script and no external URL; links (validation reports, Data Docs, the task log) are relative paths.

Sections: the run's status and failure, the step table, the validation verdicts, the evaluation tables, the
recall@K curves, the ANN index's recall/latency sweep, the training curves and the gate decision. Each one says
"not produced by this run" when its input is missing, and a section that cannot be drawn says why instead of
failing the page: a failed run gets its report too.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ebr.artifacts.atomic import write_text_atomic
from ebr.report import plots
from ebr.report.inputs import Record, RunInputs, gather
from ebr.report.steps import result_line, step_state
from ebr.workspace import Workspace

REPORT_HTML = "index.html"
MISSING = "not produced by this run"
MAX_CHECKS = 20  # failed or warning checks listed per validation step
MAX_EPOCHS = 50  # epoch rows per training table (the last ones)

CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:0;background:#f5f6f8;color:#1d2330;font-size:14px}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:0 0 10px;border-bottom:2px solid #d9dee7;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
section{background:#fff;border:1px solid #dfe3ea;border-radius:6px;padding:14px 18px;margin:14px 0}
nav a{margin-right:12px;color:#2457a6;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #dfe3ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{font-weight:700;background:#eaf6ea}tr.total td{font-weight:600;background:#f7f8fa}
span.n{color:#6b7280;font-size:11px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:700;font-size:12px;color:#fff}
.ok{background:#2e7d32}.failed{background:#c62828}.unfinished,.unknown{background:#8d6e00}
.publish{background:#2e7d32}.keep{background:#5c6bc0}
.banner{padding:10px 14px;border-radius:6px;font-size:16px;font-weight:700;margin:8px 0}
.banner.ok{background:#e6f4e7;color:#1b5e20;border:1px solid #a5d6a7}
.banner.failed{background:#fdecea;color:#8e1b1b;border:1px solid #f5b5b0}
.banner.unknown{background:#fff6dd;color:#6d5400;border:1px solid #f1d58a}
p.missing{color:#8a5a00;background:#fff8e6;border-left:4px solid #f0b429;padding:6px 10px;margin:6px 0}
p.note{color:#555;font-size:12px;margin:4px 0}
pre{background:#272c35;color:#f1f1f1;padding:10px;border-radius:4px;white-space:pre-wrap;word-break:break-word}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}
dl.facts dt{color:#555}dl.facts dd{margin:0}
img{max-width:100%;border:1px solid #e3e6ec;background:#fff}
ul.reasons li{margin:2px 0}div.scroll{overflow-x:auto}
"""


def esc(value: Any) -> str:
    """`value` as HTML text, every markup character escaped."""
    return html.escape(str(value), quote=True)


def _missing(what: str) -> str:
    return f'<p class="missing">{esc(MISSING)}: {esc(what)}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _link(path: Path | str | None, base: Path, text: str | None = None) -> str:
    """A relative link from the page's folder `base` to `path`; plain text when the file does not exist."""
    if not path:
        return ""
    path = Path(path)
    if not path.exists():
        return f"{esc(text or path.name)} <span class=\"n\">(missing: {esc(path)})</span>"
    rel = Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    return f'<a href="{esc(quote(rel))}">{esc(text or rel)}</a>'


def _short(run: RunInputs, path: Path | str) -> str:
    """`path` relative to the workspace root when it lies inside it (link text), else as it is."""
    try:
        return Path(path).resolve().relative_to(run.ws.root).as_posix()
    except ValueError:
        return str(path)


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    return "n/a" if math.isnan(value) else fmt.format(value)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _earlier(run: RunInputs, rec: Record | None, step: str) -> str:
    """A note when `rec` was left by an earlier run of the day (its step cached or not reached this time)."""
    if not run.before_run(rec):
        return ""
    assert rec is not None
    why = "its step was served from the cache" if run.step(step) is None else "written before this run started"
    return _note(f"{rec.path.name} was written {_when(rec.written_at)}, before this run's first step: it comes from "
                 f"an earlier run of {run.day} ({why}).")


def _table(headers: Sequence[str], rows: Sequence[str], table_id: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


def _facts(items: Sequence[tuple[str, str]]) -> str:
    """A definition list; values are HTML already."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items if v) + "</dl>"


# ---------------------------------------------------------------------------------------------- status + failure


def run_state(run: RunInputs) -> str:
    """`failed` (the run's error, a failed or unfinished step, or the exit handler's FAILED), `ok` (the exit
    handler's SUCCEEDED, or a finished run report) or `unknown`."""
    state = str((run.run_status.data if run.run_status else {}).get("state") or "")
    if run.failure or any(step_state(s) in ("failed", "unfinished") for s in run.steps) or state in (
            "FAILED", "CANCELED", "CANCELLED"):
        return "failed"
    if state == "SUCCEEDED" or (not state and run.run is not None):
        return "ok"
    return "unknown"


def _gate_line(run: RunInputs) -> str:
    d = run.decision.data if run.decision else None
    if d is None:
        return MISSING
    if d.get("publish"):
        return f"PUBLISH bundle {d.get('version') or '?'}"
    return f"KEEP the champion (serving bundle {d.get('version') or 'none'})"


def _header(run: RunInputs, base: Path) -> str:
    state = run_state(run)
    words = {"ok": "Run succeeded", "failed": "Run FAILED", "unknown": "Run state unknown (no exit-handler record)"}
    ok = sum(step_state(s) == "ok" for s in run.steps)
    bad = [s for s in run.steps if step_state(s) in ("failed", "unfinished")]
    rs = run.run_status.data if run.run_status else {}
    report = run.run.data if run.run else {}
    evaluation = run.evaluation.data if run.evaluation else {}
    log = report.get("kfp_log") or (run.ws.reports(run.day) / "kfp.log")
    bundle = (report.get("bundle") or {}).get("current") if isinstance(report.get("bundle"), dict) else None
    facts = [
        ("day", esc(run.day)),
        ("run state", esc(rs.get("state") or "no run_status record")),
        ("wall time", f"{_num(report.get('wall_s'))} s" if report.get("wall_s") is not None else ""),
        ("steps", f"{ok} ok" + (f", {len(bad)} failed or unfinished" if bad else "") if run.steps else esc(MISSING)),
        ("model version", esc(run.model_version or "–")),
        ("champion compared", esc(evaluation.get("champion_version") or "none") if evaluation else ""),
        ("gate", esc(_gate_line(run))),
        ("serving bundle", esc(bundle) if bundle else ""),
        ("task log", _link(log, base, "kfp.log") if Path(str(log)).exists() else ""),
        ("workspace", esc(run.ws.root)),
    ]
    parts = [f'<h1>Daily run {esc(run.day)}</h1><div class="banner {state}">{esc(words[state])}</div>', _facts(facts)]
    failure = [f"<pre>{esc(run.failure)}</pre>"] if run.failure else []
    if rs.get("error_message"):
        code = f" (error code {rs['error_code']})" if rs.get("error_code") is not None else ""
        failure.append(f"<p>the exit handler recorded{esc(code)}:</p><pre>{esc(rs['error_message'])}</pre>")
    for s in bad:
        report = s.get("report")
        report_link = f" – report: {_link(report, base, _short(run, report))}" if isinstance(report, str) else ""
        failure.append(f"<p><b>{esc(s.get('step'))}</b> {esc(step_state(s))}{report_link}</p>")
    if failure:
        parts.append('<h3>Failure</h3>' + "".join(failure))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- sections


def section_steps(run: RunInputs, base: Path) -> str:
    """The step table: status, wall and CPU seconds, peak RSS and the one-line result of every step record."""
    if not run.steps:
        return _missing(f"no step records in reports/{run.day}/steps/")
    rows = []
    for s in run.steps:
        st = step_state(s)
        rows.append(f'<tr><td>{esc(s.get("step"))}</td><td><span class="badge {esc(st)}">{esc(st)}</span></td>'
                    f'<td class="num">{_num(s.get("wall_s"))}</td><td class="num">{_num(s.get("cpu_s"))}</td>'
                    f'<td class="num">{_num(s.get("peak_rss_mb"))}</td><td>{esc(result_line(s))}</td></tr>')
    walls = [s["wall_s"] for s in run.steps if isinstance(s.get("wall_s"), (int, float))]
    cpus = [s["cpu_s"] for s in run.steps if isinstance(s.get("cpu_s"), (int, float))]
    rss = [s["peak_rss_mb"] for s in run.steps if isinstance(s.get("peak_rss_mb"), (int, float))]
    rows.append(f'<tr class="total"><td>all steps (sum; max RSS)</td><td></td><td class="num">{_num(sum(walls))}</td>'
                f'<td class="num">{_num(sum(cpus))}</td><td class="num">{_num(max(rss) if rss else None)}</td>'
                "<td></td></tr>")
    return (_table(["step", "status", "wall s", "cpu s", "peak RSS MiB", "result"], rows, "steps-table")
            + _note("In start order. Steps served from the KFP cache did not run and have no record."))


def section_validation(run: RunInputs, base: Path) -> str:
    """Each validation step's verdict and counts, its failed or warning checks, links to its report and Data Docs."""
    if not run.validations:
        return _missing("no validation step recorded a report")
    parts = []
    for v in run.validations:
        st = step_state(v.step)
        counts = (v.result or {}).get("counts") or {}
        verdict = v.step.get("verdict") or (
            f"{'PASSED' if (v.result or {}).get('success') else 'FAILED'}: {counts.get('failed', '?')} failed, "
            f"{counts.get('warning', '?')} warnings" if v.result else "no verdict (the step did not finish)")
        parts.append(f'<h3>{esc(v.step.get("step"))} <span class="badge {esc(st)}">{esc(st)}</span></h3>'
                     f"<p><b>{esc(verdict)}</b></p>")
        if counts:
            parts.append(_table(["failed", "warning", "passed", "skipped"], [
                "<tr>" + "".join(f'<td class="num">{esc(counts.get(k, 0))}</td>'
                                 for k in ("failed", "warning", "passed", "skipped")) + "</tr>"]))
        links = [("report", _link(v.report_md, base, _short(run, v.report_md)) if v.report_md else esc(MISSING)),
                 ("Great Expectations Data Docs", _link(v.data_docs, base, _short(run, v.data_docs)) if v.data_docs
                  else esc(f"{MISSING} (no data_docs/index.html beside the report)"))]
        parts.append(_facts(links))
        flagged = [c for c in (v.result or {}).get("checks") or [] if isinstance(c, dict)
                   and c.get("status") in ("failed", "warning")]
        if flagged:
            rows = [f'<tr><td><span class="badge {"failed" if c.get("status") == "failed" else "unknown"}">'
                    f'{esc(c.get("status"))}</span></td><td>{esc(c.get("table"))}'
                    f'{"." + esc(c["column"]) if c.get("column") else ""}</td><td>{esc(c.get("check"))}</td>'
                    f'<td>{esc(c.get("description"))}</td></tr>' for c in flagged[:MAX_CHECKS]]
            parts.append(_table(["status", "where", "check", "description"], rows))
            if len(flagged) > MAX_CHECKS:
                parts.append(_note(f"{len(flagged) - MAX_CHECKS} more in the report."))
    return "".join(parts)


def _main_k(ks: Sequence[int], gate_inputs: Mapping[str, Any] | None) -> int:
    """The K of the summary table: the gate keys' K when the report has it, else EvaluateConfig's main_k."""
    from ebr.evaluate.config import EvaluateConfig
    from ebr.judgements.metrics import parse_metric_key

    for key in (gate_inputs or {}).get("keys") or []:
        try:
            k = parse_metric_key(str(key))[1]
        except ValueError:
            continue
        if k in ks:
            return k
    default = EvaluateConfig.model_fields["main_k"].default
    return default if default in ks else max(ks)


def _cell(mv: Any, best: float | None) -> str:
    """A metric cell, `value (n=requests)` as in report.md; the best value of its column in bold."""
    if mv is None:
        return '<td class="num">–</td>'
    value = "n/a" if math.isnan(mv.value) else f"{mv.value:.4f}"
    cls = "num best" if best is not None and not math.isnan(mv.value) and mv.value == best else "num"
    return f'<td class="{cls}">{value} <span class="n">(n={mv.n_requests})</span></td>'


def _metric_table(systems: Mapping[str, Mapping[str, Any]], keys: Sequence[str], headers: Sequence[str],
                  table_id: str) -> str:
    """Rows = systems, columns = metric keys; values are MetricValue (None where a system lacks the key)."""
    from ebr.judgements.metrics import LOWER_IS_BETTER, parse_metric_key

    best: dict[str, float | None] = {}
    for key in keys:
        vals = [m[key].value for m in systems.values() if key in m and not math.isnan(m[key].value)]
        lower = parse_metric_key(key)[0] in LOWER_IS_BETTER
        best[key] = (min(vals) if lower else max(vals)) if len(vals) > 1 else None
    rows = [f"<tr><td>{esc(name)}</td>" + "".join(
        _cell(metrics.get(key), best[key]) for key in keys) + "</tr>" for name, metrics in systems.items()]
    return _table(["system", *headers], rows, table_id)


def _rankers(rankers: Mapping[str, Any]) -> str:
    """The rankers' table (teacher, distilled and plain students) over every metric they report."""
    from ebr.judgements.metrics import MetricValue

    systems: dict[str, dict[str, Any]] = {}
    keys: list[str] = []
    for name, metrics in (rankers.get("systems") or {}).items():
        row = {}
        for key, v in (metrics or {}).items():
            if isinstance(v, dict) and "value" in v:
                row[key] = MetricValue.from_json(v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                row[key] = float(v)
            else:
                continue
            if key not in keys:
                keys.append(key)
        systems[str(name)] = row
    rows = []
    for key in keys:  # one row per metric: the rankers report more metrics than systems
        cells = []
        for row in systems.values():
            v = row.get(key)
            cells.append(f'<td class="num">{_num(v, "{:.3f}")}</td>' if isinstance(v, float) else _cell(v, None))
        rows.append(f"<tr><td>{esc(key)}</td>{''.join(cells)}</tr>")
    caption = _note(str(rankers["evaluation"])) if rankers.get("evaluation") else ""
    return "<h3>Rankers</h3>" + caption + _table(["metric", *systems], rows, "rankers")


def section_evaluation(run: RunInputs, base: Path) -> str:
    """Every system's metrics on the holdout day: the summary at main K and one table per metric over every K."""
    from ebr.evaluate.report import SUMMARY_METRICS, Report
    from ebr.judgements.metrics import metric_key, parse_metric_key

    if run.evaluation is None or not run.evaluation.data.get("retrieval"):
        return _missing(f"no evaluation record (reports/{run.day}/evaluation.json)")
    ev = run.evaluation.data
    report = Report.from_json(ev["retrieval"])
    main_k = _main_k(report.ks, ev.get("gate_inputs"))
    names = {parse_metric_key(k)[0] for m in report.systems.values() for k in m}
    ordered = [n for n in SUMMARY_METRICS if n in names] + sorted(names - set(SUMMARY_METRICS))
    parts = [_earlier(run, run.evaluation, "evaluate"),
             f"<p>{esc(report.n_requests)} requests of {esc(report.day)}; model {esc(ev.get('model_version') or '–')}"
             f", champion {esc(ev.get('champion_version') or 'none')}. Each cell: mean value (n = requests it "
             "averages over); the best of each column in bold.</p>",
             f"<h3>Summary at K={main_k}</h3>",
             _metric_table(report.systems, [metric_key(n, main_k) for n in ordered],
                           [metric_key(n, main_k) for n in ordered], "eval-summary")]
    for n in ordered:
        ks = sorted({parse_metric_key(k)[1] for m in report.systems.values() for k in m if parse_metric_key(k)[0] == n})
        parts.append(f"<h3>{esc(n)}</h3>")
        parts.append(_metric_table(report.systems, [metric_key(n, k) for k in ks], [f"@{k}" for k in ks],
                                   f"eval-{n}"))
    if isinstance(ev.get("rankers"), dict) and ev["rankers"].get("systems"):
        parts.append(_rankers(ev["rankers"]))
    return "".join(parts)


def section_recall(run: RunInputs, base: Path) -> str:
    """true_recall@K and click_recall@K curves, one line per system."""
    if run.evaluation is None or not run.evaluation.data.get("retrieval"):
        return _missing(f"no evaluation record (reports/{run.day}/evaluation.json)")
    return (_earlier(run, run.evaluation, "evaluate")
            + f'<img alt="recall at K per system" src="{plots.recall_curves(run.evaluation.data["retrieval"])}">')


def section_index(run: RunInputs, base: Path) -> str:
    """The index build: its choice, the tuning sweep's recall vs latency and the chosen search parameters."""
    rec = run.step("build_index")
    if run.index is None:
        if rec is None:
            return _missing("no index was built (no build_index record, no index manifest)")
        facts = [(k, esc(rec.get(k))) for k in ("factory", "ann_recall", "tuned_on", "tuning_queries", "search_params")
                 if k in rec]
        return _facts(facts) + _missing("the index manifest with the tuning sweep was not found under the workspace")
    m, t = run.index.manifest, run.index.manifest.get("tuning") or {}
    k = m.get("recall_k")
    facts = [
        ("factory", f"{esc(m.get('factory'))} <span class=\"n\">{esc(m.get('factory_reason') or '')}</span>"),
        ("vectors", f"n={esc(m.get('n'))}, d={esc(m.get('d'))}, metric {esc(m.get('metric'))}, "
                    f"{len(m.get('shards') or [])} shard(s), {esc(m.get('index_bytes'))} bytes"),
        ("tuned on", f"{esc(t.get('tuned_on') or m.get('tuned_on'))} ({esc(t.get('num_queries'))} queries)"),
        ("target", f"ann_recall@{esc(k)} ≥ {esc(t.get('target_recall'))}, "
                   f"{'reached' if t.get('target_reached') else 'NOT reached'}"),
        ("chosen", f"{esc(m.get('search_params_string') or m.get('search_params') or 'no search parameter')}: "
                   f"ann_recall@{esc(k)} {_num(m.get('ann_recall'), '{:.4f}')}, "
                   f"p50 {_num(m.get('latency_p50_ms'), '{:.3f}')} ms, "
                   f"p99 {_num(m.get('latency_p99_ms'), '{:.3f}')} ms"),
        ("manifest", _link(run.index.path / "manifest.json", base, _short(run, run.index.path / "manifest.json"))),
    ]
    parts = [_facts(facts)]
    curve = [p for p in t.get("curve") or [] if isinstance(p, dict)]
    if not curve:
        return "".join(parts) + _missing("the manifest holds no tuning sweep")
    if len(curve) > 1:
        parts.append(f'<img alt="ANN recall vs latency" src="{plots.ann_sweep(m)}">')
    else:
        parts.append(_note("One setting only (an exact index, or no search parameter to tune): no curve to draw."))
    chosen = m.get("search_params") or {}
    rows = []
    for p in curve:
        params = p.get("params") or {}
        mark = "◀ chosen" if params == chosen else ""
        rows.append(f"<tr><td>{esc(', '.join(f'{a}={b}' for a, b in params.items()) or '–')}</td>"
                    f'<td class="num">{_num(p.get("ann_recall"), "{:.4f}")}</td>'
                    f'<td class="num">{_num(p.get("latency_p50_ms"), "{:.3f}")}</td>'
                    f'<td class="num">{_num(p.get("latency_p99_ms"), "{:.3f}")}</td>'
                    f'<td class="num">{_num(p.get("cost"), "{:,.0f}")}</td><td>{esc(mark)}</td></tr>')
    parts.append(_table(["search params", f"ann_recall@{k}", "p50 ms", "p99 ms", "modelled cost", ""], rows,
                        "ann-sweep"))
    return "".join(parts)


def _plotted(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, list[dict[str, float]]]:
    """The losses and validation metrics of each history (throughput and gradient norms stay in the table)."""
    keep = ("loss", "valid_")
    return {m: [{k: v for k, v in row.items() if k == "epoch" or "loss" in k or k.startswith(keep[1])} for row in h]
            for m, h in histories.items()}


def _value(v: Any) -> str:
    return _num(v, "{:,.1f}" if isinstance(v, (int, float)) and abs(v) >= 100 else "{:.4f}")


def section_training(run: RunInputs, base: Path) -> str:
    """Per-epoch loss and validation metrics of each training step (its metrics.json history)."""
    if not run.trainings:
        return _missing("no training history (metrics.json of the training steps) was found")
    parts = []
    for tr in run.trainings:
        parts.append(f"<h3>{esc(tr.title)}</h3>")
        if tr.source is not None:
            parts.append(f'<p class="note">per-epoch history from {_link(tr.source, base, _short(run, tr.source))}</p>')
        parts.append(f'<img alt="training curves" src="{plots.training_curves(_plotted(tr.histories), tr.title)}">')
        for model, history in tr.histories.items():
            cols: list[str] = []
            for row in history:
                cols += [c for c in row if c != "epoch" and c not in cols]
            shown = history[-MAX_EPOCHS:]
            rows = [f'<tr><td class="num">{_num(r.get("epoch"), "{:g}")}</td>'
                    + "".join(f'<td class="num">{_value(r.get(c))}</td>' for c in cols) + "</tr>" for r in shown]
            parts.append(f"<p>{esc(model)}</p>" + _table(["epoch", *cols], rows))
            if len(history) > len(shown):
                parts.append(_note(f"the last {len(shown)} of {len(history)} epochs"))
    return "".join(parts)


def section_gate(run: RunInputs, base: Path) -> str:
    """The publish gate's decision with its reasons and the key metrics it compared."""
    d = run.decision.data if run.decision else None
    ev_step = run.step("evaluate")
    parts = []
    if d is not None:
        cls, word = ("publish", "PUBLISH") if d.get("publish") else ("keep", "KEEP")
        what = (f"bundle {d.get('version')} published" if d.get("publish")
                else f"the champion keeps serving (bundle {d.get('version') or 'none'})")
        parts += [_earlier(run, run.decision, "publish" if d.get("publish") else "keep_champion"),
                  f'<p><span class="badge {cls}">{word}</span> {esc(what)}</p>']
        reasons = [r for r in str(d.get("reason") or "").split("; ") if r]
        parts.append('<ul class="reasons">' + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
        parts.append(_facts([(k, esc(d[k])) for k in ("bundle", "mlflow_alias", "coarse_ranker_alias", "current_from")
                             if d.get(k)]))
    elif ev_step is not None and "publish" in ev_step:
        word = "PUBLISH" if ev_step.get("publish") else "KEEP"
        parts.append(f"<p>The evaluate step decided <b>{word}</b>, but no decision record was written (the publish "
                     "or keep step did not finish).</p>")
        if ev_step.get("ann_gate"):
            parts.append(f'<ul class="reasons"><li>{esc(ev_step["ann_gate"])}</li></ul>')
    else:
        return _missing(f"no gate decision (reports/{run.day}/decision.json)")
    gi = (run.evaluation.data if run.evaluation else {}).get("gate_inputs") or {}
    if gi.get("keys"):
        def val(side: Any, key: str) -> str:
            v = (side or {}).get(key)
            if isinstance(v, dict):
                return f"{_num(v.get('value'), '{:.4f}')} <span class=\"n\">(n={esc(v.get('n_requests'))})</span>"
            return _num(v, "{:.4f}")

        tols = gi.get("key_tolerances") or {}
        rows = [f"<tr><td>{esc(key)}</td><td class=\"num\">{val(gi.get('new'), key)}</td>"
                f"<td class=\"num\">{val(gi.get('champion'), key) if gi.get('champion') else 'no champion'}</td>"
                f"<td class=\"num\">{esc(tols.get(key, gi.get('tolerance', '–')))}</td></tr>" for key in gi["keys"]]
        parts.append(_table(["key metric", "new model", "champion", "tolerance"], rows, "gate-inputs"))
    return "".join(parts)


SECTIONS: tuple[tuple[str, str, Callable[[RunInputs, Path], str]], ...] = (
    ("steps", "Steps", section_steps),
    ("validation", "Validation", section_validation),
    ("evaluation", "Evaluation on the holdout day", section_evaluation),
    ("recall", "Recall@K per system", section_recall),
    ("index", "ANN index: recall vs latency", section_index),
    ("training", "Training curves", section_training),
    ("gate", "Gate decision", section_gate),
)


def _section(anchor: str, title: str, render: Callable[[RunInputs, Path], str], run: RunInputs, base: Path) -> str:
    try:
        body = render(run, base)
    except Exception as err:  # noqa: BLE001 - one unreadable input must not take the whole report down
        body = f'<p class="missing">this section could not be drawn: {esc(type(err).__name__)}: {esc(err)}</p>'
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def render_html(run: RunInputs, base: Path) -> str:
    """The whole page for `run`; relative links point from the folder `base` the page is written to."""
    try:
        header = _header(run, base)
    except Exception as err:  # noqa: BLE001 - see _section
        header = f"<h1>Daily run {esc(run.day)}</h1>" + _missing(f"header: {type(err).__name__}: {err}")
    nav = "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in SECTIONS) + "</nav>"
    body = "".join(_section(a, t, f, run, base) for a, t, f in SECTIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>ebr run {esc(run.day)}</title><style>{CSS}</style></head><body><main>"
            f"<section id=\"summary\">{header}{nav}</section>{body}"
            f'<p class="note">generated {esc(_when(time.time()))} from the records under {esc(run.ws.root)}</p>'
            "</main></body></html>\n")


def write_html_report(ws: Workspace, day: str, out: str | Path | None = None, failure: str | None = None) -> Path:
    """Write the run report of `day` to `out` (default `<reports>/<day>/index.html`) atomically and return its
    path; `failure` is the failed run's error, shown at the top (run.json is then not read: it is older)."""
    out = Path(out) if out is not None else ws.reports(day) / REPORT_HTML
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out, render_html(gather(ws, day, failure), out.parent))
