"""Tokenizers of the lexical channel, by name: the name is stored with a saved index so that queries are cut
exactly as the titles were."""

from __future__ import annotations

from collections.abc import Callable

from ebr.text import segment_words


def bm25_tokens(text: str) -> list[str]:
    """Tokens of a title or query for BM25: the project's word segmentation (normalized, jieba for Han runs)."""
    return segment_words(text)


def whitespace_tokens(text: str) -> list[str]:
    """Tokens split on whitespace, no normalization (hand-made test corpora)."""
    return text.split()


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"words": bm25_tokens, "whitespace": whitespace_tokens}


def tokenizer_name(tokenize: Callable[[str], list[str]]) -> str | None:
    """The registered name of `tokenize` (`str.split` counts as "whitespace"), or None for any other callable."""
    if tokenize is str.split:
        return "whitespace"
    return next((name for name, fn in TOKENIZERS.items() if fn is tokenize), None)


def tokenizer_by_name(name: str) -> Callable[[str], list[str]]:
    """The tokenizer registered as `name`; a ValueError listing the known names otherwise."""
    if name not in TOKENIZERS:
        raise ValueError(f"unknown lexical tokenizer {name!r}; known: {sorted(TOKENIZERS)}")
    return TOKENIZERS[name]
