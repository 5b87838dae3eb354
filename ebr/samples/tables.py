"""Arrow schemas of the sample tables build_samples writes (an empty table keeps its types)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

_REQUEST = [
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("user_id", pa.int64()),
    pa.field("query", pa.string(), nullable=False),
    pa.field("query_category_leaf", pa.string()),
    pa.field("query_brand", pa.string()),
]
_DOC = [pa.field("doc_id", pa.int64(), nullable=False), pa.field("author_id", pa.int64(), nullable=False)]
_TS = [pa.field("event_timestamp", TS, nullable=False)]

SCHEMAS: dict[str, pa.Schema] = {
    "retrieval": pa.schema(_REQUEST + _DOC + _TS + [
        pa.field("weight", pa.float32(), nullable=False), pa.field("kind", pa.string(), nullable=False),
    ]),
    "negatives": pa.schema(_DOC + [
        pa.field("category_leaf", pa.string(), nullable=False), pa.field("exposures", pa.int64(), nullable=False),
        pa.field("prob", pa.float64(), nullable=False),
    ]),
    "hard_negatives": pa.schema(_REQUEST + _DOC + _TS + [
        pa.field("ann_rank", pa.int32(), nullable=False), pa.field("ann_score", pa.float32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
    ]),
    "rewrites": pa.schema(_REQUEST[:2] + [pa.field("original_query", pa.string(), nullable=False)] + _REQUEST[2:]
                          + _DOC + _TS + [
        pa.field("rewrite", pa.string(), nullable=False), pa.field("term", pa.string(), nullable=False),
        pa.field("replacement", pa.string()), pa.field("label", pa.int8(), nullable=False),
        pa.field("kind", pa.string(), nullable=False), pa.field("weight", pa.float32(), nullable=False),
    ]),
    "exposed_unclicked": pa.schema(_REQUEST + _DOC + _TS + [
        pa.field("position", pa.int32(), nullable=False), pa.field("kind", pa.string(), nullable=False),
    ]),
    "ranking": pa.schema(_REQUEST + _DOC + _TS + [
        pa.field("source", pa.string(), nullable=False), pa.field("stage", pa.string()),
        pa.field("position", pa.int32()), pa.field("rank_score", pa.float32()), pa.field("dwell_ms", pa.int32()),
        pa.field("label_click", pa.int8(), nullable=False), pa.field("label_like", pa.int8(), nullable=False),
        pa.field("label_favorite", pa.int8(), nullable=False), pa.field("label_comment", pa.int8(), nullable=False),
    ]),
}


def columns(table: str) -> list[str]:
    """Column names of a sample table, in file order."""
    return list(SCHEMAS[table].names)


def empty(table: str) -> pd.DataFrame:
    """A sample table with no rows and the pandas dtypes of its schema."""
    return SCHEMAS[table].empty_table().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).astype(
        {f.name: "int64" for f in SCHEMAS[table] if f.type == pa.int64() and not f.nullable}
    )


def to_arrow(frame: pd.DataFrame, table: str) -> pa.Table:
    """`frame` as an arrow table of `table`'s schema; a missing column or a type that does not cast is an error."""
    schema = SCHEMAS[table]
    missing = [c for c in schema.names if c not in frame.columns]
    if missing:
        raise ValueError(f"sample table {table!r} lacks column(s) {missing}")
    try:
        return pa.Table.from_pandas(frame[schema.names].reset_index(drop=True), schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"sample table {table!r} does not fit its schema: {e}") from e
