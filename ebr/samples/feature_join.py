"""Point-in-time features for a sample table through Feast (`ebr.features`); sample construction never needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

ENTITY_COLUMNS = ["user_id", "query", "doc_id", "author_id", "event_timestamp"]
SERVICES = ("retrieval_training", "ranking_training")


def join_features(
    samples: pd.DataFrame,
    features_dir: str | Path,
    service_name: str,
    on_missing: Literal["raise", "null"] = "null",
) -> pd.DataFrame:
    """`samples` with the feature service's columns added, row for row (same order, same count).

    Distinct entity rows go to `ebr.features.historical_features` once and are merged back. Rows whose feature
    keys the offline store drops (e.g. a first-day request, a rewritten query never seen) raise or get null
    features (`on_missing`); the retrieval report is kept in `result.attrs["feature_report"]`."""
    if service_name not in SERVICES:
        raise ValueError(f"service_name must be one of {list(SERVICES)}, got {service_name!r}")
    if on_missing not in ("raise", "null"):
        raise ValueError(f"on_missing must be 'raise' or 'null', got {on_missing!r}")
    missing = [c for c in ENTITY_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"sample table lacks entity column(s) {missing} needed for service {service_name!r}")
    from ebr.features import historical_features, open_store

    entity_df = samples[ENTITY_COLUMNS].drop_duplicates().reset_index(drop=True)
    store = open_store(features_dir)
    feats = historical_features(store, entity_df, service_name, on_missing=on_missing)
    report = feats.attrs.get("feature_report")
    if len(feats) != len(entity_df):
        raise ValueError(f"feature service {service_name!r} returned {len(feats)} rows for {len(entity_df)}")
    clash = [c for c in feats.columns if c in samples.columns and c not in ENTITY_COLUMNS]
    if clash:
        raise ValueError(f"feature service {service_name!r} returns column(s) {clash} that the sample table has")
    # historical_features keeps entity_df's rows and order: attach by position, then merge back on the keys
    feats = pd.concat([entity_df, feats.drop(columns=ENTITY_COLUMNS).reset_index(drop=True)], axis=1)
    out = samples.merge(feats, on=ENTITY_COLUMNS, how="left", validate="many_to_one")
    if len(out) != len(samples):
        raise ValueError(f"feature join changed the row count of the samples: {len(samples)} -> {len(out)}")
    out.attrs["feature_report"] = report
    return out
