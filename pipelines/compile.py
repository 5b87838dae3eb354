"""Compile the daily DAG to YAML (the committed pipelines/daily.yaml is checked against a fresh compile)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PACKAGE = Path(__file__).with_name("daily.yaml")
SCHEDULED_PACKAGE = Path(__file__).with_name("daily_scheduled.yaml")


def compile_daily(out: str | Path = DEFAULT_PACKAGE, scheduled: bool = False) -> Path:
    """Compile the daily DAG (or, with `scheduled`, its recurring-run wrapper) into `out`; returns the path."""
    from kfp import compiler

    from pipelines.daily import daily, daily_scheduled

    out = Path(out)
    compiler.Compiler().compile(daily_scheduled if scheduled else daily, str(out))
    return out
