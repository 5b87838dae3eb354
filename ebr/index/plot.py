"""The ann_recall@K vs latency plot of a tuning sweep, written beside the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ebr.index.tune import TunePoint


def plot_recall_curve(
    curve: Sequence[TunePoint], path: str | Path, *, k: int, target: float, parameter: str | None, title: str
) -> Path:
    """Save a PNG of recall vs single-thread p50 latency, one labelled point per sweep value (one line per
    k_factor_rf for an index with a refine stage)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ys = [p.ann_recall for p in curve]
    # one line per setting of the parameters other than the swept one (k_factor_rf of a refine stage)
    lines: dict[str, list[TunePoint]] = {}
    for p in curve:
        rest = ", ".join(f"{k}={v}" for k, v in p.params.items() if k != parameter and k != "quantizer_efSearch")
        lines.setdefault(rest, []).append(p)
    for rest, points in lines.items():
        xs = [max(p.latency_p50_ms, 1e-4) for p in points]
        label = f"ann_recall@{k}" + (f" ({rest})" if rest else "")
        ax.plot(xs, [p.ann_recall for p in points], marker="o", label=label)
        for p, x in zip(points, xs, strict=True):
            if p.value is not None:
                ax.annotate(
                    f"{parameter}={p.value}",
                    (x, p.ann_recall),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=7,
                )
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency p50 per query, one thread (ms)")
    ax.set_ylabel(f"ann_recall@{k}")
    ax.set_ylim(min([*ys, target]) - 0.05, 1.01)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path
