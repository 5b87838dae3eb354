"""`validate_raw`: every raw table of day D against its contract suite, references, freshness, volume, drift."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd

from ebr import rawfs
from ebr.contract.load import list_days, load_table
from ebr.contract.schema import TABLES
from ebr.contract.violations import Violation
from ebr.validation.config import ValidationConfig
from ebr.validation.expectations import Expect, row_count_between
from ebr.validation.frames import contract_frame
from ebr.validation.gx_run import Batch, run_batches
from ebr.validation.history import drift_checks, trailing_days, volume_expectation
from ebr.validation.outcome import CheckResult, ValidationFailed, ValidationResult
from ebr.validation.raw_rules import raw_table_expectations
from ebr.validation.references import reference_expectations, reference_frame
from ebr.validation.report import render_report
from ebr.validation.staging import staged_dir

# contract rules that stop a partition from loading; row-level rules are re-checked by the GX suites
LOAD_RULES = frozenset({"partition", "file", "missing_column", "type", "missing_table"})


def violation_check(v: Violation, status: str = "failed") -> CheckResult:
    """A contract violation as a failed check that names the table, partition, column and rule."""
    where = f" (ds={v.partition})" if v.partition and f"ds={v.partition}" not in v.message else ""
    family = "freshness" if v.rule == "partition" and "is missing" in v.message else "contract"
    return CheckResult(v.table, v.column, family, f"contract:{v.rule}", status,  # type: ignore[arg-type]
                       f"{v.message}{where}", unexpected_count=v.bad_rows or None, examples=list(v.examples),
                       note=f"data contract rule '{v.rule}' (shared/spec/data-contract.md)")


def _load_day(root: rawfs.Root, table: str, day: str, checks: list[CheckResult]) -> pd.DataFrame | None:
    """Day D's partition of `table` in the validated dtypes, or None (with failed or skipped checks) when it is
    missing or cannot be loaded."""
    spec = TABLES[table]
    if not rawfs.is_dir(rawfs.join(root, table)):
        if spec.kind == "evaluation":
            return None
        checks.append(violation_check(Violation(table, None, None, "missing_table",
                                                f"{rawfs.join(root, table)} is missing")))
        return None
    if spec.kind != "fact" and day not in list_days(root, table):
        note = ("no change rows on this day (dimension partitions hold changes only)" if spec.kind == "dimension"
                else "optional table without a partition for this day")
        checks.append(CheckResult(table, None, "freshness", "contract:partition", "skipped",
                                  f"partition ds={day}", note=f"not run: {note}"))
        return None
    res = load_table(root, table, [day])
    blocking = [v for v in res.violations if v.rule in LOAD_RULES]
    if blocking:
        checks.extend(violation_check(v) for v in blocking)
        checks.append(CheckResult(table, None, "contract", "suite", "skipped", f"suite of {table}",
                                  note=f"not run: ds={day} could not be loaded ({len(blocking)} contract errors)"))
        return None
    extra = sorted({c for p in res.partitions for c in p.extra_columns})
    if extra:
        checks.append(CheckResult(table, None, "schema", "contract:extra_columns", "passed",
                                  "columns outside the contract are ignored", observed=extra,
                                  note=f"ignored columns: {', '.join(extra)}"))
    return contract_frame(res.frame, TABLES[table].schema)


def _table_batch(root: Path, table: str, day: str, frame: pd.DataFrame, cfg: ValidationConfig,
                 checks: list[CheckResult]) -> Batch:
    spec = TABLES[table]
    expects: list[Expect] = raw_table_expectations(spec, day)
    if spec.kind == "fact":
        expects.append(row_count_between("freshness", f"ds={day} is present and not empty", lo=1))
        vol = volume_expectation(root, table, day, cfg)
        if isinstance(vol, CheckResult):
            checks.append(vol)
        else:
            expects.append(vol)
    index = list(spec.key) or list(spec.id_columns)
    return Batch(table, table, frame, expects, index)


def _context_lines(root: Path, day: str, cfg: ValidationConfig) -> list[str]:
    days = [d for d in trailing_days(day, cfg.trailing_days) if d in list_days(root, "search_requests")]
    return [f"data root: `{root}`", f"day validated: {day}",
            f"trailing days compared: {', '.join(days) if days else 'none (volume and drift skipped)'}"]


def validate_raw(data_root: str | Path, day: str, out_dir: str | Path, cfg: ValidationConfig | None = None,
                 *, raise_on_failure: bool = True) -> ValidationResult:
    """Validate every raw table of `day` and write report.md, result.json and data_docs/ to `out_dir`.

    Raises ValidationFailed (after writing the report) when a check failed, unless `raise_on_failure` is false.
    """
    cfg = cfg or ValidationConfig()
    root = rawfs.check_root(data_root)
    if not rawfs.is_dir(root):
        raise FileNotFoundError(f"data root {root} is not a directory")
    try:
        day = date.fromisoformat(day).isoformat()
    except ValueError as e:
        raise ValueError(f"day {day!r} is not a YYYY-MM-DD date") from e
    checks: list[CheckResult] = []
    frames: dict[str, pd.DataFrame] = {}
    batches: list[Batch] = []
    for table in TABLES:
        frame = _load_day(root, table, day, checks)
        if frame is not None:
            frames[table] = frame
            batches.append(_table_batch(root, table, day, frame, cfg, checks))
    if "impressions" in frames:
        ref, notes = reference_frame(root, day, frames["impressions"], frames.get("search_requests"))
        exp = reference_expectations(day)
        if notes:  # partitions that could not be read make references look missing: say so
            exp = [replace(e, meta={**e.meta, "note": "; ".join([e.meta.get("note", ""), *notes]).strip("; ")})
                   for e in exp]
        batches.append(Batch("impressions_references", "impressions", ref, exp, ["request_id", "doc_id"]))
    drift = drift_checks(root, day, frames.get("search_requests"), frames.get("impressions"), cfg)
    checks.extend(drift.skipped)
    if drift.expects:
        batches.append(Batch("drift", "drift", drift.frame, drift.expects))

    with staged_dir(out_dir) as tmp:
        docs_dir = tmp / "data_docs" if cfg.data_docs else None
        gx_checks, index = run_batches(f"raw.{day}", batches, cfg, docs_dir)
        result = ValidationResult("raw", str(root), day, checks + gx_checks)
        result.data_docs_index = None if index is None else Path(out_dir) / "data_docs" / "index.html"
        (tmp / "report.md").write_text(render_report(result, _context_lines(root, day, cfg)), encoding="utf-8")
        (tmp / "result.json").write_text(result.to_json(), encoding="utf-8")
    result.out_dir = Path(out_dir)
    if raise_on_failure and not result.success:
        raise ValidationFailed(result)
    return result
