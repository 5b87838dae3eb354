"""Every Feast object of the project in one place: entities, file sources, feature views and services.

The feature schema is plain data (`VIEWS`, `SERVICES`) so constants and arrow schemas need no Feast import;
`build_definitions` turns it into Feast objects for a data directory (Feast is imported inside it).

List features are stored as JSON text (Feast type String, tag `encoding=json_list`): the file offline store
runs on Dask, which hashes every object column by pickling it on each `persist` (about 30 us per list, several
times per retrieval), while text columns hash as one buffer. `ebr.features` decodes them back into lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, FileSource, PushSource

DType = Literal["int64", "float32", "string", "list_int64", "list_string"]
TtlKind = Literal["none", "snapshot"]

PROJECT = "ebr"
TIMESTAMP = "event_timestamp"
TABLES_DIR = "tables"
UNKNOWN_AUTHOR = -1  # author of a sequence event whose doc is unknown at the event time
UNKNOWN_CATEGORY = ""  # leaf category of such an event

LIST_ENCODING = "json_list"
# Storage (parquet and Feast) type of each logical type: lists are JSON text.
ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float32": pa.float32(),
    "string": pa.string(),
    "list_int64": pa.string(),
    "list_string": pa.string(),
}


@dataclass(frozen=True)
class EntitySpec:
    """A Feast entity: its name, join key and key type."""

    name: str
    join_key: str
    dtype: DType
    description: str


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: name (as the model reads it), type and meaning."""

    name: str
    dtype: DType
    description: str


@dataclass(frozen=True)
class ViewSpec:
    """A feature view over one derived table: entity, TTL kind, how rows are written, its features."""

    name: str
    entity: str
    ttl: TtlKind
    cadence: str
    description: str
    features: tuple[FeatureSpec, ...]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


ENTITIES: dict[str, EntitySpec] = {
    "user": EntitySpec("user", "user_id", "int64", "a logged-in user (null user_id = logged-out request)"),
    "query": EntitySpec("query", "query", "string", "a raw query string, as logged in search_requests"),
    "doc": EntitySpec("doc", "doc_id", "int64", "a document (product, post, video)"),
    "author": EntitySpec("author", "author_id", "int64", "the author (seller, creator) of docs"),
}

DOC_WINDOWS = (1, 7, 30)  # days; doc statistics windows
WINDOWS = (7, 30)  # days; query, user and author statistics windows
SEQ_FIELDS = ("doc_ids", "categories", "authors", "event_types")
_SEQ_TYPES: dict[str, DType] = {
    "doc_ids": "list_int64", "categories": "list_string", "authors": "list_int64", "event_types": "list_string",
}  # fmt: skip
_SEQ_DESC = {
    "doc_ids": "doc ids, newest first",
    "categories": "leaf category of each doc as of the event",
    "authors": "author id of each doc as of the event",
    "event_types": "click, like, favorite, comment or purchase",
}


def _f(name: str, dtype: DType, description: str) -> FeatureSpec:
    return FeatureSpec(name, dtype, description)


def _seq(window: str, what: str) -> tuple[FeatureSpec, ...]:
    return tuple(_f(f"seq_{window}_{k}", _SEQ_TYPES[k], f"{what}: {_SEQ_DESC[k]}") for k in SEQ_FIELDS)


def _counts(prefix: str, kinds: tuple[str, ...], windows: tuple[int, ...], what: str) -> tuple[FeatureSpec, ...]:
    return tuple(
        _f(f"{prefix}_{k}_{w}d", "int64", f"{what} {k} in the {w} days before the snapshot")
        for w in windows
        for k in kinds
    )


def _ctrs(prefix: str, windows: tuple[int, ...]) -> tuple[FeatureSpec, ...]:
    return tuple(_f(f"{prefix}_ctr_{w}d", "float32", f"smoothed CTR over {w} days") for w in windows)


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec(
        "user_profile", "user", "none", "change rows of the users table",
        "the user's current profile (latest users row at or before t)",
        (
            _f("user_gender", "string", "m, f or u"),
            _f("user_age", "float32", "age in years; null when unknown"),
            _f("user_city", "string", "city; null when unknown"),
            _f("user_profile_tags", "list_string", "interest tags from profiling"),
        ),
    ),
    ViewSpec(
        "user_stats", "user", "snapshot", "daily snapshot at 00:00 UTC + a row when a user appears",
        "search activity of the user before the snapshot",
        (
            _f("user_register_days", "float32", "days since registration at the snapshot"),
            *_counts("user", ("searches", "clicks"), WINDOWS, "the user's"),
            *_ctrs("user", WINDOWS),
        ),
    ),
    ViewSpec(
        "user_sequences", "user", "none", "daily at 00:00 UTC, written when the sequences change",
        "short-term (10 days) and long-term (days 11-30) behaviour sequences, user_events of every surface",
        _seq("st", "short-term sequence (the 10 days before the snapshot)")
        + _seq("lt", "long-term sequence (days 11-30 before the snapshot)"),
    ),
    ViewSpec(
        "user_realtime", "user", "none", "per event (or per time bucket), reset at 00:00 UTC",
        "real-time behaviour sequence: the user's events since the last daily snapshot (00:00 UTC)",
        _seq("rt", "real-time sequence (events of the current day before t)"),
    ),
    ViewSpec(
        "user_queries", "user", "none", "per request (or per time bucket), expiry checked at 00:00 UTC",
        "the user's recent distinct queries (history attention of the query tower)",
        (_f("recent_queries", "list_string", "distinct queries of the user before t, newest first"),),
    ),
    ViewSpec(
        "query_stats", "query", "snapshot", "daily snapshot at 00:00 UTC + a row when a query appears",
        "search statistics and query-understanding fields of the query string",
        (
            *_counts("query", ("searches", "impressions", "clicks"), WINDOWS, "the query's"),
            *_ctrs("query", WINDOWS),
            _f("qu_category_leaf", "string", "most frequent QU leaf-category prediction in 30 days"),
            _f("qu_brand", "string", "most frequent QU brand prediction in 30 days"),
        ),
    ),
    ViewSpec(
        "doc_profile", "doc", "none", "change rows of the docs table",
        "the doc's current attributes (latest docs row at or before t)",
        (
            _f("title", "string", "title"),
            _f("category_l1", "string", "top-level category"),
            _f("category_l2", "string", "second-level category"),
            _f("category_leaf", "string", "leaf category (relevance control)"),
            _f("brand", "string", "brand (relevance control); null when none"),
            _f("attributes", "list_string", "key=value attribute tokens"),
            _f("tags", "list_string", "free tags"),
            _f("author_id", "int64", "the doc's author"),
        ),
    ),
    ViewSpec(
        "doc_stats", "doc", "snapshot", "daily snapshot at 00:00 UTC + a row when a doc appears",
        "search engagement of the doc before the snapshot, from impressions",
        (
            _f("doc_age_days", "float32", "days since publish_ts at the snapshot"),
            *_counts("doc", ("exposures", "clicks", "likes", "favorites", "comments"), DOC_WINDOWS, "the doc's"),
            *_ctrs("doc", DOC_WINDOWS),
            *(
                _f(f"doc_{k}_{w}d_bucket", "int64", f"bucket of doc_{k}_{w}d ({'log2' if k != 'ctr' else 'linear'})")
                for w in DOC_WINDOWS
                for k in ("exposures", "clicks", "ctr")
            ),
        ),
    ),
    ViewSpec(
        "author_profile", "author", "none", "change rows of the authors table",
        "the author's current profile (latest authors row at or before t)",
        (
            _f("author_gender", "string", "m, f or u"),
            _f("author_age", "float32", "age in years; null when unknown"),
            _f("author_city", "string", "city; null when unknown"),
            _f("author_follower_count", "int64", "followers"),
        ),
    ),
    ViewSpec(
        "author_stats", "author", "snapshot", "daily snapshot at 00:00 UTC + a row when an author appears",
        "the author's docs and their search engagement before the snapshot",
        (
            _f("author_docs", "int64", "docs of the author at the snapshot"),
            *_counts("author", ("exposures", "clicks"), WINDOWS, "the author's docs'"),
            *_ctrs("author", WINDOWS),
        ),
    ),
)
VIEW_BY_NAME: dict[str, ViewSpec] = {v.name: v for v in VIEWS}
# Views that can also be written between daily builds through a Feast PushSource (the query-tower server's
# /events): their batch source stays the derived table, which materialize and historical retrieval read.
PUSH_VIEWS: tuple[str, ...] = ("user_realtime", "user_queries")

_QUERY_SIDE = ("user_profile", "user_stats", "user_sequences", "user_realtime", "user_queries", "query_stats")
_DOC_SIDE = ("doc_profile", "doc_stats", "author_profile", "author_stats")
SERVICES: dict[str, tuple[str, ...]] = {
    "retrieval_training": _QUERY_SIDE + _DOC_SIDE,
    "ranking_training": _QUERY_SIDE + _DOC_SIDE,
    "query_tower_online": _QUERY_SIDE,
}
SERVICE_DESCRIPTIONS = {
    "retrieval_training": "point-in-time features of (user, query, doc) rows for the two-tower model",
    "ranking_training": "point-in-time features of (user, query, doc) rows for the fine and coarse rankers",
    "query_tower_online": "user and query features the query-tower server reads from the online store",
}


def _names(views: tuple[str, ...], dtypes: tuple[DType, ...]) -> tuple[str, ...]:
    return tuple(f.name for v in views for f in VIEW_BY_NAME[v].features if f.dtype in dtypes)


USER_NUMERIC_FEATURES = _names(("user_profile", "user_stats"), ("int64", "float32"))
QUERY_NUMERIC_FEATURES = _names(("query_stats",), ("int64", "float32"))
DOC_NUMERIC_FEATURES = tuple(
    n for n in _names(("doc_stats", "author_profile", "author_stats"), ("int64", "float32")) if "_bucket" not in n
)
DOC_BUCKET_FEATURES = tuple(n for n in _names(("doc_stats",), ("int64",)) if n.endswith("_bucket"))
LIST_FEATURES = _names(tuple(VIEW_BY_NAME), ("list_int64", "list_string"))
SEQUENCE_FEATURES = _names(("user_sequences", "user_realtime"), ("list_int64", "list_string"))


def feature_dtype(name: str) -> DType:
    """The declared type of a feature, by name."""
    for v in VIEWS:
        for f in v.features:
            if f.name == name:
                return f.dtype
    raise KeyError(f"unknown feature {name!r}")


def service_features(service_name: str) -> list[str]:
    """Feature names a service returns, in view order."""
    if service_name not in SERVICES:
        raise ValueError(f"unknown feature service {service_name!r}; services: {sorted(SERVICES)}")
    return [n for v in SERVICES[service_name] for n in VIEW_BY_NAME[v].feature_names]


def arrow_schema(view: str) -> pa.Schema:
    """Schema of a view's derived table: join key, event_timestamp, then the features."""
    spec = VIEW_BY_NAME[view]
    ent = ENTITIES[spec.entity]
    fields = [pa.field(ent.join_key, ARROW_TYPES[ent.dtype], nullable=False),
              pa.field(TIMESTAMP, pa.timestamp("us", tz="UTC"), nullable=False)]
    fields += [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in spec.features]
    return pa.schema(fields)


def push_source_name(view: str) -> str:
    """The Feast PushSource of a push view (`<view>_push`); a KeyError for a view without one."""
    if view not in PUSH_VIEWS:
        raise KeyError(f"view {view!r} has no push source; push views: {list(PUSH_VIEWS)}")
    return f"{view}_push"


def table_path(data_dir: str | Path | None, view: str) -> str:
    """Where a view's derived table lives: `<data_dir>/tables/<view>`, relative to the store when data_dir is None."""
    rel = f"{TABLES_DIR}/{view}"
    return rel if data_dir is None else str(Path(data_dir) / rel)


@dataclass(frozen=True)
class FeastDefinitions:
    """The Feast objects of one data directory, ready for `FeatureStore.apply`."""

    entities: dict[str, Entity]
    sources: dict[str, FileSource]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    push_sources: dict[str, PushSource]

    def objects(self) -> list[Any]:
        """Every object to apply: entities, batch and push sources, views, services."""
        return [*self.entities.values(), *self.sources.values(), *self.push_sources.values(),
                *self.views.values(), *self.services.values()]


def _feast_type(dtype: DType) -> Any:
    from feast.types import Float32, Int64, String

    return {"int64": Int64, "float32": Float32, "string": String, "list_int64": String, "list_string": String}[dtype]


@lru_cache(maxsize=8)
def build_definitions(data_dir: str | None = None, snapshot_ttl_days: int = 2) -> FeastDefinitions:
    """Feast objects whose file sources read `<data_dir>/tables/<view>` (relative to the store if None).

    Views of change rows have no TTL; daily-snapshot views expire after `snapshot_ttl_days`, so a stale
    snapshot (a day that was never built) is reported as a dropped row instead of being served. The views of
    `PUSH_VIEWS` take a PushSource over their file source: `FeatureStore.push` writes fresh rows of them to the
    online store between daily builds, while materialize and historical retrieval read the file source."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType

    if snapshot_ttl_days < 1:
        raise ValueError(f"snapshot_ttl_days must be >= 1, got {snapshot_ttl_days}")
    vtypes = {"int64": ValueType.INT64, "string": ValueType.STRING}
    entities = {
        k: Entity(name=e.name, join_keys=[e.join_key], value_type=vtypes[e.dtype], description=e.description)
        for k, e in ENTITIES.items()
    }
    sources, views, pushes = {}, {}, {}
    for spec in VIEWS:
        src = FileSource(
            name=f"{spec.name}_source",
            path=table_path(data_dir, spec.name),
            timestamp_field=TIMESTAMP,
            description=f"derived table of {spec.name} ({spec.cadence})",
        )
        ttl = timedelta(days=snapshot_ttl_days) if spec.ttl == "snapshot" else timedelta(0)
        sources[spec.name] = src
        source: Any = src
        if spec.name in PUSH_VIEWS:
            source = pushes[spec.name] = PushSource(
                name=push_source_name(spec.name), batch_source=src,
                description=f"fresh {spec.name} rows pushed between daily builds (the server's /events)",
            )
        views[spec.name] = FeatureView(
            name=spec.name,
            entities=[entities[spec.entity]],
            ttl=ttl,
            schema=[
                Field(name=f.name, dtype=_feast_type(f.dtype), description=f.description,
                      tags={"encoding": LIST_ENCODING, "logical_type": f.dtype} if f.dtype.startswith("list") else {})
                for f in spec.features
            ],
            source=source,
            online=True,
            description=spec.description,
            tags={"cadence": spec.cadence},
        )
    services = {
        name: FeatureService(name=name, features=[views[v] for v in vs], description=SERVICE_DESCRIPTIONS[name])
        for name, vs in SERVICES.items()
    }
    return FeastDefinitions(entities, sources, views, services, pushes)
