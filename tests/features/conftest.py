"""Fixtures of the feature tests: one feature store built from the tiny dataset, shared by the session."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def built(tiny_data, tiny_days, tmp_path_factory) -> tuple[Path, dict]:
    """A feature directory built (and materialized) for the last tiny day, and build_features' result. The
    online store is written in batches of 50 rows, so every online test also checks the batched writes."""
    from ebr.features import FeaturesConfig, build_features

    out = tmp_path_factory.mktemp("features") / "store"
    result = build_features(tiny_data, tiny_days[-1], out, FeaturesConfig(online_write_batch_size=50))
    return out, result


@pytest.fixture(scope="session")
def store(built):
    """The Feast store of `built` (Feast is imported once per session)."""
    from ebr.features import open_store

    return open_store(built[0])


def read_view(out_dir: Path, view: str) -> pd.DataFrame:
    """Every partition of a view's derived table, lists decoded, sorted by key and time."""
    from ebr.features.definitions import ENTITIES, LIST_FEATURES, VIEW_BY_NAME
    from ebr.features.encoding import decode_lists

    df = pq.read_table(out_dir / "tables" / view).to_pandas()
    for c in df.columns:
        if c in LIST_FEATURES:
            df[c] = decode_lists(df[c])
    key = ENTITIES[VIEW_BY_NAME[view].entity].join_key
    return df.drop(columns=["ds"], errors="ignore").sort_values([key, "event_timestamp"], kind="stable").reset_index(
        drop=True
    )


def same_value(a, b) -> bool:
    """Equality that treats None and NaN alike and compares lists element-wise."""
    if isinstance(a, list) or isinstance(b, list):
        return list(a) == list(b)
    if pd.isna(a) and pd.isna(b):
        return True
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
    return a == b
