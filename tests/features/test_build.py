"""build_features: backfill, idempotent re-runs, clear errors and no partial output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebr.contract import ContractError
from ebr.contract.schema import TABLES
from ebr.features import FeaturesConfig, build_features
from ebr.features.definitions import VIEWS
from ebr.features.partitions import built_days


def _tables(out: Path) -> dict[str, pa.Table]:
    return {str(p.relative_to(out)): pq.read_table(p) for p in sorted((out / "tables").rglob("*.parquet"))}


def test_first_build_backfills_every_day_and_reports_each_view(built, tiny_days):
    out, result = built
    assert result["built_days"] == tiny_days
    assert built_days(out) == tiny_days
    assert set(result["views"]) == {v.name for v in VIEWS}
    for name, info in result["views"].items():
        assert Path(info["path"]).is_file()
        assert pq.read_metadata(info["path"]).num_rows == info["rows"], name
    assert result["views"]["doc_stats"]["rows"] > 0 and result["views"]["user_realtime"]["rows"] > 0
    assert result["materialized"]["start"].startswith(tiny_days[0])


@pytest.fixture(scope="module")
def two_days(tiny_data, tiny_days, tmp_path_factory) -> Path:
    """The first two tiny days only (a smaller copy to rebuild)."""
    root = tmp_path_factory.mktemp("two") / "data"
    for table in TABLES:
        for day in tiny_days[:2]:
            src = tiny_data / table / f"ds={day}"
            if src.is_dir():
                shutil.copytree(src, root / table / f"ds={day}")
    return root


def test_rerun_rewrites_exactly_the_same_day(two_days, tiny_days, tmp_path):
    from ebr.features import online_features, open_store

    out = tmp_path / "feat"
    day = tiny_days[1]
    first = build_features(two_days, day, out)
    before, online_before = _tables(out), online_features(open_store(out), user_id=1)
    assert online_before["user_gender"] is not None and online_before["user_searches_30d"] is not None
    second = build_features(two_days, day, out)
    assert first["built_days"] == tiny_days[:2] and second["built_days"] == [day]
    after = _tables(out)
    assert list(after) == list(before)
    for path, table in before.items():
        assert table.equals(after[path]), path
    assert online_features(open_store(out), user_id=1) == online_before
    assert not any(p.name.startswith(".") for p in (out / "tables").rglob("*"))


def test_config_change_rebuilds_history(two_days, tiny_days, tmp_path):
    out = tmp_path / "feat"
    build_features(two_days, tiny_days[1], out, FeaturesConfig(materialize=False))
    again = build_features(two_days, tiny_days[1], out, FeaturesConfig(materialize=False, realtime_max_len=5))
    assert again["built_days"] == tiny_days[:2]


@pytest.mark.parametrize(
    ("day", "error", "message"),
    [("2026-13-01", ValueError, "day: '2026-13-01' is not a YYYY-MM-DD day"),
     ("2020-01-01", ValueError, "day 2020-01-01 has no partition in")],
)  # fmt: skip
def test_bad_day_is_named(two_days, tmp_path, day, error, message):
    with pytest.raises(error, match=message):
        build_features(two_days, day, tmp_path / "feat", FeaturesConfig(materialize=False))
    assert not (tmp_path / "feat" / "tables").exists()


def test_missing_data_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_root"):
        build_features(tmp_path / "nowhere", "2026-11-01", tmp_path / "feat")


def test_bad_input_data_writes_nothing(two_days, tiny_days, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(two_days, root)
    bad = root / "user_events" / f"ds={tiny_days[1]}" / "bad.parquet"
    row = dict(user_id=1, doc_id=1, event_type="teleport", source="feed",
               event_timestamp=pq.read_table(next(bad.parent.glob("*.parquet"))).column("event_timestamp")[0].as_py())
    pq.write_table(pa.Table.from_pylist([row], schema=TABLES["user_events"].schema), bad)
    with pytest.raises(ContractError, match="event_type"):
        build_features(root, tiny_days[1], tmp_path / "feat", FeaturesConfig(materialize=False))
    assert not (tmp_path / "feat" / "tables").exists() and built_days(tmp_path / "feat") == []
