"""Feast imported through ebr skips typeguard's import-time instrumentation of its own classes only; every other
`@typechecked` still checks, and `EBR_FEAST_TYPECHECKS=1` keeps Feast's checks. Fresh processes: the hook acts
before Feast's first import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys
import typeguard
import ebr.features
assert "feast" not in sys.modules, "importing ebr.features must not import Feast"
import feast

@typeguard.typechecked
def square(x: int) -> int:
    return x * x

try:
    square("3")
    others_checked = False
except typeguard.TypeCheckError:
    others_checked = True
try:
    feast.Entity(name=123, join_keys=["user_id"])
    feast_checked = False
except (typeguard.TypeCheckError, TypeError):
    feast_checked = True
print(json.dumps({"feast_instrumented": "typeguard" in feast.Entity.__init__.__code__.co_names,
                  "feast_checked": feast_checked, "others_checked": others_checked}))
"""


def _probe(script: Path, **env: str) -> dict:
    script.write_text(PROBE, encoding="utf-8")  # a file: typeguard instruments from the source
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("env", "feast_checked"), [({}, False), ({"EBR_FEAST_TYPECHECKS": "1"}, True)])
def test_only_feasts_own_run_time_type_checks_are_skipped(env: dict, feast_checked: bool, tmp_path: Path):
    got = _probe(tmp_path / "probe.py", **{"EBR_FEAST_TYPECHECKS": "", **env})
    assert got == {"feast_instrumented": feast_checked, "feast_checked": feast_checked, "others_checked": True}
