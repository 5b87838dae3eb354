"""Compile the daily DAG to YAML (the committed pipelines/daily.yaml is checked against a fresh compile)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PACKAGE = Path(__file__).with_name("daily.yaml")


def compile_daily(out: str | Path = DEFAULT_PACKAGE) -> Path:
    """Compile `pipelines.daily.daily` into `out`; returns the path."""
    from kfp import compiler

    from pipelines.daily import daily

    out = Path(out)
    compiler.Compiler().compile(daily, str(out))
    return out
