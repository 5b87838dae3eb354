"""Benchmark of the query tower's runtimes at serving batch sizes, on one torch thread, and of each block's cost.

The tower is the shipped default (`ebr.train.two_tower_config.default_model`: MGDSPR's structure, CPU-sized),
untrained: its cost does not depend on its weights. It is exported exactly as the pipeline does (`export_two_tower`
via `serving.synthetic.export_model`), and every runtime is built from that export directory:

- eager: the nn.Module rebuilt from the export's config with the program's weights (`eager_query_tower`),
- export: the `torch.export` program as served today (`load_exported(...)["query_tower"]`, an `ExportedModule`),
- torchscript: `torch.jit.script` is tried first (its error is recorded); then `torch.jit.trace` of the eager
  tower with positional inputs, frozen,
- compile: `torch.compile` (inductor, dynamic batch) of the loaded export program, warmed at every batch size,
- onnx: `ebr.models.runtime.convert_query_tower` (legacy TorchScript-based `torch.onnx.export`, opset 17), loaded
  by `load_query_tower_onnx`: ONNX Runtime, one intra-op thread, all graph optimizations.

Inputs are real featurized rows (`featurize_queries` of `serving.synthetic.example_query_rows` and `--rows`
rows of `ebr.models.runtime.parity_rows`: Latin/Han queries, logged-out rows, sequences empty to over-long).
Parity is the max abs diff against the export program (whole batch, 32-row chunks, 16 single rows). Timing runs
`--rounds` interleaved rounds (runtime order rotated each round); every point reports the round with the lowest
p50 and the spread of p50 over rounds, so the noise of a shared machine shows. Blocks: the default with one
query-tower flag off, exported and converted the same way, timed at batch 1 on the export program and ONNX
Runtime, in interleaved rounds with the default in the same loop.

    python bench/bench_tower.py [--batches 1 8 32] [--rounds 3] [--calls 200] [--runtimes ...] [--blocks ...]

Writes OUT/tower.json and OUT/tower.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RUNTIMES = ("eager", "export", "torchscript", "compile", "onnx")
BLOCKS = ("realtime_sequence", "short_term_sequence", "long_term_sequence", "query_history", "user_profile",
          "senet", "dcn", "cls_fusion", "multi_granular", "personalization")  # fmt: skip
BLOCK_RUNTIMES = ("export", "onnx")
VERSION = "bench-tower"
ATOL = 1e-5


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="rows per call (default 1 8 32)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    p.add_argument("--calls", type=int, default=200,
                   help="timed calls per point and round at batch 1; batch b gets max(30, calls / sqrt(b))")
    p.add_argument("--point-seconds", dest="point_seconds", type=float, default=3.0,
                   help="cap on one point's timed seconds per round (default 3)")
    p.add_argument("--rows", type=int, default=300, help="featurized parity/timing rows (default 300)")
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    p.add_argument("--blocks", nargs="*", default=list(BLOCKS), choices=BLOCKS,
                   help="query-tower flags switched off one at a time (default: all listed; none: skip)")
    p.add_argument("--block-calls", dest="block_calls", type=int, default=150,
                   help="timed batch-1 calls per block variant, runtime and round (default 150)")
    p.add_argument("--compile-cache", dest="compile_cache", choices=["cold", "warm"], default="cold",
                   help="cold: a fresh inductor cache in the scratch dir (a new pod's first load); warm: the user's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir, removed)")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[bench_tower {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    """The exception's type and first non-empty message line (TorchScript errors start with a blank line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300].replace("|", "/")


# ------------------------------------------------------------------------------------------------ runtimes


def _torchscript(exported: Any, keys: list[str]) -> tuple[Callable, str]:
    """Scripted tower if `torch.jit.script` takes it, else the frozen trace; returns (call, how)."""
    import torch

    from ebr.models.runtime import eager_query_tower

    tower = eager_query_tower(exported)
    how = "script"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.freeze(torch.jit.script(tower))
        return (lambda x: module({k: x[k] for k in keys})), how
    except Exception as e:
        how = f"trace (script failed: {_first_line(e)})"
    from ebr.models.runtime import positional_module

    example = _inputs_cache["trace_example"]
    with warnings.catch_warnings(), torch.no_grad():
        # attention's sqrt(head_dim) is a shape-derived constant; parity at every batch size proves the trace.
        warnings.simplefilter("ignore")
        module = torch.jit.freeze(torch.jit.trace(positional_module(tower, keys), tuple(example[k] for k in keys)))
    return (lambda x: module(*[x[k] for k in keys])), how


_inputs_cache: dict[str, Any] = {}


def _build(name: str, export_dir: Path, keys: list[str], batches: list[int]) -> dict[str, Any]:
    """Build one runtime from the export directory; returns {call, load_s, how, error}."""
    import torch

    from ebr.models.export import ExportedModule, load_exported
    from ebr.models.runtime import convert_query_tower, eager_query_tower, load_query_tower_onnx

    t0 = time.perf_counter()
    info: dict[str, Any] = {"call": None, "how": "", "error": None, "convert_s": None}
    try:
        if name == "eager":
            tower = eager_query_tower(load_exported(export_dir))
            info["how"] = "QueryTower rebuilt from export.json's config, weights from the .pt2 program"
            info["call"] = tower
        elif name == "export":
            info["call"] = load_exported(export_dir)["query_tower"]
            info["how"] = "load_exported(...)['query_tower'] (ExportedModule), as serving/loaded_bundle.py does"
        elif name == "torchscript":
            info["call"], info["how"] = _torchscript(load_exported(export_dir), keys)
        elif name == "compile":
            m = load_exported(export_dir)["query_tower"]
            compiled = torch.compile(m.program, dynamic=True)
            info["call"] = ExportedModule(m.name, compiled, m.input_spec, m.output_spec)
            info["how"] = "torch.compile(inductor, dynamic=True) of the loaded export program, warmed per batch"
        elif name == "onnx":
            c0 = time.perf_counter()
            convert_query_tower(export_dir, _inputs_cache["parity_rows"])
            info["convert_s"] = time.perf_counter() - c0
            t0 = time.perf_counter()
            info["call"] = load_query_tower_onnx(export_dir)
            info["how"] = "convert_query_tower (torch.onnx.export dynamo=False, opset 17) + onnxruntime, 1 thread"
        with torch.no_grad():  # first call at each batch size (compile: its compilations) counts as loading
            for b in batches:
                info["call"](_inputs_cache["batches"][b][0])
    except Exception as e:
        info["call"] = None
        info["error"] = _first_line(e)
        _log(f"{name} failed: {info['error']}")
        traceback.print_exc(limit=3)
    info["load_s"] = time.perf_counter() - t0
    return info


# --------------------------------------------------------------------------------------------------- timing


def _time_point(call: Callable, batch_inputs: list[dict], calls: int, seconds: float) -> list[float]:
    """Per-call milliseconds of up to `calls` calls (cycling over the prepared batches), stopping after `seconds`."""
    import torch

    out: list[float] = []
    deadline = time.perf_counter() + seconds
    with torch.no_grad():
        for i in range(calls):
            x = batch_inputs[i % len(batch_inputs)]
            t0 = time.perf_counter()
            call(x)
            t1 = time.perf_counter()
            out.append((t1 - t0) * 1e3)
            if t1 > deadline and i >= 9:
                break
    return out


def _summary(rounds: list[list[float]]) -> dict[str, Any]:
    p50s = [float(np.percentile(r, 50)) for r in rounds]
    best = int(np.argmin(p50s))
    return {"p50_ms": p50s[best], "p99_ms": float(np.percentile(rounds[best], 99)), "calls": len(rounds[best]),
            "round_p50_ms": [round(v, 4) for v in p50s]}  # fmt: skip


def _calls_for(batch: int, calls: int) -> int:
    return max(30, int(calls / np.sqrt(batch)))


def _machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "processor": platform.processor() or platform.machine(),
        "cxx": shutil.which("g++"), "cc": shutil.which("gcc"), "torch_threads": torch.get_num_threads(),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ the tower


def _export_default(work: Path) -> tuple[Path, Any, float]:
    """The shipped default two-tower model (untrained) exported as the pipeline does; (export dir, model, s)."""
    from ebr.bundle.layout import QUERY_TOWER_EXPORT
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.two_tower_config import default_model
    from serving.synthetic import export_model, synthetic_docs

    t0 = time.perf_counter()
    model = TwoTowerModel(default_model()).eval()
    export_dir = export_model(model, work / QUERY_TOWER_EXPORT, synthetic_docs(4), VERSION)
    return export_dir, model, time.perf_counter() - t0


def _export_variant(work: Path, flag: str, inputs: dict) -> Path:
    """The default with `query_tower.<flag>` off: only its query tower exported, with its two-tower config."""
    from ebr.models.config import TwoTowerConfig
    from ebr.models.export import export_modules
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.two_tower_config import default_model

    base = default_model().model_dump(mode="json")
    base["query_tower"][flag] = False
    cfg = TwoTowerConfig.model_validate(base)
    model = TwoTowerModel(cfg).eval()
    return export_modules(work / f"no_{flag}", {"query_tower": model.query_tower}, {"query_tower": inputs},
                          model_version=f"{VERSION}-no-{flag}", featurizer=cfg.featurizer,
                          config={"two_tower": cfg.model_dump(mode="json"), "embedding_dim": cfg.query_tower.out_dim})


def _blocks(args: argparse.Namespace, work: Path, default_dir: Path, rows_inputs: dict) -> dict[str, Any]:
    """Batch-1 p50 of the export program and ONNX Runtime per block variant, default in the same rounds."""
    from ebr.models.export import load_exported
    from ebr.models.runtime import convert_query_tower, load_query_tower_onnx

    example = {k: v[:2] for k, v in rows_inputs.items()}
    dirs: dict[str, Path] = {"default": default_dir}
    for flag in args.blocks:
        t0 = time.perf_counter()
        dirs[f"no_{flag}"] = _export_variant(work / "blocks", flag, example)
        _log(f"block variant no_{flag} exported in {time.perf_counter() - t0:.1f}s")
    calls: dict[tuple[str, str], Callable] = {}
    params: dict[str, int] = {}
    errors: dict[str, str] = {}
    for name, d in dirs.items():
        try:
            exported = load_exported(d)
            calls[(name, "export")] = exported["query_tower"]
            params[name] = sum(int(np.prod(t.shape)) for t in exported["query_tower"].program.state_dict().values())
            if not (d / "query_tower.onnx").is_file():
                convert_query_tower(d, _inputs_cache["parity_rows"])
            calls[(name, "onnx")] = load_query_tower_onnx(d)
        except Exception as e:
            errors[name] = _first_line(e)
            _log(f"block variant {name} failed: {errors[name]}")
    singles = [{k: v[i : i + 1] for k, v in rows_inputs.items()} for i in range(min(32, len(next(iter(
        rows_inputs.values())))))]  # fmt: skip
    for call in calls.values():  # warm every program once before timing
        _time_point(call, singles, 5, 10.0)
    samples: dict[tuple[str, str], list[list[float]]] = {key: [] for key in calls}
    keys = list(calls)
    for r in range(args.rounds):
        for i in range(len(keys)):
            key = keys[(i + r * 3) % len(keys)]
            samples[key].append(_time_point(calls[key], singles, args.block_calls, args.point_seconds))
        _log(f"blocks round {r + 1}/{args.rounds} done")
    out: dict[str, Any] = {}
    for name in dirs:
        row: dict[str, Any] = {"params": params.get(name), "error": errors.get(name)}
        for rt in BLOCK_RUNTIMES:
            if (name, rt) in samples:
                row[rt] = _summary(samples[(name, rt)])
        out[name] = row
    return out


# ----------------------------------------------------------------------------------------------- the report


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    batches = doc["batches"]
    lines = [
        "# Query tower runtimes",
        "",
        f"Generated {doc['generated']} by `bench/bench_tower.py` in {doc['wall_s']:.0f} s. Machine: {m['cpus']} CPUs "
        f"({m['processor']}), Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, g++ "
        f"{m['cxx'] or 'missing'}; torch threads {m['torch_threads']}. Load average (1/5/15 min) before "
        f"{doc['load_before']}, after {doc['load_after']}: the machine is shared, compare runtimes within this run "
        "only.",
        "",
        "The tower is the shipped default (`default_model()`), untrained: its cost does not depend on its weights. "
        f"Inputs: {doc['rows']} featurized query rows. Each point is the fastest of {doc['rounds']} interleaved "
        "rounds by p50 (p99 from that round); `rounds p50` shows the spread. Parity: max abs diff against the export "
        f"program (whole batch, 32-row chunks, single rows); passes at <= {ATOL:g}.",
        "",
        "| runtime | works | load s | parity max abs diff | "
        + " | ".join(f"b{b} p50 ms | b{b} p99 ms" for b in batches)
        + " | b1 x export | rounds p50 b1 (ms) |",
        "|---|---|---|---|" + "---|---|" * len(batches) + "---|---|",
    ]
    base = doc["runtimes"].get("export", {}).get("batches", {}).get(str(batches[0]))
    for name, r in doc["runtimes"].items():
        if r["error"]:
            lines.append(f"| {name} | no: {r['error']} | {r['load_s']:.1f} | | " + " | " * (2 * len(batches)) + " |")
            continue
        parity = r["parity"]["max_abs_diff"]
        ok = "yes" if parity <= ATOL else "works, parity fails"
        cells = []
        for b in batches:
            s = r["batches"][str(b)]
            cells.append(f"{s['p50_ms']:.3f} | {s['p99_ms']:.3f}")
        first = r["batches"][str(batches[0])]
        speed = f"{base['p50_ms'] / first['p50_ms']:.2f}x" if base else ""
        spread = " / ".join(f"{v:.3f}" for v in first["round_p50_ms"])
        load = f"{r['load_s']:.1f}" + (f" (+{r['convert_s']:.1f} convert)" if r.get("convert_s") else "")
        lines.append(f"| {name} | {ok} | {load} | {parity:.2e} | " + " | ".join(cells) + f" | {speed} | {spread} |")
    lines += ["", "How each runtime was built:", ""]
    lines += [f"- **{name}**: {r['how'] or '-'}" for name, r in doc["runtimes"].items()]
    if doc.get("blocks"):
        lines += [
            "",
            "## Cost of each query-tower block at batch 1",
            "",
            "The default with one flag off, exported and converted like the default and timed in the same interleaved "
            "rounds; `cost` is the default's p50 minus the variant's (what the block costs at serving time). A cost "
            "within the rounds' spread (a few tenths of a ms on a busy machine) is noise, negative ones included.",
            "",
            "| variant | params | export p50 ms | export cost ms | onnx p50 ms | onnx cost ms | export rounds p50 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        default = doc["blocks"]["default"]
        for name, r in doc["blocks"].items():
            if r.get("error"):
                lines.append(f"| {name} | | failed: {r['error']} | | | | |")
                continue
            cells = []
            for rt in BLOCK_RUNTIMES:
                if rt in r and rt in default:
                    p50 = r[rt]["p50_ms"]
                    cost = "" if name == "default" else f"{default[rt]['p50_ms'] - p50:+.3f}"
                    cells.append(f"{p50:.3f} | {cost}")
                else:
                    cells.append(" | ")
            spread = " / ".join(f"{v:.3f}" for v in r["export"]["round_p50_ms"]) if "export" in r else ""
            lines.append(f"| {name} | {r['params'] or ''} | " + " | ".join(cells) + f" | {spread} |")
    lines += ["", *[f"- {n}" for n in doc["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build every runtime from one default export, check parity, time them interleaved, write json and md."""
    args = _args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-tower-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.compile_cache == "cold":
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor-cache")
    try:
        from ebr.models.export import load_exported
        from ebr.models.inputs import featurize_queries
        from ebr.models.runtime import max_abs_diff, parity_rows
        from serving.synthetic import example_query_rows

        export_dir, model, export_s = _export_default(work)
        _log(f"default tower exported in {export_s:.1f}s")
        rows = example_query_rows() + parity_rows(args.rows, seed=args.seed)
        _inputs_cache["parity_rows"] = rows
        reference = load_exported(export_dir)["query_tower"]
        keys = list(reference.input_spec)
        feats = featurize_queries(rows, model.config.featurizer)
        feats = {k: feats[k] for k in keys}
        n = len(rows)
        _inputs_cache["trace_example"] = {k: v[:8] for k, v in feats.items()}
        _inputs_cache["batches"] = {
            b: [{k: v[s : s + b] for k, v in feats.items()} for s in range(0, max(1, n - b + 1), max(1, b))][:64]
            for b in args.batches
        }
        del model
        built: dict[str, dict[str, Any]] = {}
        for name in args.runtimes:
            _log(f"building {name}")
            built[name] = _build(name, export_dir, keys, args.batches)
            _log(f"{name}: load {built[name]['load_s']:.1f}s {built[name]['error'] or ''}")
        for name, info in built.items():
            if info["call"] is not None:
                with torch.no_grad():
                    info["parity"] = max_abs_diff(reference, info["call"], feats)
                _log(f"{name}: parity max abs diff {info['parity']['max_abs_diff']:.3g}")
        live = [name for name, info in built.items() if info["call"] is not None]
        samples: dict[tuple[str, int], list[list[float]]] = {(nm, b): [] for nm in live for b in args.batches}
        for r in range(args.rounds):
            order = live[r % max(1, len(live)):] + live[: r % max(1, len(live))]
            for b in args.batches:
                for name in order:
                    samples[(name, b)].append(_time_point(built[name]["call"], _inputs_cache["batches"][b],
                                                          _calls_for(b, args.calls), args.point_seconds))
            _log(f"round {r + 1}/{args.rounds} done")
        runtimes: dict[str, Any] = {}
        for name, info in built.items():
            entry = {k: info.get(k) for k in ("how", "error", "load_s", "convert_s", "parity")}
            if info["call"] is not None:
                entry["batches"] = {str(b): _summary(samples[(name, b)]) for b in args.batches}
            runtimes[name] = entry
        blocks = _blocks(args, work, export_dir, feats) if args.blocks else {}
        notes = [
            "torch.onnx.export(dynamo=True) needs the onnxscript package, which is not installed; the legacy "
            "TorchScript-based exporter works for this model (its warnings: attention's sqrt(head_dim) is a "
            "shape-derived constant, and LSTM states are batch-shaped; parity at batch 1 and larger proves both "
            "harmless). The 0-wide `user_numeric` input (no user numeric columns) is dropped from the ONNX graph.",
            "torch.compile is applied to the loaded export program (one graph); compiling the eager module instead "
            "breaks the graph inside QueryTower.tokens and hits dynamo's recompile limit. Its load time includes "
            f"compiling at each batch size with a {args.compile_cache} inductor cache; inductor's fused kernels "
            "reorder float reductions, hence its larger parity difference.",
        ]
        doc = {
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "wall_s": time.perf_counter() - start,
            "export_s": export_s,
            "rows": n,
            "rounds": args.rounds,
            "batches": args.batches,
            "calls": {str(b): _calls_for(b, args.calls) for b in args.batches},
            "runtimes": runtimes,
            "blocks": blocks,
            "notes": notes,
        }
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tower.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    (args.out / "tower.md").write_text(_markdown(doc), encoding="utf-8")
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
