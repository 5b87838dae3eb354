"""What a validation run found: one `CheckResult` per expectation or rule, gathered in a `ValidationResult`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Status = Literal["passed", "failed", "warning", "skipped"]


@dataclass
class CheckResult:
    """One check of one table: what was expected, whether it held, what was observed and a few bad rows."""

    table: str
    column: str | None
    check: str  # family: schema, type, not_null, enum, range, unique, consistency, timestamp, references, ...
    expectation: str  # GX expectation type, or `contract:<rule>` for a load violation
    status: Status
    description: str
    expected: dict[str, Any] = field(default_factory=dict)
    observed: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    note: str = ""

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table


@dataclass
class ValidationResult:
    """Every check of one run; `success` is false when any check failed (warnings do not fail a run)."""

    kind: Literal["raw", "samples"]
    subject: str  # the data root or the samples folder
    day: str | None
    checks: list[CheckResult]
    out_dir: Path | None = None
    data_docs_index: Path | None = None

    @property
    def success(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "failed"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "warning"]

    @property
    def passed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "passed"]

    @property
    def skipped(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "skipped"]

    @property
    def report_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "report.md"

    @property
    def result_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "result.json"

    def summary(self) -> str:
        """One line: verdict and counts."""
        verdict = "PASSED" if self.success else "FAILED"
        what = f"{self.kind} data" + (f" of {self.day}" if self.day else "")
        return (f"validation of {what}: {verdict} ({len(self.failed)} failed, {len(self.warnings)} warnings, "
                f"{len(self.passed)} passed, {len(self.skipped)} skipped)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the content of result.json."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "day": self.day,
            "success": self.success,
            "counts": {"failed": len(self.failed), "warning": len(self.warnings), "passed": len(self.passed),
                       "skipped": len(self.skipped)},
            "data_docs_index": None if self.data_docs_index is None else str(self.data_docs_index),
            "checks": [plain(asdict(c)) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


class ValidationFailed(RuntimeError):
    """Raised when a validation run has failed checks; carries the result and the path of its report."""

    def __init__(self, result: ValidationResult):
        self.result = result
        self.report_path = result.report_path
        first = "; ".join(f"{c.where}: {c.description}" for c in result.failed[:5])
        more = f" (and {len(result.failed) - 5} more)" if len(result.failed) > 5 else ""
        super().__init__(f"{result.summary()}: {first}{more}; report: {self.report_path}")


def plain(value: Any) -> Any:
    """A JSON-serializable copy of `value`: numpy scalars, timestamps, NA and tuples made plain."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        return [plain(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
