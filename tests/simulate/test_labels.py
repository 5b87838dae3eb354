"""Relevance labels: the 2/1/0 rule recomputed from the docs' structured fields, completeness, volume."""

from __future__ import annotations

import pandas as pd

from ebr.simulate import SimulateConfig, simulate


def _expected(docs: pd.DataFrame, readings: pd.DataFrame) -> dict[int, int]:
    """{doc_id: label >= 1} for one query from its intent readings, by the documented rule."""
    out: dict[int, int] = {}
    for r in readings.itertuples():
        same_leaf = docs[docs["category_leaf"] == r.category_leaf]
        for d in same_leaf.itertuples():
            exact = (r.brand is None or d.brand == r.brand) and set(r.attributes) <= set(d.attributes)
            out[d.doc_id] = max(out.get(d.doc_id, 0), 2 if exact else 1)
    return out


def test_labels_follow_the_rule_on_end_of_day_docs(tiny_run):
    labels = tiny_run.table("relevance_labels")
    docs = tiny_run.table("docs")
    intents = pd.read_parquet(tiny_run.root / "_meta" / "query_intents.parquet")
    intents["brand"] = intents["brand"].astype(object).where(intents["brand"].notna(), None)
    checked = 0
    for day in tiny_run.cfg.days_list():
        state = docs[docs["ds"].astype(str) <= day].sort_values("event_timestamp").drop_duplicates(
            "doc_id", keep="last"
        )
        part = labels[labels["ds"].astype(str) == day]
        for q, rows in part.groupby("query"):
            got = dict(zip(rows["doc_id"], rows["label"], strict=True))
            assert got == _expected(state, intents[intents["query"] == q]), (day, q)
            checked += 1
    assert checked == tiny_run.summary["stats"]["labelled_queries"]


def test_labels_are_complete_simulator_labels_of_the_days_queries(tiny_run):
    labels, req = tiny_run.table("relevance_labels"), tiny_run.table("search_requests")
    assert labels["complete"].all() and set(labels["source"]) == {"simulator"}
    assert set(labels["label"]) == {1, 2}  # complete lists hold label >= 1 only; unlisted docs are 0
    per_day = tiny_run.cfg.sizes().label_queries_per_day
    for day, part in labels.groupby("ds"):
        queries = set(part["query"])
        asked = set(req.loc[req["ds"] == day, "query"])
        assert queries <= asked
        assert len(queries) == min(per_day, len(asked))


def test_small_scale_labels_at_least_200_queries_a_day(tmp_path):
    cfg = SimulateConfig(scale="small", days=1, seed=4)
    summary = simulate(tmp_path / "small", cfg, progress=False)
    labels = pd.read_parquet(tmp_path / "small" / "relevance_labels")
    assert labels["query"].nunique() >= 200
    assert summary["stats"]["labelled_queries"] >= 200
