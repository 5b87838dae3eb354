"""The publish gate's rules: the new model is published when it is not worse than the champion on every key
metric by more than that key's tolerance (coverage and relevance alike: click/true recall, p_good and
filtered_share; the first run, with no champion, passes this rule), and when its Faiss
index is good enough: ann_recall@K of the index on the day's real queries at or above `index.min_ann_recall`
(`ann_gate`). `combine` joins the rules' decisions: publish only when every one says so, every reason listed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebr.judgements.metrics import LOWER_IS_BETTER, MetricValue, parse_metric_key

DEFAULT_KEYS = ("click_recall@100", "true_recall@100", "p_good@100", "filtered_share@100")
_EPS = 1e-12  # float slack, so a drop of exactly the tolerance counts as within it


@dataclass(frozen=True)
class GateDecision:
    """Whether to publish, and one reason per key metric (or for the first run)."""

    publish: bool
    reasons: list[str] = field(default_factory=list)


def _value(metrics: Mapping[str, MetricValue | float], key: str, who: str, min_requests: int) -> float:
    """The metric's value, NaN when it was measured on fewer than `min_requests` requests."""
    if key not in metrics:
        raise KeyError(f"{who} metrics have no {key!r} (have: {sorted(metrics)})")
    mv = metrics[key]
    if isinstance(mv, MetricValue):
        return mv.value if mv.n_requests >= min_requests else float("nan")
    return float(mv)


def compare(
    new_metrics: Mapping[str, MetricValue | float],
    champion_metrics: Mapping[str, MetricValue | float] | None,
    keys: Sequence[str] = DEFAULT_KEYS,
    tolerance: float = 0.005,
    min_requests: int = 1,
    tolerances: Mapping[str, float] | None = None,
) -> GateDecision:
    """Publish iff new >= champion - tolerance on every key (<= + tolerance if lower is better), with the key's
    own tolerance where `tolerances` names one; a key neither measured is skipped, one only the new model lacks
    blocks, and no comparable key at all blocks."""
    tolerances = dict(tolerances or {})
    for key, tol in [("tolerance", tolerance), *tolerances.items()]:
        if tol < 0:
            raise ValueError(f"tolerance of {key} must be >= 0, got {tol}")
    if not keys:
        raise ValueError("keys must name at least one metric")
    if champion_metrics is None:
        return GateDecision(True, ["first run: no champion to compare with, publishing"])
    publish, compared, reasons = True, 0, []
    for key in keys:
        name, _ = parse_metric_key(key)
        new = _value(new_metrics, key, "new model", min_requests)
        old = _value(champion_metrics, key, "champion", min_requests)
        if math.isnan(new) and math.isnan(old):
            reasons.append(f"{key}: measured for neither model (fewer than {min_requests} requests), skipped")
            continue
        if math.isnan(new):
            publish = False
            reasons.append(f"{key}: not measured for the new model (champion {old:.4f}), blocks publishing")
            continue
        compared += 1
        if math.isnan(old):
            reasons.append(f"{key}: new {new:.4f}, champion not measured: not worse")
            continue
        lower = name in LOWER_IS_BETTER
        tol = tolerances.get(key, tolerance)
        drop = (new - old) if lower else (old - new)
        worse = drop > tol + _EPS
        verdict = "worse beyond tolerance" if worse else "not worse"
        direction = "lower is better" if lower else "higher is better"
        reasons.append(
            f"{key}: new {new:.4f} vs champion {old:.4f} (diff {new - old:+.4f}, {direction}, "
            f"tolerance {tol}): {verdict}"
        )
        if worse:
            publish = False
    if compared == 0:
        publish = False
        reasons.append("no key metric could be compared: not publishing")
    return GateDecision(publish, reasons)


def served_gate(
    new_served: Mapping[str, MetricValue | float],
    champion_served: Mapping[str, MetricValue | float] | None,
    keys: Sequence[str] = DEFAULT_KEYS,
    tolerance: float = 0.005,
    min_requests: int = 1,
    tolerances: Mapping[str, float] | None = None,
) -> GateDecision:
    """`compare` on what the server answers (the bundle's hybrid system with relevance control inside retrieval)
    against the champion's, reasons prefixed `served`: a model that retrieves better alone can still serve worse
    once merged and constrained. No champion: publish, no reason (the model's own rule says why)."""
    if champion_served is None:
        return GateDecision(True, [])
    d = compare(new_served, champion_served, keys, tolerance, min_requests, tolerances)
    return GateDecision(d.publish, [f"served {r}" for r in d.reasons])


def combine(*decisions: GateDecision) -> GateDecision:
    """One decision from several rules: publish only when all of them publish; their reasons in order."""
    if not decisions:
        raise ValueError("combine needs at least one decision")
    return GateDecision(all(d.publish for d in decisions), [r for d in decisions for r in d.reasons])


def ann_gate(
    model_metrics: Mapping[str, MetricValue | float],
    min_ann_recall: float,
    k: int = 100,
    index_manifest: Mapping[str, Any] | None = None,
) -> GateDecision:
    """Refuse an index whose ann_recall@k on real queries is below `min_ann_recall` (0 = the check is off).

    The recall is the evaluation's `ann_recall@k` of the model (the built index against exact search, on every
    request of the holdout day); when the evaluation has none (k not among its cut-offs) the index manifest's
    own `ann_recall` is used if the build measured it on real query vectors (`tuned_on: "queries"`) at the
    same k. Recall measured only on synthetic queries, or not at all, blocks publishing."""
    if not 0.0 <= min_ann_recall <= 1.0:
        raise ValueError(f"min_ann_recall must be in [0, 1], got {min_ann_recall}")
    key = f"ann_recall@{k}"
    if min_ann_recall == 0.0:
        return GateDecision(True, [f"{key}: index.min_ann_recall = 0, ANN quality check off"])
    value, where = float("nan"), ""
    mv = model_metrics.get(key)
    if mv is not None:
        value = mv.value if isinstance(mv, MetricValue) else float(mv)
        n = mv.n_requests if isinstance(mv, MetricValue) else None
        where = f"on the day's {n} evaluation requests" if n is not None else "on the day's evaluation requests"
        if isinstance(mv, MetricValue) and mv.n_requests < 1:
            value = float("nan")
    if math.isnan(value) and index_manifest is not None:
        m = index_manifest
        if m.get("tuned_on") == "queries" and int(m.get("recall_k", -1)) == k and m.get("ann_recall") is not None:
            value = float(m["ann_recall"])
            where = f"on the index build's {(m.get('tuning') or {}).get('num_queries', '?')} real query vectors"
    if math.isnan(value):
        tuned = (index_manifest or {}).get("tuned_on")
        extra = f" (the index build measured it on {tuned} queries only)" if tuned and tuned != "queries" else ""
        return GateDecision(
            False, [f"{key}: index recall on real queries not measured{extra}, blocks publishing"]
        )
    ok = value >= min_ann_recall - _EPS
    factory = (index_manifest or {}).get("factory")
    what = f"index {factory}" if factory else "index"
    if ok:
        return GateDecision(True, [f"{key}: {what} {value:.4f} {where} >= index.min_ann_recall {min_ann_recall}"])
    params = (index_manifest or {}).get("search_params")
    return GateDecision(
        False,
        [
            f"{key}: {what} {value:.4f} {where} is below index.min_ann_recall {min_ann_recall}"
            + (f" (search params {params})" if params else "")
            + ": blocks publishing; tune on real queries, probe more lists or pick a larger index"
        ],
    )


def ann_gate_from_dirs(
    report_dir: str | Path, index_dir: str | Path | None, min_ann_recall: float, k: int = 100
) -> GateDecision:
    """`ann_gate` over an evaluation report directory (its metrics.json, system `model`) and the index dir."""
    from ebr.evaluate.report import Report
    from ebr.index.manifest import read_manifest

    report = Report.load(report_dir)
    model = report.systems.get("model", {})
    manifest = read_manifest(index_dir) if index_dir is not None else None
    return ann_gate(model, min_ann_recall, k, manifest)
