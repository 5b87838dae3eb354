"""Word segmentation: jieba (bundled dictionary only, silenced, deterministic) for Han runs; lowercase
words for Latin runs."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

from ebr.text.normalize import normalize_text
from ebr.text.runs import split_runs

_LOCK = threading.Lock()
_TOKENIZER: Any = None


def _tokenizer() -> Any:
    """The process-wide jieba tokenizer on jieba's bundled dictionary; built once, quietly."""
    global _TOKENIZER
    if _TOKENIZER is None:
        with _LOCK:
            if _TOKENIZER is None:
                import jieba

                logging.getLogger("jieba").setLevel(logging.ERROR)
                jieba.setLogLevel(logging.ERROR)
                tok = jieba.Tokenizer(dictionary=jieba.DEFAULT_DICT)
                tok.initialize()
                _TOKENIZER = tok
    return _TOKENIZER


@lru_cache(maxsize=200_000)
def segment_han(run: str, hmm: bool = True) -> tuple[str, ...]:
    """jieba segmentation of one Han run; HMM (Viterbi, deterministic) finds words not in the dictionary."""
    return tuple(w for w in _tokenizer().cut(run, HMM=hmm) if w.strip())


def segment_words(text: str, hmm: bool = True) -> list[str]:
    """Words of normalized text: jieba words for Han runs, whole lowercase words for Latin/digit runs."""
    words: list[str] = []
    for run in split_runs(normalize_text(text)):
        if run.kind == "han":
            words.extend(segment_han(run.text, hmm))
        else:
            words.append(run.text)
    return words
