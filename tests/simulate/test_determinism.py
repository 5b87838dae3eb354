"""Same config and seed give byte-identical files; another seed gives other data."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ebr.simulate import SimulateConfig, simulate


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_bytes(tmp_path):
    cfg = SimulateConfig(scale="tiny", days=2, seed=42)
    simulate(tmp_path / "a", cfg, progress=False)
    simulate(tmp_path / "b", cfg, progress=False)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) == 7 * 2 + 4
    assert a == b


def test_other_seed_gives_other_data(tmp_path):
    simulate(tmp_path / "a", SimulateConfig(scale="tiny", days=1, seed=1), progress=False)
    simulate(tmp_path / "b", SimulateConfig(scale="tiny", days=1, seed=2), progress=False)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a.keys() == b.keys()
    assert a["impressions/ds=2026-11-01/part-00000.parquet"] != b["impressions/ds=2026-11-01/part-00000.parquet"]
    assert a["docs/ds=2026-11-01/part-00000.parquet"] != b["docs/ds=2026-11-01/part-00000.parquet"]


def test_earlier_days_do_not_depend_on_the_number_of_days(tmp_path):
    simulate(tmp_path / "short", SimulateConfig(scale="tiny", days=1, seed=9), progress=False)
    simulate(tmp_path / "long", SimulateConfig(scale="tiny", days=2, seed=9), progress=False)
    short, long_ = _digests(tmp_path / "short"), _digests(tmp_path / "long")
    day1 = [k for k in short if "ds=2026-11-01" in k]
    assert len(day1) == 7 and all(short[k] == long_[k] for k in day1)
