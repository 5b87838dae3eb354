"""Search intents and the query pool: surface forms, head/torso/tail frequencies, query understanding.

An intent is a leaf category with optional brand and attributes; an ambiguous intent names two leaves of
different l1 categories by one word and is resolved per request by the user's preferences. Each intent has a
canonical query and variant surface forms (synonym, added non-core word, reordering, variant characters).
The query-understanding (QU) prediction of a query is fixed per query text and wrong at `qu_error_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.simulate.config import SimulateConfig
from ebr.simulate.streams import stream
from ebr.simulate.taxonomy import ATTRIBUTE_KEYS, Taxonomy
from ebr.simulate.vocab import variant_form

Q_TERMS = 6  # category, brand, 2 attributes, modifier, l2 word
UNMATCHED = -2  # a query word the production lexical index cannot match (variant characters, typos)
TIERS = ("head", "torso", "tail")


@dataclass
class Intents:
    """Structured meaning of searches; reading 1 is used only by ambiguous intents."""

    n_read: np.ndarray  # (I,) 1 or 2
    leaf: np.ndarray  # (I, 2) -1 = no reading
    brand: np.ndarray  # (I, 2) -1 = any brand
    attr_key: np.ndarray  # (I, 2, 2) attribute key index, -1 = none
    attr_val: np.ndarray  # (I, 2, 2) value index into taxonomy.attr_values[key]
    ambiguous: np.ndarray  # (I,) ambiguous pair index, -1 = not ambiguous
    weight: np.ndarray  # (I,) share of traffic, sums to 1


@dataclass
class QueryPool:
    """Every query text the simulated users type, with its intent, QU prediction and traffic weight."""

    text: list[str]
    intent: np.ndarray  # (Q,) intent index
    terms: np.ndarray  # (Q, Q_TERMS) term ids as the lexical index sees them; UNMATCHED; -1 padded
    l1: np.ndarray  # (Q,) l1 of the first reading: the group users pick queries from
    weight: np.ndarray  # (Q,) share of traffic, sums to 1
    qu_leaf: np.ndarray  # (Q,) predicted leaf, -1 = none
    qu_brand: np.ndarray  # (Q,) predicted brand, -1 = none
    tier: np.ndarray  # (Q,) index into TIERS

    @property
    def n(self) -> int:
        return len(self.text)


def build_intents(cfg: SimulateConfig, tax: Taxonomy, n: int) -> Intents:
    """n distinct intents with Zipf-like traffic (identical draws are merged, adding up their weight)."""
    rng = stream(cfg.seed, "intents")
    w = 1.0 / (np.arange(n) + 1.0 + cfg.query_zipf_offset) ** cfg.query_zipf
    w = w[rng.permutation(n)]
    leaf = rng.choice(tax.n_leaves, size=n, p=tax.leaf_weight)
    is_amb = (rng.random(n) < cfg.ambiguous_query_share) & (len(tax.ambiguous_term) > 0)
    amb = rng.integers(0, max(len(tax.ambiguous_term), 1), size=n)
    has_brand = rng.random(n) < cfg.query_brand_rate
    n_attr = rng.choice(3, size=n, p=list(cfg.query_attr_probs))
    bpl2 = len(tax.l2_brands[0])
    brand_pick = rng.choice(bpl2, size=n, p=tax.brand_weight[:bpl2])
    seen: dict[tuple, int] = {}
    rows: list[tuple] = []
    weights: list[float] = []
    for i in range(n):
        if is_amb[i]:
            a, b = tax.ambiguous_leaves[amb[i]]
            key: tuple = ("amb", int(amb[i]))
            row = (2, (int(a), int(b)), (-1, -1), (), int(amb[i]))
        else:
            lf = int(leaf[i])
            br = int(tax.leaf_l2[lf] * bpl2 + brand_pick[i]) if has_brand[i] else -1
            used = [k for k in range(len(ATTRIBUTE_KEYS)) if tax.leaf_attr_pool[lf, k, 0] >= 0]
            keys = sorted(rng.choice(used, size=min(int(n_attr[i]), len(used)), replace=False).tolist())
            attrs = []
            for k in keys:
                pool = tax.leaf_attr_pool[lf, k]
                pool = pool[pool >= 0]
                attrs.append((int(k), int(pool[rng.integers(len(pool))])))
            key = ("leaf", lf, br, tuple(attrs))
            row = (1, (lf, -1), (br, -1), tuple(attrs), -1)
        if key in seen:
            weights[seen[key]] += float(w[i])
            continue
        seen[key] = len(rows)
        rows.append(row)
        weights.append(float(w[i]))
    m = len(rows)
    out = Intents(
        n_read=np.array([r[0] for r in rows], dtype=np.int8),
        leaf=np.array([r[1] for r in rows], dtype=np.int32),
        brand=np.array([r[2] for r in rows], dtype=np.int32),
        attr_key=np.full((m, 2, 2), -1, dtype=np.int16),
        attr_val=np.full((m, 2, 2), -1, dtype=np.int16),
        ambiguous=np.array([r[4] for r in rows], dtype=np.int32),
        weight=np.array(weights) / np.sum(weights),
    )
    for i, r in enumerate(rows):
        for j, (k, v) in enumerate(r[3]):
            out.attr_key[i, 0, j], out.attr_val[i, 0, j] = k, v
    return out


def _core_terms(tax: Taxonomy, intents: Intents, i: int) -> tuple[int | None, int, list[int]]:
    """(brand term or None, category term, attribute value terms) of intent i's canonical query."""
    if intents.ambiguous[i] >= 0:
        return None, int(tax.ambiguous_term[intents.ambiguous[i]]), []
    b = int(intents.brand[i, 0])
    attrs = [
        int(tax.attr_values[k][v]) for k, v in zip(intents.attr_key[i, 0], intents.attr_val[i, 0], strict=True)
        if k >= 0
    ]
    return (int(tax.brand_term[b]) if b >= 0 else None), int(tax.leaf_term[intents.leaf[i, 0]]), attrs


def _surface(
    cfg: SimulateConfig, rng: np.random.Generator, tax: Taxonomy, intents: Intents, i: int, canonical: bool
) -> tuple[str, list[int]]:
    """One query text of intent i and its term ids (UNMATCHED for misspelt words)."""
    brand, cat, attrs = _core_terms(tax, intents, i)
    lang = tax.vocab.lang
    leaf = int(intents.leaf[i, 0])
    if not canonical and intents.ambiguous[i] < 0 and rng.random() < cfg.query_synonym_rate:
        syn = tax.leaf_alt_terms[leaf]
        if len(syn):
            cat = int(syn[rng.integers(len(syn))])
    terms = ([brand] if brand is not None else []) + attrs + [cat]
    if not canonical:
        if rng.random() < cfg.query_modifier_rate:
            terms.insert(int(rng.integers(len(terms) + 1)), int(rng.choice(tax.modifier_term, p=tax.modifier_weight)))
        if rng.random() < 0.15:
            terms.append(int(tax.l2_term[tax.leaf_l2[leaf]]))
        if rng.random() < cfg.query_reorder_rate:
            terms = [terms[j] for j in rng.permutation(len(terms))]
    words = [tax.vocab.terms[t] for t in terms]
    if lang == "en":
        words = [w.lower() for w in words]
    ids = list(terms)
    if not canonical and rng.random() < cfg.query_variant_rate:
        for j in rng.permutation(len(words)):
            v = variant_form(words[j], lang, rng)
            if v is not None and tax.vocab.roles[terms[j]] in ("category", "synonym", "ambiguous", "brand"):
                words[j] = v
                ids[j] = UNMATCHED
                break
    sep = " " if lang == "en" or rng.random() < 0.3 else ""
    return sep.join(words), ids


def build_queries(cfg: SimulateConfig, tax: Taxonomy, intents: Intents) -> QueryPool:
    """The query pool: a canonical text per intent plus Poisson-many variant texts, de-duplicated."""
    rng = stream(cfg.seed, "queries")
    texts: list[str] = []
    index: dict[str, int] = {}
    owner: list[int] = []
    term_rows: list[list[int]] = []
    weights: list[float] = []
    extra = np.minimum(rng.poisson(cfg.query_surfaces_mean, size=len(intents.weight)), 4)
    for i in range(len(intents.weight)):
        forms = [_surface(cfg, rng, tax, intents, i, canonical=True)]
        forms += [_surface(cfg, rng, tax, intents, i, canonical=False) for _ in range(int(extra[i]))]
        fresh = [(t, ids) for t, ids in dict(forms).items() if t not in index]
        if not fresh:
            continue
        shares = [1.0] if len(fresh) == 1 else [0.6] + [0.4 / (len(fresh) - 1)] * (len(fresh) - 1)
        for (text, ids), share in zip(fresh, shares, strict=True):
            index[text] = len(texts)
            texts.append(text)
            owner.append(i)
            term_rows.append(ids)
            weights.append(float(intents.weight[i]) * share)
    q = len(texts)
    terms = np.full((q, Q_TERMS), -1, dtype=np.int32)
    for j, ids in enumerate(term_rows):
        terms[j, : len(ids)] = ids[:Q_TERMS]
    intent = np.array(owner, dtype=np.int64)
    weight = np.array(weights) / np.sum(weights)
    variant = (terms == UNMATCHED).any(axis=1)
    qu_leaf, qu_brand = _understand(cfg, stream(cfg.seed, "qu"), tax, intents, intent, variant)
    order = np.argsort(-weight, kind="stable")
    cum = np.cumsum(weight[order])
    tier = np.empty(q, dtype=np.int8)
    tier[order] = np.where(cum <= 0.3, 0, np.where(cum <= 0.7, 1, 2))
    return QueryPool(
        text=texts, intent=intent, terms=terms, l1=tax.leaf_l1[intents.leaf[intent, 0]], weight=weight,
        qu_leaf=qu_leaf, qu_brand=qu_brand, tier=tier,
    )


def _understand(
    cfg: SimulateConfig, rng: np.random.Generator, tax: Taxonomy, intents: Intents, intent: np.ndarray,
    variant: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """QU predictions per query: right unless an error is drawn (twice as likely for misspelt queries)."""
    q = len(intent)
    err_rate = np.minimum(cfg.qu_error_rate * np.where(variant, 2.0, 1.0), 1.0)
    wrong = rng.random(q) < err_rate
    leaf0, leaf1 = intents.leaf[intent, 0], intents.leaf[intent, 1]
    amb = intents.ambiguous[intent] >= 0
    w = tax.leaf_weight
    major = np.where(amb & (w[np.maximum(leaf1, 0)] > w[leaf0]), leaf1, leaf0)
    per_l2 = tax.n_leaves // len(tax.l2_term)
    sibling = tax.leaf_l2[leaf0] * per_l2 + rng.integers(0, per_l2, q)
    anywhere = rng.integers(0, tax.n_leaves, q)
    wrong_leaf = np.where(rng.random(q) < 0.7, sibling, anywhere)
    wrong_leaf = np.where(wrong_leaf == major, (major + 1) % tax.n_leaves, wrong_leaf)
    qu_leaf = np.where(wrong, wrong_leaf, major).astype(np.int32)
    qu_leaf[rng.random(q) < cfg.qu_null_rate] = -1

    bpl2 = len(tax.l2_brands[0])
    brand = intents.brand[intent, 0]
    other = (tax.leaf_l2[leaf0] * bpl2 + rng.integers(0, bpl2, q)).astype(np.int32)
    wrong_b = rng.random(q) < err_rate
    qu_brand = np.where(brand >= 0, np.where(wrong_b, np.where(rng.random(q) < 0.5, other, -1), brand), -1)
    spurious = (brand < 0) & ~amb & (rng.random(q) < err_rate / 2)
    qu_brand = np.where(spurious, other, qu_brand).astype(np.int32)
    return qu_leaf, qu_brand
