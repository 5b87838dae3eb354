"""Fixtures: sample builds over the session's tiny dataset, with a real Faiss index as the previous model."""

from __future__ import annotations

import zlib

import faiss
import numpy as np
import pandas as pd
import pytest

from ebr.contract import load
from ebr.samples import SamplesConfig, build_samples

DIM = 8


def encode_queries(frame: pd.DataFrame) -> np.ndarray:
    """A deterministic stand-in query tower: a unit vector seeded by the query text and the user."""
    out = np.empty((len(frame), DIM), dtype="float32")
    for i, (q, u) in enumerate(zip(frame["query"], frame["user_id"], strict=True)):
        seed = zlib.crc32(f"{q}|{u}".encode())
        v = np.random.default_rng(seed).normal(size=DIM)
        out[i] = v / np.linalg.norm(v)
    return out


@pytest.fixture(scope="session")
def prev_index(tiny_data):
    """IndexFlatIP over random unit vectors of every doc of the dataset, searched by doc id."""
    doc_ids = np.sort(load(tiny_data, "docs")["doc_id"].unique()).astype("int64")
    vecs = np.random.default_rng(3).normal(size=(len(doc_ids), DIM)).astype("float32")
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    index.add_with_ids(vecs, doc_ids)
    return index


@pytest.fixture(scope="session")
def eval_day(tiny_days) -> str:
    return tiny_days[-1]


@pytest.fixture(scope="session")
def full_cfg() -> SamplesConfig:
    return SamplesConfig(use_exposed_unclicked_negatives=True, seed=7)


@pytest.fixture(scope="session")
def built(tiny_data, eval_day, full_cfg, prev_index, tmp_path_factory):
    """(out_dir, manifest) of a build with every source switched on."""
    out = tmp_path_factory.mktemp("samples") / "out"
    manifest = build_samples(tiny_data, eval_day, out, full_cfg, prev_index=prev_index,
                             encode_queries=encode_queries)
    return out, manifest


@pytest.fixture(scope="session")
def tables(built) -> dict[str, pd.DataFrame]:
    out, manifest = built
    return {name: pd.read_parquet(out / t["file"]) for name, t in manifest["tables"].items()}
