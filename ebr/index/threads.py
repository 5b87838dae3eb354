"""Scoped control of Faiss's OpenMP thread count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run the block with `n` Faiss threads (0 leaves the current setting) and restore it afterwards."""
    before = faiss.omp_get_max_threads()
    if n > 0:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
