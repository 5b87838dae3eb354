"""Contract violations: what was wrong, where (table, partition, column), how many rows, a few examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


@dataclass
class Violation:
    """One broken rule in one partition of one table."""

    table: str
    partition: str | None
    column: str | None
    rule: str
    message: str
    bad_rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        where = f"{self.table}"
        if self.partition:
            where += f" ds={self.partition}"
        if self.column:
            where += f" column {self.column!r}"
        text = f"{where}: [{self.rule}] {self.message}"
        if self.bad_rows:
            text += f" ({self.bad_rows} bad rows"
            if self.examples:
                text += f"; e.g. {self.examples}"
            text += ")"
        return text


class ContractError(ValueError):
    """Raised when loaded data breaks the contract; carries every violation found."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = [str(v) for v in violations[:20]]
        if len(violations) > 20:
            lines.append(f"... and {len(violations) - 20} more violations")
        super().__init__("data contract violated:\n  " + "\n  ".join(lines))
