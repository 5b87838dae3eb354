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


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write `obj` as pretty JSON to `path` through a temp file in the same directory, then rename."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_npy_atomic(path: str | Path, array: np.ndarray) -> Path:
    """Save one array as .npy through a temp file in the same directory, then rename."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
