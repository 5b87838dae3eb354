"""Query rewrites from an optional dictionary: hard positives (synonym swap, dropping a non-core term) and hard
negatives (dropping a core term), each paired with the clicked doc of the original request (seed 000).

The dictionary is two TSV files: `synonyms.tsv` (word<TAB>synonym, one pair a line) and `core_terms.tsv`
(word<TAB>label, label `core` for category/brand/attribute words, `non_core` or `modifier` for the rest).
Queries are split on whitespace, or, when they have none (Chinese), by forward maximum matching against the
dictionary's words; characters outside the dictionary stay together and are never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ebr import rawfs
from ebr.samples.config import RewritesConfig
from ebr.samples.tables import columns, empty

SYNONYMS_FILE = "synonyms.tsv"
CORE_TERMS_FILE = "core_terms.tsv"
CORE_LABELS = frozenset({"core", "category", "synonym", "brand", "attribute", "ambiguous", "1", "true"})
NON_CORE_LABELS = frozenset(
    {"non_core", "noncore", "non-core", "modifier", "category_l1", "category_l2", "filler", "0", "false"}
)
HEADER_WORDS = frozenset({"word", "term"})
REWRITE_KINDS = ("synonym_swap", "drop_non_core", "drop_core")
REWRITE_COLUMNS = columns("rewrites")


@dataclass
class RewriteDictionary:
    """Synonyms (both directions) and the core / non-core role of words."""

    synonyms: dict[str, list[str]] = field(default_factory=dict)
    core: dict[str, bool] = field(default_factory=dict)

    @property
    def words(self) -> set[str]:
        return set(self.synonyms) | {s for v in self.synonyms.values() for s in v} | set(self.core)


def _rows(path: rawfs.Root) -> list[tuple[int, list[str]]]:
    out = []
    for n, line in enumerate(rawfs.read_text(path, encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}:{n}: want two tab-separated fields, got {line!r}")
        if n == 1 and parts[0].lower() in HEADER_WORDS:
            continue
        out.append((n, parts))
    return out


def load_dictionary(directory: str | Path) -> RewriteDictionary | None:
    """Read synonyms.tsv and core_terms.tsv from `directory` (a folder or an object-storage URI); None when
    neither exists (rewrites are skipped)."""
    d = rawfs.raw_root(directory)
    syn_path, core_path = rawfs.join(d, SYNONYMS_FILE), rawfs.join(d, CORE_TERMS_FILE)
    syn_ok, core_ok = rawfs.is_file(syn_path), rawfs.is_file(core_path)
    if not syn_ok and not core_ok:
        return None
    out = RewriteDictionary()
    if syn_ok:
        for _, (word, syn, *_) in _rows(syn_path):
            if syn != word:
                for a, b in ((word, syn), (syn, word)):
                    lst = out.synonyms.setdefault(a, [])
                    if b not in lst:
                        lst.append(b)
    if core_ok:
        for n, (word, label, *_) in _rows(core_path):
            lab = label.lower()
            if lab in CORE_LABELS:
                out.core[word] = True
            elif lab in NON_CORE_LABELS:
                out.core[word] = False
            else:
                raise ValueError(
                    f"{core_path}:{n}: label {label!r} of {word!r} is neither core ({sorted(CORE_LABELS)}) "
                    f"nor non-core ({sorted(NON_CORE_LABELS)})"
                )
    for lst in out.synonyms.values():
        lst.sort()
    return out


def segment(query: str, words: set[str], max_len: int) -> tuple[list[str], str]:
    """Split a query into tokens and return them with the separator that joins them back."""
    if any(c.isspace() for c in query):
        return query.split(), " "
    tokens: list[str] = []
    unknown = ""
    i = 0
    while i < len(query):
        for j in range(min(len(query), i + max_len), i, -1):
            if query[i:j] in words:
                if unknown:
                    tokens.append(unknown)
                    unknown = ""
                tokens.append(query[i:j])
                i = j
                break
        else:
            unknown += query[i]
            i += 1
    if unknown:
        tokens.append(unknown)
    return tokens, ""


def query_rewrites(query: str, dictionary: RewriteDictionary, words: set[str], max_len: int) -> list[tuple]:
    """Every rewrite of `query`: (kind, rewritten query, term, replacement or None)."""
    tokens, sep = segment(query, words, max_len)
    out: list[tuple] = []
    for i, tok in enumerate(tokens):
        for syn in dictionary.synonyms.get(tok, []):
            out.append(("synonym_swap", sep.join(tokens[:i] + [syn] + tokens[i + 1 :]), tok, syn))
    if len(tokens) >= 2:
        has_core = [dictionary.core.get(t) is True for t in tokens]
        for i, tok in enumerate(tokens):
            rest = sep.join(tokens[:i] + tokens[i + 1 :])
            role = dictionary.core.get(tok)
            if role is False and any(has_core[:i] + has_core[i + 1 :]):
                out.append(("drop_non_core", rest, tok, None))
            elif role is True:
                out.append(("drop_core", rest, tok, None))
    return [r for r in out if r[1] and r[1] != query]


def empty_rewrites() -> pd.DataFrame:
    """The rewrite table with no rows."""
    return empty("rewrites")


def rewrite_samples(
    positives: pd.DataFrame, dictionary: RewriteDictionary, cfg: RewritesConfig, rng: np.random.Generator
) -> pd.DataFrame:
    """With chance `rate` per positive and kind, up to `per_positive` rewrites of that kind: label 1 for
    synonym_swap and drop_non_core (kind hard_positive), label 0 for drop_core (hard_negative, QU fields cleared)."""
    if positives.empty or cfg.per_positive == 0:
        return empty_rewrites()
    words = dictionary.words
    max_len = max((len(w) for w in words), default=1)
    cache: dict[str, list[tuple]] = {}
    picks: list[tuple[int, tuple]] = []
    for idx, q in enumerate(positives["query"].to_numpy()):
        if q not in cache:
            cache[q] = query_rewrites(q, dictionary, words, max_len)
        for kind in REWRITE_KINDS:
            options = [r for r in cache[q] if r[0] == kind]
            if not options or rng.random() >= cfg.rate:
                continue
            n = min(cfg.per_positive, len(options))
            for j in sorted(rng.choice(len(options), size=n, replace=False).tolist()):
                picks.append((idx, options[j]))
    if not picks:
        return empty_rewrites()
    src = positives.iloc[[i for i, _ in picks]].reset_index(drop=True)
    out = src.rename(columns={"query": "original_query"})
    out["rewrite"] = [r[0] for _, r in picks]
    out["query"] = [r[1] for _, r in picks]
    out["term"] = [r[2] for _, r in picks]
    out["replacement"] = [r[3] for _, r in picks]
    neg = (out["rewrite"] == "drop_core").to_numpy()
    out["label"] = np.where(neg, 0, 1).astype("int8")
    out["kind"] = np.where(neg, "hard_negative", "hard_positive")
    out["weight"] = np.where(neg, 1.0, out["weight"].to_numpy() * cfg.hard_positive_weight).astype("float32")
    out.loc[neg, ["query_category_leaf", "query_brand"]] = None
    return out[REWRITE_COLUMNS]


def hard_positive_rows(rewrites: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The hard positives of the rewrite table in the retrieval-positive layout (kind = hard_positive)."""
    rows = rewrites[rewrites["kind"] == "hard_positive"]
    return rows[columns].reset_index(drop=True)
