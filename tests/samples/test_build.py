"""build_samples as a step: determinism, no look-ahead, clear errors, atomic output."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ebr.contract import TABLES, list_days, load
from ebr.samples import SamplesConfig, build_samples, training_days
from ebr.samples.positives import relevance_mismatch

from .conftest import encode_queries


def _bytes(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def test_same_seed_same_bytes_other_seed_other_draws(built, tiny_data, eval_day, full_cfg, prev_index, tmp_path):
    again = tmp_path / "again"
    build_samples(tiny_data, eval_day, again, full_cfg, prev_index=prev_index, encode_queries=encode_queries)
    assert _bytes(again) == _bytes(built[0])
    assert (again / "manifest.json").read_bytes() == (built[0] / "manifest.json").read_bytes()
    other = tmp_path / "other"
    cfg = full_cfg.model_copy(update={"seed": full_cfg.seed + 1})
    build_samples(tiny_data, eval_day, other, cfg, prev_index=prev_index, encode_queries=encode_queries)
    a, b = _bytes(built[0]), _bytes(other)
    assert a["retrieval.parquet"] != b["retrieval.parquet"]  # hard positives are drawn
    assert a["ranking.parquet"] != b["ranking.parquet"] and a["hard_negatives.parquet"] != b["hard_negatives.parquet"]
    assert a["negatives.parquet"] == b["negatives.parquet"]  # the table itself is not random


@pytest.mark.parametrize("which", [-1, 3])
def test_no_look_ahead(tiny_data, tiny_days, full_cfg, prev_index, tmp_path, which):
    """Deleting every partition of day D and later (keeping D's requests so the day exists) changes nothing:
    samples for D read only days before D."""
    day = tiny_days[which]
    full = tmp_path / "full"
    build_samples(tiny_data, day, full, full_cfg, prev_index=prev_index, encode_queries=encode_queries)
    cut = tmp_path / "data"
    shutil.copytree(tiny_data, cut)
    removed = 0
    for table in TABLES:
        for d in list_days(cut, table):
            if d >= day and not (table == "search_requests" and d == day):
                shutil.rmtree(cut / table / f"ds={d}")
                removed += 1
    assert removed > 0
    out = tmp_path / "out"
    build_samples(cut, day, out, full_cfg, prev_index=prev_index, encode_queries=encode_queries)
    assert _bytes(out) == _bytes(full)


def test_earlier_day_window(tiny_data, tiny_days, tmp_path):
    day = tiny_days[3]
    m = build_samples(tiny_data, day, tmp_path / "o", SamplesConfig(days_back=2))
    want = [(date.fromisoformat(day) - timedelta(days=i)).isoformat() for i in (2, 1)]
    assert m["train_days"] == want and m["tables"]["hard_negatives"]["rows"] == 0
    assert any("no previous index" in n for n in m["notes"])
    assert "exposed_unclicked" not in m["tables"] and not (tmp_path / "o" / "exposed_unclicked.parquet").exists()


def test_rewrites_skipped_without_dictionary_or_read_from_config(tiny_data, eval_day, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("_meta"))
    m = build_samples(data, eval_day, tmp_path / "a", SamplesConfig())
    assert m["tables"]["rewrites"]["rows"] == 0 and set(m["positives"]) == {"click"}
    assert any("rewrite" in n for n in m["notes"])
    cfg = SamplesConfig(rewrites={"dictionary_dir": str(tiny_data / "_meta")})
    m2 = build_samples(data, eval_day, tmp_path / "b", cfg)
    assert m2["tables"]["rewrites"]["rows"] > 0 and m2["positives"]["hard_positive"] > 0


def test_bad_inputs_are_clear_errors(tiny_data, tiny_days, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"day 2031-01-01 has no partition .*search_requests"):
        build_samples(tiny_data, "2031-01-01", out, SamplesConfig())
    with pytest.raises(ValueError, match="not a YYYY-MM-DD day"):
        build_samples(tiny_data, "06/11/2026", out, SamplesConfig())
    with pytest.raises(ValidationError, match="days_back"):
        SamplesConfig(days_back=0)
    with pytest.raises(ValueError, match=r"days_back \(k\) must be an integer >= 1"):
        training_days(tiny_data, tiny_days[-1], 0)
    with pytest.raises(ValueError, match="no training day before"):
        build_samples(tiny_data, tiny_days[0], out, SamplesConfig())
    with pytest.raises(FileNotFoundError, match="data root"):
        build_samples(tmp_path / "nowhere", tiny_days[-1], out, SamplesConfig())
    with pytest.raises(ValueError, match="encode_queries is None"):
        build_samples(tiny_data, tiny_days[-1], out, SamplesConfig(), prev_index=object())
    with pytest.raises(ValueError, match="min_dwell_ms"):
        SamplesConfig(positives={"min_dwell_ms": -1})
    assert not out.exists()


def test_output_is_replaced_atomically(tiny_data, tiny_days, prev_index, tmp_path):
    out = tmp_path / "out"
    first = build_samples(tiny_data, tiny_days[-1], out, SamplesConfig(days_back=2))
    before = _bytes(out)

    def broken(frame):
        return np.zeros((len(frame) + 1, 8), dtype="float32")

    with pytest.raises(ValueError, match="encode_queries returned shape"):
        build_samples(tiny_data, tiny_days[-1], out, SamplesConfig(days_back=3), prev_index=prev_index,
                      encode_queries=broken)
    assert _bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert first["day_range"][0] == tiny_days[-3]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not samples", encoding="utf-8")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        build_samples(tiny_data, tiny_days[-1], foreign, SamplesConfig(days_back=2))
    assert (foreign / "keep.txt").read_text(encoding="utf-8") == "not samples"


def test_hard_negative_relevance_filter_mines_only_off_understanding_docs(tiny_data, eval_day, full_cfg, prev_index,
                                                                         tmp_path):
    cfg = full_cfg.model_copy(update={
        "hard_negatives": full_cfg.hard_negatives.model_copy(update={"relevance_filter": "control"})})
    out = tmp_path / "filtered"
    manifest = build_samples(tiny_data, eval_day, out, cfg, prev_index=prev_index, encode_queries=encode_queries)
    hard = pd.read_parquet(out / "hard_negatives.parquet")
    docs = load(tiny_data, "docs").drop_duplicates("doc_id", keep="last")
    assert len(hard) > 0 and relevance_mismatch(hard, docs).all()
    note = next(n for n in manifest["notes"] if n.startswith("hard-negative relevance filter (control)"))
    assert int(note.split("): ")[1].split(" ")[0]) > 0
