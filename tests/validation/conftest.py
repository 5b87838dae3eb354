"""Fixtures for the validation tests: copies of the tiny dataset with one fault planted, and sample tables."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebr.contract import load
from ebr.contract.schema import TABLES
from ebr.validation import ValidationConfig, validate_raw

FAST = ValidationConfig(data_docs=False)


def copy_data(tiny_data: Path, tmp_path: Path) -> Path:
    """A writable copy of the shared tiny dataset."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst)
    return dst


def rewrite_partition(root: Path, table: str, day: str, change: Callable[[pd.DataFrame], pd.DataFrame],
                      keep_schema: bool = True) -> pd.DataFrame:
    """Replace a partition by `change(rows)`, written as one file (contract types, nulls allowed, unless
    `keep_schema` is false); returns the new rows."""
    pdir = root / table / f"ds={day}"
    files = sorted(pdir.glob("*.parquet"))
    rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    for f in files:
        f.unlink()
    new = change(rows.copy())
    if keep_schema:
        schema = pa.schema([f.with_nullable(True) for f in TABLES[table].schema])
        pq.write_table(pa.Table.from_pandas(new, schema=schema, preserve_index=False), pdir / "part-0.parquet")
    else:
        pq.write_table(pa.Table.from_pandas(new, preserve_index=False), pdir / "part-0.parquet")
    return new


@pytest.fixture
def data_copy(tiny_data: Path, tmp_path: Path) -> Path:
    return copy_data(tiny_data, tmp_path)


@pytest.fixture(scope="session")
def last_day(tiny_days: list[str]) -> str:
    """The day validated by the fault tests: every earlier day is its history."""
    return tiny_days[-1]


@pytest.fixture(scope="session")
def clean_result(tiny_data: Path, last_day: str, tmp_path_factory):
    """validate_raw of the untouched tiny dataset's last day, Data Docs included (shared: it takes seconds)."""
    out = tmp_path_factory.mktemp("clean") / "validation"
    return validate_raw(tiny_data, last_day, out, ValidationConfig(), raise_on_failure=False)


def _sample_tables(tiny_data: Path, day: str) -> dict[str, pd.DataFrame]:
    req = load(tiny_data, "search_requests", [day])
    imp = load(tiny_data, "impressions", [day])
    docs = load(tiny_data, "docs").drop_duplicates("doc_id")
    clicks = imp[imp["clicked"]].merge(req[["request_id", "user_id", "query"]], on="request_id")
    retrieval = pd.DataFrame({
        "request_id": clicks["request_id"], "user_id": clicks["user_id"].astype("Int64"), "query": clicks["query"],
        "doc_id": clicks["doc_id"], "event_timestamp": clicks["event_timestamp"],
        "weight": (1.0 + clicks["liked"].astype(float)).astype("float32"), "label": np.int8(1), "kind": "click",
    })
    counts = imp.loc[imp["stage"] == "exposed", "doc_id"].value_counts()
    raw = (docs["doc_id"].map(counts).fillna(0).to_numpy() + 1.0) ** 0.75
    negatives = pd.DataFrame({"doc_id": docs["doc_id"].to_numpy(), "prob": raw / raw.sum()})
    ranking = pd.DataFrame({"request_id": imp["request_id"], "doc_id": imp["doc_id"],
                            "label_click": imp["clicked"].astype("int8"),
                            "source": imp["stage"]})
    return {"retrieval": retrieval, "negatives": negatives, "ranking": ranking}


@pytest.fixture(scope="session")
def sample_frames(tiny_data: Path, tiny_days: list[str]) -> dict[str, pd.DataFrame]:
    """Sample tables built from the tiny dataset's last day in the layout the sample specs describe."""
    return _sample_tables(tiny_data, tiny_days[-1])


def write_samples(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """Write each frame as `<folder>/<name>.parquet`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder
