"""Checks of day D against the trailing days: volume of every fact table and drift of key distributions
(CTR of exposed impressions, query length in characters, the requests' query_category_leaf mix)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ebr.validation.config import ValidationConfig
from ebr.validation.expectations import Expect, row_count_between
from ebr.validation.outcome import CheckResult
from ebr.validation.partitions import read_columns, row_count

NO_CATEGORY = "(none)"


def trailing_days(day: str, n: int) -> list[str]:
    """The `n` days before `day`, oldest first."""
    d = date.fromisoformat(day)
    return [(d - timedelta(days=i)).isoformat() for i in range(n, 0, -1)]


def volume_expectation(root: Path, table: str, day: str, cfg: ValidationConfig) -> Expect | CheckResult:
    """Rows of `table` on `day` within +/- volume_tolerance of the trailing daily mean, or a skipped check
    when fewer than min_history_days earlier partitions exist."""
    counts = {d: n for d in trailing_days(day, cfg.trailing_days) if (n := row_count(root, table, d)) is not None}
    desc = f"rows of {day} within +/-{cfg.volume_tolerance:.0%} of the trailing daily mean"
    if len(counts) < cfg.min_history_days:
        return CheckResult(table, None, "volume", "ExpectTableRowCountToBeBetween", "skipped", desc,
                           note=f"not run: {len(counts)} earlier day(s) in the last {cfg.trailing_days}, "
                                f"{cfg.min_history_days} needed")
    mean = float(np.mean(list(counts.values())))
    lo = math.ceil(mean * (1 - cfg.volume_tolerance))
    hi = math.floor(mean * (1 + cfg.volume_tolerance))
    note = f"trailing mean {mean:.1f} rows/day over {len(counts)} day(s): " + ", ".join(
        f"{d}: {n}" for d, n in counts.items())
    return row_count_between("volume", desc, lo, hi, meta={"note": note, "trailing_mean": mean,
                                                             "trailing_rows": counts})


def exposed_ctr(impressions: pd.DataFrame) -> float | None:
    """Clicks per exposed impression; None without exposures."""
    exposed = impressions["stage"] == "exposed"
    n = int(exposed.sum())
    return None if n == 0 else float(impressions.loc[exposed, "clicked"].astype(bool).sum()) / n


def query_lengths(requests: pd.DataFrame) -> pd.Series:
    """Length of every request's query in characters."""
    return requests["query"].astype("string").str.len().astype("float64")


def category_mix(requests: pd.DataFrame) -> pd.Series:
    """Request counts per query_category_leaf (null counted as its own category)."""
    return requests["query_category_leaf"].astype("object").where(
        requests["query_category_leaf"].notna(), NO_CATEGORY).value_counts()


def psi(current: pd.Series, reference: pd.Series, floor: float) -> float:
    """Population stability index sum((p - q) * ln(p / q)) of two count series; empty shares become `floor`."""
    cats = current.index.union(reference.index)
    p = current.reindex(cats, fill_value=0).to_numpy(dtype="float64")
    q = reference.reindex(cats, fill_value=0).to_numpy(dtype="float64")
    p = np.maximum(p / max(p.sum(), 1.0), floor)
    q = np.maximum(q / max(q.sum(), 1.0), floor)
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass
class DriftChecks:
    """Day D's statistics (one row, validated by GX), their expectations and the checks that could not run."""

    frame: pd.DataFrame
    expects: list[Expect] = field(default_factory=list)
    skipped: list[CheckResult] = field(default_factory=list)


def _relative_band(name: str, value: float | None, ref: float | None, tol: float, what: str, ref_note: str,
                   out: DriftChecks) -> None:
    desc = f"{what} of D within +/-{tol:.0%} of the trailing value"
    if value is None or ref is None:
        reason = "day D has no rows to measure" if value is None else "no earlier day to compare with"
        out.skipped.append(CheckResult("drift", name, "drift", "ExpectColumnMeanToBeBetween", "skipped", desc,
                                       note=f"not run: {reason}"))
        return
    out.frame[name] = [value]
    out.expects.append(Expect(
        "ExpectColumnMeanToBeBetween",
        {"column": name, "min_value": ref * (1 - tol), "max_value": ref * (1 + tol)}, "drift", desc,
        meta={"note": f"trailing value {ref:.4g} ({ref_note})", "reference": ref}))


def drift_checks(root: Path, day: str, requests: pd.DataFrame | None, impressions: pd.DataFrame | None,
                 cfg: ValidationConfig) -> DriftChecks:
    """Compare day D with the pooled trailing days (those of the last `trailing_days` that can be read)."""
    out = DriftChecks(frame=pd.DataFrame(index=[0]))
    hist_imps, hist_reqs = [], []
    for d in trailing_days(day, cfg.trailing_days):
        imp = read_columns(root, "impressions", d, ["stage", "clicked"])
        req = read_columns(root, "search_requests", d, ["query", "query_category_leaf"])
        if imp is not None:
            hist_imps.append(imp)
        if req is not None:
            hist_reqs.append(req)
    enough_imps = len(hist_imps) >= cfg.min_history_days
    enough_reqs = len(hist_reqs) >= cfg.min_history_days
    ref_imps = pd.concat(hist_imps, ignore_index=True) if enough_imps else None
    ref_reqs = pd.concat(hist_reqs, ignore_index=True) if enough_reqs else None

    ctr = exposed_ctr(impressions) if impressions is not None else None
    ref_ctr = exposed_ctr(ref_imps) if ref_imps is not None else None
    _relative_band("exposed_ctr", ctr, ref_ctr, cfg.ctr_tolerance, "CTR of exposed impressions",
                   f"{len(hist_imps)} day(s) pooled", out)

    has_reqs = requests is not None and len(requests) > 0
    qlen = float(query_lengths(requests).mean()) if has_reqs else None
    ref_qlen = float(query_lengths(ref_reqs).mean()) if ref_reqs is not None and len(ref_reqs) else None
    _relative_band("query_length_mean", qlen, ref_qlen, cfg.query_length_tolerance,
                   "mean query length (characters)", f"{len(hist_reqs)} day(s) pooled", out)

    desc = f"PSI of the query_category_leaf mix vs the trailing days <= {cfg.category_psi_max}"
    if not has_reqs or ref_reqs is None or not len(ref_reqs):
        reason = "day D has no requests" if not has_reqs else "no earlier day to compare with"
        out.skipped.append(CheckResult("drift", "query_category_psi", "drift", "ExpectColumnMaxToBeBetween",
                                       "skipped", desc, note=f"not run: {reason}"))
    else:
        cur, ref = category_mix(requests), category_mix(ref_reqs)
        value = psi(cur, ref, cfg.psi_floor)
        out.frame["query_category_psi"] = [value]
        shares = (cur / cur.sum() - ref.reindex(cur.index, fill_value=0) / ref.sum()).abs().sort_values()
        top = ", ".join(f"{c}: {cur[c] / cur.sum():.1%} vs {ref.get(c, 0) / ref.sum():.1%}"
                        for c in shares.index[::-1][:3])
        out.expects.append(Expect("ExpectColumnMaxToBeBetween",
                                  {"column": "query_category_psi", "max_value": cfg.category_psi_max}, "drift", desc,
                                  meta={"note": f"largest share changes (D vs trailing): {top}"}))
    return out
