"""bench/bench_scale.py turns per-scale DAG runs into the growth table: step order, ratios, the memory budget and
the index manifest it reports (the DAG runs themselves are `make bench-scale`, too long for the suite)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_DIR = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(_DIR))
_SPEC = importlib.util.spec_from_file_location("bench_scale", _DIR / "bench_scale.py")
bench_scale = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_scale)


def _step(wall: float, rss: float) -> dict:
    return {"wall_s": wall, "cpu_s": wall, "peak_rss_mb": rss, "n": 1}


def test_growth_ratios_budget_and_step_order():
    doc = {"days": 8, "seed": 7, "budget_gib": 8.0,
           "machine": {"cpus": 2, "python": "3.11", "load_start": [0, 0, 0], "load_end": [0, 0, 0]},
           "results": [
               {"scale": "small", "docs": 21_400, "tables": {"search_requests": 48_000}, "dag_wall_s": 670.0,
                "returncode": 0, "steps": {"train-two-tower": _step(100.0, 2000), "build-samples": _step(20.0, 1700)}},
               {"scale": "medium", "docs": 107_000, "tables": {"search_requests": 240_000}, "dag_wall_s": 1600.0,
                "returncode": 0, "steps": {"train-two-tower": _step(400.0, 9000), "build-samples": _step(90.0, 5000)},
                "index": {"factory": "IVF2048,Flat", "n": 107_000, "ann_recall": 0.96, "tuned_on": "queries"},
                "gate": {"publish": True, "reason": "first run"}},
           ]}  # fmt: skip
    md = bench_scale.render(doc)
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    # steps follow the DAG's order (RESOURCES), samples before training; the ratio is medium/small wall time
    assert md.index("\n| build-samples |") < md.index("\n| train-two-tower |")
    assert rows["train-two-tower"].rstrip(" |").endswith("4.0x") and rows["build-samples"].rstrip(" |").endswith("4.5x")
    # 9000 MiB is over the 8 GiB budget at medium only; requests per day = requests / days
    assert rows["small"].endswith("| none |") and "train-two-tower" in rows["medium"]
    assert "| 30,000 |" in rows["medium"]
    assert "IVF2048,Flat" in md and "tuned on queries" in md and "published" in md


def test_index_manifest_is_the_newest_with_recall(tmp_path: Path):
    old, new = tmp_path / "kfp" / "a" / "manifest.json", tmp_path / "kfp" / "b" / "manifest.json"
    for path, recall in ((old, 0.5), (new, 0.97)):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"factory": "IVF8,Flat", "ann_recall": recall, "n": 10, "other": 1}))
    (tmp_path / "kfp" / "model.json").write_text("{}")
    import os

    os.utime(old, (1, 1))
    got = bench_scale.index_manifest(tmp_path)
    assert got == {"n": 10, "factory": "IVF8,Flat", "ann_recall": 0.97}
    assert bench_scale.index_manifest(tmp_path / "nothing") is None
