"""A bundle whose query tower was converted to ONNX: the manifest records the runtime, the server runs the ONNX
Runtime session, and its answers equal those of the torch.export program (same top-K, scores within 1e-5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ebr.bundle import read_bundle_manifest
from ebr.models.runtime import OnnxProgram, convert_query_tower
from serving.loaded_bundle import LoadedBundle
from serving.schema import SearchRequest
from serving.search import SearchEngine
from serving.synthetic import build_bundle

QUERIES = ["red running shoes", "wayne kettle", "连衣裙", "black dress", "phone case"]


def test_an_onnx_tower_bundle_answers_as_the_program_does(parts, published_root: Path, tmp_path: Path):
    model_dir = tmp_path / "model"
    shutil.copytree(parts.model_dir, model_dir)
    convert_query_tower(model_dir / "export")
    bundle_dir = build_bundle(tmp_path / "bundles", "v-onnx", docs=parts.docs_v1, model_dir=model_dir,
                              vectors=parts.vectors_v1, publish=False)
    assert read_bundle_manifest(bundle_dir)["query_tower_runtime"] == "onnxruntime"
    assert read_bundle_manifest(published_root / "v1")["query_tower_runtime"] == "torch_export"
    onnx = LoadedBundle.open(bundle_dir, "v-onnx")
    program = LoadedBundle.open(published_root / "v1")
    assert isinstance(onnx.tower.program, OnnxProgram) and not isinstance(program.tower.program, OnnxProgram)
    for query in QUERIES:
        req = SearchRequest(query=query, k=20, retrieval="ann", relevance_control=False)
        a = SearchEngine(lambda b=onnx: b).search(req)
        b = SearchEngine(lambda b=program: b).search(req)
        assert [d for d, _, _ in a.items] == [d for d, _, _ in b.items], query
        np.testing.assert_allclose([s for _, s, _ in a.items], [s for _, s, _ in b.items], atol=1e-5)
