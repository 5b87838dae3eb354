"""The feature step for day D: derived tables (day partitions), Feast apply, materialize into the online store.

Partition ds=D holds the rows derived from day D's logs: change rows and per-event rows inside D and the
snapshot rows at D+1 00:00 (built from facts before that instant). Missing earlier days are built first,
in order, so a fresh directory gets the history that training on the days before D needs.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from ebr import rawfs
from ebr.contract import list_days
from ebr.features import profiles, sequences, statistics
from ebr.features.config import FeaturesConfig
from ebr.features.definitions import VIEWS
from ebr.features.history import DAY_US, History, day_start_us, load_history
from ebr.features.materialize import materialize_window
from ebr.features.partitions import built_days, fingerprint, partition_dir, to_arrow, write_day
from ebr.features.store import ONLINE_DB, REGISTRY, online_store_loaded, open_store, write_store_settings

log = logging.getLogger(__name__)


def _check_day(day: str) -> str:
    try:
        return date.fromisoformat(day).isoformat()
    except (TypeError, ValueError) as e:
        raise ValueError(f"day: {day!r} is not a YYYY-MM-DD day") from e


def derive_day(h: History, day: str, cfg: FeaturesConfig) -> dict[str, pd.DataFrame]:
    """Every view's rows of partition `day` (key, `ts` in microseconds, features), from history `h`."""
    start = day_start_us(day)
    seen = sequences.first_seen(h)
    events = sequences.event_timeline(h, cfg)
    requests = sequences.request_timeline(h)
    return {
        "user_profile": profiles.user_profile(h, start),
        "user_stats": statistics.user_stats(h, start, cfg),
        "user_sequences": sequences.user_sequences(h, start, cfg, events, seen),
        "user_realtime": sequences.user_realtime(h, start, cfg, events, seen),
        "user_queries": sequences.user_queries(h, start, cfg, requests, seen),
        "query_stats": statistics.query_stats(h, start, cfg),
        "doc_profile": profiles.doc_profile(h, start),
        "doc_stats": statistics.doc_stats(h, start, cfg),
        "author_profile": profiles.author_profile(h, start),
        "author_stats": statistics.author_stats(h, start, cfg),
    }


def _to_dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=UTC)


def build_features(data_root: str | Path, day: str, out_dir: str | Path, cfg: FeaturesConfig | None = None) -> dict:
    """Build day `day`'s partitions (and missing earlier ones), apply the definitions and materialize.

    Re-running a day rewrites exactly its partitions. Returns the built days, per-view row counts and
    paths of `day`'s partitions, the store files and the materialized window."""
    cfg = cfg or FeaturesConfig()
    root = rawfs.check_root(data_root)
    day = _check_day(day)
    if not rawfs.is_dir(root):
        raise FileNotFoundError(f"data_root {root} does not exist")
    days = list_days(root, "search_requests")
    if day not in days:
        span = f"{days[0]}..{days[-1]}" if days else "none"
        raise ValueError(f"day {day} has no partition in {root}/search_requests (days there: {span})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg)
    done = set(built_days(out, fp))
    todo = [d for d in days if d < day and d not in done] if cfg.backfill else []
    todo.append(day)
    t0 = time.perf_counter()
    h = load_history(root, todo[0], day, cfg.lookback_days)
    log.info("features: loaded history for %s..%s in %.1fs", todo[0], day, time.perf_counter() - t0)
    rows: dict[str, dict[str, int]] = {}
    for d in todo:
        t1 = time.perf_counter()
        frames = derive_day(h, d, cfg)
        tables = {name: to_arrow(name, frame) for name, frame in frames.items()}
        rows[d] = {name: t.num_rows for name, t in tables.items()}
        write_day(out, d, tables, {"day": d, "fingerprint": fp, "rows": rows[d], "data_root": str(root)})
        del frames, tables  # not alive while the next day derives (~2 GB a day at `large`)
        log.info("features: built %s in %.1fs", d, time.perf_counter() - t1)

    del h  # the loaded history (~2.5 GB at `large`) is not needed while the online store loads
    online_existed = online_store_loaded(out, cfg)
    write_store_settings(out, cfg)
    store = open_store(out, apply=True)
    materialized = None
    if cfg.materialize:
        all_built = built_days(out, fp)
        first = todo[0] if online_existed else all_built[0]
        start, end = _to_dt(day_start_us(first)), _to_dt(day_start_us(all_built[-1]) + DAY_US)
        t2 = time.perf_counter()
        rows_written = materialize_window(store, start, end, cfg.offline_engine, cfg.online_write_batch_size,
                                          memory_limit=cfg.offline_memory_limit)
        materialized = {"start": start.isoformat(), "end": end.isoformat(), "engine": cfg.offline_engine,
                        "rows": rows_written, "seconds": round(time.perf_counter() - t2, 2)}
    return {
        "day": day,
        "built_days": todo,
        "views": {
            v.name: {"rows": rows[day][v.name], "path": str(partition_dir(out, v.name, day) / "part-0.parquet")}
            for v in VIEWS
        },
        "rows_by_day": rows,
        "store_dir": str(out),
        "registry": str(out / REGISTRY),
        # a Redis connection string may hold a password: only its host:port is reported
        "online_store": str(out / ONLINE_DB) if cfg.online_store == "sqlite"
        else f"redis://{cfg.redis_connection.split(',', 1)[0]}",
        "materialized": materialized,
        "fingerprint": fp,
        "seconds": round(time.perf_counter() - t0, 2),
    }
