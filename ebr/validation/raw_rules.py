"""The suite of one raw table of day D: the contract's schema, nulls, enums and keys (from its `TableSpec`)
plus the contract's rules that a schema cannot express: ranges, engagement consistency, timestamps in the day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ebr.contract.schema import TableSpec
from ebr.validation.expectations import Expect, between, columns_expectations, value_expectations

ENGAGEMENT_FLAGS = ("liked", "favorited", "commented")


def day_bounds(day: str) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)


def _impression_rules() -> list[Expect]:
    out = [
        between("position", "range", "position is >= 1 (1-based slot)", lo=1),
        Expect("ExpectColumnValuesToNotBeNull", {"column": "position"}, "consistency",
               "position is set where stage = 'exposed'", ("stage", "==", "exposed")),
        Expect("ExpectColumnValuesToBeNull", {"column": "position"}, "consistency",
               "position is null where stage != 'exposed'", ("stage", "!=", "exposed")),
        Expect("ExpectColumnValuesToBeInSet", {"column": "stage", "value_set": ["exposed"]}, "consistency",
               "clicked implies exposed: stage = 'exposed' where clicked", ("clicked", "==", True)),
    ]
    for flag in ENGAGEMENT_FLAGS:
        out.append(Expect("ExpectColumnValuesToBeInSet", {"column": "clicked", "value_set": [True]}, "consistency",
                          f"{flag} implies clicked: clicked is true where {flag}", (flag, "==", True)))
    out.append(between("dwell_ms", "range", "dwell_ms is >= 0", lo=0))
    return out


_TABLE_RULES = {
    "impressions": _impression_rules,
    "authors": lambda: [between("follower_count", "range", "follower_count is >= 0", lo=0),
                        between("age", "range", "age is within [0, 120]", lo=0, hi=120)],
    "users": lambda: [between("age", "range", "age is within [0, 120]", lo=0, hi=120)],
    "relevance_labels": lambda: [Expect("ExpectColumnValuesToBeInSet", {"column": "label", "value_set": [0, 1, 2]},
                                        "range", "label is 0, 1 or 2")],
}


def raw_table_expectations(spec: TableSpec, day: str) -> list[Expect]:
    """Every row-level expectation of `spec`'s partition of `day`."""
    out = columns_expectations(spec, exact=True) + value_expectations(spec)
    if spec.has_event_timestamp:
        lo, hi = day_bounds(day)
        out.append(between("event_timestamp", "timestamp", f"event_timestamp lies inside {day} (UTC)",
                           lo=lo, hi=hi, strict_max=True))
    rules = _TABLE_RULES.get(spec.name)
    if rules is not None:
        out.extend(rules())
    return out
