"""What the sample tables must look like: one `SampleSpec` per table; add a table by adding an entry to
`SAMPLE_TABLES` (or pass your own mapping to `validate_samples`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from ebr.contract.schema import TS, Column, TableSpec
from ebr.validation.expectations import Expect, between, columns_expectations, value_expectations


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric column: [lo, hi], each end open when strict."""

    column: str
    lo: float | None = None
    hi: float | None = None
    strict_lo: bool = False
    strict_hi: bool = False

    @property
    def text(self) -> str:
        left = "(" if self.strict_lo else "["
        right = ")" if self.strict_hi else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{self.column} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class SampleSpec:
    """A sample table: required columns (types, nulls, enums) and key as a `TableSpec`, columns checked only
    when present (`optional`), and value rules."""

    table: TableSpec
    optional: tuple[Column, ...] = ()
    ranges: tuple[Range, ...] = ()
    value_sets: dict[str, tuple[object, ...]] = field(default_factory=dict)  # allowed non-string values
    sums_to_one: tuple[str, ...] = ()  # probability columns that must sum to 1

    @property
    def name(self) -> str:
        return self.table.name

    def expectations(self, present: set[str], sum_tolerance: float) -> list[Expect]:
        """The suite of this table given the columns `present`: schema (extra columns allowed), nulls, enums,
        key, ranges, sets, sums; rules on an absent optional column are left out."""
        out = columns_expectations(self.table, exact=False) + value_expectations(self.table)
        extra = [c for c in self.optional if c.name in present]
        if extra:
            opt = TableSpec(name=self.name, columns=tuple(extra), has_event_timestamp=False)
            out += columns_expectations(opt, exact=False)[1:] + value_expectations(opt)
        for r in self.ranges:
            out.append(between(r.column, "range", r.text, r.lo, r.hi, r.strict_lo, r.strict_hi))
        for col, values in self.value_sets.items():
            out.append(Expect("ExpectColumnValuesToBeInSet", {"column": col, "value_set": list(values)}, "range",
                              f"{col} is one of {', '.join(map(str, values))}"))
        for col in self.sums_to_one:
            out.append(Expect("ExpectColumnSumToBeBetween",
                              {"column": col, "min_value": 1 - sum_tolerance, "max_value": 1 + sum_tolerance}, "sum",
                              f"{col} sums to 1 (+/-{sum_tolerance:g})"))
        absent = {c.name for c in self.optional} - present
        return [e for e in out if not absent.intersection(e.columns)]


RETRIEVAL_SAMPLES = SampleSpec(
    TableSpec(
        name="retrieval",
        key=("request_id", "query", "doc_id"),
        columns=(
            Column("request_id", pa.string()),
            Column("user_id", pa.int64(), nullable=True),
            Column("query", pa.string()),
            Column("doc_id", pa.int64()),
            Column("event_timestamp", TS),
            Column("weight", pa.float32()),
        ),
    ),
    optional=(Column("label", pa.int8()),),
    ranges=(Range("weight", lo=0.0, strict_lo=True),),
    value_sets={"label": (0, 1, 2)},
)

NEGATIVE_TABLE = SampleSpec(
    TableSpec(
        name="negatives",
        key=("doc_id",),
        has_event_timestamp=False,
        columns=(Column("doc_id", pa.int64()), Column("prob", pa.float64())),
    ),
    ranges=(Range("prob", lo=0.0, hi=1.0, strict_lo=True),),
    sums_to_one=("prob",),
)

RANKING_SAMPLES = SampleSpec(
    TableSpec(
        name="ranking",
        key=("request_id", "doc_id"),
        columns=(
            Column("request_id", pa.string()),
            Column("doc_id", pa.int64()),
            Column("label_click", pa.int8()),
            Column("source", pa.string()),
        ),
    ),
    value_sets={"label_click": (0, 1)},
)

SAMPLE_TABLES: dict[str, SampleSpec] = {s.name: s for s in (RETRIEVAL_SAMPLES, NEGATIVE_TABLE, RANKING_SAMPLES)}
