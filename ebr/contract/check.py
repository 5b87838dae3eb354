"""Check a whole raw-log dataset against the contract and render a per-table report (`ebr check-data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ebr import rawfs
from ebr.contract.load import PartitionInfo, check_references, list_days, load_table
from ebr.contract.schema import FACT_TABLES, REQUIRED_TABLES, TABLES
from ebr.contract.violations import Violation


@dataclass
class TableReport:
    """Rows, days, extra columns, violations and warnings of one table."""

    table: str
    days: list[str] = field(default_factory=list)
    rows: int = 0
    extra_columns: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)


@dataclass
class DatasetReport:
    """The result of checking a dataset: one TableReport per contract table."""

    root: str
    tables: dict[str, TableReport]

    @property
    def violations(self) -> list[Violation]:
        return [v for t in self.tables.values() for v in t.violations]

    @property
    def warnings(self) -> list[Violation]:
        """What the contract ignores but a person should see (extra columns, stray files)."""
        return [w for t in self.tables.values() for w in t.warnings]

    @property
    def ok(self) -> bool:
        return not self.violations

    def ok_strict(self) -> bool:
        """No violation and no warning (`ebr check-data --strict`)."""
        return self.ok and not self.warnings

    def render(self) -> str:
        """Plain-text report: one line per table, then every violation."""
        lines = [f"data contract check of {self.root}"]
        lines.append(f"{'table':<18}{'days':>6}{'rows':>12}  first..last              extra columns")
        for t in self.tables.values():
            span = f"{t.days[0]}..{t.days[-1]}" if t.days else "-"
            extra = ", ".join(t.extra_columns) or "-"
            lines.append(f"{t.table:<18}{len(t.days):>6}{t.rows:>12}  {span:<24}{extra}")
        vs = self.violations
        lines.append(f"violations: {len(vs)}")
        lines.extend(f"  - {v}" for v in vs)
        if self.warnings:
            lines.append(f"warnings: {len(self.warnings)}")
            lines.extend(f"  - {w}" for w in self.warnings)
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _select_days(root: Path, table: str, days: list[str] | None) -> list[str] | None:
    """For a day selection, fact tables need exactly those days; dimension tables need all days up to the
    last selected one (their current value is the latest change row)."""
    if days is None:
        return None
    spec = TABLES[table]
    if spec.kind == "dimension":
        last = max(days)
        return [d for d in list_days(root, table) if d <= last]
    if spec.kind == "evaluation":
        return [d for d in days if d in list_days(root, table)]
    return list(days)


def check_dataset(root: str | Path, days: list[str] | None = None) -> DatasetReport:
    """Run every contract rule on every table (over `days`, or all partitions); never raises on bad data."""
    root = rawfs.check_root(root)
    reports: dict[str, TableReport] = {}
    if not rawfs.is_dir(root):
        rep = TableReport(table="*")
        rep.violations.append(Violation("*", None, None, "root", f"data root {root} is not a directory"))
        return DatasetReport(str(root), {"*": rep})
    for table in TABLES:
        rep = TableReport(table=table)
        reports[table] = rep
        if not rawfs.is_dir(rawfs.join(root, table)):
            if table in REQUIRED_TABLES:
                rep.violations.append(Violation(table, None, None, "missing_table",
                                                f"{rawfs.join(root, table)} is missing"))
            continue
        res = load_table(root, table, _select_days(root, table, days))
        parts: list[PartitionInfo] = res.partitions
        rep.days = [p.day for p in parts]
        rep.rows = sum(p.rows for p in parts)
        rep.extra_columns = sorted({c for p in parts for c in p.extra_columns})
        rep.violations.extend(res.violations)
        rep.warnings.extend(w for p in parts for w in p.warnings)
        if table == "impressions" and not res.violations:
            rep.violations.extend(check_references(root, res.frame))
    _check_fact_days(root, reports, days)
    return DatasetReport(str(root), reports)


def _check_fact_days(root: rawfs.Root, reports: dict[str, TableReport], days: list[str] | None) -> None:
    """Every fact table must have a partition for every day any fact table has (within `days`): impressions
    without their requests, or a day of requests without impressions, is a partial delivery."""
    present = {t: set(list_days(root, t)) for t in FACT_TABLES if rawfs.is_dir(rawfs.join(root, t))}
    every = set().union(*present.values()) if present else set()
    if days is not None:
        every &= set(days)
    for table, have in present.items():
        reported = {v.partition for v in reports[table].violations if v.rule == "partition"}
        for day in sorted(every - have - reported):
            others = sorted(t for t, d in present.items() if day in d)
            reports[table].violations.append(Violation(
                table, day, None, "missing_partition",
                f"{rawfs.join(root, table)}/ds={day} is missing while {', '.join(others)} have that day"))
