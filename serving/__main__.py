"""`python -m serving serve ...`: the `ebr serve` command without the console script."""

from __future__ import annotations

import argparse
import sys

from serving.cli import register


def main(argv: list[str] | None = None) -> int:
    """Parse `serve` arguments and run the server."""
    parser = argparse.ArgumentParser(prog="python -m serving")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
