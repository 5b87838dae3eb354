"""ONNX Runtime query tower: converted from a real `torch.export` directory, it answers like the exported program
on featurized rows (whole batches, single rows, odd sizes), and a corrupt, foreign or divergent file is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ebr.models.export import ExportedModule, export_two_tower, load_exported
from ebr.models.inputs import featurize_queries
from ebr.models.query_tower import QueryTower
from ebr.models.runtime import (
    ONNX_FILE,
    ONNX_META,
    RuntimeConversionError,
    convert_query_tower,
    load_query_tower_onnx,
    parity_rows,
)
from ebr.models.two_tower import TwoTowerModel
from tests.models.rows import doc_rows, logged_in_row, logged_out_row, small_config

ATOL = 1e-5
LEAN = {"realtime_sequence": False, "long_term_sequence": False, "query_history": False, "dcn": False,
        "senet": False, "cls_fusion": False}  # fmt: skip


def _export(root: Path, seed: int, **overrides) -> Path:
    from ebr.models.inputs import featurize_docs

    model = TwoTowerModel(small_config(seed=seed, **overrides)).eval()
    fz = model.config.featurizer
    return export_two_tower(
        model, root, query_inputs=featurize_queries([logged_in_row(), logged_out_row()], fz),
        doc_inputs=featurize_docs(doc_rows(), fz), model_version=f"runtime-test-{seed}",
    )  # fmt: skip


def _rows() -> list[dict]:
    return [logged_in_row(), logged_out_row(), *parity_rows(150, seed=11)]


@pytest.fixture(scope="module", params=["full", "lean"])
def converted(request, tmp_path_factory) -> Path:
    """An export of the small model (every block on, one user_numeric column; or the lean tower without user
    numeric columns, whose 0-wide input the onnx graph drops) with its query tower converted."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(f"runtime-{request.param}") / "export"
    if request.param == "full":
        _export(root, seed=7)
    else:
        _export(root, seed=7, query_tower=LEAN, featurizer={**small_config().featurizer.model_dump(),
                                                            "user_numeric": []})
    convert_query_tower(root)
    return root


def test_onnx_tower_matches_exported_program(converted):
    exported = load_exported(converted, only=["query_tower"])
    program = exported["query_tower"]
    onnx = load_query_tower_onnx(converted)
    assert isinstance(onnx, ExportedModule) and onnx.output_dim == program.output_dim
    inputs = featurize_queries(_rows(), exported.featurizer)
    for start, stop in [(0, len(_rows())), (0, 1), (1, 2), (5, 8), (20, 52)]:
        part = {k: v[start:stop] for k, v in inputs.items()}
        got, want = onnx(part), program(part)
        assert got.dtype == torch.float32 and got.shape == want.shape == (stop - start, program.output_dim)
        assert float((got - want).abs().max()) <= ATOL
    meta = json.loads((converted / ONNX_META).read_text(encoding="utf-8"))
    assert meta["parity"]["max_abs_diff"] <= ATOL and 1 in meta["parity"]["batches"]
    assert meta["source"]["sha256"] == exported.manifest["modules"]["query_tower"]["sha256"]


def test_onnx_tower_checks_inputs_like_the_program(converted):
    onnx = load_query_tower_onnx(converted)
    inputs = featurize_queries(_rows()[:3], load_exported(converted, only=()).featurizer)
    with pytest.raises(ValueError, match="'query_words' is missing"):
        onnx({k: v for k, v in inputs.items() if k != "query_words"})
    with pytest.raises(ValueError, match="must be a int64 tensor"):
        onnx({**inputs, "query_words": inputs["query_words"].int()})
    empty = onnx({k: v[:0] for k, v in inputs.items()})
    assert empty.shape == (0, onnx.output_dim)


def test_corrupt_onnx_file_is_refused(converted, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(converted, copy)
    data = (copy / ONNX_FILE).read_bytes()
    (copy / ONNX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeConversionError, match="checksum mismatch"):
        load_query_tower_onnx(copy)
    with pytest.raises(RuntimeConversionError, match="could not be loaded by onnxruntime"):
        load_query_tower_onnx(copy, verify=False)
    (copy / ONNX_META).unlink()
    with pytest.raises(RuntimeConversionError, match="missing: convert the export first"):
        load_query_tower_onnx(copy)


@pytest.fixture(scope="module")
def other_export(tmp_path_factory) -> Path:
    """An export of another model (seed 8), not converted; copy it before changing it."""
    return _export(tmp_path_factory.mktemp("runtime-other") / "export", seed=8)


def test_onnx_file_of_another_export_is_refused(converted, other_export, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(other_export, other)
    shutil.copy(converted / ONNX_FILE, other / ONNX_FILE)
    shutil.copy(converted / ONNX_META, other / ONNX_META)
    with pytest.raises(RuntimeConversionError, match="converted from another query_tower program"):
        load_query_tower_onnx(other)


def test_conversion_refuses_a_tower_that_differs_from_the_program(other_export, tmp_path):
    torch.set_num_threads(1)
    root = tmp_path / "export"
    shutil.copytree(other_export, root)
    cfg = small_config(seed=9)
    stranger = QueryTower(cfg.query_tower, cfg.featurizer, seed=9).eval()  # same shapes, other weights
    with pytest.raises(RuntimeConversionError, match=r"differs from the exported program: max abs diff"):
        convert_query_tower(root, _rows(), module=stranger)
    assert not (root / ONNX_FILE).exists() and not (root / ONNX_META).exists()
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_conversion_needs_a_two_tower_query_tower(tmp_path):
    from ebr.models.export import export_modules

    cfg = small_config(seed=7)
    tower = QueryTower(cfg.query_tower, cfg.featurizer, seed=7).eval()
    q = featurize_queries([logged_in_row(), logged_out_row()], cfg.featurizer)
    root = export_modules(tmp_path / "bare", {"query_tower": tower}, {"query_tower": q}, model_version="bare",
                          featurizer=cfg.featurizer)
    with pytest.raises(RuntimeConversionError, match="no two-tower model config"):
        convert_query_tower(root)
    onnx_path = convert_query_tower(root, module=tower)  # the caller's own tower converts
    assert onnx_path == root / ONNX_FILE
    inputs = featurize_queries(_rows(), cfg.featurizer)
    diff = (load_query_tower_onnx(root)(inputs) - load_exported(root)["query_tower"](inputs)).abs().max()
    assert float(diff) <= ATOL
