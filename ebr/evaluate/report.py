"""Evaluate several systems (model, champion, baselines) on one evaluation set and write the report:
metrics.json, report.md and recall_at_k.png; optionally log all of it to the active MLflow run."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebr.artifacts.atomic import atomic_output_dir
from ebr.judgements.corpus import Corpus
from ebr.judgements.evalset import EvalSet
from ebr.judgements.metrics import (
    MetricValue,
    TopK,
    click_recall,
    filtered_share,
    metric_key,
    ndcg,
    p_good,
    p_good_exact,
    parse_metric_key,
    true_recall,
)
from ebr.judgements.relevance import relevance_removed

FORMAT = "ebr.evaluation/1"
METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"
RECALL_PNG = "recall_at_k.png"
SUMMARY_METRICS = ("click_recall", "true_recall", "p_good", "p_good_exact", "ndcg", "filtered_share")
_MLFLOW_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


@dataclass
class Report:
    """Metrics of every system on one day: {system: {`name@K`: MetricValue}}."""

    day: str
    n_requests: int
    ks: list[int]
    systems: dict[str, dict[str, MetricValue]] = field(default_factory=dict)

    def system(self, name: str) -> dict[str, MetricValue]:
        """The metrics of one system; an unknown name is a KeyError listing the known ones."""
        if name not in self.systems:
            raise KeyError(f"system {name!r} is not in the report (systems: {sorted(self.systems)})")
        return self.systems[name]

    def to_json(self) -> dict:
        """{format, day, n_requests, ks, systems: {system: {metric: {K: {value, n_requests}}}}}."""
        systems: dict[str, dict[str, dict[str, dict]]] = {}
        for sys_name, metrics in self.systems.items():
            out: dict[str, dict[str, dict]] = {}
            for key, mv in metrics.items():
                name, k = parse_metric_key(key)
                out.setdefault(name, {})[str(k)] = mv.to_json()
            systems[sys_name] = out
        return {"format": FORMAT, "day": self.day, "n_requests": self.n_requests, "ks": self.ks, "systems": systems}

    @classmethod
    def from_json(cls, obj: Mapping) -> Report:
        if obj.get("format") != FORMAT:
            raise ValueError(f"not an evaluation report: format {obj.get('format')!r}, want {FORMAT}")
        systems = {
            s: {metric_key(n, int(k)): MetricValue.from_json(v) for n, per_k in m.items() for k, v in per_k.items()}
            for s, m in obj["systems"].items()
        }
        return cls(day=obj["day"], n_requests=int(obj["n_requests"]), ks=list(obj["ks"]), systems=systems)

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read metrics.json (or the report directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / METRICS_JSON
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def retrieval_metrics(
    retrieved: np.ndarray, evalset: EvalSet, ks: Sequence[int], corpus: Corpus | None = None
) -> dict[str, MetricValue]:
    """Every retrieval metric at every K for one system; filtered_share only when `corpus` is given."""
    clicks, labels = evalset.clicks(), evalset.labels()
    arr = np.asarray(retrieved)
    if arr.ndim == 2 and arr.shape[1] >= max(ks):
        arr = arr[:, : max(ks)]  # later columns cannot change any metric
    top = TopK(arr)
    retrieved = top.ids
    per_metric = {
        "click_recall": click_recall(top, clicks, ks),
        "true_recall": true_recall(top, labels, ks),
        "p_good": p_good(top, labels, ks),
        "p_good_exact": p_good_exact(top, labels, ks),
        "ndcg": ndcg(top, labels, ks),
    }
    if corpus is not None:
        f = evalset.frame
        removed = relevance_removed(retrieved, f["query_category_leaf"], f["query_brand"], corpus)
        per_metric["filtered_share"] = filtered_share(top, removed, ks)
    return {metric_key(name, k): mv for name, per_k in per_metric.items() for k, mv in per_k.items()}


def evaluate_systems(
    evalset: EvalSet,
    systems: Mapping[str, np.ndarray],
    ks: Sequence[int],
    corpus: Corpus | None = None,
    extra: Mapping[str, Mapping[str, MetricValue]] | None = None,
) -> Report:
    """Metrics of every system on the same requests; `extra` adds metrics computed elsewhere
    (e.g. {"model": {"ann_recall@100": ...}})."""
    ks = sorted(set(int(k) for k in ks))
    report = Report(day=evalset.day, n_requests=evalset.n_requests, ks=ks)
    for name, retrieved in systems.items():
        arr = np.asarray(retrieved)
        if arr.ndim != 2 or arr.shape[0] != evalset.n_requests:
            raise ValueError(
                f"system {name!r}: retrieved ids have shape {arr.shape}, want ({evalset.n_requests}, >= {max(ks)})"
            )
        try:
            report.systems[name] = retrieval_metrics(arr, evalset, ks, corpus)
        except ValueError as e:
            raise ValueError(f"system {name!r}: {e}") from e
    for name, metrics in (extra or {}).items():
        for key in metrics:
            parse_metric_key(key)
        report.systems.setdefault(name, {}).update(metrics)
    return report


def _cell(mv: MetricValue | None) -> str:
    if mv is None:
        return "–"
    value = "n/a" if math.isnan(mv.value) else f"{mv.value:.4f}"
    return f"{value} (n={mv.n_requests})"


def _metric_names(report: Report) -> list[str]:
    names = {parse_metric_key(k)[0] for m in report.systems.values() for k in m}
    return [n for n in SUMMARY_METRICS if n in names] + sorted(names - set(SUMMARY_METRICS))


def render_markdown(report: Report, main_k: int) -> str:
    """report.md: a summary table at `main_k` (rows = systems) and one table per metric over every K."""
    names = _metric_names(report)
    lines = [
        f"# Evaluation of {report.day}",
        "",
        f"{report.n_requests} requests. Each cell: mean value (n = requests it averages over).",
        "",
        f"## Summary at K={main_k}",
        "",
        "| system | " + " | ".join(metric_key(n, main_k) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for sys_name, metrics in report.systems.items():
        lines.append(f"| {sys_name} | " + " | ".join(_cell(metrics.get(metric_key(n, main_k))) for n in names) + " |")
    for n in names:
        ks = sorted({parse_metric_key(k)[1] for m in report.systems.values() for k in m if parse_metric_key(k)[0] == n})
        lines += ["", f"## {n}", "", "| system | " + " | ".join(f"@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for sys_name, metrics in report.systems.items():
            lines.append(f"| {sys_name} | " + " | ".join(_cell(metrics.get(metric_key(n, k))) for k in ks) + " |")
    return "\n".join(lines) + "\n"


def plot_recall(report: Report, path: Path) -> None:
    """recall_at_k.png: true recall and click recall vs K, one line per system (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    for ax, name in zip(fig.subplots(1, 2), ("true_recall", "click_recall"), strict=True):
        for sys_name, metrics in report.systems.items():
            pts = [(k, metrics[metric_key(name, k)].value) for k in report.ks if metric_key(name, k) in metrics]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=sys_name)
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_ylabel(f"{name}@K")
        ax.set_title(f"{name} vs K ({report.day})")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def metric_gap(training: Mapping[str, MetricValue], served: Mapping[str, MetricValue]) -> dict[str, dict]:
    """Per metric key of both: {training_time, served, gap = served - training_time} (values as in metrics.json;
    gap None when either is undefined), e.g. the model with training-time vs served real-time features."""
    out: dict[str, dict] = {}
    for key in sorted(set(training) & set(served), key=lambda k: (parse_metric_key(k)[0], parse_metric_key(k)[1])):
        a, b = training[key], served[key]
        gap = None if math.isnan(a.value) or math.isnan(b.value) else float(b.value - a.value)
        out[key] = {"training_time": a.to_json(), "served": b.to_json(), "gap": gap}
    return out


def render_gap_markdown(skew: Mapping, main_k: int, n_requests: int) -> str:
    """A report.md section: the model's metrics at `main_k` with training-time vs served real-time features."""
    if skew.get("skipped"):
        return f"## Real-time features: training-time vs served\n\nNot measured: {skew['skipped']}.\n"
    lines = [
        "## Real-time features: training-time vs served",
        "",
        f"The model on the same requests with the real-time features ({', '.join(skew['features'])}) as of each "
        f"request (training rows) and as the online store serves them without pushed events (as of "
        f"{skew['as_of']}). {skew['requests_changed']} of {n_requests} requests differ.",
        "",
        "| metric | training-time | served | gap |",
        "|---|---|---|---|",
    ]
    for key, row in skew["metrics"].items():
        if parse_metric_key(key)[1] != main_k:
            continue
        gap = "n/a" if row["gap"] is None else f"{row['gap']:+.4f}"
        cells = [_cell(MetricValue.from_json(row[v])) for v in ("training_time", "served")]
        lines.append(f"| {key} | {cells[0]} | {cells[1]} | {gap} |")
    return "\n".join(lines) + "\n"


def write_report(report: Report, out_dir: str | Path, main_k: int, sections: Sequence[str] = ()) -> Path:
    """Write metrics.json, report.md and recall_at_k.png into `out_dir`, all or nothing (temp dir + rename);
    `sections` (markdown) are appended to report.md."""
    if main_k not in report.ks:
        raise ValueError(f"main_k={main_k} is not one of the report's ks {report.ks}")
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir, marker=METRICS_JSON) as tmp:
        text = "\n".join([render_markdown(report, main_k), *sections])
        (tmp / REPORT_MD).write_text(text, encoding="utf-8")
        plot_recall(report, tmp / RECALL_PNG)
        text = json.dumps(report.to_json(), indent=2, ensure_ascii=False, allow_nan=False)
        (tmp / METRICS_JSON).write_text(text + "\n", encoding="utf-8")
    return out_dir


def mlflow_metric_name(system: str, key: str, primary: str = "model") -> str:
    """`true_recall@100` -> `true_recall_at_100` for the primary system, `<system>.true_recall_at_100` else."""
    name, k = parse_metric_key(key)
    base = f"{name}_at_{k}"
    return base if system == primary else f"{_MLFLOW_BAD.sub('_', system)}.{base}"


def mlflow_metrics(report: Report, primary: str = "model") -> dict[str, float]:
    """Flat {mlflow name: value} of every measured metric, plus `<name>.n_requests` for each."""
    out: dict[str, float] = {}
    for sys_name, metrics in report.systems.items():
        for key, mv in metrics.items():
            name = mlflow_metric_name(sys_name, key, primary)
            out[f"{name}.n_requests"] = float(mv.n_requests)
            if not math.isnan(mv.value):
                out[name] = float(mv.value)
    return out


def log_report_to_mlflow(report_dir: str | Path, primary: str = "model", artifact_path: str = "evaluation") -> None:
    """Log a written report to the active MLflow run: its metrics (see `mlflow_metrics`) and its files."""
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("no active MLflow run: call mlflow.start_run() before logging the evaluation report")
    report_dir = Path(report_dir)
    report = Report.load(report_dir)
    mlflow.log_metrics(mlflow_metrics(report, primary))
    mlflow.log_artifacts(str(report_dir), artifact_path=artifact_path)
