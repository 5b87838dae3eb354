"""Point-in-time features for a sample table through Feast (`ebr.features`); sample construction never needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
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

    # distinct entity rows numbered in order of first sight (null keys, e.g. a logged-out user, form a group)
    codes = samples.groupby(ENTITY_COLUMNS, sort=False, dropna=False).ngroup().to_numpy()
    first = np.unique(codes, return_index=True)[1]
    entity_df = samples[ENTITY_COLUMNS].iloc[first].reset_index(drop=True)
    store = open_store(features_dir)
    feats = historical_features(store, entity_df, service_name, on_missing=on_missing)
    report = feats.attrs.get("feature_report")
    if len(feats) != len(entity_df):
        raise ValueError(f"feature service {service_name!r} returned {len(feats)} rows for {len(entity_df)}")
    clash = [c for c in feats.columns if c in samples.columns and c not in ENTITY_COLUMNS]
    if clash:
        raise ValueError(f"feature service {service_name!r} returns column(s) {clash} that the sample table has")
    # historical_features keeps entity_df's rows and order: each sample row takes its entity row's features by
    # position (no merge on the five keys: at `large` a merge of 2M ranking rows copied every column twice)
    feats = feats.drop(columns=ENTITY_COLUMNS).reset_index(drop=True)
    if len(first) != len(samples) or not (first == np.arange(len(samples))).all():
        feats = feats.take(codes).reset_index(drop=True)
    out = pd.concat([samples.reset_index(drop=True), feats], axis=1)
    out.attrs["feature_report"] = report
    return out
