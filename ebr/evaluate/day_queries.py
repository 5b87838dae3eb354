"""The day's real query vectors for tuning the index: a seeded sample of day D's requests (the holdout day,
never trained on) with its query-side features as of each request's time, through the model's exported query
tower, exactly as the evaluation step encodes all of D's requests (`ebr.index.build_index` takes the vectors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_DAY_STREAM = 1_000_033


def sample_day_requests(data_root: str | Path, day: str, n: int, seed: int) -> pd.DataFrame:
    """A seeded uniform sample (without replacement) of at most `n` of `day`'s search requests, in time order:
    a DataFrame with request_id, user_id, query, event_timestamp."""
    from ebr.contract import list_days, load

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if day not in list_days(data_root, "search_requests"):
        raise ValueError(f"no search_requests partition for day {day} under {data_root}: no queries to tune on")
    requests = load(data_root, "search_requests", [day])
    if requests.empty:
        raise ValueError(f"search_requests of {day} under {data_root} is empty: no queries to tune on")
    requests = requests.sort_values(["event_timestamp", "request_id"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng([seed, _DAY_STREAM])
    pick = np.sort(rng.choice(len(requests), size=min(n, len(requests)), replace=False))
    frame = requests.iloc[pick][["request_id", "user_id", "query", "event_timestamp"]].reset_index(drop=True)
    frame["user_id"] = frame["user_id"].astype("Int64")
    return frame


def encode_day_queries(
    model_dir: str | Path,
    features_dir: str | Path,
    data_root: str | Path,
    day: str,
    n: int,
    seed: int,
    batch_size: int = 2048,
) -> np.ndarray:
    """Query-tower vectors [min(n, requests of day), dim] of a seeded sample of `day`'s requests.

    Each request's query-side features come as of its own time (Feast historical retrieval, service
    `query_tower_online`), featurized and encoded by the model's exported query tower: the same path the
    evaluation step takes for every request of the day, so tuning sees the vectors the index will serve.
    """
    from ebr.evaluate.two_tower import encode_queries, query_feature_rows
    from ebr.index.export import export_dir_of
    from ebr.models.export import load_exported

    frame = sample_day_requests(data_root, day, n, seed)
    bundle = load_exported(export_dir_of(model_dir), only=["query_tower"])
    rows = query_feature_rows(features_dir, frame)
    vectors = encode_queries(bundle, rows, batch_size)
    if vectors.shape[0] != len(frame):
        raise ValueError(f"encoded {vectors.shape[0]} query vectors for {len(frame)} requests of {day}")
    return vectors
