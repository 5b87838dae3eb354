"""Stable hashed vocabularies: a token maps to one bucket in [1, buckets] in every process; 0 is padding.

Python's `hash()` is salted per process, so ids come from a keyed blake2b digest (64 bits) instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

PAD_ID = 0


@lru_cache(maxsize=262_144)
def stable_hash64(token: str, namespace: str = "") -> int:
    """Unsigned 64-bit blake2b hash of `token`, keyed by `namespace` so fields hash independently."""
    h = hashlib.blake2b(token.encode("utf-8"), digest_size=8, person=namespace.encode("utf-8")[:16])
    return int.from_bytes(h.digest(), "little")


@dataclass(frozen=True)
class HashedVocab:
    """A fixed-size vocabulary by hashing: never out-of-vocabulary, ids 1..buckets, 0 reserved for padding."""

    namespace: str
    buckets: int

    def __post_init__(self) -> None:
        if not isinstance(self.buckets, int) or self.buckets < 1:
            raise ValueError(
                f"HashedVocab {self.namespace!r}: buckets must be an int >= 1, got {self.buckets!r}"
            )
        if len(self.namespace.encode("utf-8")) > 16:
            raise ValueError(f"HashedVocab namespace {self.namespace!r} must be at most 16 bytes")

    @property
    def num_embeddings(self) -> int:
        """Rows an embedding table needs: the buckets plus the padding row 0."""
        return self.buckets + 1

    def id(self, token: str) -> int:
        """Bucket id of one token, in [1, buckets]."""
        return 1 + stable_hash64(token, self.namespace) % self.buckets

    def ids(self, tokens: Iterable[str], max_len: int | None = None) -> list[int]:
        """Ids of the first `max_len` tokens, right-padded with 0 to exactly `max_len` (when given)."""
        out = [self.id(t) for t in tokens]
        if max_len is None:
            return out
        if max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        out = out[:max_len]
        return out + [PAD_ID] * (max_len - len(out))
