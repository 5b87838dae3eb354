"""Compile the daily DAG to YAML (the committed pipelines/daily.yaml is checked against a fresh compile)."""

from __future__ import annotations

from pathlib import Path

from ebr.images import COMPONENT_IMAGE
from pipelines.cluster import ClusterOptions

DEFAULT_PACKAGE = Path(__file__).with_name("daily.yaml")
SCHEDULED_PACKAGE = Path(__file__).with_name("daily_scheduled.yaml")


def compile_daily(out: str | Path = DEFAULT_PACKAGE, scheduled: bool = False,
                  opts: ClusterOptions | None = None) -> Path:
    """Compile the daily DAG (or, with `scheduled`, its recurring-run wrapper) placed with `opts` (default: the
    committed placement: PVC `ebr-workspace` at /mnt/ebr, Secret `ebr-credentials`) into `out`; returns the path.

    `opts.image` replaces the components' base image in the compiled YAML (the image you pushed)."""
    from kfp import compiler

    from pipelines.daily import build

    opts = opts or ClusterOptions()
    daily, daily_scheduled = build(opts)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    compiler.Compiler().compile(daily_scheduled if scheduled else daily, str(tmp))
    if opts.image != COMPONENT_IMAGE:
        text = tmp.read_text(encoding="utf-8")
        tmp.write_text(text.replace(f"image: {COMPONENT_IMAGE}\n", f"image: {opts.image}\n"), encoding="utf-8")
    tmp.replace(out)
    return out
