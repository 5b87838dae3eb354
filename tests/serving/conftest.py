"""Serving test fixtures: a tiny untrained two-tower model and coarse ranker, exported once per test run, and
bundles built from them with the pipeline's own steps (featurize, doc tower, shard, Faiss, export, assemble,
publish)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ebr.bundle import current_version
from ebr.models.config import TwoTowerConfig
from ebr.models.rankers.config import CoarseRankerConfig
from ebr.models.two_tower import TwoTowerModel
from serving.app import create_app
from serving.settings import ServerSettings
from serving.synthetic import build_bundle, build_coarse_ranker, encode_docs, export_model, synthetic_docs
from tests.models.rows import small_config
from tests.serving.clients import InProcessClient

N_DOCS = 300
V2_ID_OFFSET = 10_001
# A lean query tower (fewer blocks than the default MGDSPR one) keeps export and warm-up short; the serving
# path does not depend on which blocks are on.
LEAN_QUERY_TOWER = {
    "realtime_sequence": False, "long_term_sequence": False, "query_history": False, "dcn": False,
    "senet": False, "cls_fusion": False,
}  # fmt: skip


@dataclass(frozen=True)
class Parts:
    """The model, its export, a coarse ranker and two disjoint doc sets with their doc-tower vectors."""

    model: TwoTowerModel
    config: TwoTowerConfig
    model_dir: Path
    coarse_dir: Path
    coarse_config: CoarseRankerConfig
    docs_v1: pd.DataFrame
    docs_v2: pd.DataFrame
    vectors_v1: np.ndarray
    vectors_v2: np.ndarray


@pytest.fixture(scope="session")
def parts(tmp_path_factory) -> Parts:
    """Built once per test run; read-only for tests."""
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("serving-parts")
    config = small_config(query_tower=LEAN_QUERY_TOWER)
    model = TwoTowerModel(config).eval()
    docs_v1 = synthetic_docs(N_DOCS, seed=1, id_offset=1)
    docs_v2 = synthetic_docs(N_DOCS, seed=2, id_offset=V2_ID_OFFSET)
    coarse_config = CoarseRankerConfig.model_validate({
        "featurizer": config.featurizer.model_dump(),
        "query_tower": {"hidden_dim": 16, "out_dim": 8, "num_heads": 2, "lstm_layers": 1, **LEAN_QUERY_TOWER},
        "doc_tower": {"hidden_dim": 16, "out_dim": 8, "mlp_dims": [16]},
        "seed": 3,
    })  # fmt: skip
    return Parts(
        model=model,
        config=config,
        model_dir=export_model(model, work / "model" / "export", docs_v1, "model-test").parent,
        coarse_dir=build_coarse_ranker(work / "coarse", pd.concat([docs_v1, docs_v2]), coarse_config),
        coarse_config=coarse_config,
        docs_v1=docs_v1,
        docs_v2=docs_v2,
        vectors_v1=encode_docs(model, docs_v1),
        vectors_v2=encode_docs(model, docs_v2),
    )


def publish(parts: Parts, root: Path, version: str, docs: str = "v1", coarse: bool = True,
            publish_now: bool = True) -> Path:
    """Build bundle `version` over doc set `docs` ("v1" or "v2") into `root` (published unless told not to)."""
    frame, vectors = (parts.docs_v1, parts.vectors_v1) if docs == "v1" else (parts.docs_v2, parts.vectors_v2)
    return build_bundle(root, version, docs=frame, model_dir=parts.model_dir, vectors=vectors,
                        coarse_ranker_dir=parts.coarse_dir if coarse else None, publish=publish_now)


@pytest.fixture(scope="session")
def published_root(tmp_path_factory, parts) -> Path:
    """A bundles root with v1 (docs v1, coarse ranker) published; read-only for tests (copy it first)."""
    root = tmp_path_factory.mktemp("bundles") / "bundles"
    publish(parts, root, "v1")
    return root


def copy_root(source: Path, dest: Path) -> Path:
    """A private copy of a bundles root (published versions and CURRENT)."""
    dest.mkdir(parents=True)
    for p in source.iterdir():
        if p.is_dir() and not p.name.startswith("."):
            shutil.copytree(p, dest / p.name)
    version = current_version(source)
    assert version is not None
    (dest / "CURRENT").write_text(version + "\n", encoding="utf-8")
    return dest


def point_current(root: Path, version: str) -> None:
    """Switch CURRENT the way publish_bundle does (write beside, rename over)."""
    tmp = root / ".CURRENT.test"
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, root / "CURRENT")


@pytest.fixture(scope="session")
def loaded_app(published_root):
    """The app over `published_root`, bundle loaded (no watcher), with an in-process client."""
    settings = ServerSettings(bundles_dir=published_root, max_query_chars=64, max_body_bytes=4096,
                              admin_token="test-token")
    app = create_app(settings, start=False)
    app.state.runtime.set_threads()
    app.state.runtime.manager.reload()
    client = InProcessClient(app)
    yield app, client
    client.close()


@pytest.fixture
def client(loaded_app) -> Iterator[InProcessClient]:
    yield loaded_app[1]
