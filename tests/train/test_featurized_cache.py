"""The featurization cache (ebr/train/featurized_cache.py): a cached load equals a fresh featurization array for
array, trains to the same weights, is keyed by what the arrays depend on, is rebuilt when damaged, and under DDP
rank 0 alone builds it while the other ranks map it."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ebr.train.featurized_cache import (
    MANIFEST,
    CacheInvalid,
    cache_key,
    features_identity,
    featurized_arrays,
    load_or_build,
    prune,
    read_featurized,
    training_data,
)
from ebr.train.retrieval_data import TrainingData, load_training_data
from tests.train.test_two_tower_pipeline import pipe, tiny_config  # noqa: F401

LOGGER = "ebr.train.featurized_cache"


def assert_same_data(got: TrainingData, want: TrainingData) -> None:
    """Every array of `got` equals `want`'s: names, dtypes, shapes and values, exactly; and the rest of the data."""
    a, layout_a = featurized_arrays(got)
    b, layout_b = featurized_arrays(want)
    assert layout_a == layout_b and list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name
    assert (got.day, got.train_days, got.counts) == (want.day, want.train_days, want.counts)
    assert got.valid.clicked == want.valid.clicked
    for split in ("hard", "exposed"):
        g, w = getattr(got, split), getattr(want, split)
        assert (g is None) == (w is None) and (g is None or len(g) == len(w)), split
        assert g is None or all(np.array_equal(x, y) for x, y in zip(g, w, strict=True)), split
    for g, w in ((got.train, want.train), (got.valid.rows, want.valid.rows)):
        cols = list(g.frame.columns)
        assert {"request_id", "doc_id", "kind", "event_timestamp"} <= set(cols)
        assert g.frame.equals(w.frame[cols].reset_index(drop=True))


@pytest.mark.slow
def test_cached_load_equals_a_fresh_featurization_and_is_memory_mapped(pipe, tmp_path):  # noqa: F811
    cfg = tiny_config(None, negatives={"use_exposed_unclicked": True})  # hard and exposed row lists both present
    fresh = load_training_data(pipe.samples, pipe.features, cfg)
    built, first = load_or_build(pipe.samples, pipe.features, cfg, tmp_path / "cache")
    cached, second = load_or_build(pipe.samples, pipe.features, cfg, tmp_path / "cache")
    assert (first["hit"], first["written"], second["hit"], second["written"]) == (False, True, True, False)
    assert first["key"] == second["key"] == cache_key(pipe.samples, pipe.features, cfg)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first["key"]]  # no temp dir left behind
    assert_same_data(built, fresh)
    assert_same_data(cached, fresh)
    assert cached.notes == fresh.notes and cached.hard is not None and cached.exposed is not None

    title = cached.docs.arrays["title_words"]
    assert isinstance(title.base, np.memmap) and not title.flags.writeable  # read-only views of the mapping
    # the run that wrote the entry trains from it too, not from the joined frame it featurized
    assert isinstance(built.docs.arrays["title_words"].base, np.memmap)
    assert list(built.train.frame.columns) == list(cached.train.frame.columns)
    assert "seq_st_doc_ids" in fresh.train.frame.columns and "seq_st_doc_ids" not in built.train.frame.columns
    idx = np.array([5, 0, 3, 3])
    for name, tensor in cached.train.query_tensors(idx).items():  # the batch path takes the mapped arrays
        assert tensor.dtype == fresh.train.query_tensors(idx)[name].dtype
        assert np.array_equal(tensor.numpy(), fresh.train.query_tensors(idx)[name].numpy()), name
    manifest = json.loads((Path(first["dir"]) / MANIFEST).read_text())
    assert manifest["key"] == first["key"] and manifest["built_by"] == {"rank": 0, "world_size": 1}
    assert set(manifest["key_inputs"]) == {"format", "code", "samples", "features", "config"}


@pytest.mark.slow
def test_training_on_cached_data_gives_bit_identical_weights(pipe, tmp_path):  # noqa: F811
    import torch

    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.two_tower import fit_two_tower

    cfg = tiny_config(None, train={"epochs": 1})
    fresh = load_training_data(pipe.samples, pipe.features, cfg)
    _, built = training_data(pipe.samples, pipe.features, cfg, tmp_path / "model")  # default root: beside the model
    cached, hit = training_data(pipe.samples, pipe.features, cfg, tmp_path / "model")
    assert Path(built["dir"]).parent == tmp_path / "featurized" and built["source"] == "featurized"
    assert hit["source"] == "cache" and hit["dir"] == built["dir"]
    assert any("memory-mapped from the featurization cache" in n for n in cached.notes)

    def weights(data: TrainingData) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
        model = TwoTowerModel(cfg.model)
        history, _ = fit_two_tower(model, data, cfg)
        return model.state_dict(), [{k: v for k, v in h.items() if k != "examples_per_s"} for h in history]

    (w_fresh, h_fresh), (w_cached, h_cached) = weights(fresh), weights(cached)
    assert h_fresh == h_cached
    assert w_fresh.keys() == w_cached.keys()
    assert all(torch.equal(w_fresh[k], w_cached[k]) for k in w_fresh)


@pytest.mark.slow
def test_key_follows_what_the_arrays_depend_on(pipe, tmp_path):  # noqa: F811
    base = tiny_config(None)
    key = cache_key(pipe.samples, pipe.features, base)
    vocab = {"model": {"featurizer": {"vocab": {"word": 4001}}}}
    changed = [tiny_config(None, **vocab), tiny_config(None, data={"valid_share": 0.3}),
               tiny_config(None, negatives={"hard_negatives": False}), tiny_config(None, features_as_of="day_end")]
    assert len({key, *(cache_key(pipe.samples, pipe.features, c) for c in changed)}) == 1 + len(changed)
    same = [tiny_config(None, train={"epochs": 7}), tiny_config(None, optimizer={"lr": 0.5}),
            tiny_config(None, data={"use_weights": True, "cache_dir": str(tmp_path)}),
            tiny_config(None, negatives={"random_negatives": 3})]
    assert {cache_key(pipe.samples, pipe.features, c) for c in same} == {key}

    copy = tmp_path / "samples"
    shutil.copytree(pipe.samples, copy)  # copy2: the same bytes and mtimes, so the same key
    assert cache_key(copy, pipe.features, base) == key
    table = copy / "negatives.parquet"
    st = table.stat()
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a rewritten table
    assert cache_key(copy, pipe.features, base) != key
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tables"]["negatives"]["sha256"] = "ab" * 32  # a checksum in the manifest stands for the file
    (copy / "manifest.json").write_text(json.dumps(manifest))
    k1 = cache_key(copy, pipe.features, base)
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert cache_key(copy, pipe.features, base) == k1


def test_feature_store_identity_follows_its_builds(tmp_path):
    store = tmp_path / "features"
    part = store / "tables" / "doc_stats" / "ds=2026-11-05" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"rows")
    (store / "manifests").mkdir()
    (store / "manifests" / "ds=2026-11-05.json").write_text('{"fingerprint": "a"}')
    (store / "store.json").write_text('{"offline_engine": "asof"}')
    first = features_identity(store)
    assert first == features_identity(store) and first["partition_files"] == 1
    (store / "manifests" / "ds=2026-11-05.json").write_text('{"fingerprint": "b"}')  # built with another config
    second = features_identity(store)
    assert second["manifests"] != first["manifests"]
    part.write_bytes(b"more rows")  # the day rebuilt
    assert features_identity(store)["partitions"] != second["partitions"]
    (store / "store.json").write_text('{"offline_engine": "feast"}')
    assert features_identity(store)["settings"] != second["settings"]
    with pytest.raises(FileNotFoundError, match="features dir .* does not exist"):
        features_identity(tmp_path / "missing")


def _damage_manifest(entry: Path) -> None:
    (entry / MANIFEST).unlink()


def _damage_missing_file(entry: Path) -> None:
    (entry / "train.doc_ids.npy").unlink()


def _damage_shape(entry: Path) -> None:
    np.save(entry / "docs.arrays.title_words.npy", np.zeros((3, 2), dtype=np.int64))


def _damage_truncated(entry: Path) -> None:
    path = entry / "hard.flat.npy"
    path.write_bytes(path.read_bytes()[:60])


def _damage_rows(entry: Path) -> None:
    path = entry / "train.rows.parquet"
    path.write_bytes(b"not parquet")


DAMAGES = {"manifest missing": (_damage_manifest, "manifest.json is missing"),
           "file missing": (_damage_missing_file, "train.doc_ids.npy is missing"),
           "wrong shape": (_damage_shape, r"title_words.npy holds <i8\[3, 2\], the manifest says"),
           "truncated": (_damage_truncated, "hard.flat.npy does not load"),
           "rows unreadable": (_damage_rows, "does not load")}


@pytest.mark.slow
def test_a_damaged_entry_is_never_used_and_is_rebuilt(pipe, tmp_path, caplog):  # noqa: F811
    cfg = tiny_config(None)
    fresh, built = load_or_build(pipe.samples, pipe.features, cfg, tmp_path / "cache")
    entry = Path(built["dir"])
    pristine = tmp_path / "pristine"
    shutil.copytree(entry, pristine)
    for damage, message in DAMAGES.values():
        shutil.rmtree(entry)
        shutil.copytree(pristine, entry)
        damage(entry)
        with pytest.raises(CacheInvalid, match=message):
            read_featurized(entry, built["key"])
    with pytest.raises(CacheInvalid, match="is for key"):
        read_featurized(pristine, "0" * 24)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    rebuilt, info = load_or_build(pipe.samples, pipe.features, cfg, tmp_path / "cache")  # the last damage is on
    assert (info["hit"], info["written"]) == (False, True)
    assert any("is unusable" in r.getMessage() and "featurizing again" in r.getMessage() for r in caplog.records)
    assert_same_data(rebuilt, fresh)
    again, info = load_or_build(pipe.samples, pipe.features, cfg, tmp_path / "cache")
    assert info["hit"] and not (entry / "train.rows.parquet").read_bytes().startswith(b"not parquet")
    assert_same_data(again, fresh)


@pytest.mark.slow
def test_switched_off_the_cache_writes_nothing(pipe, tmp_path):  # noqa: F811
    cfg = tiny_config(None, data={"cache": False})
    data, info = training_data(pipe.samples, pipe.features, cfg, tmp_path / "model")
    assert info == {"enabled": False} and list(tmp_path.iterdir()) == []
    assert data.counts["train_rows"] > 0


def test_bad_cache_keep_names_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cache_keep"):
        tiny_config(None, data={"cache_keep": 0})


def test_prune_keeps_the_newest_entries(tmp_path):
    for i, name in enumerate(["a", "b", "c", "d"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / MANIFEST).write_text("{}")
        os.utime(tmp_path / name / MANIFEST, ns=(0, (i + 1) * 10**9))
    (tmp_path / "not-an-entry").mkdir()
    removed = prune(tmp_path, 2, protect=tmp_path / "a")
    assert sorted(p.name for p in removed) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "d", "not-an-entry"]


# ------------------------------------------------------------------ ranks (a stand-in for the process group)


@dataclass
class FakeRanks:
    """A rank of a two-rank job whose broadcast hands over `sent` (rank != 0) or records what rank 0 sends."""

    rank: int
    sent: Any = None
    world_size: int = 2

    def __post_init__(self) -> None:
        self.broadcasts: list[Any] = []

    @property
    def distributed(self) -> bool:
        return True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        self.broadcasts.append(obj)
        return obj if self.is_main else self.sent


@pytest.mark.slow
def test_rank_zero_builds_and_the_other_rank_maps_its_entry(pipe, tmp_path, caplog):  # noqa: F811
    cfg = tiny_config(None)
    caplog.set_level(logging.INFO, logger=LOGGER)
    main = FakeRanks(0)
    data0, info0 = training_data(pipe.samples, pipe.features, cfg, tmp_path / "model", main)
    assert info0["source"] == "featurized" and info0["written"]
    assert main.broadcasts == [{"key": info0["key"], "dir": info0["dir"]}]
    manifest = json.loads((Path(info0["dir"]) / MANIFEST).read_text())
    assert manifest["built_by"] == {"rank": 0, "world_size": 2}

    other = FakeRanks(1, sent=main.broadcasts[0])
    data1, info1 = training_data(pipe.samples, pipe.features, cfg, tmp_path / "model", other)
    assert info1["source"] == "cache" and not info1["written"]
    assert_same_data(data1, data0)
    assert [p.name for p in (tmp_path / "featurized").iterdir()] == [info0["key"]]  # built once
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("rank 0 of 2: training data featurized and cached") for m in lines)
    assert any(m.startswith("rank 1 of 2: training data memory-mapped from the featurization cache") for m in lines)


@pytest.mark.slow
def test_the_other_rank_featurizes_itself_when_the_entry_is_not_readable_there(pipe, tmp_path, caplog):  # noqa: F811
    cfg = tiny_config(None)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    elsewhere = {"key": "0" * 24, "dir": str(tmp_path / "not-shared" / ("0" * 24))}
    data, info = training_data(pipe.samples, pipe.features, cfg, tmp_path / "model", FakeRanks(1, sent=elsewhere))
    assert info["source"] == "featurized" and data.counts["train_rows"] > 0
    assert any("not readable here" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "featurized").exists()  # only rank 0 writes entries


@pytest.mark.slow
def test_a_failure_on_rank_zero_reaches_the_other_ranks(pipe, tmp_path):  # noqa: F811
    cfg = tiny_config(None)
    main = FakeRanks(0)
    with pytest.raises(FileNotFoundError):
        training_data(tmp_path / "no-samples", pipe.features, cfg, tmp_path / "model", main)
    assert len(main.broadcasts) == 1 and "no-samples" in main.broadcasts[0]["error"]
    with pytest.raises(ValueError, match="rank 0 could not load the training data: FileNotFoundError"):
        training_data(pipe.samples, pipe.features, cfg, tmp_path / "model", FakeRanks(1, sent=main.broadcasts[0]))


def test_a_named_cache_dir_wins_over_the_default_the_dag_gives():
    from ebr.train.featurized_cache import with_default_cache_dir

    cfg = tiny_config(None)
    assert cfg.data.cache_dir is None
    given = with_default_cache_dir(cfg, "/ws/cache/featurized")
    assert given.data.cache_dir == "/ws/cache/featurized" and cfg.data.cache_dir is None, "a copy, not a change"
    named = tiny_config(None, data={"cache_dir": "/mine"})
    assert with_default_cache_dir(named, "/ws/cache/featurized").data.cache_dir == "/mine"
