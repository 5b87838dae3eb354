"""The markdown report of a validation run: verdict, every failed check with examples, then the rest in short."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from ebr.validation.outcome import CheckResult, ValidationResult


def snake(name: str) -> str:
    """`ExpectColumnValuesToBeUnique` -> `expect_column_values_to_be_unique` (already snake names pass)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _cell(value: Any, width: int = 80) -> str:
    text = "null" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _cell(value, 200)


def observed_text(c: CheckResult) -> str:
    """What was observed, in words: unexpected rows out of rows, or the observed value."""
    parts = []
    if c.unexpected_count is not None:
        if c.element_count:
            share = 100.0 * c.unexpected_count / c.element_count
            parts.append(f"{c.unexpected_count} of {c.element_count} rows unexpected ({share:.2g}%)")
        else:
            parts.append(f"{c.unexpected_count} rows unexpected")
    if c.observed is not None:
        parts.append(f"observed value {_number(c.observed)}")
    return "; ".join(parts) or "-"


def expected_text(c: CheckResult) -> str:
    """The expectation's arguments as `key=value` pairs."""
    return ", ".join(f"{k}={_number(v)}" for k, v in c.expected.items()) or "-"


def _examples(examples: list[Any]) -> list[str]:
    if not examples:
        return []
    if all(isinstance(e, dict) for e in examples):
        cols = list(dict.fromkeys(k for e in examples for k in e))
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(e.get(k), 40) for k in cols) + " |" for e in examples]
        return lines
    return ["values: " + ", ".join(f"`{_cell(e, 40)}`" for e in examples)]


def _detail(i: int, c: CheckResult) -> list[str]:
    lines = [f"### {i}. `{c.where}`: {c.description}", "",
             f"- check: **{c.check}**, expectation `{snake(c.expectation)}`"
             + (f"({expected_text(c)})" if c.expected else ""),
             f"- observed: {observed_text(c)}"]
    if c.note:
        lines.append(f"- note: {c.note}")
    ex = _examples(c.examples)
    if ex:
        lines += ["- examples:", ""] + ["  " + x for x in ex]
    lines.append("")
    return lines


def render_report(result: ValidationResult, context: list[str] | None = None) -> str:
    """The report.md text of `result`; `context` lines (data path, days compared) go under the verdict."""
    verdict = "PASSED" if result.success else "FAILED"
    title = f"{result.kind} data" + (f" of {result.day}" if result.day else "")
    lines = [f"# Data validation: {title}", "",
             f"**Verdict: {verdict}** ({len(result.failed)} failed, {len(result.warnings)} warnings, "
             f"{len(result.passed)} passed, {len(result.skipped)} skipped)", ""]
    lines += [f"- {x}" for x in (context or [])]
    lines.append(f"- written: {datetime.now(UTC).isoformat(timespec='seconds')}")
    if result.data_docs_index is not None:
        lines.append("- Great Expectations Data Docs: `data_docs/index.html`")
    lines.append("")
    for heading, checks in (("Failed checks", result.failed), ("Warnings", result.warnings)):
        if checks:
            lines += [f"## {heading} ({len(checks)})", ""]
            for i, c in enumerate(checks, 1):
                lines += _detail(i, c)
    if result.skipped:
        lines += [f"## Skipped checks ({len(result.skipped)})", "", "| table | column | check | why |",
                  "|---|---|---|---|"]
        lines += [f"| {c.table} | {c.column or '-'} | {_cell(c.description)} | {_cell(c.note, 120)} |"
                  for c in result.skipped]
        lines.append("")
    lines += [f"## Passed checks ({len(result.passed)})", "", "| table | passed | by check family |", "|---|---|---|"]
    by_table: dict[str, list[CheckResult]] = {}
    for c in result.passed:
        by_table.setdefault(c.table, []).append(c)
    for table, checks in by_table.items():
        fam = Counter(c.check for c in checks)
        lines.append(f"| {table} | {len(checks)} | {', '.join(f'{k} {v}' for k, v in fam.items())} |")
    noted = [c for c in result.passed if c.check in ("volume", "drift") or c.note]
    if noted:
        lines += ["", "Observed values of the passed history and informational checks:", ""]
        lines += [f"- `{c.where}` {c.description}: {observed_text(c)}" + (f" ({c.note})" if c.note else "")
                  for c in noted]
    lines.append("")
    return "\n".join(lines)
