"""A small hand-made contract dataset for sequence tests: known events around the window boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ebr.contract.schema import TABLES

DAY = "2026-03-31"  # the day whose sequences the tests read
B = datetime(2026, 3, 31, tzinfo=UTC)  # its 00:00 boundary
FIRST = B - timedelta(days=35)  # first partition: every doc, user and author
US = timedelta(microseconds=1)
N_DOCS = 400


def _write(root: Path, table: str, rows: list[dict]) -> None:
    by_day: dict[str, list[dict]] = {}
    for r in rows:
        by_day.setdefault(r["event_timestamp"].date().isoformat(), []).append(r)
    for day, part in by_day.items():
        d = root / table / f"ds={day}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"part-{len(list(d.iterdir()))}.parquet"
        pq.write_table(pa.Table.from_pylist(part, schema=TABLES[table].schema), path)


def event(user: int, doc: int, ts: datetime, kind: str = "click") -> dict:
    return dict(user_id=user, doc_id=doc, event_type=kind, source="feed", event_timestamp=ts)


def request(rid: str, user: int | None, query: str, ts: datetime) -> dict:
    return dict(request_id=rid, user_id=user, query=query, query_category_leaf="leaf0", query_brand=None,
                event_timestamp=ts)


def write_dataset(root: Path, events: list[dict], requests: list[dict]) -> Path:
    """Docs 1..N_DOCS (leaf `leaf{doc % 7}`, author 100 + doc % 5), users 1-3, authors 100-104, plus
    the given user_events and search_requests; every dimension row at FIRST."""
    docs = [dict(doc_id=i, title=f"doc {i}", body=None, category_l1="l1", category_l2="l2",
                 category_leaf=f"leaf{i % 7}", brand=None, attributes=[], tags=[], author_id=100 + i % 5,
                 publish_ts=FIRST, event_timestamp=FIRST) for i in range(1, N_DOCS + 1)]
    users = [dict(user_id=u, gender="f", age=30, city="c", profile_tags=[], register_ts=FIRST, event_timestamp=FIRST)
             for u in (1, 2, 3)]
    authors = [dict(author_id=a, gender="m", age=None, city=None, follower_count=1, event_timestamp=FIRST)
               for a in range(100, 105)]
    _write(root, "docs", docs)
    _write(root, "users", users)
    _write(root, "authors", authors)
    _write(root, "user_events", events)
    _write(root, "search_requests", requests or [request("r0", 3, "q0", FIRST)])
    return root
