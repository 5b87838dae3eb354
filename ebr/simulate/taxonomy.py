"""The simulated catalogue: category tree (l1 -> l2 -> leaf), synonyms, ambiguous words, brands, attributes.

A leaf is named by one core word; each leaf also has synonyms (what query rewrites swap), and a share of leaf
pairs from different l1 categories share an ambiguous word whose meaning depends on the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ebr.simulate.config import ScaleSizes, SimulateConfig
from ebr.simulate.streams import stream
from ebr.simulate.vocab import Vocab, WordSource

ATTRIBUTE_KEYS = ("color", "material", "style", "size")
N_MODIFIERS = 53  # a prime, so `start + k * step (mod N)` lists distinct modifiers for any step


@dataclass
class Taxonomy:
    """Category tree, brands and attributes as term ids and index arrays."""

    vocab: Vocab
    l1_term: np.ndarray  # (n_l1,)
    l2_term: np.ndarray  # (n_l2,)
    l2_l1: np.ndarray  # (n_l2,) parent l1
    leaf_term: np.ndarray  # (n_leaf,) canonical leaf word
    leaf_l2: np.ndarray  # (n_leaf,)
    leaf_l1: np.ndarray  # (n_leaf,)
    leaf_weight: np.ndarray  # (n_leaf,) supply and demand weight, sums to 1
    leaf_alt_terms: list[np.ndarray]  # per leaf: synonyms and ambiguous words naming it
    synonym_pairs: list[tuple[int, int]]  # (word, synonym) term pairs, both directions
    ambiguous_term: np.ndarray  # (n_pairs,)
    ambiguous_leaves: np.ndarray  # (n_pairs, 2)
    brand_term: np.ndarray  # (n_brand,)
    brand_l2: np.ndarray  # (n_brand,)
    brand_weight: np.ndarray  # (n_brand,) popularity within its l2 (sums to 1 per l2)
    l2_brands: list[np.ndarray]  # per l2: brand ids
    attr_values: list[np.ndarray]  # per attribute key: term ids of its values
    leaf_attr_pool: np.ndarray  # (n_leaf, n_keys, pool) value indices into attr_values[key], -1 = key unused
    modifier_term: np.ndarray  # (N_MODIFIERS,)
    modifier_weight: np.ndarray  # (N_MODIFIERS,) Zipf-like, sums to 1
    filler_term: np.ndarray  # words for body text

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_term)

    def term(self, tid: int) -> str:
        return self.vocab.terms[tid]


def _zipf(n: int, a: float, offset: float = 1.0) -> np.ndarray:
    w = 1.0 / (np.arange(n, dtype=np.float64) + offset) ** a
    return w / w.sum()


def build_taxonomy(cfg: SimulateConfig, sizes: ScaleSizes) -> Taxonomy:
    """Draw the whole catalogue vocabulary and structure from the config's seed."""
    rng = stream(cfg.seed, "taxonomy")
    words = WordSource(cfg.lang, stream(cfg.seed, "words"))
    vocab = Vocab(cfg.lang)
    n_l1, n_l2 = sizes.n_l1, sizes.n_l1 * sizes.n_l2_per_l1
    n_leaf = sizes.n_leaves

    # closed word classes first, so the open noun pool cannot use up a colour or material word
    attr_words = [
        words.take("color", min(16, words.available("color"))),
        words.take("material", min(16, words.available("material"))),
        words.take("adjective", 16),
        words.take("size", 7),
    ]
    modifier_words = words.take("modifier", N_MODIFIERS)
    l1_term = vocab.add_many(words.take("noun", n_l1), "category_l1")
    l2_term = vocab.add_many(words.take("noun", n_l2), "category_l2")
    l2_l1 = np.repeat(np.arange(n_l1), sizes.n_l2_per_l1)
    leaf_term = vocab.add_many(words.take("noun", n_leaf), "category")
    leaf_l2 = np.repeat(np.arange(n_l2), sizes.n_leaf_per_l2)
    leaf_l1 = l2_l1[leaf_l2]
    leaf_weight = rng.lognormal(0.0, 0.6, n_leaf)
    leaf_weight /= leaf_weight.sum()

    alt: list[list[int]] = [[] for _ in range(n_leaf)]
    pairs: list[tuple[int, int]] = []
    if cfg.synonyms_per_leaf:
        syn = vocab.add_many(words.take("noun", n_leaf * cfg.synonyms_per_leaf), "synonym")
        syn = syn.reshape(n_leaf, cfg.synonyms_per_leaf)
        for leaf in range(n_leaf):
            for s in syn[leaf]:
                alt[leaf].append(int(s))
                pairs += [(int(leaf_term[leaf]), int(s)), (int(s), int(leaf_term[leaf]))]

    amb_leaves = _ambiguous_pairs(rng, leaf_l1, math.ceil(cfg.ambiguous_leaf_share * n_leaf / 2))
    amb_term = vocab.add_many(words.take("noun", len(amb_leaves)), "ambiguous")
    for t, (a, b) in zip(amb_term, amb_leaves, strict=True):
        for leaf in (a, b):
            alt[leaf].append(int(t))
            pairs += [(int(t), int(leaf_term[leaf])), (int(leaf_term[leaf]), int(t))]

    n_brand = n_l2 * sizes.brands_per_l2
    brand_term = vocab.add_many(words.take("brand", n_brand), "brand")
    brand_l2 = np.repeat(np.arange(n_l2), sizes.brands_per_l2)
    within = _zipf(sizes.brands_per_l2, 1.0)
    brand_weight = np.tile(within, n_l2)
    l2_brands = [np.arange(i * sizes.brands_per_l2, (i + 1) * sizes.brands_per_l2) for i in range(n_l2)]

    attr_values = [vocab.add_many(w, "attribute") for w in attr_words]
    pool = 6
    leaf_attr_pool = np.full((n_leaf, len(ATTRIBUTE_KEYS), pool), -1, dtype=np.int32)
    for leaf in range(n_leaf):
        n_keys = int(rng.integers(2, len(ATTRIBUTE_KEYS) + 1))
        keys = rng.choice(len(ATTRIBUTE_KEYS), size=n_keys, replace=False)
        for k in keys:
            m = min(pool, len(attr_values[k]))
            leaf_attr_pool[leaf, k, :m] = rng.choice(len(attr_values[k]), size=m, replace=False)

    modifier_term = vocab.add_many(modifier_words, "modifier")
    filler_term = vocab.add_many(words.take("filler", 25), "filler")
    return Taxonomy(
        vocab=vocab, l1_term=l1_term, l2_term=l2_term, l2_l1=l2_l1, leaf_term=leaf_term, leaf_l2=leaf_l2,
        leaf_l1=leaf_l1, leaf_weight=leaf_weight, leaf_alt_terms=[np.array(a, dtype=np.int32) for a in alt],
        synonym_pairs=pairs, ambiguous_term=amb_term, ambiguous_leaves=amb_leaves, brand_term=brand_term,
        brand_l2=brand_l2, brand_weight=brand_weight, l2_brands=l2_brands, attr_values=attr_values,
        leaf_attr_pool=leaf_attr_pool, modifier_term=modifier_term, modifier_weight=_zipf(N_MODIFIERS, 0.8),
        filler_term=filler_term,
    )


def _ambiguous_pairs(rng: np.random.Generator, leaf_l1: np.ndarray, n_pairs: int) -> np.ndarray:
    """Disjoint leaf pairs from different l1 categories (an ambiguous word means either leaf)."""
    out: list[tuple[int, int]] = []
    if n_pairs <= 0 or len(np.unique(leaf_l1)) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    free = list(rng.permutation(len(leaf_l1)))
    while free and len(out) < n_pairs:
        a = free.pop()
        partner = next((b for b in free if leaf_l1[b] != leaf_l1[a]), None)
        if partner is None:
            break
        free.remove(partner)
        out.append((int(a), int(partner)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)
