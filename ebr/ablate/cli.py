"""`ebr ablate`: the command that runs the ablation table (ebr.ablate.runner) and writes docs/ablations.md."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ebr.ablate.rows import ROW_BY_NAME

DEFAULT_OUT = Path("docs")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--seeds: {text!r} is not an integer") from e
    if value < 0:
        raise argparse.ArgumentTypeError(f"--seeds: {value} is negative")
    return value


def _cmd_ablate(args: argparse.Namespace) -> int:
    from ebr.ablate.runner import run_ablation
    from ebr.config import load_ebr_config

    cfg = load_ebr_config(args.config, args.overrides)
    out = args.out if args.out is not None else (
        Path(args.workspace) / "ablate" / "quick" if args.quick else DEFAULT_OUT)
    command = regenerate_command(args, out)
    doc = run_ablation(args.data, args.day, args.workspace, args.rows, args.seeds, out, quick=args.quick, cfg=cfg,
                       command=command)
    verdicts = {r["name"]: r.get("reproduced") for r in doc["rows"] if r["name"] != "baseline"}
    print(f"wrote {Path(out) / 'ablations.md'} and {Path(out) / 'ablations.json'}; reproduced: {verdicts}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ablate` sub-command to the `ebr` command line."""
    p = subparsers.add_parser(
        "ablate", help="train and evaluate the two-tower model with one technique changed at a time, over seeds")
    p.add_argument("--data", required=True, help="raw data root (simulated or real logs)")
    p.add_argument("--day", default="latest", help="the evaluation day D (YYYY-MM-DD or latest)")
    p.add_argument("--workspace", required=True,
                   help="workspace whose feature store and samples are reused (built there when missing)")
    p.add_argument("--rows", nargs="+", metavar="ROW",
                   help=f"rows to run (baseline always included); default: all. Rows: {', '.join(ROW_BY_NAME)}")
    p.add_argument("--seeds", nargs="+", type=_seed, help="seeds per row (default 0 1 2; with --quick 0 1)")
    p.add_argument("--quick", action="store_true",
                   help="tiny model, one epoch, baseline + one row by default: a check, not the table")
    p.add_argument("--out", type=Path, default=None,
                   help="folder of ablations.md and ablations.json (default docs/; with --quick "
                   "<workspace>/ablate/quick)")
    p.add_argument("--config", help="YAML file with config values (sections as in `ebr config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value of every row; repeatable")
    p.set_defaults(func=_cmd_ablate)


def regenerate_command(args: argparse.Namespace, out: Path) -> str:
    """The `ebr ablate` command line that reruns what `args` ran (written into the results)."""
    parts = ["ebr", "ablate", "--data", str(args.data), "--day", str(args.day), "--workspace", str(args.workspace)]
    if args.rows:
        parts += ["--rows", *args.rows]
    if args.seeds:
        parts += ["--seeds", *(str(s) for s in args.seeds)]
    if args.quick:
        parts.append("--quick")
    parts += ["--out", str(out)]
    if args.config:
        parts += ["--config", str(args.config)]
    for o in args.overrides:
        parts += ["--set", o]
    return " ".join(shlex.quote(p) for p in parts)
