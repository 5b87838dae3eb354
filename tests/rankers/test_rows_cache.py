"""The rankers' training-rows cache: the second load of a day's rows reads the entry the first wrote (the same
frames, list cells still lists) instead of joining through the feature store again; changed samples give another
entry; a broken entry is rebuilt, never used."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from ebr.models.rankers.rows import load_training_rows
from ebr.train import ranking_rows_cache as cache


def _equal(a, b) -> None:
    for name in cache.FRAMES:
        left, right = getattr(a, name), getattr(b, name)
        pd.testing.assert_frame_equal(left, right)
        for c in left.columns:
            if left[c].dtype == object:
                assert [type(v) for v in left[c]] == [type(v) for v in right[c]], (name, c)
    assert (a.feature_source, a.notes) == (b.feature_source, b.notes)


def test_the_second_load_reads_the_entry_the_first_wrote(samples_dir, features_dir, rows, tmp_path, monkeypatch):
    first, entry = cache.training_rows(samples_dir, features_dir, tmp_path)
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == [entry]
    assert (entry / cache.MANIFEST).is_file()
    _equal(first, rows)

    def no_join(*args, **kwargs):
        raise AssertionError("joined again instead of reading the cache")

    monkeypatch.setattr(cache, "load_training_rows", no_join)
    again, _ = cache.training_rows(samples_dir, features_dir, tmp_path)
    _equal(again, rows)
    assert any(isinstance(v, list) and v for v in again.docs["tags"]), "list cells come back as lists"


def _joins(monkeypatch, rows) -> list[str]:
    """Stand in for the join (tested above) with the joined rows; returns the list of samples dirs it joined."""
    calls: list[str] = []

    def join(samples, features):
        calls.append(str(samples))
        return rows

    assert cache.load_training_rows is load_training_rows
    monkeypatch.setattr(cache, "load_training_rows", join)
    return calls


def test_changed_samples_are_another_entry_and_old_ones_are_pruned(samples_dir, features_dir, rows, tmp_path,
                                                                   monkeypatch):
    joins = _joins(monkeypatch, rows)
    copy = tmp_path / "samples"
    shutil.copytree(samples_dir, copy)
    root = tmp_path / "cache"
    cache.training_rows(copy, features_dir, root)
    table = next(copy.glob("ranking*.parquet"))
    table.write_bytes(table.read_bytes())  # rewritten: another mtime, as a rebuilt samples step leaves it
    key_before = {p.name for p in root.iterdir()}
    cache.training_rows(copy, features_dir, root)
    entries = {p.name for p in root.iterdir()}
    assert len(entries) == 2 and key_before < entries and len(joins) == 2
    table.write_bytes(table.read_bytes())
    cache.training_rows(copy, features_dir, root)
    assert len(joins) == 3 and len(list(root.iterdir())) == cache.KEEP == 2


def test_a_broken_entry_is_rebuilt_not_used(samples_dir, features_dir, rows, tmp_path, monkeypatch):
    joins = _joins(monkeypatch, rows)
    cache.training_rows(samples_dir, features_dir, tmp_path)
    (entry,) = list(tmp_path.iterdir())
    (entry / "docs.parquet").write_bytes(b"truncated")
    _equal(cache.training_rows(samples_dir, features_dir, tmp_path)[0], rows)
    assert len(joins) == 2, "joined again instead of using the broken entry"
    _equal(cache.read_rows(entry, entry.name), rows)  # rewritten whole
    with pytest.raises(ValueError, match="another key"):
        cache.read_rows(entry, "0" * 24)


def test_without_a_cache_directory_nothing_is_written(samples_dir, features_dir, rows, tmp_path, monkeypatch):
    joins = _joins(monkeypatch, rows)
    monkeypatch.chdir(tmp_path)
    got, entry = cache.training_rows(samples_dir, features_dir, None)
    _equal(got, rows)
    assert entry is None
    assert list(tmp_path.iterdir()) == [] and len(joins) == 1


def test_cross_features_of_all_pairs_sliced_per_split_equal_the_splits_own(rows):
    import numpy as np

    from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES
    from ebr.models.rankers.tensors import rows_cross_features
    from ebr.train.rankers import split_requests

    names = list(CROSS_FEATURE_NAMES)
    full = cache.training_cross(rows, None, names)  # no cache entry: computed
    for split in split_requests(rows, 0.3):
        own = rows_cross_features(rows.select_requests(split), names)
        np.testing.assert_array_equal(full[rows.pair_positions(split)], own)


def test_cross_features_are_stored_beside_the_rows_and_read_back(samples_dir, features_dir, rows, tmp_path,
                                                                 monkeypatch):
    import numpy as np

    from ebr.models.rankers import tensors

    names = ["qd_shared_words", "qd_category_match"]
    got = cache.training_cross(rows, None, names)
    assert got.shape == (len(rows.pairs), 2) and got.dtype == np.float32
    _joins(monkeypatch, rows)
    cached_rows, entry = cache.training_rows(samples_dir, features_dir, tmp_path)
    assert not list(entry.glob("cross-*.npy")), "the rows alone: no cross features stored yet"
    first = cache.training_cross(cached_rows, entry, names)
    (stored,) = tmp_path.glob("*/cross-*.npy")
    monkeypatch.setattr(tensors, "rows_cross_features", lambda *a, **k: pytest.fail("recomputed"))
    np.testing.assert_array_equal(cache.training_cross(cached_rows, entry, names),
                                  first)
    np.save(stored, np.zeros((3, 2), dtype=np.float32))  # not these rows' shape: recomputed, not used
    monkeypatch.undo()
    np.testing.assert_array_equal(cache.training_cross(cached_rows, entry, names),
                                  got)
