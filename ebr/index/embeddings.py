"""On-disk format of exported doc embeddings: numbered shards of (ids, unit vectors) + embeddings.json.

Layout of an embeddings directory::

    shard-00000.vectors.npy   float32 [n0, d], rows L2-normalized (cosine = inner product)
    shard-00000.ids.npy       int64 [n0], doc ids, unique across all shards
    shard-00001.vectors.npy   ...
    embeddings.json           format, model_version, dim, count, shards (names, counts), sha256 of files

The doc-tower export writes shards with `write_embedding_shard` (shards may be written by parallel
workers, each its own shard number) and then calls `finalize_embeddings` once; the json is the commit
marker, so readers never see an unfinished export. Readers iterate shard by shard (memory bounded by
one shard; arrays are memory-mapped by default) or load everything with `read_embeddings`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ebr.artifacts.atomic import save_npy_atomic, write_json_atomic
from ebr.artifacts.checksums import ChecksumError, checksum_files, verify_checksums

EMBEDDINGS_JSON = "embeddings.json"
FORMAT = "ebr.embeddings/1"
MAX_SHARDS = 100_000
NORM_TOLERANCE = 1e-3
_CHECK_ROWS = 65_536
_SHARD_RE = re.compile(r"^shard-(\d{5})\.(vectors|ids)\.npy$")


class EmbeddingsError(ValueError):
    """Embeddings that break the on-disk contract: the message names the file or argument and the problem."""


def vectors_name(shard_no: int) -> str:
    """File name of a shard's vectors."""
    return f"shard-{shard_no:05d}.vectors.npy"


def ids_name(shard_no: int) -> str:
    """File name of a shard's doc ids."""
    return f"shard-{shard_no:05d}.ids.npy"


@dataclass(frozen=True)
class EmbeddingShard:
    """One shard: its number, doc ids [n] and vectors [n, d] (memory-mapped when read with mmap=True)."""

    shard_no: int
    ids: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class EmbeddingsInfo:
    """The parsed embeddings.json of a finalized directory."""

    path: Path
    model_version: str
    dim: int
    count: int
    shard_counts: tuple[int, ...]
    checksums: dict[str, str]

    @property
    def num_shards(self) -> int:
        return len(self.shard_counts)


@dataclass(frozen=True)
class Embeddings:
    """All shards concatenated in shard order: ids [N], vectors [N, d], and the directory's info."""

    ids: np.ndarray
    vectors: np.ndarray
    info: EmbeddingsInfo


def _check_rows(name: str, vectors: np.ndarray, ids: np.ndarray, *, check_norm: bool) -> None:
    """Scan `vectors` in row blocks for NaN/inf and (optionally) non-unit norms; error names the doc id."""
    for start in range(0, vectors.shape[0], _CHECK_ROWS):
        block = np.asarray(vectors[start : start + _CHECK_ROWS], dtype=np.float32)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise EmbeddingsError(f"{name}: row {row} (doc id {int(ids[row])}) has NaN or infinite values")
        if check_norm:
            norms = np.linalg.norm(block, axis=1)
            bad = np.abs(norms - 1.0) > NORM_TOLERANCE
            if bad.any():
                row = start + int(np.flatnonzero(bad)[0])
                raise EmbeddingsError(
                    f"{name}: row {row} (doc id {int(ids[row])}) has L2 norm {norms[row - start]:.6f}, "
                    "expected 1 (vectors must be L2-normalized)"
                )


def write_embedding_shard(
    directory: str | Path, shard_no: int, ids: np.ndarray, vectors: np.ndarray, *, normalize: bool = True
) -> Path:
    """Validate and write one shard (ids + vectors) atomically; returns the vectors file path.

    With `normalize=True` rows are L2-normalized here (zero rows are an error); with False they must
    already have unit norm. NaN/inf values and ids repeated within the shard are errors.
    """
    directory = Path(directory)
    label = f"embedding shard {shard_no}"
    if not isinstance(shard_no, int | np.integer) or not 0 <= int(shard_no) < MAX_SHARDS:
        raise EmbeddingsError(f"shard_no must be an integer in [0, {MAX_SHARDS}), got {shard_no!r}")
    shard_no = int(shard_no)
    if (directory / EMBEDDINGS_JSON).exists():
        raise EmbeddingsError(
            f"{directory} is already finalized ({EMBEDDINGS_JSON} exists); write a new directory"
        )
    ids = np.asarray(ids)
    vectors = np.asarray(vectors)
    if ids.ndim != 1:
        raise EmbeddingsError(f"{label}: ids must be 1-D, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise EmbeddingsError(f"{label}: ids must be integers, got dtype {ids.dtype}")
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise EmbeddingsError(f"{label}: vectors must be 2-D [n, d] with d >= 1, got shape {vectors.shape}")
    if not (np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)):
        raise EmbeddingsError(f"{label}: vectors must be numeric, got dtype {vectors.dtype}")
    if vectors.shape[0] != ids.shape[0]:
        raise EmbeddingsError(f"{label}: {ids.shape[0]} ids but {vectors.shape[0]} vectors")
    ids = ids.astype(np.int64, copy=False)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    _check_rows(label, vectors, ids, check_norm=False)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise EmbeddingsError(f"{label}: {dup.size} duplicate doc ids, e.g. {dup[:5].tolist()}")
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        zero = norms[:, 0] == 0
        if zero.any():
            row = int(np.flatnonzero(zero)[0])
            raise EmbeddingsError(
                f"{label}: row {row} (doc id {int(ids[row])}) is a zero vector; cannot normalize"
            )
        vectors = vectors / norms
    else:
        _check_rows(label, vectors, ids, check_norm=True)
    directory.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(directory / ids_name(shard_no), ids)
    return save_npy_atomic(directory / vectors_name(shard_no), vectors)


def _list_shards(directory: Path) -> list[int]:
    found: dict[int, set[str]] = {}
    for p in directory.iterdir():
        m = _SHARD_RE.match(p.name)
        if m:
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not found:
        raise EmbeddingsError(
            f"{directory}: no shard files (shard-NNNNN.vectors.npy / .ids.npy); nothing to finalize"
        )
    last = max(found)
    for n in range(last + 1):
        if n not in found:
            raise EmbeddingsError(
                f"{directory}: missing shard file {vectors_name(n)} (shards must be numbered 0..{last})"
            )
        for kind, name in (("vectors", vectors_name(n)), ("ids", ids_name(n))):
            if kind not in found[n]:
                raise EmbeddingsError(f"{directory}: missing shard file {name}")
    return list(range(last + 1))


def _load_shard_arrays(directory: Path, n: int, mmap: bool) -> tuple[np.ndarray, np.ndarray]:
    mode = "r" if mmap else None
    try:
        ids = np.load(directory / ids_name(n), mmap_mode=mode, allow_pickle=False)
        vectors = np.load(directory / vectors_name(n), mmap_mode=mode, allow_pickle=False)
    except FileNotFoundError as e:
        raise EmbeddingsError(f"{directory}: missing shard file {Path(e.filename).name}") from e
    except ValueError as e:
        raise EmbeddingsError(f"{directory}: shard {n} is not a readable .npy file: {e}") from e
    if ids.ndim != 1 or ids.dtype != np.int64:
        raise EmbeddingsError(f"{directory / ids_name(n)}: expected int64 [n], got {ids.dtype} {ids.shape}")
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise EmbeddingsError(
            f"{directory / vectors_name(n)}: expected float32 [n, d], got {vectors.dtype} {vectors.shape}"
        )
    if vectors.shape[0] != ids.shape[0]:
        raise EmbeddingsError(f"{directory}: shard {n} has {ids.shape[0]} ids but {vectors.shape[0]} vectors")
    return ids, vectors


def finalize_embeddings(directory: str | Path, model_version: str) -> dict[str, Any]:
    """Verify every shard (contiguous numbering, same dim, unit norms, finite, globally unique ids) and
    write embeddings.json atomically; returns its content."""
    directory = Path(directory)
    if not isinstance(model_version, str) or not model_version.strip():
        raise EmbeddingsError("model_version must be a non-empty string")
    if not directory.is_dir():
        raise EmbeddingsError(f"embeddings dir {directory} does not exist")
    shard_nos = _list_shards(directory)
    dim: int | None = None
    counts: list[int] = []
    all_ids: list[np.ndarray] = []
    for n in shard_nos:
        ids, vectors = _load_shard_arrays(directory, n, mmap=True)
        if dim is None:
            dim = int(vectors.shape[1])
        elif vectors.shape[1] != dim:
            raise EmbeddingsError(
                f"{directory / vectors_name(n)}: dimension mismatch, {vectors.shape[1]} but "
                f"{vectors_name(shard_nos[0])} has {dim}"
            )
        _check_rows(str(directory / vectors_name(n)), vectors, ids, check_norm=True)
        counts.append(int(ids.shape[0]))
        all_ids.append(np.asarray(ids))
    total = sum(counts)
    if total == 0:
        raise EmbeddingsError(f"{directory}: all shards are empty; embeddings must hold at least one vector")
    uniq, per_id = np.unique(np.concatenate(all_ids), return_counts=True)
    if (per_id > 1).any():
        dup = uniq[per_id > 1]
        raise EmbeddingsError(
            f"{directory}: {dup.size} doc ids appear in more than one shard, e.g. {dup[:5].tolist()}"
        )
    files = [name for n in shard_nos for name in (vectors_name(n), ids_name(n))]
    doc = {
        "format": FORMAT,
        "model_version": model_version,
        "dim": dim,
        "count": total,
        "dtype": "float32",
        "normalized": True,
        "shards": [
            {"shard": n, "count": c, "vectors": vectors_name(n), "ids": ids_name(n)}
            for n, c in zip(shard_nos, counts, strict=True)
        ],
        "checksums": checksum_files(directory, files),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(directory / EMBEDDINGS_JSON, doc)
    return doc


def load_embeddings_info(directory: str | Path) -> EmbeddingsInfo:
    """Parse and check embeddings.json of a finalized directory (no shard data is read)."""
    directory = Path(directory)
    path = directory / EMBEDDINGS_JSON
    if not path.is_file():
        raise EmbeddingsError(f"{path} does not exist: embeddings dir is missing or was never finalized")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise EmbeddingsError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
        shards = doc["shards"]
        counts = tuple(int(s["count"]) for s in shards)
        if [int(s["shard"]) for s in shards] != list(range(len(shards))):
            raise EmbeddingsError(f"{path}: shards must be numbered 0..{len(shards) - 1}")
        info = EmbeddingsInfo(
            path=directory,
            model_version=str(doc["model_version"]),
            dim=int(doc["dim"]),
            count=int(doc["count"]),
            shard_counts=counts,
            checksums=dict(doc["checksums"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, EmbeddingsError):
            raise
        raise EmbeddingsError(f"{path}: malformed ({type(e).__name__}: {e})") from e
    if info.count != sum(counts):
        raise EmbeddingsError(f"{path}: count {info.count} != sum of shard counts {sum(counts)}")
    if info.count == 0:
        raise EmbeddingsError(f"{path}: embeddings hold no vectors")
    return info


def verify_embeddings(directory: str | Path) -> EmbeddingsInfo:
    """Check every shard file's sha256 against embeddings.json; returns the info."""
    info = load_embeddings_info(directory)
    try:
        verify_checksums(info.path, info.checksums, EMBEDDINGS_JSON)
    except ChecksumError as e:
        raise EmbeddingsError(str(e)) from e
    return info


def iter_embedding_shards(
    directory: str | Path, *, mmap: bool = True, verify: bool = False
) -> Iterator[EmbeddingShard]:
    """Yield the shards of a finalized directory in order; memory is bounded by one shard (none with mmap)."""
    info = verify_embeddings(directory) if verify else load_embeddings_info(directory)
    for n, count in enumerate(info.shard_counts):
        ids, vectors = _load_shard_arrays(info.path, n, mmap)
        if ids.shape[0] != count or vectors.shape[1] != info.dim:
            raise EmbeddingsError(
                f"{info.path}: shard {n} is {vectors.shape} but {EMBEDDINGS_JSON} says [{count}, {info.dim}]"
            )
        yield EmbeddingShard(n, ids, vectors)


def read_embeddings(directory: str | Path, *, mmap: bool = True, verify: bool = True) -> Embeddings:
    """All ids and vectors of a finalized dir (one shard stays memory-mapped, several are concatenated)."""
    info = verify_embeddings(directory) if verify else load_embeddings_info(directory)
    shards = list(iter_embedding_shards(directory, mmap=mmap))
    if len(shards) == 1:
        return Embeddings(shards[0].ids, shards[0].vectors, info)
    ids = np.concatenate([s.ids for s in shards])
    vectors = np.concatenate([s.vectors for s in shards])
    return Embeddings(ids, vectors, info)
