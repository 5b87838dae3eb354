"""Atomic writes: files via temp-file + rename, directories via temp-dir beside the destination + rename.

A reader never sees a half-written file or directory; a failed build leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` for the block to write; renamed onto `path` when the block succeeds, removed
    otherwise (any writer: text, parquet, torch.save)."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a synced temp file in the same directory, then rename."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_json_atomic(
    path: str | Path, obj: Any, *, sort_keys: bool = False, allow_nan: bool = True, default: Any = None
) -> Path:
    """Write `obj` as pretty JSON to `path` atomically (`default` for values JSON lacks, e.g. `str`)."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=allow_nan, default=default)
    return write_text_atomic(path, text + "\n")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> Path:
    """Save one array as .npy through a synced temp file in the same directory, then rename."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


@contextmanager
def atomic_output_dir(dest: str | Path, marker: str) -> Iterator[Path]:
    """Yield a temp dir beside `dest`; on success it replaces `dest`, on error it is removed.

    An existing non-empty `dest` is replaced only when it holds `marker` (a file this kind of
    output always writes), so a wrong path never wipes an unrelated directory.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"output path {dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / marker).is_file():
        raise FileExistsError(f"output dir {dest} is not empty and holds no {marker}; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
