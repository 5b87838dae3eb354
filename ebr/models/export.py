"""Export trained towers (or any module taking a dict of tensors) with `torch.export`, and load them back.

An export directory holds one `<name>.pt2` program per module (graph + weights) and `export.json`: the
featurizer config the inputs must come from, the model config, the model version, each module's input
spec (keys, dtypes, shapes with a dynamic batch) and output spec, and a sha256 per file. A graph traced before
for the same architecture is reused with the new weights (`ebr.models.export_cache`). The loader checks
the checksums and returns callables that take the featurizer's tensor dict (extra keys are ignored, a
missing or mis-shaped key is an error that names it). torch is imported inside functions.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebr.artifacts.atomic import atomic_output_dir
from ebr.artifacts.checksums import sha256_file
from ebr.models import export_cache
from ebr.models.config import FeaturizerConfig
from ebr.models.program_load import load_program

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ebr.models.two_tower import TwoTowerModel

MANIFEST = "export.json"
EXPORT_FORMAT = 1


class ExportError(RuntimeError):
    """An export directory that cannot be written or read back faithfully; names the file or key."""


def _batch_of(name: str, inputs: Mapping[str, torch.Tensor]) -> int:
    import torch

    if not inputs:
        raise ExportError(f"module {name!r}: example inputs are empty")
    sizes = set()
    for key, t in inputs.items():
        if not isinstance(t, torch.Tensor) or t.dim() < 1:
            raise ExportError(
                f"module {name!r}: example input {key!r} must be a tensor with a batch dimension"
            )
        sizes.add(int(t.shape[0]))
    if len(sizes) != 1 or 0 in sizes:
        raise ExportError(
            f"module {name!r}: example inputs need one non-zero batch size, got {sorted(sizes)}"
        )
    return sizes.pop()


def _export_one(
    name: str, module: nn.Module, inputs: Mapping[str, torch.Tensor], path: Path
) -> dict[str, Any]:
    """Export `module` with a dynamic batch dimension to `path`; returns its manifest entry."""
    import torch

    batch = _batch_of(name, inputs)
    # A batch of 1 would be specialized as a constant: repeat rows so the batch size stays symbolic.
    reps = 1 if batch >= 2 else 2
    ex = {k: torch.cat([v] * reps) if reps > 1 else v for k, v in inputs.items()}
    dim = torch.export.Dim("batch", min=1, max=1 << 30)
    dynamic = ({k: {0: dim} for k in ex},)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(dict(ex))
        if not isinstance(out, torch.Tensor):
            raise ExportError(f"module {name!r} must return one tensor, got {type(out).__name__}")
        key = export_cache.graph_key(module, ex)
        program = export_cache.reuse(key, module, ex, out)
        traced = program is None
        if program is None:
            with warnings.catch_warnings():
                # nn.LSTM re-assigns its flat weight list while being traced; harmless for inference.
                warnings.filterwarnings("ignore", message=".*were assigned during export.*")
                program = torch.export.export(module, (dict(ex),), dynamic_shapes=dynamic)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"module {name!r} could not be exported: {e}") from e
    finally:
        module.train(was_training)
    with warnings.catch_warnings():
        # LSTM flat weights alias the LSTM parameters; the archive writer stores the shared storage once.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, str(path))
    export_cache.remember(key, program, traced)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "inputs": {
            k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": [None, *v.shape[1:]]}
            for k, v in ex.items()
        },
        "output": {"dtype": str(out.dtype).removeprefix("torch."), "shape": [None, *out.shape[1:]]},
    }


def export_modules(
    out_dir: str | Path,
    modules: Mapping[str, nn.Module],
    example_inputs: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    model_version: str,
    featurizer: FeaturizerConfig | None = None,
    config: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export each named module (forward takes one dict of tensors, returns one tensor) into `out_dir`.

    `example_inputs[name]` are real featurized rows for that module. The directory appears whole or not at
    all (written beside it, then renamed); an existing one is replaced only with `overwrite`.
    """
    out = Path(out_dir)
    if not model_version or not isinstance(model_version, str):
        raise ExportError("model_version must be a non-empty string")
    if not modules:
        raise ExportError("nothing to export: modules is empty")
    for name in modules:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ExportError(f"module name {name!r} must be non-empty and alphanumeric (with _ or -)")
        if name not in example_inputs:
            raise ExportError(f"module {name!r} has no example_inputs entry")
    if out.exists() and not overwrite:
        raise ExportError(f"export directory {out} already exists (pass overwrite=True to replace it)")
    import torch

    with atomic_output_dir(out, marker=MANIFEST) as tmp:
        entries = {
            name: _export_one(name, m, example_inputs[name], tmp / f"{name}.pt2")
            for name, m in modules.items()
        }
        manifest = {
            "format": EXPORT_FORMAT,
            "model_version": model_version,
            "torch_version": torch.__version__,
            "modules": entries,
            "featurizer": featurizer.model_dump(mode="json") if featurizer is not None else None,
            "config": dict(config) if config is not None else {},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def export_two_tower(
    model: TwoTowerModel,
    out_dir: str | Path,
    *,
    query_inputs: Mapping[str, torch.Tensor],
    doc_inputs: Mapping[str, torch.Tensor],
    model_version: str,
    extra_modules: Mapping[str, tuple[nn.Module, Mapping[str, torch.Tensor]]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export `query_tower` and `doc_tower` plus any `extra_modules` (name -> (module, example inputs)), with the
    model's config and featurizer."""
    modules: dict[str, nn.Module] = {"query_tower": model.query_tower, "doc_tower": model.doc_tower}
    examples: dict[str, Mapping[str, torch.Tensor]] = {"query_tower": query_inputs, "doc_tower": doc_inputs}
    for name, (m, ex) in (extra_modules or {}).items():
        if name in modules:
            raise ExportError(f"extra module name {name!r} clashes with a two-tower module")
        modules[name] = m
        examples[name] = ex
    cfg = model.config
    return export_modules(
        out_dir,
        modules,
        examples,
        model_version=model_version,
        featurizer=cfg.featurizer,
        config={
            "two_tower": cfg.model_dump(mode="json"),
            "embedding_dim": cfg.query_tower.out_dim,
            "temperature": cfg.effective_temperature,
        },
        overwrite=overwrite,
    )


def recorded_query_tower(manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The query tower's config as a two-tower export recorded it (None for an export without one)."""
    qt = ((manifest.get("config") or {}).get("two_tower") or {}).get("query_tower")
    return qt if isinstance(qt, Mapping) else None


@dataclass
class ExportedModule:
    """A loaded exported module: call it with a dict of tensors (the featurizer's output)."""

    name: str
    program: Any
    input_spec: dict[str, dict[str, Any]]
    output_spec: dict[str, Any]

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Run on `inputs`, using only the keys this module was exported with (in their order)."""
        import torch

        picked: dict[str, torch.Tensor] = {}
        batch: int | None = None
        for key, spec in self.input_spec.items():
            if key not in inputs:
                raise ValueError(f"{self.name}: input {key!r} is missing")
            t = inputs[key]
            want_dtype = getattr(torch, spec["dtype"])
            if not isinstance(t, torch.Tensor) or t.dtype != want_dtype:
                got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{self.name}: input {key!r} must be a {spec['dtype']} tensor, got {got}")
            if list(t.shape[1:]) != list(spec["shape"][1:]) or t.dim() != len(spec["shape"]):
                want = ", ".join(["batch", *map(str, spec["shape"][1:])])
                raise ValueError(f"{self.name}: input {key!r} must have shape [{want}], got {list(t.shape)}")
            if batch is None:
                batch = int(t.shape[0])
            elif t.shape[0] != batch:
                raise ValueError(f"{self.name}: input {key!r} has batch {t.shape[0]}, others have {batch}")
            picked[key] = t
        if batch == 0:
            return torch.zeros(
                (0, *self.output_spec["shape"][1:]), dtype=getattr(torch, self.output_spec["dtype"])
            )
        with torch.no_grad():
            return self.program(picked)

    @property
    def output_dim(self) -> int:
        """Size of the last output dimension (the embedding size for towers)."""
        return int(self.output_spec["shape"][-1])


@dataclass
class ExportedBundle:
    """Everything in an export directory: modules by name, the featurizer config and the manifest."""

    path: Path
    model_version: str
    modules: dict[str, ExportedModule]
    featurizer: FeaturizerConfig | None
    manifest: dict[str, Any] = field(repr=False)

    def output_dim(self, name: str) -> int:
        """Size of module `name`'s last output dimension, from the manifest (loaded or not)."""
        if name not in self.manifest["modules"]:
            raise KeyError(f"export {self.path} has no module {name!r}; it has {sorted(self.manifest['modules'])}")
        return int(self.manifest["modules"][name]["output"]["shape"][-1])

    def __getitem__(self, name: str) -> ExportedModule:
        if name in self.manifest["modules"] and name not in self.modules:
            raise KeyError(f"export {self.path}: module {name!r} was not loaded (load_exported(only=...))")
        if name not in self.modules:
            raise KeyError(f"export {self.path} has no module {name!r}; it has {sorted(self.modules)}")
        return self.modules[name]


def load_exported(path: str | Path, verify: bool = True, only: Iterable[str] | None = None) -> ExportedBundle:
    """Load an export directory; with `verify`, every file's sha256 must match the manifest. `only` loads just
    the named modules the export has (`()`: none, the manifest and featurizer alone; asking for an absent one is
    a KeyError naming what it has when it is used): deserializing a program costs ~1 s, and most readers need
    the query tower only."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{root} is not an export directory: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ExportError(f"{manifest_path} is not valid JSON: {e}") from e
    if manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{manifest_path}: unsupported export format {manifest.get('format')!r}")
    for name, entry in manifest["modules"].items():  # check every file before loading any
        file = root / entry["file"]
        if not file.is_file():
            raise ExportError(f"export {root}: file {entry['file']} of module {name!r} is missing")
        if verify and sha256_file(file) != entry["sha256"]:
            raise ExportError(
                f"export {root}: checksum mismatch for {entry['file']} (file changed or corrupt)"
            )
    wanted = set(manifest["modules"]) if only is None else set(only)
    modules = {
        name: ExportedModule(
            name, load_program(root / e["file"]).module(), e["inputs"], e["output"]
        )
        for name, e in manifest["modules"].items() if name in wanted
    }
    feat = manifest.get("featurizer")
    return ExportedBundle(
        path=root,
        model_version=manifest["model_version"],
        modules=modules,
        featurizer=FeaturizerConfig.model_validate(feat) if feat is not None else None,
        manifest=manifest,
    )
