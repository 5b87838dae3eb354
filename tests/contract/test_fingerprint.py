"""The data fingerprint that keys validate-data's KFP cache: it changes when a partition is re-delivered."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ebr.contract.fingerprint import data_fingerprint, partition_listing


def test_fingerprint_follows_partition_contents(tiny_data: Path, tiny_days: list[str], tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    day = tiny_days[-2]
    base = data_fingerprint(data, day)
    assert base == data_fingerprint(data, day), "same bytes, same key"
    listing = partition_listing(data, day)
    assert listing and all(f"ds={tiny_days[-1]}" not in r["path"] for r in listing), "later days are left out"
    assert data_fingerprint(data, day) == base
    # a later day's delivery does not change the key of an earlier day
    (data / "search_requests" / f"ds={tiny_days[-1]}" / "extra.parquet").write_bytes(b"x")
    assert data_fingerprint(data, day) == base
    # re-delivering a file of the day (same name, new bytes or new mtime) changes it
    f = next((data / "impressions" / f"ds={day}").glob("*.parquet"))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = data_fingerprint(data, day)
    assert touched != base
    (f.parent / "part-extra.parquet").write_bytes(f.read_bytes())
    assert data_fingerprint(data, day) not in (base, touched)


def test_fingerprint_reads_object_storage(s3_tiny_data: str, tiny_data: Path, tiny_days: list[str]):
    listing = partition_listing(s3_tiny_data, tiny_days[-1])
    local = partition_listing(tiny_data, tiny_days[-1])
    assert [(r["path"], r["size"]) for r in listing] == [(r["path"], r["size"]) for r in local]
