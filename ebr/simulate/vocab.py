"""The simulated language: a registry of terms (words) with roles, drawn from jieba's dictionary or English lists.

Every word of a title or query is a term id here. Chinese nouns, adjectives and brand-like proper nouns are
picked deterministically from `jieba/dict.txt` (word, frequency, part of speech); English words come from
`wordlists.py`, compounded when a large world needs more of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

import numpy as np

from ebr.simulate import wordlists as wl

_CJK = re.compile(r"^[\u4e00-\u9fff]+$")

ROLE_CORE = ("category", "synonym", "ambiguous", "brand", "attribute")
ROLE_NON_CORE = ("category_l1", "category_l2", "modifier", "filler")


@dataclass
class Vocab:
    """Term registry: surface text and role of every term id."""

    lang: str
    terms: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def add(self, text: str, role: str) -> int:
        """Register a new term; a surface text may belong to one term only."""
        if text in self._index:
            raise ValueError(f"term {text!r} registered twice (roles {self.roles[self._index[text]]!r}, {role!r})")
        self._index[text] = len(self.terms)
        self.terms.append(text)
        self.roles.append(role)
        return len(self.terms) - 1

    def add_many(self, texts: list[str], role: str) -> np.ndarray:
        return np.array([self.add(t, role) for t in texts], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.terms)

    def is_core(self, term_id: int) -> bool:
        return self.roles[term_id] in ROLE_CORE


@lru_cache(maxsize=1)
def _jieba_words() -> tuple[tuple[str, int, str], ...]:
    """(word, frequency, POS) of every all-Chinese entry of jieba's dictionary, in file order."""
    text = resources.files("jieba").joinpath("dict.txt").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and _CJK.match(parts[0]):
            rows.append((parts[0], int(parts[1]), parts[2]))
    return tuple(rows)


def _ranked(words: list[tuple[str, int]]) -> list[str]:
    """Words by descending frequency, ties by the word itself: a deterministic order."""
    return [w for w, _ in sorted(set(words), key=lambda x: (-x[1], x[0]))]


class WordSource:
    """Hands out unused words of a role's pool, in a seeded order, never the same word twice."""

    def __init__(self, lang: str, rng: np.random.Generator) -> None:
        self.lang = lang
        self.rng = rng
        self.used: set[str] = set()
        self._pools: dict[str, list[str]] = {}
        self._pos: dict[str, int] = {}

    def _pool(self, kind: str) -> list[str]:
        if kind not in self._pools:
            words = _zh_pool(kind) if self.lang == "zh" else _en_pool(kind)
            order = self.rng.permutation(len(words)) if kind in {"noun", "brand", "adjective"} else None
            self._pools[kind] = [words[i] for i in order] if order is not None else list(words)
            self._pos[kind] = 0
        return self._pools[kind]

    def available(self, kind: str) -> int:
        """Size of pool `kind` (before compounding)."""
        return len(self._pool(kind))

    def take(self, kind: str, n: int) -> list[str]:
        """n unused words of pool `kind`; English nouns and brands are compounded when the pool runs out."""
        pool = self._pool(kind)
        out: list[str] = []
        while len(out) < n and self._pos[kind] < len(pool):
            w = pool[self._pos[kind]]
            self._pos[kind] += 1
            if w not in self.used:
                self.used.add(w)
                out.append(w)
        tries = 0
        while len(out) < n:
            w = self._compound(kind, pool)
            tries += 1
            if w not in self.used:
                self.used.add(w)
                out.append(w)
            elif tries > 50 * n + 1000:
                raise ValueError(f"vocabulary exhausted: cannot draw {n} distinct {kind!r} words ({self.lang})")
        return out

    def _compound(self, kind: str, pool: list[str]) -> str:
        if kind == "brand" and self.lang == "en":
            h = wl.EN_BRAND_HEADS
            t = wl.EN_BRAND_TAILS
            return (h[self.rng.integers(len(h))] + h[self.rng.integers(len(h))] + t[self.rng.integers(len(t))]).title()
        if kind in {"noun", "brand"}:
            a, b = pool[self.rng.integers(len(pool))], pool[self.rng.integers(len(pool))]
            if self.lang == "zh":
                return a + b[:1] if kind == "brand" else a[:1] + b
            return f"{a} {b}"
        raise ValueError(f"vocabulary exhausted: pool {kind!r} ({self.lang}) has only {len(pool)} words")


@cache
def _zh_pool(kind: str) -> tuple[str, ...]:
    rows = _jieba_words()
    if kind == "noun":
        return tuple(_ranked([(w, f) for w, f, p in rows if p == "n" and len(w) == 2 and f >= 30]))
    if kind == "brand":
        return tuple(_ranked([(w, f) for w, f, p in rows if p == "nz" and 2 <= len(w) <= 3 and f >= 3]))
    if kind == "adjective":
        return tuple(_ranked([(w, f) for w, f, p in rows if p == "a" and len(w) == 2 and f >= 50]))
    if kind == "modifier":
        return tuple(_ranked([(w, f) for w, f, p in rows if p == "b" and len(w) == 2 and f >= 20]))
    if kind == "color":
        return tuple(
            _ranked([(w, f) for w, f, _ in rows if len(w) == 2 and w[1] == "色" and w[0] in wl.ZH_COLOR_HEADS])
        )
    if kind == "material":
        dict_words = {w for w, _, _ in rows}
        return tuple(w for w in wl.ZH_MATERIALS if w in dict_words)
    if kind == "size":
        return tuple(wl.SIZES)
    if kind == "filler":
        return tuple(_ranked([(w, f) for w, f, p in rows if p == "n" and len(w) == 3 and f >= 20]))
    raise KeyError(kind)


def _en_pool(kind: str) -> tuple[str, ...]:
    pools = {
        "noun": wl.EN_NOUNS,
        "adjective": wl.EN_STYLES,
        "modifier": wl.EN_MODIFIERS,
        "color": wl.EN_COLORS,
        "material": wl.EN_MATERIALS,
        "size": wl.SIZES,
        "filler": wl.EN_FILLER,
        "brand": [(h + t).title() for h in wl.EN_BRAND_HEADS for t in wl.EN_BRAND_TAILS],
    }
    return tuple(dict.fromkeys(pools[kind]))


def variant_form(text: str, lang: str, rng: np.random.Generator) -> str | None:
    """A misspelt surface of `text`: traditional characters (zh) or a swapped-letter typo (en); None if none."""
    if lang == "zh":
        chars = [wl.ZH_VARIANTS.get(c, c) for c in text]
        v = "".join(chars)
        return v if v != text else None
    letters = [i for i in range(1, len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not letters:
        return None
    i = letters[int(rng.integers(len(letters)))]
    if text[i] == text[i + 1]:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
