"""Feast without typeguard's import-time instrumentation: half of Feast's import, paid by every process that
touches the store (each pipeline step, the server at start, each test process).

Feast decorates its classes with typeguard's `@typechecked`, which re-reads and re-compiles each class's source
when Feast is imported: 2.2 s of a 4.1 s `import feast` on a 2-core machine (`make bench-imports`). typeguard
itself turns the decorator into a no-op under `python -O`, its checks "not meant to be run in production"; this
does the same for Feast's classes only (every other module's `@typechecked` is untouched). Feast then behaves the
same for well-typed arguments: ours come from `ebr.features.definitions` and are applied through Feast in the
tests. Set `EBR_FEAST_TYPECHECKS=1` to keep Feast's run-time argument checks (e.g. while writing new views).
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV = "EBR_FEAST_TYPECHECKS"
_MARK = "_ebr_feast_unchecked"


def install() -> bool:
    """Make `@typechecked` a no-op for Feast's classes and functions before Feast is imported; True when it is
    (installed now or before), False when Feast is already imported, typeguard is absent or `$EBR_FEAST_TYPECHECKS`
    asks for the checks."""
    if os.environ.get(ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        import typeguard
    except ImportError:
        return False
    if getattr(typeguard.typechecked, _MARK, False):
        return True
    if "feast" in sys.modules:
        return False
    checked = typeguard.typechecked

    def typechecked(target: Any = None, **options: Any) -> Any:
        if target is None:  # used as @typechecked(...): decide when the target arrives
            return lambda t: typechecked(t, **options)
        if str(getattr(target, "__module__", "")).split(".")[0] == "feast":
            return target
        return checked(target, **options)

    setattr(typechecked, _MARK, True)
    typechecked.__wrapped__ = checked  # type: ignore[attr-defined]
    typeguard.typechecked = typechecked
    return True
