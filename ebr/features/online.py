"""Online features for the query-tower server: one request's user and query features from the online store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ebr.features.definitions import ENTITIES, LIST_FEATURES, SERVICES, VIEW_BY_NAME
from ebr.features.encoding import decode_list

if TYPE_CHECKING:
    from feast import FeatureStore


def _check_key(name: str, value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "string":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None, got {type(value).__name__} ({value!r})")
        return value
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer id or None, got {type(value).__name__} ({value!r})")
    return int(value)


def _default(name: str, value: Any) -> Any:
    """Lists decoded (a missing list is an empty list, as offline); other missing values stay None."""
    return decode_list(value) if name in LIST_FEATURES else value


def online_features(
    store: FeatureStore,
    user_id: int | None = None,
    query: str | None = None,
    service_name: str = "query_tower_online",
    doc_id: int | None = None,
    author_id: int | None = None,
    entities: set[str] | None = None,
) -> dict[str, Any]:
    """Feature name -> value for one request from the online store, in one `get_online_features` call over
    every entity with a key (one round trip to the store).

    A None key (logged-out user, no query) or an unknown one gives None for its scalar features and [] for
    its list features; the store is not asked about None keys. `entities` (e.g. {"user"}) limits the call to
    those entities' features (a caller caching the others); the rest are left out of the answer."""
    if service_name not in SERVICES:
        raise ValueError(f"unknown feature service {service_name!r}; services: {sorted(SERVICES)}")
    given = {"user": user_id, "query": query, "doc": doc_id, "author": author_id}
    keys = {e: _check_key(ENTITIES[e].join_key, v, ENTITIES[e].dtype) for e, v in given.items()}
    refs: dict[str, list[str]] = {}
    for v in SERVICES[service_name]:
        spec = VIEW_BY_NAME[v]
        refs.setdefault(spec.entity, []).extend(f"{v}:{n}" for n in spec.feature_names)
    wanted = [e for e in refs if entities is None or e in entities]
    asked = [e for e in wanted if keys[e] is not None]
    got: dict[str, list[Any]] = {}
    if asked:
        row = {ENTITIES[e].join_key: keys[e] for e in asked}
        got = store.get_online_features(features=[r for e in asked for r in refs[e]], entity_rows=[row]).to_dict()
    out: dict[str, Any] = {}
    for entity in wanted:
        names = [r.split(":", 1)[1] for r in refs[entity]]
        out.update({n: _default(n, got[n][0] if entity in asked else None) for n in names})
    return out

