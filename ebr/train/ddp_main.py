"""Train the two-tower model with data-parallel ranks: the entry point `torchrun` starts once per rank.

    torchrun --nproc_per_node 2 -m ebr.train.ddp_main \\
        --samples WS/samples --features WS/features --out WS/model [--config FILE] [--set train.epochs=2]

Rank 0 featurizes the day once into the featurization cache (`ebr.train.featurized_cache`, `data.cache_dir`; by
default `featurized/` beside `--out`) and the other ranks memory-map it; every rank trains on its shard of each
epoch (`ebr.train.distributed`); rank 0 validates, writes the model directory (the same files as
`train_two_tower`), tracks the run in MLflow and prints the result as JSON. Started without torchrun it trains in
one process, exactly as `train_two_tower`.
`--config` takes the two-tower section alone (`model:`, `train:`, ...) or a whole daily-run config (its
`two_tower:` section is used); `--set` overrides fields of the two-tower section.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ebr.settings import ConfigError, load_config
from ebr.train.distributed import BACKENDS, DEFAULT_TIMEOUT_S, DistributedSetupError, process_group
from ebr.train.two_tower_config import TwoTowerTrainConfig

log = logging.getLogger(__name__)


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TwoTowerTrainConfig:
    """The two-tower config of a YAML file (the section alone, or a daily-run config's `two_tower:`) + overrides."""
    import yaml

    whole = False
    if path is not None and Path(path).is_file():
        try:
            tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
        whole = isinstance(tree, dict) and "two_tower" in tree
    if whole:
        return load_config(TwoTowerTrainConfig, path, overrides, section="two_tower")
    return load_config(TwoTowerTrainConfig, path, overrides)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the entry point."""
    p = argparse.ArgumentParser(prog="python -m ebr.train.ddp_main", description=__doc__.splitlines()[0])
    p.add_argument("--samples", required=True, type=Path, help="samples directory of day D (build_samples)")
    p.add_argument("--features", required=True, type=Path, help="feature repository of day D (build_features)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write (rank 0)")
    p.add_argument("--config", help="YAML: the two-tower section, or a daily-run config with `two_tower:`")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one field of the two-tower section (e.g. train.epochs=2); repeatable")
    p.add_argument("--warm-start", type=Path, help="previous model directory whose matching weights start the model")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="process-group backend; auto = gloo (the trainer's batches are CPU tensors)")
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds a collective may wait for a rank before the job fails")
    p.add_argument("--result", type=Path, help="also write rank 0's result JSON to this file")
    p.add_argument("--record-rows", type=Path,
                   help="debug: rank 0 writes the epoch-order positions and row indices every rank trained on")
    return p


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("model_dir", "export_dir", "model_version", "registered_version", "mlflow_run_id", "metrics", "summary",
            "notes")
    return {k: result[k] for k in keep if k in result}


def _write_json(path: Path, obj: Any) -> None:
    from ebr.train.tracking import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """Train under the launch environment's process group; rank 0's result, None on the other ranks."""
    from ebr.train.two_tower import train_two_tower

    cfg = load_train_config(args.config, args.overrides)
    with process_group(args.backend, args.timeout_s) as ctx:
        result = train_two_tower(args.samples, args.features, args.out, cfg, warm_start=args.warm_start,
                                 record_rows=args.record_rows is not None)
        if not ctx.is_main:
            return None
    out = _summary(result)
    if args.record_rows is not None:
        _write_json(args.record_rows, {"world_size": ctx.world_size, "ranks": result["trained_rows"]})
    if args.result is not None:
        _write_json(args.result, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors of input or config exit 2 with the message."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except (ConfigError, DistributedSetupError, ValueError, FileNotFoundError) as e:
        print(f"ebr.train.ddp_main: error: {e}", file=sys.stderr)
        return 2
    if out is not None:
        print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
