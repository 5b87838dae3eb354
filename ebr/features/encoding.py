"""List features as JSON text in the stores, and back to Python lists for callers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


def encode_list(value: Any) -> str:
    """JSON text of a list (None -> '[]'); numpy arrays and tuples are accepted."""
    if value is None:
        return "[]"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif not isinstance(value, list):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_lists(values: Iterable[Any]) -> list[str]:
    """`encode_list` of every value."""
    return [encode_list(v) for v in values]


def decode_list(value: Any) -> list:
    """The list a stored JSON text holds; a missing value (None/NaN) is an empty list."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return []
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a JSON list text, got {type(value).__name__} ({value!r})")
    out = json.loads(value)
    if not isinstance(out, list):
        raise ValueError(f"expected a JSON list text, got {value[:80]!r}")
    return out


def decode_lists(values: pd.Series) -> pd.Series:
    """`decode_list` of every value, same index; each distinct text is decoded once (equal rows share a list)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    decoded = np.empty(len(uniques) + 1, dtype=object)
    for i, v in enumerate(uniques):
        decoded[i] = decode_list(v)
    decoded[-1] = []
    return pd.Series(decoded[codes], index=values.index, name=values.name, dtype=object)
