"""Query rewrites: synonym swaps and non-core drops are hard positives, core drops are hard negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.samples.config import RewritesConfig
from ebr.samples.positives import POSITIVE_COLUMNS
from ebr.samples.rewrites import REWRITE_KINDS, load_dictionary, query_rewrites, rewrite_samples, segment


@pytest.fixture()
def dictionary_dir(tmp_path):
    d = tmp_path / "dict"
    d.mkdir()
    (d / "synonyms.tsv").write_text("连衣裙\t长裙\nsneakers\ttrainers\n", encoding="utf-8")
    (d / "core_terms.tsv").write_text(
        "word\tlabel\n连衣裙\tcore\n长裙\tcore\n红色\tcore\n新款\tnon_core\n"
        "sneakers\tcore\nred\tcore\ncheap\tmodifier\n",
        encoding="utf-8",
    )
    return d


def _positives(queries: list[str]) -> pd.DataFrame:
    n = len(queries)
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "user_id": pd.array([7] * n, dtype="Int64"),
        "query": queries,
        "query_category_leaf": ["leaf"] * n,
        "query_brand": [None] * n,
        "doc_id": np.arange(100, 100 + n, dtype="int64"),
        "author_id": np.arange(n, dtype="int64"),
        "event_timestamp": pd.Timestamp("2026-11-01T10:00:00Z") + pd.to_timedelta(np.arange(n), unit="min"),
        "weight": np.full(n, 2.0, dtype="float32"),
        "kind": ["click"] * n,
    })[POSITIVE_COLUMNS]


def test_dictionary_reads_both_directions_and_roles(dictionary_dir):
    d = load_dictionary(dictionary_dir)
    assert d.synonyms["长裙"] == ["连衣裙"] and d.synonyms["连衣裙"] == ["长裙"]
    assert d.core["连衣裙"] is True and d.core["新款"] is False and d.core["cheap"] is False


def test_missing_dictionary_is_none(tmp_path):
    assert load_dictionary(tmp_path) is None


def test_bad_dictionary_line_names_file_and_line(tmp_path):
    (tmp_path / "core_terms.tsv").write_text("红色\tcore\n新款\tsometimes\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"core_terms\.tsv:2"):
        load_dictionary(tmp_path)
    (tmp_path / "core_terms.tsv").unlink()
    (tmp_path / "synonyms.tsv").write_text("only-one-field\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"synonyms\.tsv:1"):
        load_dictionary(tmp_path)


def test_segment_chinese_by_dictionary_and_latin_by_space(dictionary_dir):
    d = load_dictionary(dictionary_dir)
    words = d.words
    assert segment("新款红色连衣裙", words, 3) == (["新款", "红色", "连衣裙"], "")
    assert segment("新款xx连衣裙", words, 3) == (["新款", "xx", "连衣裙"], "")
    assert segment("cheap red sneakers", words, 8) == (["cheap", "red", "sneakers"], " ")


def test_query_rewrites_kinds(dictionary_dir):
    d = load_dictionary(dictionary_dir)
    got = {(k, q) for k, q, _, _ in query_rewrites("新款红色连衣裙", d, d.words, 3)}
    assert ("synonym_swap", "新款红色长裙") in got
    assert ("drop_non_core", "红色连衣裙") in got
    assert ("drop_core", "新款连衣裙") in got and ("drop_core", "新款红色") in got
    # a one-word query cannot lose a word; the only rewrite is its synonym
    assert [r[0] for r in query_rewrites("连衣裙", d, d.words, 3)] == ["synonym_swap"]
    # dropping the non-core word needs a core word to stay
    assert all(k != "drop_non_core" for k, *_ in query_rewrites("新款xx", d, d.words, 3))


def test_rewrite_samples_labels_and_weights(dictionary_dir):
    d = load_dictionary(dictionary_dir)
    pos = _positives(["新款红色连衣裙", "cheap red sneakers", "unknownword"])
    cfg = RewritesConfig(rate=1.0, per_positive=1, hard_positive_weight=0.5)
    out = rewrite_samples(pos, d, cfg, np.random.default_rng(0))
    assert set(out["rewrite"]) == set(REWRITE_KINDS)
    assert "unknownword" not in set(out["original_query"])
    per = out.groupby(["request_id", "rewrite"]).size()
    assert (per <= cfg.per_positive).all()
    hp = out[out["kind"] == "hard_positive"]
    hn = out[out["kind"] == "hard_negative"]
    assert set(hp["rewrite"]) == {"synonym_swap", "drop_non_core"} and (hp["label"] == 1).all()
    assert set(hn["rewrite"]) == {"drop_core"} and (hn["label"] == 0).all()
    assert np.allclose(hp["weight"], 2.0 * 0.5)
    assert hn["query_category_leaf"].isna().all()
    assert (out["query"] != out["original_query"]).all()
    # each rewrite keeps the clicked doc of the request it came from
    back = out.merge(pos[["request_id", "doc_id"]], on="request_id", suffixes=("", "_orig"))
    assert (back["doc_id"] == back["doc_id_orig"]).all()
    again = rewrite_samples(pos, d, cfg, np.random.default_rng(0))
    pd.testing.assert_frame_equal(out, again)


def test_rate_and_per_positive_bound_the_rewrites(dictionary_dir):
    d = load_dictionary(dictionary_dir)
    pos = _positives(["新款红色连衣裙"] * 20)
    assert rewrite_samples(pos, d, RewritesConfig(rate=0.0), np.random.default_rng(0)).empty
    every = rewrite_samples(pos, d, RewritesConfig(rate=1.0, per_positive=2), np.random.default_rng(0))
    per = every.groupby(["request_id", "rewrite"]).size().unstack()
    # each positive: its one synonym swap, its one non-core drop and two of its two core drops
    assert len(per) == 20 and per["synonym_swap"].eq(1).all() and per["drop_non_core"].eq(1).all()
    assert per["drop_core"].eq(2).all()
    some = rewrite_samples(pos, d, RewritesConfig(rate=0.5), np.random.default_rng(0))
    assert 0 < len(some) < 3 * 20
