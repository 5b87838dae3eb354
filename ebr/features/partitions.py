"""Day partitions of the derived tables: `<out>/tables/<view>/ds=<day>/part-0.parquet`, written atomically.

A day counts as built only when its manifest `<out>/manifests/ds=<day>.json` exists and carries the
fingerprint of the config and schema that built it; the manifest is removed before a rebuild swaps the
partitions and written last, so a crash leaves the day unbuilt, never half-built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ebr.artifacts.atomic import write_json_atomic
from ebr.features.config import FeaturesConfig
from ebr.features.definitions import ENTITIES, TABLES_DIR, TIMESTAMP, VIEW_BY_NAME, VIEWS, arrow_schema
from ebr.features.encoding import encode_lists

SCHEMA_VERSION = 1
MANIFESTS_DIR = "manifests"
# Fields that change no derived row: retrieval, build and store settings.
_NOT_IN_FINGERPRINT = {
    "project", "on_missing", "materialize", "backfill", "snapshot_ttl_days", "online_store", "redis_connection",
    "online_write_batch_size", "offline_memory_limit",
}


def fingerprint(cfg: FeaturesConfig) -> str:
    """Hash of everything that determines the derived rows: schema version, feature schema and config."""
    data = {
        "schema_version": SCHEMA_VERSION,
        "views": {v.name: [(f.name, f.dtype) for f in v.features] for v in VIEWS},
        "config": cfg.model_dump(mode="json", exclude=_NOT_IN_FINGERPRINT),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def partition_dir(out_dir: str | Path, view: str, day: str) -> Path:
    """Folder of one view's partition of one day."""
    return Path(out_dir) / TABLES_DIR / view / f"ds={day}"


def manifest_path(out_dir: str | Path, day: str) -> Path:
    """The manifest that marks `day` as built."""
    return Path(out_dir) / MANIFESTS_DIR / f"ds={day}.json"


def read_manifest(out_dir: str | Path, day: str) -> dict | None:
    """The manifest of `day`, or None when the day is not built."""
    p = manifest_path(out_dir, day)
    if not p.is_file():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def built_days(out_dir: str | Path, fp: str | None = None) -> list[str]:
    """Days with a manifest (with fingerprint `fp`, when given), sorted."""
    mdir = Path(out_dir) / MANIFESTS_DIR
    if not mdir.is_dir():
        return []
    days = []
    for p in mdir.glob("ds=*.json"):
        day = p.name[3:-5]
        m = read_manifest(out_dir, day)
        if m is not None and (fp is None or m.get("fingerprint") == fp):
            days.append(day)
    return sorted(days)


def to_arrow(view: str, frame: pd.DataFrame) -> pa.Table:
    """A view's rows (`ts` in int64 microseconds) as an arrow table of the view's schema."""
    spec = VIEW_BY_NAME[view]
    key = ENTITIES[spec.entity].join_key
    schema = arrow_schema(view)
    missing = [c for c in [key, "ts", *spec.feature_names] if c not in frame.columns]
    if missing:
        raise ValueError(f"derived table {view!r} lacks column(s) {missing}")
    cols = []
    lists = {f.name for f in spec.features if f.dtype.startswith("list")}
    for field in schema:
        if field.name == TIMESTAMP:
            cols.append(pa.array(frame["ts"].to_numpy(dtype="int64"), pa.int64()).cast(field.type))
        elif field.name in lists:
            cols.append(pa.array(encode_lists(frame[field.name].to_numpy(dtype=object)), field.type))
        else:
            values = frame[field.name]
            try:
                cols.append(pa.array(values.tolist() if values.dtype == object else values.to_numpy(), field.type,
                                     from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise ValueError(f"derived table {view!r}, column {field.name!r}: {e}") from e
    table = pa.Table.from_arrays(cols, schema=schema)
    return table.sort_by([(key, "ascending"), (TIMESTAMP, "ascending")])


def write_day(out_dir: str | Path, day: str, tables: dict[str, pa.Table], manifest: dict) -> dict[str, Path]:
    """Replace `day`'s partition of every view with `tables` and write its manifest; returns the paths."""
    out = Path(out_dir)
    token = uuid.uuid4().hex[:8]
    stage = out / ".staging" / f"{day}-{token}"
    trash = out / ".trash" / f"{day}-{token}"
    paths: dict[str, Path] = {}
    try:
        for view, table in tables.items():
            d = stage / view
            d.mkdir(parents=True)
            pq.write_table(table, d / "part-0.parquet")
        mpath = manifest_path(out, day)
        mpath.unlink(missing_ok=True)
        for view in tables:
            target = partition_dir(out, view, day)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                trash.mkdir(parents=True, exist_ok=True)
                os.replace(target, trash / view)
            os.replace(stage / view, target)
            paths[view] = target / "part-0.parquet"
        mpath.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(mpath, manifest, sort_keys=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
    return paths
