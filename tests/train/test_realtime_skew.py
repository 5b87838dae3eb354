"""The evaluation's real-time skew on the tiny pipeline: the model with real-time features as of each request
(training rows) and as the online store serves them without pushed events (as of D 00:00), and their gap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.train.test_two_tower_evaluate import evaluated  # noqa: F401
from tests.train.test_two_tower_pipeline import pipe  # noqa: F401

pytestmark = pytest.mark.slow


def test_summary_reports_both_views_and_their_gap(evaluated, pipe):  # noqa: F811
    _, _, _, work, result = evaluated
    skew = result["realtime_skew"]
    assert skew == json.loads((work / "out" / "evaluation.json").read_text())["realtime_skew"]
    assert skew["as_of"] == pd.Timestamp(pipe.day, tz="UTC").isoformat()
    assert skew["features"] == ["seq_rt_doc_ids", "seq_rt_categories", "seq_rt_authors", "seq_rt_event_types",
                                "recent_queries"]
    assert 0 < skew["requests_changed"] <= result["n_requests"], "same-day events change some requests' features"
    model = result["metrics"]["systems"]["model"]
    for key, row in skew["metrics"].items():
        name, k = key.split("@")
        assert row["training_time"] == model[name][k]  # the training-time view is the model's own row
        a, b = row["training_time"]["value"], row["served"]["value"]
        assert row["gap"] == (None if a is None or b is None else pytest.approx(b - a))
    assert any(row["gap"] for row in skew["metrics"].values()), "different features, different results"
    text = (work / "out" / "report" / "report.md").read_text()
    assert "## Real-time features: training-time vs served" in text and "| true_recall@50 |" in text


def test_served_rows_have_empty_real_time_sequences_and_day_start_queries(pipe):  # noqa: F811
    from ebr.evaluate.two_tower import query_feature_rows, served_realtime_rows
    from ebr.judgements.corpus import load_corpus
    from ebr.judgements.evalset import build_evalset

    evalset = build_evalset(pipe.data, pipe.day, corpus=load_corpus(pipe.data, pipe.day))
    rows = query_feature_rows(pipe.features, evalset.frame)
    served, changed = served_realtime_rows(pipe.features, evalset.frame, rows, pipe.day)
    assert all(len(s) == 0 for s in served["seq_rt_doc_ids"]), "no same-day behaviour before pushes"
    assert changed.any() and not changed.all()
    untouched = [c for c in rows.columns if not c.startswith("seq_rt_") and c != "recent_queries"]
    pd.testing.assert_frame_equal(served[untouched], rows[untouched])
    later = np.array([len(a) > len(b) for a, b in zip(rows["recent_queries"], served["recent_queries"],
                                                      strict=True)])
    assert later.any(), "queries of the day before a request are in its training-time row, not in the served one"


def test_a_tower_without_personalization_skips_the_skew_and_says_so():
    from types import SimpleNamespace

    from ebr.evaluate.report import render_gap_markdown
    from ebr.evaluate.two_tower import reads_realtime_features
    from ebr.train.two_tower_config import TwoTowerTrainConfig

    def export_of(**query_tower):
        model = TwoTowerTrainConfig.model_validate({"model": {"query_tower": query_tower}}).model
        return SimpleNamespace(manifest={"config": {"two_tower": model.model_dump(mode="json")}})

    assert not reads_realtime_features(export_of())  # the default: no personalization
    assert reads_realtime_features(export_of(personalization=True))
    assert reads_realtime_features(export_of(personalization=True, realtime_sequence=False))  # recent queries
    assert not reads_realtime_features(export_of(personalization=True, realtime_sequence=False,
                                                 query_history=False))
    assert reads_realtime_features(SimpleNamespace(manifest={}))  # no recorded config: assume it reads them
    text = render_gap_markdown({"as_of": "2026-11-08T00:00:00+00:00", "features": ["seq_rt_doc_ids"],
                                "skipped": "the query tower reads no real-time feature", "requests_changed": 0,
                                "metrics": {}}, 50, 10)
    assert "Not measured: the query tower reads no real-time feature." in text and "| metric |" not in text
