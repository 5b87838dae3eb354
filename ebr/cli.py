"""The `ebr` command line: one sub-command per step, plus commands contributed by the pipeline and server.

Sub-commands of `pipelines` and `serving` are found through the `ebr.commands` entry points, so this
package never imports them (they import `ebr`, never the reverse). Heavy libraries load inside commands. A
plugin whose package or dependencies are not installed (an install without its extra, e.g. the server image
without the pipeline) is left out; calling it names the extra that installs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from ebr.rawfs import RawStorageError
from ebr.settings import ConfigError

log = logging.getLogger(__name__)

PLUGINS = "ebr.commands"
# The pyproject.toml extra that installs what each plugin command needs.
PLUGIN_EXTRAS = {"pipeline": "pipeline", "serve": "serve"}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with config values (sections as in `ebr config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value; repeatable")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ebr.settings import load_config
    from ebr.simulate import simulate
    from ebr.simulate.config import SimulateConfig

    overrides = list(args.overrides)
    for name in ("days", "scale", "seed", "lang", "start_date", "profile"):
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
    p.add_argument("--profile", choices=["default", "marketplace"],
                   help="kind of logs: default, or marketplace (stronger position bias, 3x impressions per request, "
                        "synonym-heavy queries)")
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

    plugins = _plugins()
    own = _own_packages(plugins)
    for ep in plugins:
        try:
            ep.load()(sub)  # the plugin's modules (and what they import at module level) load here
        except ModuleNotFoundError as e:
            if not _dependency_missing(e, own):
                raise
            log.debug("ebr %s left out: %s (%s)", ep.name, e, needs_extra(ep.name))
            if ep.name not in sub.choices:
                _add_unavailable(sub, ep.name)
    return parser


def needs_extra(command: str) -> str:
    """What to install for a plugin command whose modules are missing."""
    extra = PLUGIN_EXTRAS.get(command, command)
    return f"ebr {command} needs the {extra} extra: pip install 'ebr[{extra}]'"


def _own_packages(plugins: list[EntryPoint]) -> set[str]:
    """The project's top-level packages: `ebr` and those the plugins live in."""
    return {"ebr"} | {ep.module.partition(".")[0] for ep in plugins}


def _dependency_missing(e: ModuleNotFoundError, own: set[str]) -> bool:
    """Whether `e` means something optional is not installed (another distribution's module, or a whole plugin
    package) rather than a module missing inside a package that is there (a bug, re-raised)."""
    name = e.name or ""
    return bool(name) and (name in own or name.partition(".")[0] not in own)


def _unavailable(args: argparse.Namespace) -> int:
    print(needs_extra(args.command), file=sys.stderr)
    return 2


def _add_unavailable(sub: argparse._SubParsersAction, name: str) -> None:
    """A stand-in for a plugin command that could not load: it takes any arguments and names its extra."""
    p = sub.add_parser(name, help=f"(not installed) {needs_extra(name)}", add_help=False)
    p.set_defaults(func=_unavailable, any_arguments=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ebr` console script; errors of input or config exit 2 with the message, as does a
    plugin command whose extra is not installed."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, RawStorageError) as e:
        print(f"ebr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if args.command not in PLUGIN_EXTRAS or not _dependency_missing(e, _own_packages(_plugins())):
            raise
        print(f"{needs_extra(args.command)} ({e})", file=sys.stderr)
        return 2


def _plugins() -> list[EntryPoint]:
    return sorted(entry_points(group=PLUGINS), key=lambda e: e.name)


if __name__ == "__main__":
    sys.exit(main())
