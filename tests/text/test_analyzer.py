"""Text analysis: jieba words for Chinese, lowercase words and char trigrams for Latin, mixed text."""

from __future__ import annotations

import pytest

from ebr.text import (
    TextAnalyzer,
    TextConfig,
    char_bigrams,
    char_unigrams,
    latin_trigrams,
    normalize_text,
    segment_words,
    split_runs,
)
from ebr.text.analyzer import TRIGRAM_MARK


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def test_chinese_query_is_segmented_by_jieba_into_words(analyzer):
    g = analyzer.analyze("红色连衣裙")
    assert g.words == ("红色", "连衣裙")
    assert g.unigrams == ("红", "色", "连", "衣", "裙")
    assert g.bigrams == ("红色", "色连", "连衣", "衣裙")


def test_latin_words_are_lowercased_with_marked_trigrams(analyzer):
    g = analyzer.analyze("Red DRESS")
    assert g.words[0] == "red" and "dress" in g.words
    assert f"{TRIGRAM_MARK}#re" in g.words and f"{TRIGRAM_MARK}red" in g.words
    # the trigram "red" and the word "red" stay distinct tokens
    assert g.words.count("red") == 1
    assert g.unigrams[:3] == ("#re", "red", "ed#")
    assert g.bigrams == ("red dress",)


def test_trigrams_can_be_left_out_of_words():
    g = TextAnalyzer(TextConfig(latin_trigrams_in_words=False)).analyze("Red dress")
    assert g.words == ("red", "dress")


def test_latin_trigrams_have_boundary_marks():
    assert latin_trigrams("red") == ["#re", "red", "ed#"]
    assert latin_trigrams("a") == ["#a#"]


def test_mixed_text_takes_each_run_by_its_script(analyzer):
    g = analyzer.analyze("iPhone15手机壳 防摔")
    assert "iphone15" in g.words and "手机" in g.words
    assert "手" in g.unigrams and "#ip" in g.unigrams
    # bigrams never cross a script or a space
    assert "5手" not in g.bigrams and "壳防" not in g.bigrams
    assert [r.kind for r in split_runs(normalize_text("iPhone15手机壳 防摔"))] == ["latin", "han", "han"]


def test_full_width_and_case_variants_share_units(analyzer):
    assert analyzer.analyze("ＲＥＤ　Dress") == analyzer.analyze("red dress")


@pytest.mark.parametrize("text", ["", "   ", "!!!，。、", "\n\t"])
def test_empty_or_punctuation_text_gives_empty_units(analyzer, text):
    g = analyzer.analyze(text)
    assert g.unigrams == g.bigrams == g.words == ()


def test_char_ngram_helpers_skip_spaces_and_punctuation():
    assert char_unigrams("红 裙!") == ["红", "裙"]
    assert char_bigrams("红色 长裙") == ["红色", "长裙"]
    assert segment_words("阿迪达斯运动鞋 Men") == ["阿迪达斯", "运动鞋", "men"]


def test_non_string_input_is_a_type_error(analyzer):
    with pytest.raises(TypeError, match="str"):
        analyzer.analyze(None)  # type: ignore[arg-type]
