"""The doc corpus: structured fields, keyword-stacked titles, latent quality and Zipf-like popularity.

Docs are held as numpy arrays (one row per doc, current version); titles are rows of term ids, rendered to
text only when a partition is written. New docs are appended every day and a share of old docs change
(re-stacked title, changed brand), which the docs table logs as change rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.simulate.config import SimulateConfig
from ebr.simulate.people import Authors
from ebr.simulate.taxonomy import ATTRIBUTE_KEYS, N_MODIFIERS, Taxonomy

T_MAX = 13  # title slots: brand, 4 attributes, up to 6 modifiers, leaf word, l2 word
_SLOT_BRAND, _SLOT_ATTR, _SLOT_MOD, _SLOT_LEAF, _SLOT_L2 = 0, 1, 5, 11, 12
N_BODY_WORDS = 4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Docs:
    """Current version of every doc published so far (doc_id = index + 1)."""

    leaf: np.ndarray  # int32 leaf index
    brand: np.ndarray  # int32 brand index, -1 = none
    attrs: np.ndarray  # int16 (n, n_keys): value index into taxonomy.attr_values[key], -1 = unset
    title: np.ndarray  # int32 (n, T_MAX) term ids in title order, -1 padded at the end
    gaps: np.ndarray  # uint16 bit i = a space after title token i (Chinese titles)
    tags: np.ndarray  # int32 (n, 3) tag term ids, -1 = none
    body: np.ndarray  # int32 (n, N_BODY_WORDS) filler term ids of the body, all -1 = no body
    author: np.ndarray  # int32 author index
    publish_ts: np.ndarray  # int64 µs
    valid_ts: np.ndarray  # int64 µs: event_timestamp of the doc's first row (from then on it exists)
    quality: np.ndarray  # float32 in (0, 1)
    popularity: np.ndarray  # float64 > 0, Zipf-like latent popularity

    @property
    def n(self) -> int:
        return len(self.leaf)

    @property
    def doc_id(self) -> np.ndarray:
        return np.arange(1, self.n + 1, dtype=np.int64)

    def extend(self, other: Docs) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


def leaf_alt_matrix(tax: Taxonomy) -> np.ndarray:
    """(n_leaf, max_alt) synonym/ambiguous term ids naming each leaf, -1 padded."""
    width = max((len(a) for a in tax.leaf_alt_terms), default=0)
    m = np.full((tax.n_leaves, max(width, 1)), -1, dtype=np.int32)
    for i, a in enumerate(tax.leaf_alt_terms):
        m[i, : len(a)] = a
    return m


def pick_modifiers(rng: np.random.Generator, tax: Taxonomy, counts: np.ndarray, width: int) -> np.ndarray:
    """(n, width) distinct modifier term ids per row (first `counts[i]` set), popular modifiers more often."""
    n = len(counts)
    start = rng.choice(N_MODIFIERS, size=n, p=tax.modifier_weight)
    step = rng.integers(1, N_MODIFIERS, size=n)
    j = np.arange(width)
    idx = (start[:, None] + j[None, :] * step[:, None]) % N_MODIFIERS
    out = tax.modifier_term[idx].astype(np.int32)
    out[j[None, :] >= counts[:, None]] = -1
    return out


def make_titles(
    cfg: SimulateConfig, rng: np.random.Generator, tax: Taxonomy, leaf: np.ndarray, brand: np.ndarray,
    attrs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Keyword-stacked titles (term id rows) from brand, attribute, modifier and category words, plus gaps."""
    n = len(leaf)
    slots = np.full((n, T_MAX), -1, dtype=np.int32)
    has_brand = (brand >= 0) & (rng.random(n) < 0.9)
    slots[has_brand, _SLOT_BRAND] = tax.brand_term[brand[has_brand]]
    for k in range(len(ATTRIBUTE_KEYS)):
        show = (attrs[:, k] >= 0) & (rng.random(n) < cfg.title_attr_rate)
        slots[show, _SLOT_ATTR + k] = tax.attr_values[k][attrs[show, k]]
    n_mod = rng.integers(0, cfg.title_max_modifiers + 1, size=n)
    slots[:, _SLOT_MOD : _SLOT_MOD + 6] = pick_modifiers(rng, tax, n_mod, 6)
    alt = leaf_alt_matrix(tax)
    n_alt = (alt[leaf] >= 0).sum(axis=1)
    use_alt = (n_alt > 0) & (rng.random(n) < cfg.title_synonym_rate)
    pick = (rng.random(n) * np.maximum(n_alt, 1)).astype(np.int64)
    slots[:, _SLOT_LEAF] = np.where(use_alt, alt[leaf, np.minimum(pick, alt.shape[1] - 1)], tax.leaf_term[leaf])
    with_l2 = rng.random(n) < 0.3
    slots[with_l2, _SLOT_L2] = tax.l2_term[tax.leaf_l2[leaf[with_l2]]]
    key = rng.random((n, T_MAX))
    key[:, _SLOT_BRAND] -= (rng.random(n) < 0.7).astype(np.float64)  # brand usually leads the title
    key[slots < 0] = 2.0
    order = np.argsort(key, axis=1, kind="stable")
    title = np.take_along_axis(slots, order, axis=1)
    bits = (rng.random((n, T_MAX)) < 0.3) * (1 << np.arange(T_MAX))
    return title, bits.sum(axis=1).astype(np.uint16)


def make_docs(
    cfg: SimulateConfig, rng: np.random.Generator, tax: Taxonomy, authors: Authors, n: int, n_ref: int,
    publish_ts: np.ndarray, valid_ts: np.ndarray,
) -> Docs:
    """n new docs; popularity is Zipf-like over a corpus of n_ref docs and correlated with quality."""
    leaf = rng.choice(tax.n_leaves, size=n, p=tax.leaf_weight).astype(np.int32)
    l1 = tax.leaf_l1[leaf]
    author = _pick_authors(rng, authors, l1)
    quality = _sigmoid(np.log(authors.quality[author] / (1 - authors.quality[author])) + rng.normal(0, 0.6, n))
    z = np.log(quality / (1 - quality)) / 1.25  # logit of quality has std ~1.25: standardize it
    rho = cfg.popularity_quality_corr
    s = rho * z + np.sqrt(1 - rho**2) * rng.normal(size=n)
    u = _sigmoid(1.702 * s)  # ~ normal CDF: a rank in (0, 1), low = popular
    popularity = (u * n_ref + 1.0) ** (-cfg.doc_zipf)

    bpl2 = len(tax.l2_brands[0])
    brand = (tax.leaf_l2[leaf] * bpl2 + rng.choice(bpl2, size=n, p=tax.brand_weight[:bpl2])).astype(np.int32)
    brand[rng.random(n) < cfg.brand_null_rate] = -1

    n_keys = len(ATTRIBUTE_KEYS)
    attrs = np.full((n, n_keys), -1, dtype=np.int16)
    for k in range(n_keys):
        pool = tax.leaf_attr_pool[leaf, k, :]
        m = (pool >= 0).sum(axis=1)
        pick = (rng.random(n) * np.maximum(m, 1)).astype(np.int64)
        val = pool[np.arange(n), np.minimum(pick, pool.shape[1] - 1)]
        on = (m > 0) & (rng.random(n) < cfg.attr_fill_rate)
        attrs[on, k] = val[on]
    title, gaps = make_titles(cfg, rng, tax, leaf, brand, attrs)

    tags = np.full((n, 3), -1, dtype=np.int32)
    t0 = rng.random(n) < 0.6
    tags[t0, 0] = tax.l2_term[tax.leaf_l2[leaf[t0]]]
    tags[:, 1] = pick_modifiers(rng, tax, (rng.random(n) < 0.5).astype(np.int64), 1)[:, 0]
    t2 = rng.random(n) < 0.3
    tags[t2, 2] = tax.l1_term[l1[t2]]
    body = tax.filler_term[rng.integers(0, len(tax.filler_term), size=(n, N_BODY_WORDS))].astype(np.int32)
    body[rng.random(n) < cfg.body_null_rate] = -1
    return Docs(
        leaf=leaf, brand=brand, attrs=attrs, title=title, gaps=gaps, tags=tags, body=body,
        author=author.astype(np.int32), publish_ts=publish_ts.astype(np.int64),
        valid_ts=valid_ts.astype(np.int64), quality=quality.astype(np.float32), popularity=popularity,
    )


def _pick_authors(rng: np.random.Generator, authors: Authors, l1: np.ndarray) -> np.ndarray:
    """An author per doc: mostly one whose home is the doc's l1, by productivity."""
    out = np.empty(len(l1), dtype=np.int64)
    everyone = np.cumsum(authors.productivity)
    roam = rng.random(len(l1)) < 0.15
    for c in np.unique(l1):
        rows = np.flatnonzero((l1 == c) & ~roam)
        home = np.flatnonzero(authors.home_l1 == c)
        if len(home) == 0:
            roam[rows] = True
            continue
        cw = np.cumsum(authors.productivity[home])
        out[rows] = home[np.searchsorted(cw, rng.random(len(rows)) * cw[-1], side="right").clip(max=len(home) - 1)]
    rows = np.flatnonzero(roam)
    out[rows] = np.searchsorted(everyone, rng.random(len(rows)) * everyone[-1], side="right").clip(
        max=authors.n - 1
    )
    return out


def change_docs(cfg: SimulateConfig, rng: np.random.Generator, tax: Taxonomy, docs: Docs, idx: np.ndarray) -> None:
    """Change docs `idx` in place: every one gets a re-stacked title, a third of them also a new brand."""
    new_brand = rng.random(len(idx)) < 0.3
    bpl2 = len(tax.l2_brands[0])
    l2 = tax.leaf_l2[docs.leaf[idx]]
    cand = (l2 * bpl2 + rng.integers(0, bpl2, len(idx))).astype(np.int32)
    cand[rng.random(len(idx)) < cfg.brand_null_rate] = -1
    docs.brand[idx] = np.where(new_brand, cand, docs.brand[idx])
    title, gaps = make_titles(cfg, rng, tax, docs.leaf[idx], docs.brand[idx], docs.attrs[idx])
    docs.title[idx] = title
    docs.gaps[idx] = gaps


def render_titles(docs: Docs, idx: np.ndarray, tax: Taxonomy) -> list[str]:
    """Title text of docs `idx`: words joined by spaces (en) or run together with occasional spaces (zh)."""
    terms = tax.vocab.terms
    out = []
    zh = tax.vocab.lang == "zh"
    for row, gaps in zip(docs.title[idx].tolist(), docs.gaps[idx].tolist(), strict=True):
        words = [terms[t] for t in row if t >= 0]
        if zh:
            parts = []
            for i, w in enumerate(words):
                parts.append(w)
                if i < len(words) - 1 and (gaps >> i) & 1:
                    parts.append(" ")
            out.append("".join(parts))
        else:
            out.append(" ".join(words))
    return out


def render_bodies(docs: Docs, idx: np.ndarray, titles: list[str], tax: Taxonomy) -> list[str | None]:
    """Body text: the title, the attribute values, then filler words; None where the doc has no body."""
    terms = tax.vocab.terms
    zh = tax.vocab.lang == "zh"
    out: list[str | None] = []
    for j, i in enumerate(idx.tolist()):
        words = [terms[t] for t in docs.body[i].tolist() if t >= 0]
        if not words:
            out.append(None)
            continue
        attrs = [terms[tax.attr_values[k][v]] for k, v in enumerate(docs.attrs[i].tolist()) if v >= 0]
        leaf = terms[tax.leaf_term[docs.leaf[i]]]
        if zh:
            out.append(f"{titles[j]}。{leaf}，{'、'.join(attrs)}。{'，'.join(words)}。")
        else:
            out.append(f"{titles[j]}. {leaf}: {', '.join(attrs)}. {' '.join(words)}.")
    return out
