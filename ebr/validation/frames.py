"""The pandas form in which tables are validated: nullable integer and boolean dtypes, UTC timestamps.

Arrow integers with nulls would otherwise become float64 in pandas; the nullable dtypes keep the type that
the contract (or a sample spec) names, so the type expectations can check it exactly.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

_INT_DTYPES: dict[pa.DataType, pd.api.extensions.ExtensionDtype] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _types_mapper(t: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    return _INT_DTYPES.get(t)


def pandas_dtype(t: pa.DataType) -> str:
    """Name of the pandas dtype an arrow column of type `t` has after `to_frame`."""
    if t in _INT_DTYPES:
        return str(_INT_DTYPES[t])
    if pa.types.is_timestamp(t):
        return f"datetime64[{t.unit}, {t.tz}]" if t.tz else f"datetime64[{t.unit}]"
    if pa.types.is_floating(t):
        return t.to_pandas_dtype().__name__
    return "object"


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> pandas with nullable integer/boolean dtypes (strings and lists stay objects)."""
    return table.to_pandas(types_mapper=_types_mapper)


def contract_frame(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """A frame loaded by the contract loader, restricted to `schema`'s columns, in the validated dtypes."""
    lenient = pa.schema([f.with_nullable(True) for f in schema])  # nulls are the suites' to report
    return to_frame(pa.Table.from_pandas(frame[schema.names], schema=lenient, preserve_index=False))


def is_compatible(actual: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether `actual` is of the same family as `wanted` (so a safe cast may bring it there)."""
    if actual.equals(wanted) or pa.types.is_null(actual):
        return True
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(wanted):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_string(wanted):
        return pa.types.is_large_string(actual) or pa.types.is_dictionary(actual)
    if pa.types.is_timestamp(wanted):
        return pa.types.is_timestamp(actual) and actual.tz is not None
    if pa.types.is_list(wanted):
        return pa.types.is_list(actual) or pa.types.is_large_list(actual)
    return False


def cast_compatible(table: pa.Table, wanted: dict[str, pa.DataType]) -> pa.Table:
    """Cast each column named in `wanted` to its type when of the same family and the cast is safe; other
    columns are left as they are, so a type expectation reports their real type."""
    cols = []
    for name in table.column_names:
        arr = table.column(name)
        target = wanted.get(name)
        if target is not None and not arr.type.equals(target) and is_compatible(arr.type, target):
            try:
                arr = arr.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        cols.append(arr)
    return pa.table(cols, names=table.column_names)
