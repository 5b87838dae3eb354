"""A small hand-written dataset that follows the contract; tests break one rule at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebr.contract.schema import TABLES

D1, D2 = "2026-03-01", "2026-03-02"


def ts(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def rows_by_table() -> dict[str, dict[str, list[dict]]]:
    docs = [
        dict(doc_id=i, title=f"红色 连衣裙 {i}", body=None, category_l1="服饰", category_l2="女装",
             category_leaf="连衣裙", brand="acme" if i % 2 else None, attributes=["color=red"], tags=[],
             author_id=100 + i % 2, publish_ts=ts(D1, 0), event_timestamp=ts(D1, 0, i))
        for i in (1, 2, 3)
    ]
    new_doc = dict(docs[0], doc_id=4, title="新 连衣裙", event_timestamp=ts(D2, 5), publish_ts=ts(D2, 5))
    authors = [dict(author_id=a, gender="f", age=None, city="sh", follower_count=10, event_timestamp=ts(D1, 0))
               for a in (100, 101)]
    users = [dict(user_id=u, gender="m", age=30, city=None, profile_tags=["dress"], register_ts=ts(D1, 0),
                  event_timestamp=ts(D1, 0)) for u in (7, 8)]

    def req(rid: str, day: str, hour: int, user: int | None) -> dict:
        return dict(request_id=rid, user_id=user, query="红色连衣裙", query_category_leaf="连衣裙",
                    query_brand=None, event_timestamp=ts(day, hour))

    def imp(rid: str, day: str, hour: int, doc: int, stage: str, pos: int | None, clicked: bool = False,
            liked: bool = False) -> dict:
        return dict(request_id=rid, doc_id=doc, stage=stage, position=pos, clicked=clicked, liked=liked,
                    favorited=False, commented=False, dwell_ms=1200 if clicked else None,
                    rank_score=0.5, event_timestamp=ts(day, hour))

    return {
        "docs": {D1: docs, D2: [new_doc]},
        "authors": {D1: authors, D2: []},
        "users": {D1: users, D2: []},
        "search_requests": {D1: [req("r1", D1, 10, 7), req("r2", D1, 11, None)],
                            D2: [req("r3", D2, 9, 8)]},
        "impressions": {
            D1: [imp("r1", D1, 10, 1, "exposed", 1, clicked=True, liked=True), imp("r1", D1, 10, 2, "exposed", 2),
                 imp("r1", D1, 10, 3, "preranked", None), imp("r2", D1, 11, 2, "ranked", None)],
            D2: [imp("r3", D2, 9, 4, "exposed", 1, clicked=True), imp("r3", D2, 9, 1, "exposed", 2)],
        },
        "user_events": {D1: [dict(user_id=7, doc_id=1, event_type="click", source="search",
                                  event_timestamp=ts(D1, 10))],
                        D2: [dict(user_id=8, doc_id=4, event_type="click", source="feed",
                                  event_timestamp=ts(D2, 9))]},
        "relevance_labels": {D1: [dict(query="红色连衣裙", doc_id=1, label=2, complete=True, source="simulator")]},
    }


def write_table(root: Path, table: str, day: str, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    schema = schema or TABLES[table].schema
    pdir = root / table / f"ds={day}"
    pdir.mkdir(parents=True, exist_ok=True)
    path = pdir / "part-0.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_dataset(root: Path, tables: dict[str, dict[str, list[dict]]]) -> Path:
    for table, days in tables.items():
        for day, rows in days.items():
            write_table(root, table, day, rows)
    return root


@pytest.fixture
def rows() -> dict[str, dict[str, list[dict]]]:
    return rows_by_table()


@pytest.fixture
def dataset(tmp_path: Path, rows) -> Path:
    return write_dataset(tmp_path / "data", rows)
