"""One corpus loader: every reader of the corpus as of a day gets the docs table's latest versions from it."""

from __future__ import annotations

import pandas as pd
import pytest

from ebr.contract import load
from ebr.features.doc_features import corpus_docs
from ebr.judgements.corpus import load_corpus
from ebr.samples.window import load_window


def _expected(tiny_data, day: str, include_day: bool) -> tuple[pd.DataFrame, pd.Series]:
    """Latest version per doc and first appearance, straight from the contract rule."""
    limit = pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=int(include_day))
    docs = load(tiny_data, "docs")
    known = docs[docs["event_timestamp"] < limit].sort_values(["doc_id", "event_timestamp"], kind="mergesort")
    return known.drop_duplicates("doc_id", keep="last").set_index("doc_id"), known.groupby("doc_id")[
        "event_timestamp"].min()


@pytest.mark.parametrize("include_day", [False, True])
def test_corpus_docs_are_the_latest_versions_known_at_the_cut(tiny_data, tiny_days, include_day):
    day = tiny_days[-1]
    latest, first = _expected(tiny_data, day, include_day)
    got = corpus_docs(tiny_data, day, include_day, columns=("title", "brand", "author_id"))
    assert got["doc_id"].tolist() == latest.index.tolist()
    assert (pd.to_datetime(got["first_seen"], utc=True).to_numpy() == first.to_numpy()).all()
    assert got["title"].tolist() == latest["title"].tolist()
    assert got["author_id"].tolist() == latest["author_id"].tolist()
    assert list(corpus_docs(tiny_data, day, include_day).columns) == ["doc_id", "first_seen"]


def test_a_doc_with_several_versions_shows_its_latest(tiny_data, tiny_days):
    docs = load(tiny_data, "docs")
    changed = docs.groupby("doc_id")["title"].nunique()
    assert (changed > 1).any()  # the tiny data edits titles, so "latest" is really checked
    latest, _ = _expected(tiny_data, tiny_days[-1], True)
    corpus = load_corpus(tiny_data, tiny_days[-1])
    ids = changed[changed > 1].index.to_numpy()
    assert corpus.titles[corpus.positions(ids)].tolist() == latest.loc[ids, "title"].tolist()


@pytest.mark.parametrize("include_day", [False, True])
def test_load_corpus_and_the_samples_window_read_the_one_loader(tiny_data, tiny_days, include_day):
    day = tiny_days[-1]
    one = corpus_docs(tiny_data, day, include_day, columns=("title", "category_leaf", "brand"))
    corpus = load_corpus(tiny_data, day, include_day)
    assert corpus.doc_ids.tolist() == one["doc_id"].tolist()
    assert corpus.titles.tolist() == one["title"].tolist()
    assert corpus.category_leaf.tolist() == one["category_leaf"].tolist()
    assert [None if pd.isna(b) else b for b in one["brand"]] == corpus.brand.tolist()
    if not include_day:
        window = load_window(tiny_data, day, 2).docs
        want = corpus_docs(tiny_data, day, False, columns=("author_id", "category_leaf", "brand"))
        pd.testing.assert_frame_equal(window, want)


def test_bad_requests_name_the_problem(tiny_data, tiny_days):
    with pytest.raises(ValueError, match=r"\['popularity'\] are not columns of the docs table"):
        corpus_docs(tiny_data, tiny_days[-1], columns=("title", "popularity"))
    with pytest.raises(ValueError, match="docs has no partition before 2000-01-01: no corpus"):
        load_corpus(tiny_data, "2000-01-01", include_day=False)
