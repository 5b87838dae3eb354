"""sha256 checksums of output files and their verification against a recorded table."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

_CHUNK = 8 << 20


class ChecksumError(ValueError):
    """A file is missing or its sha256 differs from the one recorded in its manifest."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 8 MiB chunks (memory stays flat for large index files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checksum_files(directory: str | Path, names: list[str]) -> dict[str, str]:
    """{name: sha256} for the named files of `directory`, in the given order."""
    directory = Path(directory)
    return {name: sha256_file(directory / name) for name in names}


def verify_checksums(directory: str | Path, expected: Mapping[str, str], source: str) -> None:
    """Raise ChecksumError naming the first file of `expected` that is missing or has another sha256."""
    directory = Path(directory)
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise ChecksumError(f"{path}: file listed in {source} is missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ChecksumError(
                f"{path}: sha256 {actual[:16]}... does not match {digest[:16]}... recorded in {source} "
                "(file changed or corrupted after it was written)"
            )
