"""The `ebr` command line: one sub-command per step, plus commands contributed by the pipeline and server.

Sub-commands of `pipelines` and `serving` are found through the `ebr.commands` entry points, so this
package never imports them (they import `ebr`, never the reverse). Heavy libraries load inside commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from ebr.rawfs import RawStorageError
from ebr.settings import ConfigError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with config values (sections as in `ebr config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value; repeatable")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ebr.settings import load_config
    from ebr.simulate import simulate
    from ebr.simulate.config import SimulateConfig

    overrides = list(args.overrides)
    for name in ("days", "scale", "seed", "lang", "start_date"):
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"{name}={value}")
    cfg = load_config(SimulateConfig, args.config, overrides)
    summary = simulate(args.out, cfg, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from ebr.contract import check_dataset

    report = check_dataset(args.data, args.day or None)
    print(report.render())
    return 0 if (report.ok_strict() if args.strict else report.ok) else 1


def _cmd_summarize(args: argparse.Namespace) -> int:
    from ebr.contract import check_dataset, list_days
    from ebr.contract.summary import example_requests, render_summary

    report = check_dataset(args.data, args.day or None)
    examples = []
    if report.ok:
        day = (args.day or list_days(args.data, "search_requests"))[-1]
        examples = example_requests(args.data, day, n=args.examples)
    print(render_summary(report, examples))
    return 0 if report.ok else 1


def _cmd_config(args: argparse.Namespace) -> int:
    from ebr.config import load_ebr_config

    print(load_ebr_config(args.config, args.overrides).to_yaml(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the core commands and every registered plugin command."""
    parser = argparse.ArgumentParser(prog="ebr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write simulated search logs that follow the data contract")
    p.add_argument("--out", required=True, type=Path, help="output data root")
    p.add_argument("--days", type=int, help="number of consecutive days")
    p.add_argument("--scale", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--seed", type=int)
    p.add_argument("--lang", choices=["zh", "en"])
    p.add_argument("--start-date", dest="start_date", help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    _add_config_args(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("check-data", help="check raw logs against the data contract; exit 1 on a violation")
    p.add_argument("--data", required=True,
                   help="data root: a folder or s3:// / gs:// URI (<root>/<table>/ds=YYYY-MM-DD/*.parquet)")
    p.add_argument("--day", action="append", help="check only this day (repeatable); default: all days")
    p.add_argument("--strict", action="store_true",
                   help="also fail on warnings (columns the contract ignores, files that are not parquet)")
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser("summarize", help="check the data and print tables, rows, days and example requests")
    p.add_argument("--data", required=True, help="data root: a folder or an s3:// / gs:// URI")
    p.add_argument("--day", action="append")
    p.add_argument("--examples", type=int, default=3)
    p.set_defaults(func=_cmd_summarize)

    p = sub.add_parser("config", help="print the effective configuration of a daily run as YAML")
    _add_config_args(p)
    p.set_defaults(func=_cmd_config)

    for ep in sorted(entry_points(group="ebr.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ebr` console script; errors of input or config exit 2 with the message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, RawStorageError) as e:
        print(f"ebr {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
