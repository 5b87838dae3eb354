"""Pyarrow schemas of the raw search-log contract (shared/spec/data-contract.md).

One `TableSpec` per table: its columns with type, nullability and allowed values.
The simulator writes exactly these schemas and the loader checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STR_LIST = pa.list_(pa.string())


@dataclass(frozen=True)
class Column:
    """One contract column: arrow type, whether nulls are allowed, allowed values (enums), smallest value."""

    name: str
    type: pa.DataType
    nullable: bool = False
    enum: tuple[str, ...] | None = None
    min: float | None = None


@dataclass(frozen=True)
class TableSpec:
    """A contract table: its columns, primary key and kind (dimension, fact or evaluation)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    kind: str = "fact"
    has_event_timestamp: bool = True
    id_columns: tuple[str, ...] = field(default=())

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


GENDERS = ("m", "f", "u")
STAGES = ("preranked", "ranked", "exposed")
EVENT_TYPES = ("click", "like", "favorite", "comment", "purchase")
LABEL_SOURCES = ("human", "model", "simulator")

DOCS = TableSpec(
    name="docs",
    kind="dimension",
    key=("doc_id", "event_timestamp"),
    id_columns=("doc_id", "author_id"),
    columns=(
        Column("doc_id", pa.int64()),
        Column("title", pa.string()),
        Column("body", pa.string(), nullable=True),
        Column("category_l1", pa.string()),
        Column("category_l2", pa.string()),
        Column("category_leaf", pa.string()),
        Column("brand", pa.string(), nullable=True),
        Column("attributes", STR_LIST),
        Column("tags", STR_LIST),
        Column("author_id", pa.int64()),
        Column("publish_ts", TS),
        Column("event_timestamp", TS),
    ),
)

AUTHORS = TableSpec(
    name="authors",
    kind="dimension",
    key=("author_id", "event_timestamp"),
    id_columns=("author_id",),
    columns=(
        Column("author_id", pa.int64()),
        Column("gender", pa.string(), enum=GENDERS),
        Column("age", pa.int32(), nullable=True, min=0),
        Column("city", pa.string(), nullable=True),
        Column("follower_count", pa.int64(), min=0),
        Column("event_timestamp", TS),
    ),
)

USERS = TableSpec(
    name="users",
    kind="dimension",
    key=("user_id", "event_timestamp"),
    id_columns=("user_id",),
    columns=(
        Column("user_id", pa.int64()),
        Column("gender", pa.string(), enum=GENDERS),
        Column("age", pa.int32(), nullable=True, min=0),
        Column("city", pa.string(), nullable=True),
        Column("profile_tags", STR_LIST),
        Column("register_ts", TS),
        Column("event_timestamp", TS),
    ),
)

SEARCH_REQUESTS = TableSpec(
    name="search_requests",
    key=("request_id",),
    id_columns=("request_id",),
    columns=(
        Column("request_id", pa.string()),
        Column("user_id", pa.int64(), nullable=True),
        Column("query", pa.string()),
        Column("query_category_leaf", pa.string(), nullable=True),
        Column("query_brand", pa.string(), nullable=True),
        Column("event_timestamp", TS),
    ),
)

IMPRESSIONS = TableSpec(
    name="impressions",
    key=("request_id", "doc_id"),
    id_columns=("request_id", "doc_id"),
    columns=(
        Column("request_id", pa.string()),
        Column("doc_id", pa.int64()),
        Column("stage", pa.string(), enum=STAGES),
        Column("position", pa.int32(), nullable=True),
        Column("clicked", pa.bool_()),
        Column("liked", pa.bool_()),
        Column("favorited", pa.bool_()),
        Column("commented", pa.bool_()),
        Column("dwell_ms", pa.int32(), nullable=True, min=0),
        Column("rank_score", pa.float32(), nullable=True),
        Column("event_timestamp", TS),
    ),
)

USER_EVENTS = TableSpec(
    name="user_events",
    id_columns=("user_id", "doc_id"),
    columns=(
        Column("user_id", pa.int64()),
        Column("doc_id", pa.int64()),
        Column("event_type", pa.string(), enum=EVENT_TYPES),
        Column("source", pa.string()),
        Column("event_timestamp", TS),
    ),
)

RELEVANCE_LABELS = TableSpec(
    name="relevance_labels",
    kind="evaluation",
    key=("query", "doc_id"),
    has_event_timestamp=False,
    id_columns=("doc_id",),
    columns=(
        Column("query", pa.string()),
        Column("doc_id", pa.int64()),
        Column("label", pa.int8()),
        Column("complete", pa.bool_()),
        Column("source", pa.string(), enum=LABEL_SOURCES),
    ),
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (DOCS, AUTHORS, USERS, SEARCH_REQUESTS, IMPRESSIONS, USER_EVENTS, RELEVANCE_LABELS)
}
DIMENSION_TABLES = tuple(n for n, t in TABLES.items() if t.kind == "dimension")
FACT_TABLES = tuple(n for n, t in TABLES.items() if t.kind == "fact")
REQUIRED_TABLES = DIMENSION_TABLES + FACT_TABLES
SCHEMA_VERSION = "1"


def partition_dir(root: str, table: str, day: str) -> str:
    """Folder of one day partition: `<root>/<table>/ds=YYYY-MM-DD`."""
    return f"{root}/{table}/ds={day}"
