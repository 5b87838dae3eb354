"""Thread pools sized to the container's CPU quota (ebr/cpu_limit.py), on cgroup files written to a temp dir (a
real pod's limit cannot be set here), and the step record that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ebr.cpu_limit import THREAD_ENV, cgroup_cpu_limit, size_thread_pools


def _v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def _v1(root: Path, quota: str, period: str, sub: str = "cpu,cpuacct") -> Path:
    d = root / sub
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text(quota)
    (d / "cpu.cfs_period_us").write_text(period)
    return root


@pytest.mark.parametrize("make, want", [
    (lambda r: _v2(r, "800000 100000\n"), 8.0),
    (lambda r: _v2(r, "250000 100000\n"), 2.5),
    (lambda r: _v2(r, "max 100000\n"), None),
    (lambda r: _v1(r, "400000\n", "100000\n"), 4.0),
    (lambda r: _v1(r, "150000\n", "100000\n", sub="cpu"), 1.5),
    (lambda r: _v1(r, "-1\n", "100000\n"), None),
    (lambda r: _v2(r, "garbage\n"), None),
    (lambda r: r, None),  # no cgroup files at all (not Linux, or not mounted)
])  # fmt: skip
def test_the_quota_is_read_from_cgroup_v2_or_v1(tmp_path, make, want):
    root = tmp_path / "cgroup"
    root.mkdir()
    assert cgroup_cpu_limit(make(root)) == want


def test_pools_get_the_quotas_whole_cpus_unless_something_set_them(tmp_path):
    root = _v2(tmp_path, "250000 100000")
    env: dict[str, str] = {}
    assert size_thread_pools(root, env, cores=64) == dict.fromkeys(THREAD_ENV, "2") == env
    # a value set by the user, the image or the local runner wins, and nothing else is added
    env = {"OMP_NUM_THREADS": "3"}
    assert size_thread_pools(root, env, cores=64) == {} and env == {"OMP_NUM_THREADS": "3"}
    # a quota at or above the visible cores, or none: the libraries' own default is right
    assert size_thread_pools(root, {}, cores=2) == {}
    assert size_thread_pools(_v2(tmp_path / "u", "max 100000"), {}, cores=64) == {}
    # below one CPU still runs one thread
    assert size_thread_pools(_v2(tmp_path / "small", "50000 100000"), {}, cores=64)["OMP_NUM_THREADS"] == "1"


def test_the_step_record_says_which_thread_count_the_cpu_limit_set(tmp_path, monkeypatch):
    from components import runtime

    for pools, want in ((dict.fromkeys(THREAD_ENV, "4"), 4), ({}, None)):
        monkeypatch.setattr(runtime, "THREAD_POOLS", pools)
        with runtime.step("build_index", str(tmp_path / "ws"), "2026-11-08", "{}"):
            pass
        record = json.loads((tmp_path / "ws" / "reports" / "2026-11-08" / "steps" / "build_index.json").read_text())
        assert record["status"] == "ok" and record.get("threads_from_cpu_limit") == want
