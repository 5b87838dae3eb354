"""Text featurization: normalization, char n-grams, word segmentation (jieba) and stable hashed vocabularies.

Everything here is pure Python (jieba is loaded lazily) so the CLI can import it without cost.
"""

from ebr.text.analyzer import Granules, TextAnalyzer, TextConfig
from ebr.text.hashing import HashedVocab, stable_hash64
from ebr.text.ngrams import char_bigrams, char_unigrams, latin_trigrams, word_bigrams
from ebr.text.normalize import normalize_text
from ebr.text.runs import Run, split_runs
from ebr.text.segment import segment_han, segment_words

__all__ = [
    "Granules",
    "HashedVocab",
    "Run",
    "TextAnalyzer",
    "TextConfig",
    "char_bigrams",
    "char_unigrams",
    "latin_trigrams",
    "normalize_text",
    "segment_han",
    "segment_words",
    "split_runs",
    "stable_hash64",
    "word_bigrams",
]
