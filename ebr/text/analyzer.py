"""The query/title analyzer: the three granularities of the Taobao MGDSPR multi-granular semantic unit.

For Han text: char unigrams, char bigrams and jieba words (seed 001). Latin text has no useful single
characters, so its "character" granularity is char trigrams (Facebook EBR char n-grams, seed 004), its
bigrams are adjacent word pairs and its words are lowercase words (plus trigrams, when configured, so
title-side word bags match word variants). Mixed zh/Latin text takes each run by its script.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from pydantic import Field

from ebr.settings import Section
from ebr.text.ngrams import latin_trigrams, word_bigrams
from ebr.text.normalize import normalize_text
from ebr.text.runs import split_runs
from ebr.text.segment import segment_han

# Trigrams in the word granularity carry this prefix so the trigram "red" never collides with the word "red"
# (words are letter/digit runs, so no word starts with it).
TRIGRAM_MARK = "~"


class TextConfig(Section):
    """How text is cut into units; changing any field changes every id, so it is saved with each model."""

    jieba_hmm: bool = Field(True, description="jieba HMM (Viterbi) for words missing from its dictionary")
    latin_trigrams_in_words: bool = Field(
        True, description="add char trigrams of Latin words to the word granularity (Facebook EBR, seed 004)"
    )


class Granules(NamedTuple):
    """The units of one text at each granularity, in order of appearance."""

    unigrams: tuple[str, ...]
    bigrams: tuple[str, ...]
    words: tuple[str, ...]


class TextAnalyzer:
    """Turns raw text into `Granules`; results are cached per distinct text (queries repeat a lot)."""

    def __init__(self, config: TextConfig | None = None) -> None:
        self.config = config or TextConfig()
        self._analyze = lru_cache(maxsize=200_000)(self._analyze_uncached)

    def analyze(self, text: str) -> Granules:
        """Granules of `text`; an empty or punctuation-only text gives empty tuples, never an error."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._analyze(text)

    def words(self, text: str) -> tuple[str, ...]:
        """The word granularity only (what title bags and historical queries use)."""
        return self.analyze(text).words

    def _analyze_uncached(self, text: str) -> Granules:
        uni: list[str] = []
        bi: list[str] = []
        words: list[str] = []
        latin_words: list[str] = []

        def flush_latin() -> None:
            bi.extend(word_bigrams(latin_words))
            latin_words.clear()

        for run in split_runs(normalize_text(text)):
            if run.kind == "han":
                flush_latin()
                uni.extend(run.text)
                bi.extend(run.text[i : i + 2] for i in range(len(run.text) - 1))
                words.extend(segment_han(run.text, self.config.jieba_hmm))
            else:
                grams = latin_trigrams(run.text)
                uni.extend(grams)
                words.append(run.text)
                if self.config.latin_trigrams_in_words:
                    words.extend(TRIGRAM_MARK + g for g in grams)
                latin_words.append(run.text)
        flush_latin()
        return Granules(tuple(uni), tuple(bi), tuple(words))
