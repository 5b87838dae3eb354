"""The key numbers of a day's evaluation as flat (name, value) pairs, for a pipeline UI's metrics panel
(Kubeflow's `Metrics` artifact) and anything else that wants a scalar per metric."""

from __future__ import annotations

import math

from ebr.evaluate.report import Report
from ebr.workspace import Workspace

KEY_METRICS = ("click_recall@100", "true_recall@100", "ndcg@10", "p_good@100", "filtered_share@100")
KEY_SYSTEMS = ("model", "hybrid", "champion", "bm25", "popularity")


def kfp_metrics(ws: Workspace, day: str, publish: bool | None = None) -> dict[str, float]:
    """`<system>.<metric>` for the key systems and metrics of the day's evaluation record, plus `gate.publish`
    (1/0) when given; empty when the day has no evaluation yet."""
    record = ws.read(day, "evaluation")
    out: dict[str, float] = {}
    if record is not None and record.get("retrieval"):
        report = Report.from_json(record["retrieval"])
        for system in KEY_SYSTEMS:
            for key in KEY_METRICS:
                mv = report.systems.get(system, {}).get(key)
                if mv is not None and mv.value is not None and math.isfinite(mv.value):
                    out[f"{system}.{key}"] = round(float(mv.value), 6)
    if publish is not None:
        out["gate.publish"] = 1.0 if publish else 0.0
    return out
