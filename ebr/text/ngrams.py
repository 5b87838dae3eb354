"""Character and word n-grams: Han char unigrams/bigrams (Taobao MGDSPR, seed 001) and Latin char trigrams
(Facebook EBR char n-grams, seed 004)."""

from __future__ import annotations

from collections.abc import Sequence

from ebr.text.runs import split_runs


def char_unigrams(text: str) -> list[str]:
    """Every character of every run (whitespace and punctuation excluded)."""
    return [c for run in split_runs(text) for c in run.text]


def char_bigrams(text: str) -> list[str]:
    """Adjacent character pairs inside each run (never across a space or punctuation)."""
    return [run.text[i : i + 2] for run in split_runs(text) for i in range(len(run.text) - 1)]


def latin_trigrams(word: str) -> list[str]:
    """Char trigrams of a word with `#` boundary marks: "red" -> ["#re", "red", "ed#"]."""
    marked = f"#{word}#"
    return [marked[i : i + 3] for i in range(len(marked) - 2)]


def word_bigrams(words: Sequence[str]) -> list[str]:
    """Adjacent word pairs joined by a space: ["red", "dress", "xl"] -> ["red dress", "dress xl"]."""
    return [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
