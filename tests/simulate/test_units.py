"""Building blocks: relevance grading, vocabulary sources, variant spellings, random streams, lexical recall."""

from __future__ import annotations

from importlib import resources

import numpy as np

from ebr.simulate import SimulateConfig, build_world
from ebr.simulate.policy import LexicalIndex
from ebr.simulate.relevance import grade
from ebr.simulate.streams import stream
from ebr.simulate.vocab import variant_form


def test_grade_rule():
    # one intent: leaf 3, brand 7, colour (key 0) = value 2; five docs
    doc_leaf = np.array([[3, 3, 3, 3, 4]])
    doc_brand = np.array([[7, 7, 8, -1, 7]])
    doc_attrs = np.array([[[2, -1], [1, -1], [2, 5], [2, 0], [2, 0]]])
    g = grade(np.array([3]), np.array([7]), np.array([[0, -1]]), np.array([[2, -1]]), doc_leaf, doc_brand, doc_attrs)
    assert g.tolist() == [[2, 1, 1, 1, 0]]
    # no brand or attribute asked: every doc of the leaf is exact
    g = grade(np.array([3]), np.array([-1]), np.array([[-1, -1]]), np.array([[-1, -1]]), doc_leaf, doc_brand,
              doc_attrs)
    assert g.tolist() == [[2, 2, 2, 2, 0]]


def test_chinese_words_come_from_jieba_dictionary():
    words = {}
    for line in resources.files("jieba").joinpath("dict.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3:
            words[parts[0]] = parts[2]
    world = build_world(SimulateConfig(scale="tiny", lang="zh"))
    terms = world.tax.vocab.terms
    leaves = [terms[t] for t in world.tax.leaf_term]
    assert all(words.get(w) == "n" for w in leaves)
    brands = [terms[t] for t in world.tax.brand_term]
    assert all(words.get(w) == "nz" for w in brands)
    assert len(set(terms)) == len(terms)


def test_variant_forms():
    rng = np.random.default_rng(0)
    assert variant_form("电脑", "zh", rng) == "電腦"
    assert variant_form("人民", "zh", rng) is None  # no character with a traditional form
    typos = {variant_form("kettle", "en", rng) for _ in range(50)}
    assert "kettle" not in typos and "ketle" in typos  # doubled letters collapse, others swap
    assert all(t == "ketle" or sorted(t) == sorted("kettle") for t in typos)
    assert variant_form("ab", "en", rng) is None


def test_streams_are_named_and_keyed():
    a = stream(1, "requests", 0).random(5)
    assert np.array_equal(a, stream(1, "requests", 0).random(5))
    assert not np.array_equal(a, stream(1, "requests", 1).random(5))
    assert not np.array_equal(a, stream(1, "clicks", 0).random(5))
    assert not np.array_equal(a, stream(2, "requests", 0).random(5))


def test_lexical_recall_matches_title_words():
    cfg = SimulateConfig(scale="tiny")
    world = build_world(cfg)
    index = LexicalIndex(world.docs, len(world.tax.vocab), world.tax.n_leaves, cfg)
    pool = world.queries
    for q in range(0, pool.n, 7):
        terms = pool.terms[q]
        cand, lex = index.recall(terms, -1)  # no QU category: lexical channel only
        assert len(cand) == len(set(cand.tolist())) <= cfg.n_recall
        real = terms[terms >= 0]
        hit = np.isin(world.docs.title[cand], real).any(axis=1)
        assert hit.all() and (lex > 0).all() and (lex <= 1.0 + 1e-6).all()
        has_all = np.array([np.isin(real, row).all() for row in world.docs.title[cand]], dtype=bool)
        if (terms != -2).all():
            assert np.allclose(lex[has_all], 1.0) and (lex[~has_all] < 1.0).all()


def test_popular_channel_adds_docs_of_the_qu_category():
    cfg = SimulateConfig(scale="tiny")
    world = build_world(cfg)
    index = LexicalIndex(world.docs, len(world.tax.vocab), world.tax.n_leaves, cfg)
    leaf = 0
    cand, _ = index.recall(np.array([-2, -1, -1, -1, -1, -1]), leaf)  # an unmatchable query
    assert len(cand) > 0 and (world.docs.leaf[cand] == leaf).all()
    top = np.argsort(-world.docs.popularity[world.docs.leaf == leaf])[: len(cand)]
    assert set(cand.tolist()) == set(np.flatnonzero(world.docs.leaf == leaf)[top].tolist())
