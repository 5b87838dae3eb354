"""The publish gate's rule: the new model is published when it is not worse than the champion on every key
metric by more than the tolerance; the first run (no champion) always publishes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ebr.evaluate.metrics import LOWER_IS_BETTER, MetricValue, parse_metric_key

DEFAULT_KEYS = ("click_recall@100", "true_recall@100")
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
) -> GateDecision:
    """Publish iff new >= champion - tolerance on every key (<= + tolerance if lower is better); a key neither
    measured is skipped, one only the new model lacks blocks, and no comparable key at all blocks."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
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
        drop = (new - old) if lower else (old - new)
        worse = drop > tolerance + _EPS
        verdict = "worse beyond tolerance" if worse else "not worse"
        direction = "lower is better" if lower else "higher is better"
        reasons.append(
            f"{key}: new {new:.4f} vs champion {old:.4f} (diff {new - old:+.4f}, {direction}, "
            f"tolerance {tolerance}): {verdict}"
        )
        if worse:
            publish = False
    if compared == 0:
        publish = False
        reasons.append("no key metric could be compared: not publishing")
    return GateDecision(publish, reasons)
