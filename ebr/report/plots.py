"""The report's figures as `data:image/png;base64,...` URIs, drawn by the plot functions the steps use themselves
(the evaluation's recall@K, the index's recall/latency sweep, the training curves)."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def png_data_uri(draw: Callable[[Path], Any]) -> str:
    """Run `draw(path)` (a function saving a PNG at `path`) in a temporary directory and inline the PNG."""
    with tempfile.TemporaryDirectory(prefix="ebr-report-") as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def recall_curves(evaluation: Mapping[str, Any]) -> str:
    """true_recall@K and click_recall@K vs K, one line per system (ebr.evaluate.report.plot_recall)."""
    from ebr.evaluate.report import Report, plot_recall

    report = Report.from_json(evaluation)
    return png_data_uri(lambda p: plot_recall(report, p))


def ann_sweep(manifest: Mapping[str, Any]) -> str:
    """ann_recall@K vs latency of the index build's tuning sweep (ebr.index.plot.plot_recall_curve)."""
    from ebr.index.plot import plot_recall_curve
    from ebr.index.tune import TunePoint

    tuning = manifest.get("tuning") or {}
    curve = [TunePoint(value=p.get("value"), ann_recall=float(p["ann_recall"]),
                       latency_p50_ms=float(p["latency_p50_ms"]), latency_p99_ms=float(p.get("latency_p99_ms") or 0.0),
                       params=dict(p.get("params") or {}), cost=float(p.get("cost") or 0.0))
             for p in tuning.get("curve") or []]
    title = (f"{manifest.get('factory')}  n={manifest.get('n')} d={manifest.get('d')}  "
             f"(tuned on {tuning.get('tuned_on')})")
    return png_data_uri(lambda p: plot_recall_curve(curve, p, k=int(manifest.get("recall_k") or 0),
                                                    target=float(tuning.get("target_recall") or 0.0),
                                                    parameter=tuning.get("parameter"), title=title))


def training_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], title: str) -> str:
    """One panel per loss or validation metric vs epoch, one line per model (ebr.train.tracking.plot_curves)."""
    from ebr.train.tracking import plot_curves

    return png_data_uri(lambda p: plot_curves(histories, p, title))
