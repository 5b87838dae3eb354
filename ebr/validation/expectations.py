"""Expectations as plain data (`Expect`), and the ones generated from a `TableSpec`: columns, types, nulls,
enums, non-empty text and key uniqueness. The GX objects are made only when a suite runs (see gx_run.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ebr.contract.schema import TableSpec
from ebr.validation.config import CheckFamily
from ebr.validation.frames import pandas_dtype

Condition = tuple[str, str, Any]  # (column, "==" | "!=", value): the rows an expectation applies to


@dataclass(frozen=True)
class Expect:
    """One expectation: the GX expectation class name and arguments, its check family and a plain sentence."""

    gx_type: str
    kwargs: dict[str, Any]
    check: CheckFamily
    description: str
    condition: Condition | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Columns the expectation reads (kwargs and row condition)."""
        k = self.kwargs
        cols = [k[n] for n in ("column", "column_A", "column_B") if n in k]
        cols += list(k.get("column_list", []))
        if self.condition is not None:
            cols.append(self.condition[0])
        return cols

    @property
    def column_label(self) -> str | None:
        """The column (or columns, comma-joined) the report names for this expectation."""
        k = self.kwargs
        if "column" in k:
            return k["column"]
        if "column_A" in k:
            return f"{k['column_A']},{k['column_B']}"
        if "column_list" in k:
            return ",".join(k["column_list"])
        return None


def columns_expectations(spec: TableSpec, exact: bool) -> list[Expect]:
    """Columns present (exactly the spec's when `exact`) and each column's pandas dtype."""
    out = [Expect("ExpectTableColumnsToMatchSet", {"column_set": spec.names, "exact_match": exact}, "schema",
                  f"columns are {'exactly' if exact else 'at least'} {', '.join(spec.names)}")]
    for c in spec.columns:
        dtype = pandas_dtype(c.type)
        out.append(Expect("ExpectColumnTypeToBe", {"column": c.name, "type_": dtype}, "type",
                          f"{c.name} has type {c.type} (pandas {dtype})"))
    return out


def value_expectations(spec: TableSpec) -> list[Expect]:
    """Nulls, enums and non-empty text of every column, and uniqueness of the key."""
    out: list[Expect] = []
    for c in spec.columns:
        if not c.nullable:
            out.append(Expect("ExpectColumnValuesToNotBeNull", {"column": c.name}, "not_null",
                              f"{c.name} is never null"))
        if c.enum is not None:
            out.append(Expect("ExpectColumnValuesToBeInSet", {"column": c.name, "value_set": list(c.enum)}, "enum",
                              f"{c.name} is one of {', '.join(c.enum)}"))
        if pa.types.is_string(c.type):
            out.append(Expect("ExpectColumnValueLengthsToBeBetween", {"column": c.name, "min_value": 1}, "not_null",
                              f"{c.name} is never an empty string"))
    out.extend(key_expectations(spec.key))
    return out


def key_expectations(key: tuple[str, ...]) -> list[Expect]:
    """Uniqueness of a one- or multi-column key."""
    if not key:
        return []
    if len(key) == 1:
        return [Expect("ExpectColumnValuesToBeUnique", {"column": key[0]}, "unique", f"{key[0]} is unique")]
    return [Expect("ExpectCompoundColumnsToBeUnique", {"column_list": list(key)}, "unique",
                   f"({', '.join(key)}) is unique")]


def between(column: str, check: CheckFamily, description: str, lo: Any = None, hi: Any = None,
            strict_min: bool = False, strict_max: bool = False, condition: Condition | None = None) -> Expect:
    """ExpectColumnValuesToBeBetween with only the bounds that are set."""
    kwargs: dict[str, Any] = {"column": column}
    if lo is not None:
        kwargs["min_value"] = lo
        kwargs["strict_min"] = strict_min
    if hi is not None:
        kwargs["max_value"] = hi
        kwargs["strict_max"] = strict_max
    return Expect("ExpectColumnValuesToBeBetween", kwargs, check, description, condition)


def row_count_between(check: CheckFamily, description: str, lo: int | None = None, hi: int | None = None,
                      meta: dict[str, Any] | None = None) -> Expect:
    """ExpectTableRowCountToBeBetween with only the bounds that are set."""
    kwargs: dict[str, Any] = {}
    if lo is not None:
        kwargs["min_value"] = lo
    if hi is not None:
        kwargs["max_value"] = hi
    return Expect("ExpectTableRowCountToBeBetween", kwargs, check, description, meta=meta or {})
