"""Query selection (Facebook EBR): decide per query which retrieval channels run.

- An ID-like query (a product code, an SKU, a number: one token of letters and digits with at least
  `id_min_digits` digits, or only digits) is navigational: term matching finds it exactly and an embedding
  only adds near misses, so only the lexical channel runs.
- A long natural-language query (at least `long_query_tokens` tokens) rarely matches all its terms in a title;
  BM25 then rewards docs matching a few frequent words, so only the embedding channel runs.
- Every other query runs both channels and the merge decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CHANNELS = ("ann", "lexical")
_ID_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_./#]*$")


@dataclass(frozen=True)
class QuerySelection:
    """The rule's parameters; `enabled=False` runs every channel for every query."""

    enabled: bool = True
    id_min_digits: int = 3
    long_query_tokens: int = 8

    def __post_init__(self) -> None:
        if self.id_min_digits < 1:
            raise ValueError(f"id_min_digits must be >= 1, got {self.id_min_digits}")
        if self.long_query_tokens < 2:
            raise ValueError(f"long_query_tokens must be >= 2, got {self.long_query_tokens}")


def is_id_like(query: str, min_digits: int = 3) -> bool:
    """One whitespace-free token of ASCII letters/digits (and - _ . / #) holding >= `min_digits` digits."""
    q = query.strip()
    if not q or any(ch.isspace() for ch in q) or not _ID_LIKE.match(q):
        return False
    digits = sum(ch.isdigit() for ch in q)
    return digits >= min_digits or q.isdigit()


def select_channels(query: str, tokenize: Callable[[str], list[str]],
                    rule: QuerySelection | None = None) -> tuple[str, ...]:
    """The channels to run for `query` (a subset of CHANNELS, never empty), with `tokenize` the lexical
    channel's own tokenizer so 'long' means what BM25 sees."""
    rule = rule or QuerySelection()
    if not rule.enabled:
        return CHANNELS
    if is_id_like(query, rule.id_min_digits):
        return ("lexical",)
    if len(tokenize(query)) >= rule.long_query_tokens:
        return ("ann",)
    return CHANNELS
