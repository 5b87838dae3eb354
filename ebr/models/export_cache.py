"""Reuse of traced `torch.export` graphs: a daily retrain exports the same architecture with new weights.

Tracing a query tower with a symbolic batch takes ~2.5-4 s (it grows with the tower's op count); loading a
traced program and binding the new weights takes ~0.9 s, and within one process (tests, `ebr ablate`) ~0.1 s.
A graph is keyed by everything that shapes the trace: the torch version, the module's class, its structure
(`repr`), every submodule's plain attributes (flags such as `query_history`), the names, shapes and dtypes of its
parameters and buffers, the example inputs' keys, dtypes and non-batch shapes, and the source files of the
modules that define it (`ebr.models.*` and the classes' own modules). A reused graph is also checked: bound to
the module's weights it must give the module's own output on the example inputs, or it is traced afresh.

Disk entries live in `$EBR_EXPORT_CACHE_DIR` (a step sets `<workspace>/cache/exports`); unset, only this
process's graphs are reused. An entry holds the graph alone (its weights are zero-stride zeros: a few KB
whatever the model's size). An unreadable entry is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebr.artifacts.atomic import atomic_file

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.export import ExportedProgram

CACHE_ENV = "EBR_EXPORT_CACHE_DIR"
KEY_FORMAT = 1
_PLAIN = (bool, int, float, str, type(None))
# key -> a program whose weights were dropped after use (zero-stride zeros): its graph is what is reused
_memo: dict[str, ExportedProgram] = {}
_stats = {"traced": 0, "reused_memory": 0, "reused_disk": 0, "rejected": 0}


def cache_dir() -> Path | None:
    """The on-disk cache directory, or None when `EBR_EXPORT_CACHE_DIR` is unset or empty."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value) if value else None


def stats() -> dict[str, int]:
    """How many programs this process traced, reused (from memory / disk) and rejected on the check."""
    return dict(_stats)


def _source_digest(module: nn.Module) -> str:
    files: set[str] = set()
    for m in module.modules():
        for cls in type(m).__mro__:
            mod = sys.modules.get(cls.__module__)
            if mod is not None and not cls.__module__.startswith("torch") and getattr(mod, "__file__", None):
                files.add(mod.__file__)
    files.update(m.__file__ for name, m in list(sys.modules.items())
                 if name.startswith("ebr.models") and getattr(m, "__file__", None))  # fmt: skip
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def graph_key(module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> str:
    """A digest of everything that decides the traced graph of `module` on inputs shaped like `inputs`."""
    import torch

    attrs = {
        name: {k: v for k, v in sorted(vars(m).items()) if isinstance(v, _PLAIN)}
        for name, m in module.named_modules()
    }
    tensors = [(k, list(v.shape), str(v.dtype), isinstance(v, torch.nn.Parameter))
               for k, v in [*module.named_parameters(), *module.named_buffers()]]  # fmt: skip
    spec = {
        "format": KEY_FORMAT,
        "torch": torch.__version__,
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "repr": repr(module),
        "attrs": attrs,
        "tensors": tensors,
        "inputs": [(k, str(v.dtype), list(v.shape[1:])) for k, v in inputs.items()],
        "source": _source_digest(module),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _bind(program: ExportedProgram, module: nn.Module) -> bool:
    """Point the program's parameters and buffers at the module's; False when their names differ."""
    import torch

    own = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    if set(program.state_dict) - set(own):
        return False
    for k, v in list(program.state_dict.items()):
        new = own[k].detach()
        program.state_dict[k] = torch.nn.Parameter(new, requires_grad=v.requires_grad) if isinstance(
            v, torch.nn.Parameter) else new  # fmt: skip
    for k in list(program.constants):
        if k in own:  # a non-persistent buffer; lifted literals stay as traced
            program.constants[k] = own[k].detach()
    return True


def _agrees(program: ExportedProgram, inputs: Mapping[str, torch.Tensor], expected: torch.Tensor) -> bool:
    import torch

    try:
        with torch.no_grad():
            got = program.module()(dict(inputs))
    except Exception:
        return False
    return (isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype
            and torch.allclose(got, expected, rtol=1e-4, atol=1e-5))  # fmt: skip


def reuse(key: str, module: nn.Module, inputs: Mapping[str, torch.Tensor],
          expected: torch.Tensor) -> ExportedProgram | None:
    """A cached graph for `key` bound to `module`'s weights that reproduces `expected` on `inputs`, or None."""
    from ebr.models.program_load import load_program

    candidates: list[tuple[str, Any]] = []
    if key in _memo:
        candidates.append(("reused_memory", lambda: _memo[key]))
    root = cache_dir()
    if root is not None and (root / f"{key}.pt2").is_file():
        candidates.append(("reused_disk", lambda: load_program(root / f"{key}.pt2")))
    for source, load in candidates:
        try:
            program = load()
        except Exception:
            continue
        if _bind(program, module) and _agrees(program, inputs, expected):
            _stats[source] += 1
            return program
        _stats["rejected"] += 1
    return None


def _stripped(program: ExportedProgram) -> ExportedProgram:
    """The program with every weight replaced by a zero-stride zero of its shape and dtype: the graph alone, a few
    KB on disk (the weights are bound again on reuse)."""
    import torch

    for k, v in list(program.state_dict.items()):
        zero = torch.zeros((), dtype=v.dtype).expand(v.shape)
        program.state_dict[k] = torch.nn.Parameter(zero, requires_grad=False) if isinstance(
            v, torch.nn.Parameter) else zero  # fmt: skip
    return program


def remember(key: str, program: ExportedProgram, traced: bool) -> None:
    """Keep `program`'s graph (its weights dropped) for this process and, when it was traced here, in the disk
    cache. Call after the program was saved: its weights are replaced."""
    import torch

    graph = _stripped(program)
    _memo[key] = graph
    if not traced:
        return
    _stats["traced"] += 1
    root = cache_dir()
    if root is None:
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), atomic_file(root / f"{key}.pt2") as tmp:
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            torch.export.save(graph, str(tmp))
    except OSError:
        pass  # a cache that cannot be written only costs the next run a trace
