"""Writing one online-store row of a feature view by hand, as the tests' stores need them."""

from __future__ import annotations

import pandas as pd

from ebr.features.definitions import VIEW_BY_NAME
from ebr.features.encoding import encode_list

JOIN_KEYS = {"user": "user_id", "query": "query", "doc": "doc_id"}


def write_online_row(store, view: str, key: object, values: dict, at: pd.Timestamp) -> None:
    """One row of `view` for entity `key` at time `at`: `values` by feature name (lists encoded as stored),
    every other feature of the view empty."""
    spec = VIEW_BY_NAME[view]
    row: dict[str, list] = {JOIN_KEYS[spec.entity]: [key], "event_timestamp": [at]}
    for f in spec.features:
        value = values.get(f.name)
        row[f.name] = [encode_list(value) if f.dtype.startswith("list") else value]
    store.write_to_online_store(view, pd.DataFrame(row))
