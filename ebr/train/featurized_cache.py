"""Featurization cache of the two-tower trainer: a day is featurized once into .npy arrays that every later load
(a retry, the other ranks of a DDP job) memory-maps instead of featurizing again.

    <cache root>/<key>/manifest.json          format, key, what the key hashed, every array's file, dtype, shape
                      /<name>.npy             one array each (np.save, no pickles)
                      /<split>.rows.parquet   the split's key columns (request, query, doc, kind, time, weight)

The key is a hash of everything the featurized arrays depend on (`key_inputs`): the samples manifest and the
size and mtime of each sample table it lists; the feature store's identity (its store settings, every day's build
manifest with its config fingerprint, and the size and mtime of every offline partition file); the featurizer
config and the fields of `data` and `negatives` that `load_training_data` reads; a digest of the featurizing code.
Any change gives another key, so a stale entry is never read; old entries are pruned (`data.cache_keep`).

An entry is written whole or not at all (`ebr.artifacts.atomic.atomic_output_dir`: a temp dir beside it, then a
rename). Reading checks the manifest, every file, its dtype and shape; an entry that fails (missing manifest or
file, wrong shape, unreadable) is logged, removed and rebuilt, never used. Arrays load with
`np.load(mmap_mode="r")` as read-only views: a batch's fancy indexing copies only its rows.

Under DDP (`training_data` with a `DistContext` of several ranks) rank 0 finds or builds the entry and broadcasts
where it is; the other ranks wait for that broadcast (the collective is their barrier) and memory-map it, so the
day is featurized once per job. A rank that cannot read the entry (no shared volume) featurizes for itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.artifacts.atomic import atomic_output_dir
from ebr.heap import return_freed_memory
from ebr.train.retrieval_data import (
    ROW_COLUMNS,
    SAMPLES_MANIFEST,
    DocTable,
    RowSet,
    TrainingData,
    ValidationSet,
    load_training_data,
)
from ebr.train.two_tower_config import TwoTowerTrainConfig

if TYPE_CHECKING:
    from ebr.train.distributed import DistContext

log = logging.getLogger(__name__)
FORMAT = "ebr.featurized/1"
MANIFEST = "manifest.json"
DEFAULT_DIR = "featurized"
# Source files (relative to the ebr package) whose code decides the arrays: an edit there gives another key.
CODE_FILES = (
    "models/inputs.py", "models/config.py", "text", "features/doc_features.py", "features/asof.py",
    "features/encoding.py", "features/retrieval.py", "samples/feature_join.py", "train/retrieval_data.py",
    "train/featurized_cache.py",
)
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_ROWSETS = ("train", "valid")
_LISTS = ("hard", "exposed")


class CacheInvalid(ValueError):
    """A cache entry that must not be used: missing or partial files, another key, wrong dtype or shape."""


# --------------------------------------------------------------------------------------------------------- key


def digest(obj: Any) -> str:
    """SHA-256 hex of `obj` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_stat(path: Path) -> list[int] | None:
    if not path.is_file():
        return None
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def samples_identity(samples_dir: str | Path) -> dict[str, Any]:
    """The samples manifest's content and each table it lists: its checksum when the manifest has one, else the
    file's size and mtime."""
    root = Path(samples_dir)
    path = root / SAMPLES_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"samples dir {root} has no {SAMPLES_MANIFEST}")
    raw = path.read_bytes()
    manifest = json.loads(raw)
    tables = {}
    for name, entry in sorted(manifest.get("tables", {}).items()):
        tables[name] = entry.get("sha256") or entry.get("checksum") or _file_stat(root / entry["file"])
    return {"manifest_sha256": hashlib.sha256(raw).hexdigest(), "tables": tables}


def features_identity(features_dir: str | Path) -> dict[str, Any]:
    """The feature store's identity: store settings, each day's build manifest (config fingerprint, rows) and the
    size and mtime of every offline partition file (a rebuilt day rewrites them)."""
    root = Path(features_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"features dir {root} does not exist")
    settings = {name: hashlib.sha256((root / name).read_bytes()).hexdigest()
                for name in ("store.json", "feature_store.yaml") if (root / name).is_file()}
    manifests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob("manifests/*.json"))}
    partitions = {str(p.relative_to(root)): _file_stat(p) for p in sorted(root.glob("tables/*/*/*.parquet"))}
    return {"settings": settings, "manifests": manifests, "partitions": digest(partitions),
            "partition_files": len(partitions)}


def code_digest(files: tuple[str, ...] = CODE_FILES) -> str:
    """Hash of the source files (or folders) `files`, relative to the ebr package (default: the featurizing
    code, `CODE_FILES`)."""
    import ebr

    base = Path(ebr.__file__).resolve().parent
    h = hashlib.sha256()
    for rel in files:
        p = base / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def config_inputs(cfg: TwoTowerTrainConfig) -> dict[str, Any]:
    """The config fields `load_training_data` reads (and nothing else: loss, optimizer or loop changes keep the
    key)."""
    d = cfg.data
    return {
        "featurizer": cfg.model.featurizer.model_dump(mode="json"),
        "features_as_of": cfg.features_as_of,
        "data": {"valid_share": d.valid_share, "use_rewrites": d.use_rewrites, "max_rows": d.max_rows,
                 "positive_doc_features": d.positive_doc_features},
        "negatives": {"hard_negatives": cfg.negatives.hard_negatives,
                      "use_exposed_unclicked": cfg.negatives.use_exposed_unclicked},
    }


def key_inputs(samples_dir: str | Path, features_dir: str | Path, cfg: TwoTowerTrainConfig) -> dict[str, Any]:
    """Everything the featurized arrays depend on, as hashed into the cache key."""
    return {"format": FORMAT, "code": code_digest(), "samples": samples_identity(samples_dir),
            "features": features_identity(features_dir), "config": config_inputs(cfg)}


def cache_key(samples_dir: str | Path, features_dir: str | Path, cfg: TwoTowerTrainConfig) -> str:
    """The cache key of a day's featurized training data (24 hex digits of a SHA-256 of `key_inputs`)."""
    return digest(key_inputs(samples_dir, features_dir, cfg))[:24]


def with_default_cache_dir(cfg: TwoTowerTrainConfig, cache_dir: str | Path) -> TwoTowerTrainConfig:
    """`cfg` with `data.cache_dir` set to `cache_dir` unless the config names one already."""
    if cfg.data.cache_dir:
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_dir": str(cache_dir)})})


def cache_root(cfg: TwoTowerTrainConfig, out_dir: str | Path) -> Path:
    """Where entries live: `data.cache_dir`, else `featurized/` beside the model directory `out_dir` (the samples
    directory may be a read-only pipeline artifact; the model's parent is writable by the step that trains)."""
    if cfg.data.cache_dir:
        return Path(os.path.abspath(cfg.data.cache_dir))  # absolute: rank 0 hands the entry's path to the others
    return Path(os.path.abspath(out_dir)).parent / DEFAULT_DIR


# ------------------------------------------------------------------------------------------------ write / read


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"featurized array name {name!r} is not a plain identifier: it cannot name a cache file")
    return name


def _flatten(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of row arrays as one flat array plus offsets (`flat[offsets[i]:offsets[i + 1]]` is list i)."""
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(g) for g in groups])
    flat = np.concatenate(groups).astype(np.int64, copy=False) if groups else np.zeros(0, dtype=np.int64)
    return flat, offsets


def _rowset_arrays(prefix: str, rs: RowSet) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for group in ("query", "doc", "rewrite"):
        arrays = getattr(rs, group)
        for k, v in (arrays or {}).items():
            out[f"{prefix}.{group}.{_check_name(k)}"] = v
    for name in ("query_row", "doc_ids", "weights", "request_code", "rewrite_row"):
        value = getattr(rs, name)
        if value is not None:
            out[f"{prefix}.{name}"] = value
    return out


def featurized_arrays(data: TrainingData) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every array of `data` by cache name (row lists flattened to flat + offsets), and the layout that puts them
    back together: what an entry stores and what tests compare."""
    arrays: dict[str, np.ndarray] = {"docs.ids": data.docs.ids, "docs.prob": data.docs.prob,
                                     "docs.log_q": data.docs.log_q}
    arrays.update({f"docs.arrays.{_check_name(k)}": v for k, v in data.docs.arrays.items()})
    layout: dict[str, Any] = {"docs": list(data.docs.arrays), "rowsets": {}, "lists": {}}
    splits = {"train": data.train, "valid": data.valid.rows if data.valid is not None else None}
    for prefix, rs in splits.items():
        if rs is None:
            continue
        arrays.update(_rowset_arrays(prefix, rs))
        layout["rowsets"][prefix] = {"query": list(rs.query), "doc": list(rs.doc),
                                     "rewrite": list(rs.rewrite) if rs.rewrite is not None else None,
                                     "rewrite_row": rs.rewrite_row is not None}
    if data.valid is not None:
        arrays["valid.query_index"] = data.valid.query_index
        arrays["valid.clicked.flat"], arrays["valid.clicked.offsets"] = _flatten(
            [np.asarray(c, dtype=np.int64) for c in data.valid.clicked])
    for name in _LISTS:
        groups = getattr(data, name)
        layout["lists"][name] = groups is not None
        if groups is not None:
            arrays[f"{name}.flat"], arrays[f"{name}.offsets"] = _flatten(groups)
    return arrays, layout


def write_featurized(data: TrainingData, entry: str | Path, key: str, inputs: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> Path:
    """Write `data` as a cache entry at `entry` atomically (temp dir beside it, then rename); returns `entry`."""
    entry = Path(entry)
    arrays, layout = featurized_arrays(data)
    bad = [n for n, v in arrays.items() if v.dtype == object]
    if bad:
        raise ValueError(f"featurized arrays {bad} hold Python objects: they cannot be cached as plain .npy")
    files: dict[str, Any] = {}
    with atomic_output_dir(entry, marker=MANIFEST) as tmp:
        for name, value in arrays.items():
            value = np.ascontiguousarray(value)
            np.save(tmp / f"{name}.npy", value, allow_pickle=False)
            files[name] = {"file": f"{name}.npy", "dtype": value.dtype.str, "shape": list(value.shape)}
        frames = {}
        for split, rs in (("train", data.train), ("valid", data.valid.rows if data.valid else None)):
            if rs is not None:
                cols = [c for c in ROW_COLUMNS if c in rs.frame.columns]
                rs.frame[cols].to_parquet(tmp / f"{split}.rows.parquet", index=False)
                frames[split] = {"file": f"{split}.rows.parquet", "rows": len(rs.frame)}
        manifest = {
            "format": FORMAT, "key": key, "day": data.day, "train_days": data.train_days, "arrays": files,
            "frames": frames, "layout": layout, "counts": data.counts, "notes": data.notes,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}), "key_inputs": inputs,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return entry


def _load_array(entry: Path, name: str, spec: dict[str, Any]) -> np.ndarray:
    path = entry / spec["file"]
    if not path.is_file():
        raise CacheInvalid(f"{path} is missing")
    try:
        value = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheInvalid(f"{path} does not load: {e}") from e
    if value.dtype.str != spec["dtype"] or list(value.shape) != list(spec["shape"]):
        raise CacheInvalid(f"{path} holds {value.dtype.str}{list(value.shape)}, the manifest says "
                           f"{spec['dtype']}{list(spec['shape'])}")
    return np.asarray(value)  # a read-only ndarray view of the mapping


def _unflatten(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    if len(offsets) == 0 or offsets[-1] != len(flat):
        raise CacheInvalid(f"offsets end at {offsets[-1] if len(offsets) else None}, the flat array has {len(flat)}")
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def read_manifest(entry: str | Path, key: str | None = None) -> dict[str, Any]:
    """The manifest of an entry (of key `key` when given); CacheInvalid when missing, unreadable or another key."""
    path = Path(entry) / MANIFEST
    if not path.is_file():
        raise CacheInvalid(f"{path} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CacheInvalid(f"{path} is not readable JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheInvalid(f"{path} is not a {FORMAT} manifest")
    if key is not None and manifest.get("key") != key:
        raise CacheInvalid(f"{path} is for key {manifest.get('key')}, not {key}")
    return manifest


def read_featurized(entry: str | Path, key: str | None = None) -> TrainingData:
    """The TrainingData of a cache entry, its arrays memory-mapped read-only; CacheInvalid when any part is
    missing or does not match the manifest."""
    entry = Path(entry)
    m = read_manifest(entry, key)
    try:
        files, layout = m["arrays"], m["layout"]
        a = {name: _load_array(entry, name, spec) for name, spec in files.items()}
        docs = DocTable(a["docs.ids"], {k: a[f"docs.arrays.{k}"] for k in layout["docs"]}, a["docs.prob"],
                        a["docs.log_q"])
        rowsets: dict[str, RowSet] = {}
        for split, lay in layout["rowsets"].items():
            spec = m["frames"][split]
            fpath = entry / spec["file"]
            if not fpath.is_file():
                raise CacheInvalid(f"{fpath} is missing")
            frame = pd.read_parquet(fpath)
            p = split
            rs = RowSet(
                frame=frame, query={k: a[f"{p}.query.{k}"] for k in lay["query"]}, query_row=a[f"{p}.query_row"],
                doc={k: a[f"{p}.doc.{k}"] for k in lay["doc"]}, doc_ids=a[f"{p}.doc_ids"], weights=a[f"{p}.weights"],
                request_code=a[f"{p}.request_code"],
                rewrite={k: a[f"{p}.rewrite.{k}"] for k in lay["rewrite"]} if lay["rewrite"] is not None else None,
                rewrite_row=a[f"{p}.rewrite_row"] if lay["rewrite_row"] else None,
            )  # fmt: skip
            if len(frame) != len(rs) or spec["rows"] != len(rs):
                raise CacheInvalid(f"{fpath} has {len(frame)} rows, the {split} arrays {len(rs)}")
            rowsets[split] = rs
        valid = None
        if "valid" in rowsets:
            clicked = _unflatten(a["valid.clicked.flat"], a["valid.clicked.offsets"])
            valid = ValidationSet(rowsets["valid"], a["valid.query_index"], [c.tolist() for c in clicked])
        lists = {name: _unflatten(a[f"{name}.flat"], a[f"{name}.offsets"]) if layout["lists"][name] else None
                 for name in _LISTS}
    except CacheInvalid:
        raise
    except KeyError as e:
        raise CacheInvalid(f"{entry / MANIFEST} lacks {e}") from e
    except (OSError, TypeError, ValueError) as e:
        raise CacheInvalid(f"{entry} does not load: {e}") from e
    return TrainingData(m["day"], list(m["train_days"]), docs, rowsets["train"], valid, lists["hard"],
                        lists["exposed"], dict(m["counts"]), list(m["notes"]))


def prune(root: str | Path, keep: int, protect: str | Path | None = None) -> list[Path]:
    """Remove all but the `keep` newest entries under `root` (by manifest mtime; `protect` always stays); returns
    what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries = [p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
    entries.sort(key=lambda p: (p / MANIFEST).stat().st_mtime_ns, reverse=True)
    protected = Path(protect).resolve() if protect is not None else None
    removed = []
    for p in entries[keep:]:
        if p.resolve() != protected:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------------------------- load or build


def load_or_build(samples_dir: str | Path, features_dir: str | Path, cfg: TwoTowerTrainConfig, root: str | Path,
                  rank: int = 0, world_size: int = 1) -> tuple[TrainingData, dict[str, Any]]:
    """The day's TrainingData from the cache entry of its key under `root` when it is whole, else featurized
    (`load_training_data`), written there and read back memory-mapped; returns it with a report (key, dir, hit,
    seconds, written)."""
    t0 = time.perf_counter()
    inputs = key_inputs(samples_dir, features_dir, cfg)
    key = digest(inputs)[:24]
    entry = Path(root) / key
    info: dict[str, Any] = {"key": key, "dir": str(entry), "hit": False, "written": False}
    if entry.exists():
        try:
            data = read_featurized(entry, key)
            info.update(hit=True, seconds=time.perf_counter() - t0)
            return data, info
        except CacheInvalid as e:
            log.warning("featurization cache entry %s is unusable (%s): removed, featurizing again", entry, e)
            shutil.rmtree(entry, ignore_errors=True)
    data = load_training_data(samples_dir, features_dir, cfg, keep_features=False)
    info["featurize_seconds"] = time.perf_counter() - t0
    try:
        write_featurized(data, entry, key, inputs, {"built_by": {"rank": rank, "world_size": world_size},
                                                    "featurize_seconds": round(info["featurize_seconds"], 3)})
        info["written"] = True
        # train from the entry just written, as a cache hit would: memory-mapped arrays and the rows' key columns
        # instead of the joined feature frame (at `large` ~10 GB resident through the whole training otherwise)
        data = read_featurized(entry, key)
        return_freed_memory()
        for p in prune(root, cfg.data.cache_keep, protect=entry):
            log.info("featurization cache: removed old entry %s", p)
    except OSError as e:
        log.warning("featurization cache entry %s not written (%s): training goes on without it", entry, e)
        info.update(dir=None, error=str(e))
    info["seconds"] = time.perf_counter() - t0
    return data, info


def training_data(samples_dir: str | Path, features_dir: str | Path, cfg: TwoTowerTrainConfig, out_dir: str | Path,
                  ctx: DistContext | None = None) -> tuple[TrainingData, dict[str, Any]]:
    """The trainer's data through the cache (`data.cache`): one process finds or builds the entry; under DDP rank 0
    does and the other ranks wait for its broadcast, then memory-map the same entry. Returns (data, report)."""
    from ebr.train.distributed import SINGLE

    ctx = ctx or SINGLE
    if not cfg.data.cache:
        return load_training_data(samples_dir, features_dir, cfg), {"enabled": False}
    root = cache_root(cfg, out_dir)
    where = f"rank {ctx.rank} of {ctx.world_size}"
    if not ctx.distributed or ctx.is_main:
        try:
            data, info = load_or_build(samples_dir, features_dir, cfg, root, ctx.rank, ctx.world_size)
        except Exception as e:
            if ctx.distributed:  # the other ranks wait for this broadcast: tell them instead of letting them hang
                try:
                    ctx.broadcast({"error": f"{type(e).__name__}: {e}"})
                except Exception as sent:  # rank 0's own error is the one raised below
                    log.warning("%s: could not tell the other ranks (%s)", where, sent)
            raise
        info["source"] = "cache" if info["hit"] else "featurized"
        if ctx.distributed:
            ctx.broadcast({k: info[k] for k in ("key", "dir")})
    else:
        sent = ctx.broadcast(None)
        if "error" in sent:
            raise ValueError(f"rank 0 could not load the training data: {sent['error']}")
        info = {**sent, "hit": False, "written": False}
        data = None
        if sent["dir"] is not None:
            t0 = time.perf_counter()
            try:
                data = read_featurized(sent["dir"], sent["key"])
                info.update(hit=True, source="cache", seconds=time.perf_counter() - t0)
            except CacheInvalid as e:
                log.warning("%s: rank 0's featurization cache entry is not readable here (%s): featurizing", where, e)
        if data is None:
            data = load_training_data(samples_dir, features_dir, cfg)
            info.update(source="featurized", dir=None)
    how = ("memory-mapped from the featurization cache" if info["source"] == "cache"
           else "featurized" + (" and cached" if info.get("written") else ""))
    line = f"training data {how}{' in ' + info['dir'] if info.get('dir') else ''} (key {info['key']})"
    log.info("%s: %s", where, line)
    data.notes.append(line)
    return data, info
