"""Feast glue: derived feature tables without look-ahead, the store, historical and online retrieval.

`build_features(data_root, day, out_dir, cfg)` is the pipeline step; `open_store(out_dir)` opens its store;
`historical_features(store, entity_df, service)` gives training rows point-in-time features with every row
accounted for; `online_features(store, user_id=..., query=...)` serves one request. Feast is imported only
inside these functions, and without typeguard's import-time instrumentation (`feast_import`: half its cost).
"""

from ebr.features import feast_import
from ebr.features.build import build_features, derive_day
from ebr.features.config import FeaturesConfig
from ebr.features.definitions import (
    DOC_BUCKET_FEATURES,
    DOC_NUMERIC_FEATURES,
    ENTITIES,
    LIST_FEATURES,
    QUERY_NUMERIC_FEATURES,
    SEQUENCE_FEATURES,
    SERVICES,
    USER_NUMERIC_FEATURES,
    VIEWS,
    build_definitions,
    service_features,
)
from ebr.features.online import online_features
from ebr.features.retrieval import (
    FeatureRetrievalError,
    RetrievalReport,
    historical_features,
    historical_features_with_report,
)
from ebr.features.store import open_store

feast_import.install()  # before anything imports Feast (none of the imports above does)

__all__ = [
    "DOC_BUCKET_FEATURES",
    "DOC_NUMERIC_FEATURES",
    "ENTITIES",
    "LIST_FEATURES",
    "QUERY_NUMERIC_FEATURES",
    "SEQUENCE_FEATURES",
    "SERVICES",
    "USER_NUMERIC_FEATURES",
    "VIEWS",
    "FeatureRetrievalError",
    "FeaturesConfig",
    "RetrievalReport",
    "build_definitions",
    "build_features",
    "derive_day",
    "historical_features",
    "historical_features_with_report",
    "online_features",
    "open_store",
    "service_features",
]
