"""ONNX Runtime form of an exported query tower: convert an export directory's `query_tower`, load it back.

`convert_query_tower` rebuilds the tower from the export's model config, loads the weights of its `torch.export`
program, writes `query_tower.onnx` (opset 17, dynamic batch) and `query_tower.onnx.json` (sha256 of both files,
the input/output spec, the parity measured at conversion), and refuses to keep the file when its outputs differ
from the program's by more than `atol` on featurized rows. `load_query_tower_onnx` checks the checksums and the
source program, and returns an `ExportedModule` (dict of int64 tensors in, float32 tensor out) whose program is an
ONNX Runtime session on `threads` intra-op threads. torch and onnxruntime are imported inside functions.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ebr.artifacts.checksums import sha256_file
from ebr.models.export import MANIFEST, ExportedBundle, ExportedModule, ExportError, load_exported

if TYPE_CHECKING:
    import torch
    from torch import nn

MODULE = "query_tower"
ONNX_FILE = f"{MODULE}.onnx"
ONNX_META = f"{ONNX_FILE}.json"
ONNX_FORMAT = 1
OPSET = 17
OUTPUT_NAME = "query_vector"
DEFAULT_ATOL = 1e-5
SINGLE_ROW_CHECKS = 16

_WORDS = (
    "red", "running", "shoes", "summer", "dress", "wireless", "headphones", "phone", "case", "black", "jacket",
    "leather", "backpack", "kettle", "lamp", "watch", "连衣裙", "手机壳", "运动鞋", "无线耳机", "夏季", "红色",
)  # fmt: skip
_CATEGORIES = ("running shoes", "dress", "phone case", "backpack", "watch", "jacket", "连衣裙", "手机壳")
_EVENTS = ("click", "like", "favorite", "comment", "purchase")


class RuntimeConversionError(ExportError):
    """A runtime file that could not be made, or that differs from the exported program it came from."""


def parity_rows(n: int = 256, seed: int = 0) -> list[dict[str, Any]]:
    """`n` deterministic query rows spanning what serving sees: Latin, Han and mixed queries, logged-out rows,
    and users with empty, short and over-long profiles, recent queries and behaviour sequences."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(max(0, n)):
        words = rng.choice(_WORDS, size=int(rng.integers(1, 6)))
        row: dict[str, Any] = {"query": " ".join(words) if i % 7 else "".join(words)}
        if rng.random() < 0.2:  # logged out: the query alone
            rows.append(row)
            continue
        row.update({
            "user_id": int(rng.integers(1, 1_000_000)),
            "user_gender": str(rng.choice(["f", "m"])) if rng.random() < 0.8 else None,
            "user_age": float(rng.integers(16, 70)) if rng.random() < 0.8 else None,
            "user_city": str(rng.choice(["hangzhou", "beijing", "杭州"])) if rng.random() < 0.8 else None,
            "user_profile_tags": [str(t) for t in rng.choice(_WORDS, size=int(rng.integers(0, 20)))],
            "recent_queries": [" ".join(rng.choice(_WORDS, size=2)) for _ in range(int(rng.integers(0, 12)))],
        })  # fmt: skip
        for window in ("rt", "st", "lt"):
            k = int(rng.integers(0, 60))
            row[f"seq_{window}_doc_ids"] = [int(x) for x in rng.integers(1, 500_000, size=k)]
            row[f"seq_{window}_categories"] = [str(x) for x in rng.choice(_CATEGORIES, size=k)]
            row[f"seq_{window}_authors"] = [int(x) for x in rng.integers(1, 50_000, size=k)]
            row[f"seq_{window}_event_types"] = [str(x) for x in rng.choice(_EVENTS, size=k)]
        rows.append(row)
    return rows


class OnnxProgram:
    """An ONNX Runtime session called like an exported program: dict of tensors in, one tensor out."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_name = session.get_outputs()[0].name

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Feed the inputs the graph uses (an input the graph does not read, like a 0-wide one, was dropped)."""
        import torch

        feeds = {name: np.ascontiguousarray(inputs[name].numpy()) for name in self.input_names}
        return torch.from_numpy(self.session.run([self.output_name], feeds)[0])


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def eager_query_tower(exported: ExportedBundle) -> nn.Module:
    """The query tower rebuilt as an eager module from a two-tower export's model config and program weights."""
    from ebr.models.config import TwoTowerConfig
    from ebr.models.query_tower import QueryTower

    program = exported[MODULE].program
    two_tower = (exported.manifest.get("config") or {}).get("two_tower")
    if two_tower is None:
        raise RuntimeConversionError(
            "the export has no two-tower model config (config.two_tower); pass the query tower as `module`"
        )
    cfg = TwoTowerConfig.model_validate(two_tower)
    tower = QueryTower(cfg.query_tower, cfg.featurizer, cfg.sparse_embeddings)
    try:
        tower.load_state_dict(program.state_dict(), strict=True)
    except RuntimeError as e:
        raise RuntimeConversionError(f"the exported weights do not fit the config's query tower: {e}") from e
    return tower.eval()


def positional_module(module: nn.Module, keys: Sequence[str]) -> nn.Module:
    """`module` (forward takes one dict) called with positional tensors, as the legacy ONNX exporter traces it."""
    from torch import nn

    class Positional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(dict(zip(keys, tensors, strict=True)))

    return Positional().eval()


def max_abs_diff(
    reference: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    candidate: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    """Max abs diff of two towers over the whole batch, 32-row chunks and the first single rows (an LSTM's state
    is batch-shaped), and whether the candidate's outputs are all finite."""
    n = int(next(iter(inputs.values())).shape[0])
    slices = [(0, n)] + [(s, min(s + 32, n)) for s in range(0, n, 32)]
    slices += [(i, i + 1) for i in range(min(n, SINGLE_ROW_CHECKS))]
    worst, finite = 0.0, True
    for start, stop in slices:
        part = {k: v[start:stop] for k, v in inputs.items()}
        a, b = reference(part), candidate(part)
        if a.shape != b.shape:
            raise RuntimeConversionError(f"output shape {list(b.shape)} != the reference's {list(a.shape)}")
        finite = finite and bool(b.isfinite().all())
        worst = max(worst, float((a - b).abs().max()))
    return {"max_abs_diff": worst, "finite": finite, "rows": n, "batches": sorted({b - a for a, b in slices})}


def convert_query_tower(
    export_dir: str | Path,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    module: nn.Module | None = None,
    out: str | Path | None = None,
    atol: float = DEFAULT_ATOL,
) -> Path:
    """Write `query_tower.onnx` (+ `.json`) for the export's query tower, checked against its program on the
    featurized `rows` (default `parity_rows()`); refuses (and writes nothing) when max-abs-diff > `atol`.

    `module` is the eager tower to trace (default: rebuilt from the export's config and weights); `out` the
    directory to write into (default: the export directory). Returns the `.onnx` path.
    """
    import torch

    from ebr.models.inputs import featurize_queries

    root = Path(export_dir)
    exported = load_exported(root, only=[MODULE])
    if MODULE not in exported.modules or exported.featurizer is None:
        raise RuntimeConversionError(f"export {root} has no {MODULE!r} module with a featurizer config")
    program = exported[MODULE]
    keys = list(program.input_spec)
    inputs = featurize_queries(list(rows) if rows is not None else parity_rows(), exported.featurizer)
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise RuntimeConversionError(f"featurized rows lack the exported inputs {missing}")
    inputs = {k: inputs[k] for k in keys}
    if int(inputs[keys[0]].shape[0]) < 2:
        raise RuntimeConversionError("parity needs at least 2 rows (a batch of 1 would fix the batch size)")
    tower = module if module is not None else eager_query_tower(exported)
    was_training = tower.training

    dest = Path(out) if out is not None else root
    dest.mkdir(parents=True, exist_ok=True)
    final, meta_path = dest / ONNX_FILE, dest / ONNX_META
    tmp = dest / f".{ONNX_FILE}.tmp-{os.getpid()}"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The legacy (TorchScript) exporter: the dynamo one needs onnxscript. Its tracer warns about
            # shape-derived Python scalars (attention's sqrt(head_dim): constant) and batch-shaped LSTM
            # states; the parity check below runs single rows and larger batches to prove both harmless.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                positional_module(tower, keys), tuple(inputs[k][:8] for k in keys), str(tmp), dynamo=False,
                input_names=keys, output_names=[OUTPUT_NAME], dynamic_axes={k: {0: "batch"} for k in keys},
                opset_version=OPSET,
            )  # fmt: skip
        converted = ExportedModule(MODULE, OnnxProgram(_session(tmp, 1)), program.input_spec, program.output_spec)
        parity = max_abs_diff(program, converted, inputs)
        if not parity["finite"] or not parity["max_abs_diff"] <= atol:
            raise RuntimeConversionError(
                f"onnx query tower differs from the exported program: max abs diff {parity['max_abs_diff']:.3g} "
                f"> {atol:g} on {parity['rows']} rows (finite outputs: {parity['finite']}); not written"
            )
        os.replace(tmp, final)
    except RuntimeConversionError:
        raise
    except Exception as e:
        raise RuntimeConversionError(f"query tower of {root} could not be converted to onnx: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
        tower.train(was_training)
    import onnxruntime as ort

    source = exported.manifest["modules"][MODULE]
    meta = {
        "format": ONNX_FORMAT,
        "runtime": "onnxruntime",
        "module": MODULE,
        "file": ONNX_FILE,
        "sha256": sha256_file(final),
        "source": {"file": source["file"], "sha256": source["sha256"], "model_version": exported.model_version},
        "inputs": program.input_spec,
        "output": program.output_spec,
        "opset": OPSET,
        "parity": {**parity, "atol": atol},
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
    }
    meta_tmp = dest / f".{ONNX_META}.tmp-{os.getpid()}"
    meta_tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(meta_tmp, meta_path)
    return final


def load_query_tower_onnx(
    export_dir: str | Path, *, path: str | Path | None = None, threads: int = 1, verify: bool = True
) -> ExportedModule:
    """The converted query tower of `export_dir` (file in `path`'s directory, default the export directory) as an
    `ExportedModule` running on ONNX Runtime; with `verify`, its sha256 and its source program must match."""
    root = Path(export_dir)
    file = Path(path) if path is not None else root / ONNX_FILE
    meta_path = file.with_name(file.name + ".json")
    if not file.is_file() or not meta_path.is_file():
        raise RuntimeConversionError(f"{file} (or its {meta_path.name}) is missing: convert the export first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RuntimeConversionError(f"{meta_path} is not valid JSON: {e}") from e
    if meta.get("format") != ONNX_FORMAT or meta.get("module") != MODULE:
        raise RuntimeConversionError(f"{meta_path}: unsupported runtime file (format {meta.get('format')!r})")
    if verify:
        if sha256_file(file) != meta["sha256"]:
            raise RuntimeConversionError(f"{file}: checksum mismatch (file changed or corrupt)")
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise RuntimeConversionError(f"{root} is not an export directory: {MANIFEST} is missing")
        source = json.loads(manifest_path.read_text(encoding="utf-8"))["modules"].get(MODULE, {})
        if source.get("sha256") != meta["source"]["sha256"]:
            raise RuntimeConversionError(
                f"{file} was converted from another {MODULE} program (model {meta['source']['model_version']!r}) "
                f"than the one in {root}: convert this export again"
            )
    try:
        session = _session(file, threads)
    except Exception as e:
        raise RuntimeConversionError(f"{file} could not be loaded by onnxruntime: {e}") from e
    return ExportedModule(MODULE, OnnxProgram(session), meta["inputs"], meta["output"])
