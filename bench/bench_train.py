"""Benchmark of two-tower training: examples per second and peak memory of the default model, per scale and
torch thread count.

For each scale the parent simulates a few days, builds the feature store and the samples of the last day (the
positives joined with their Feast features by the samples step) and loads them once as the trainer does
(`ebr.train.retrieval_data.load_training_data`: validation split, doc table, featurization; pickled), and times
writing and memory-mapping its featurization cache entry against that featurization (`featurized_cache`). Each
(scale, threads) point then runs in a fresh child process (`--child`): it trains `--steps` steps of the default
`TwoTowerTrainConfig` (batch 256, shared random negatives, mixed hard negatives, rewrite negatives) after
`--warmup` steps, and reports examples/s over wall time and CPU time and the child's peak resident memory
(getrusage maxrss, data and model included).

    python bench/bench_train.py [--scales small medium] [--threads 1 2] [--days 3] [--steps 30]
                                [--variants default dssm no_realtime ...]

Variants make the cost of each MGDSPR block visible: `default` is the shipped model (multi-granular query tower,
no personalization and no [CLS] fusion since docs/ablations.md), `cls_fusion` it with MGDSPR's [CLS] fusion, `dssm`
a bare DSSM (query words mean + doc tower, no multi-granular unit, no mixing, no rewrite term), each `no_<block>`
the default with one block switched off, `personalized` MGDSPR's personalized tower (personalization fused by
[CLS], the default until the ablation) and each `personalized_no_<block>` that tower with one block off. Every
variant runs at each thread count on the same data.

Writes OUT/train.json and OUT/train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_QT = "query_tower"
# MGDSPR's personalized tower (personalization fused by [CLS]): both off in the default model since docs/ablations.md
_P = {"personalization": True, "cls_fusion": True}
# Overrides of TwoTowerTrainConfig per variant (deep-merged into the defaults).
VARIANTS: dict[str, dict] = {
    "default": {},
    "dssm": {"model": {_QT: {"multi_granular": False}},
             "loss": {"hard_negative_mixing": False}, "data": {"rewrite_negative_weight": 0.0}},
    "no_multi_granular": {"model": {_QT: {"multi_granular": False}}},
    "cls_fusion": {"model": {_QT: {"cls_fusion": True}}},  # MGDSPR's [CLS] fusion instead of flatten + linear
    "no_hard_mixing": {"loss": {"hard_negative_mixing": False}},
    "no_rewrite_term": {"data": {"rewrite_negative_weight": 0.0}},
    "random_negatives_128": {"negatives": {"random_negatives": 128}},
    "batch_1024": {"train": {"batch_size": 1024}},  # the default model, 4x the batch (4x the in-batch negatives)
    # the personalized tower (the default until the ablation), and it without one block at a time
    "personalized": {"model": {_QT: _P}},
    "personalized_no_realtime_lstm": {"model": {_QT: {**_P, "realtime_sequence": False}}},
    "personalized_no_short_term": {"model": {_QT: {**_P, "short_term_sequence": False}}},
    "personalized_no_long_term": {"model": {_QT: {**_P, "long_term_sequence": False}}},
    "personalized_no_query_history": {"model": {_QT: {**_P, "query_history": False}}},
    "personalized_no_user_profile": {"model": {_QT: {**_P, "user_profile": False}}},
}


def variant_config(name: str):  # -> TwoTowerTrainConfig
    """The default training config with a variant's overrides (sections merge into their defaults)."""
    from ebr.train.two_tower_config import TwoTowerTrainConfig

    return TwoTowerTrainConfig.model_validate(VARIANTS[name])


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", nargs="+", default=["small", "medium"], choices=["tiny", "small", "medium", "large"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--days", type=int, default=3, help="days simulated per scale (training window = days - 1)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per point")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--work", type=Path, default=None, help="keep prepared data here (default: a temp dir)")
    p.add_argument("--repeats", type=int, default=2,
                   help="rounds over all points (interleaved); each point keeps its fastest round")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="model variants timed (default: all)")
    p.add_argument("--child", nargs=3, metavar=("DATA_PICKLE", "THREADS", "VARIANT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def prepare(scale: str, days: int, seed: int, work: Path) -> tuple[Path, dict]:
    """Simulate, build the features and the samples, load and featurize the training data; returns (pickle,
    sizes)."""
    from ebr.contract import list_days
    from ebr.features import FeaturesConfig, build_features
    from ebr.samples import SamplesConfig, build_samples
    from ebr.simulate import SimulateConfig, simulate
    from ebr.train.retrieval_data import load_training_data
    from ebr.train.two_tower_config import TwoTowerTrainConfig

    data = work / "data"
    if not data.exists():
        simulate(data, SimulateConfig(scale=scale, days=days, seed=seed), progress=False)
    day = list_days(data, "search_requests")[-1]
    features = work / "features"
    t0 = time.perf_counter()
    build_features(data, day, features, FeaturesConfig(materialize=False))
    t_features = time.perf_counter() - t0
    samples = work / "samples"
    cfg = SamplesConfig(days_back=days - 1, ranking={"include_preranked": False, "include_ranked": False,
                                                     "random_same_category": 0, "random_other_category": 0})
    t0 = time.perf_counter()
    build_samples(data, day, samples, cfg, features_dir=features)
    t_samples = time.perf_counter() - t0
    cfg_train = TwoTowerTrainConfig()
    t0 = time.perf_counter()
    td = load_training_data(samples, features, cfg_train)
    t_featurize = time.perf_counter() - t0
    cache = cache_timings(td, samples, features, cfg_train, work / "featurized")
    train = td.train
    path = work / "training_data.pkl"
    with open(path, "wb") as f:
        pickle.dump(td, f, protocol=pickle.HIGHEST_PROTOCOL)
    sizes = {"train_rows": len(train), "corpus_docs": len(td.docs),
             "distinct_query_rows": int(train.query_row.max() + 1),
             "rewrite_negatives": int((train.rewrite_row >= 0).sum()) if train.rewrite_row is not None else 0,
             "prepare_seconds": {"features": round(t_features, 1), "samples": round(t_samples, 1),
                                 "load_and_featurize": round(t_featurize, 1)},
             "featurized_cache": {"featurize_seconds": round(t_featurize, 2), **cache}}
    return path, sizes


def cache_timings(td, samples: Path, features: Path, cfg, root: Path) -> dict:
    """Seconds to key, write and memory-map the featurization cache entry of `td` (ebr/train/featurized_cache.py),
    the entry's size, and one batch's gathers from the mapped arrays against the in-memory ones."""
    import numpy as np

    from ebr.train.featurized_cache import featurized_arrays, key_inputs, read_featurized, write_featurized

    t0 = time.perf_counter()
    inputs = key_inputs(samples, features, cfg)
    t_key = time.perf_counter() - t0
    key = "bench"
    t0 = time.perf_counter()
    entry = write_featurized(td, root / key, key, inputs)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = read_featurized(entry, key)
    t_load = time.perf_counter() - t0
    a, b = featurized_arrays(td)[0], featurized_arrays(cached)[0]
    equal = list(a) == list(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
    idx = np.random.default_rng(0).choice(len(td.train), size=min(256, len(td.train)), replace=False)
    gathers = {}
    for name, data in (("in_memory", td), ("memory_mapped", cached)):
        t0 = time.perf_counter()
        for _ in range(20):
            data.train.query_tensors(idx), data.train.doc_tensors(idx)
        gathers[name] = round((time.perf_counter() - t0) / 20 * 1000, 3)
    size = sum(f.stat().st_size for f in entry.iterdir())
    return {"key_seconds": round(t_key, 3), "write_seconds": round(t_write, 2), "cached_load_seconds": round(t_load, 3),
            "entry_mb": round(size / 2**20, 1), "arrays_equal": equal, "batch_gather_ms": gathers}


def _child(data_pickle: Path, threads: int, variant: str, steps: int, warmup: int) -> None:
    """Train `warmup + steps` steps of a variant's config on the pickled data; print one JSON line."""
    import numpy as np
    import torch

    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.optimizers import clip_grad_norm, make_optimizers
    from ebr.train.two_tower import NegativeSampler, batch_loss, epoch_order

    torch.set_num_threads(threads)
    with open(data_pickle, "rb") as f:
        data = pickle.load(f)
    cfg = variant_config(variant)
    tc = cfg.train
    model = TwoTowerModel(cfg.model).train()
    opts = make_optimizers(model, cfg.optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    sampler = NegativeSampler(data, cfg)
    rng = np.random.default_rng(0)
    order = epoch_order(data.train, cfg.data.use_weights, rng)
    gen = torch.Generator().manual_seed(0)
    lcfg = cfg.loss_config()

    input_seconds = [0.0]

    def step(i: int) -> None:
        s = (i * tc.batch_size) % max(1, len(order) - tc.batch_size)
        t = time.perf_counter()
        batch = sampler.batch(data.train, order[s : s + tc.batch_size], rng)
        inputs = (data.train.query_tensors(batch.idx), data.train.doc_tensors(batch.idx))  # the batch's gathers
        input_seconds[0] += time.perf_counter() - t
        del inputs
        loss, _ = batch_loss(model, data.train, data.docs, batch, lcfg, cfg.data.rewrite_negative_weight, gen)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(params, cfg.optimizer.grad_clip_norm)
        for o in opts:
            o.step()

    for i in range(warmup):
        step(i)
    input_seconds[0] = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(warmup, warmup + steps):
        step(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    examples = steps * tc.batch_size
    print(json.dumps({
        "variant": variant, "threads": threads, "steps": steps, "batch_size": tc.batch_size, "examples": examples,
        "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "examples_per_s": round(examples / wall, 1),
        "input_ms_per_step": round(input_seconds[0] / steps * 1000, 2),
        "examples_per_cpu_s": round(examples / cpu, 1), "cpu_ms_per_example": round(cpu / examples * 1000, 3),
        "epoch_seconds_estimate": round(len(data.train) / (examples / wall), 1),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


def _render(doc: dict) -> str:
    lines = [
        "# Two-tower training benchmark", "",
        f"`TwoTowerTrainConfig` model and loop (batch {doc['batch_size']}), {doc['steps']} timed steps after "
        f"{doc['warmup']} warm-up steps, the fastest of {doc.get('repeats', 1)} interleaved rounds, "
        f"on {doc['machine']['cpus']} CPUs ({doc['machine']['platform']}, torch "
        f"{doc['machine']['torch']}); load average at start {doc['machine']['load_avg']}, at end "
        f"{doc['machine'].get('load_avg_end')}. Peak memory is the child process's maxrss (featurized data and "
        "model included). Wall time on a shared machine varies; CPU time per example is the steadier number. "
        "`default` is the shipped model (multi-granular query tower, no personalization, flatten + linear fusion); "
        "`cls_fusion` it with MGDSPR's [CLS] fusion; `dssm` a bare DSSM "
        "(query word mean + doc tower, in-batch and random negatives only); each `no_<block>` is the default with "
        "that block off, so its gap to `default` is the block's cost; `personalized` is the default with MGDSPR's "
        "personalization on (user profile, query history, behaviour sequences) and each `personalized_no_<block>` "
        "that tower with one of its blocks off. Data are featurized once before timing (arrays indexed per "
        "batch: the input path costs the `input ms/step` column, timed twice: sampling plus the batch's gathers, "
        "which the loss repeats), the rest is the model's forward, backward and optimizer.", "",
        "| scale | variant | threads | train rows | examples/s | CPU ms/example | x default | input ms/step "
        "| est. epoch (s) | parameters | peak RSS (MB) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {(r["scale"], r["threads"]): r for r in doc["results"] if r["variant"] == "default"}
    for r in doc["results"]:
        b = base.get((r["scale"], r["threads"]))
        speed = f"{r['examples_per_s'] / b['examples_per_s']:.2f}" if b else ""
        lines.append(f"| {r['scale']} | {r['variant']} | {r['threads']} | {r['train_rows']} | "
                     f"{r['examples_per_s']} | {r['cpu_ms_per_example']} | {speed} | {r['input_ms_per_step']} | "
                     f"{r['epoch_seconds_estimate']} | "
                     f"{r['parameters']:,} | {r['peak_rss_mb']} |")
    cached = {s: p["featurized_cache"] for s, p in doc.get("prepared", {}).items() if "featurized_cache" in p}
    if cached:
        lines += ["", "## Featurization cache", "",
                  "Loading the day as the trainer does (`load_training_data`: samples, doc table from the feature "
                  "store, featurization) against memory-mapping its cache entry (`ebr/train/featurized_cache.py`); "
                  "a batch's gathers (query + positive-doc tensors of 256 rows) from each.", "",
                  "| scale | featurize (s) | key (s) | write entry (s) | memory-mapped load (s) | entry (MB) "
                  "| gathers in memory (ms) | gathers mapped (ms) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for scale, c in cached.items():
            g = c["batch_gather_ms"]
            lines.append(f"| {scale} | {c['featurize_seconds']} | {c['key_seconds']} | {c['write_seconds']} | "
                         f"{c['cached_load_seconds']} | {c['entry_mb']} | {g['in_memory']} | {g['memory_mapped']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.child:
        _child(Path(args.child[0]), int(args.child[1]), args.child[2], args.steps, args.warmup)
        return 0
    import torch

    from ebr.train.two_tower_config import TwoTowerTrainConfig

    load_start = [round(x, 2) for x in os.getloadavg()]
    work_root = args.work or Path(tempfile.mkdtemp(prefix="bench-train-"))
    results, prepared = [], {}
    try:
        for scale in args.scales:
            work = work_root / scale
            work.mkdir(parents=True, exist_ok=True)
            path, sizes = prepare(scale, args.days, args.seed, work)
            prepared[scale] = sizes
            best: dict[tuple[int, str], dict] = {}
            for _ in range(args.repeats):
                for threads in args.threads:
                    for variant in args.variants:
                        cmd = [sys.executable, __file__, "--child", str(path), str(threads), variant,
                               "--steps", str(args.steps), "--warmup", str(args.warmup)]
                        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                        row = {"scale": scale, **{k: sizes[k] for k in ("train_rows", "corpus_docs")},
                               **json.loads(out.strip().splitlines()[-1])}
                        print(json.dumps(row), flush=True)
                        key = (threads, variant)
                        if key not in best or row["examples_per_s"] > best[key]["examples_per_s"]:
                            best[key] = row
            results += [best[(t, v)] for t in args.threads for v in args.variants]
    finally:
        if args.work is None:
            shutil.rmtree(work_root, ignore_errors=True)
    cfg = TwoTowerTrainConfig()
    doc = {
        "benchmark": "two_tower_training", "days": args.days, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats,
        "batch_size": cfg.train.batch_size, "prepared": prepared, "results": results,
        "config": {"model": cfg.model.model_dump(mode="json"), "loss": cfg.loss.model_dump(mode="json"),
                   "negatives": cfg.negatives.model_dump(mode="json"), "optimizer": cfg.optimizer.model_dump()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_avg": load_start,
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "train.md").write_text(_render(doc), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
