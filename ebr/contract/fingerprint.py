"""A fingerprint of the raw partitions a day's run reads: names, sizes and modification times of their files.

The daily DAG passes it to `validate-data` as an input, so the KFP cache key of that step changes whenever
data is re-delivered (a file added, replaced or rewritten), and a cached "passed" is never reused for new bytes.
Works on a local root and on object-store URIs (whatever `pyarrow.fs.FileSystem.from_uri` resolves).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ebr.contract.schema import TABLES


def _filesystem(data_root: str | Path):
    """(filesystem, base path) of a local path or a URI such as s3://bucket/prefix."""
    import pyarrow.fs as pafs

    text = str(data_root)
    if "://" not in text:
        text = str(Path(text).resolve())
        return pafs.LocalFileSystem(), text
    try:
        return pafs.FileSystem.from_uri(text)
    except Exception as e:  # noqa: BLE001 - any resolution error becomes one message naming the URI
        raise ValueError(f"data_root {data_root}: cannot open: {e}") from e


def partition_listing(data_root: str | Path, day: str) -> list[dict]:
    """Every file under `<table>/ds=<d>/` for d <= `day`: relative path, size and mtime (ns), sorted."""
    import pyarrow.fs as pafs

    fs, base = _filesystem(data_root)
    rows = []
    for table in sorted(TABLES):
        tdir = f"{base.rstrip('/')}/{table}"
        info = fs.get_file_info(tdir)
        if info.type != pafs.FileType.Directory:
            continue
        for f in fs.get_file_info(pafs.FileSelector(tdir, recursive=True)):
            if f.type != pafs.FileType.File:
                continue
            rel = f.path[len(base.rstrip("/")) + 1:]
            part = rel.split("/")[1] if rel.count("/") >= 2 else ""
            if part.startswith("ds=") and part[3:] > day:
                continue
            mtime = f.mtime_ns if f.mtime_ns is not None else 0
            rows.append({"path": rel, "size": int(f.size or 0), "mtime_ns": int(mtime)})
    return sorted(rows, key=lambda r: r["path"])


def data_fingerprint(data_root: str | Path, day: str) -> str:
    """sha256 over the partition listing of `day` and the days before it (see `partition_listing`)."""
    listing = partition_listing(data_root, day)
    doc = json.dumps({"root": str(data_root), "day": day, "files": listing}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()
