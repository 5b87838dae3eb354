"""Simulator output: layout, exact contract schemas, the loader's rules, side files and atomic writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import ebr.simulate.run as sim_run
from ebr.contract.schema import TABLES
from ebr.simulate import SimulateConfig, simulate
from tests.simulate.conftest import TABLE_NAMES

DAY = pd.Timedelta(days=1)


def test_one_file_per_table_and_day(tiny_run):
    days = tiny_run.cfg.days_list()
    for t in TABLE_NAMES:
        parts = sorted(p.name for p in (tiny_run.root / t).iterdir())
        assert parts == [f"ds={d}" for d in days]
        for d in days:
            assert [p.name for p in (tiny_run.root / t / f"ds={d}").iterdir()] == ["part-00000.parquet"]
    assert sorted(p.name for p in tiny_run.root.iterdir()) == sorted([*TABLE_NAMES, "_meta"])


def test_files_have_exactly_the_contract_schema(tiny_run):
    for t in TABLE_NAMES:
        for f in (tiny_run.root / t).glob("ds=*/*.parquet"):
            schema = pq.read_schema(f)
            assert schema.equals(TABLES[t].schema, check_metadata=False), (f, schema, TABLES[t].schema)


def test_summary_counts_match_files(tiny_run):
    for t in TABLE_NAMES:
        assert tiny_run.summary["tables"][t] == len(tiny_run.table(t)) > 0
    assert tiny_run.summary["days"] == tiny_run.cfg.days_list()
    assert tiny_run.summary["stats"]["requests"] == tiny_run.cfg.sizes().requests_per_day * tiny_run.cfg.days


def test_simulator_output_passes_the_loader(tiny_run):
    from ebr.contract import check_dataset

    report = check_dataset(tiny_run.root)
    assert report.ok, [str(v) for v in report.violations]


def test_event_timestamps_inside_their_day(tiny_run):
    for t in TABLE_NAMES:
        if not TABLES[t].has_event_timestamp:
            continue
        df = tiny_run.table(t)
        start = pd.to_datetime(df["ds"].astype(str)).dt.tz_localize("UTC")
        ts = df["event_timestamp"]
        assert ((ts >= start) & (ts < start + DAY)).all(), t


def test_impression_rules(tiny_run):
    imp, req = tiny_run.table("impressions"), tiny_run.table("search_requests")
    exposed = imp["stage"] == "exposed"
    assert (imp["position"].notna() == exposed).all()
    assert not (imp["clicked"] & ~exposed).any()
    for flag in ("liked", "favorited", "commented"):
        assert not (imp[flag] & ~imp["clicked"]).any()
    assert (imp["dwell_ms"].notna() == imp["clicked"]).all()
    assert (imp["rank_score"].isna() == (imp["stage"] == "preranked")).all()
    assert not imp.duplicated(["request_id", "doc_id"]).any()
    assert not req["request_id"].duplicated().any()
    # positions are 1..n without gaps in every request
    pos = imp[exposed].groupby("request_id")["position"].agg(["min", "max", "count"])
    assert (pos["min"] == 1).all() and (pos["max"] == pos["count"]).all()
    # every impression belongs to a request of the same day and carries its timestamp
    m = imp.merge(req[["request_id", "event_timestamp", "ds"]], on="request_id", suffixes=("", "_req"))
    assert len(m) == len(imp)
    assert (m["event_timestamp"] == m["event_timestamp_req"]).all() and (m["ds"] == m["ds_req"]).all()
    # funnel sizes per request
    per = imp.groupby("request_id")["stage"].value_counts().unstack(fill_value=0)
    cfg = tiny_run.cfg
    assert per["exposed"].max() == cfg.n_exposed
    assert (per["exposed"] + per["ranked"]).max() == cfg.n_rank
    assert per.sum(axis=1).max() == cfg.n_prerank


def test_docs_exist_when_impressed_and_new_docs_arrive_daily(tiny_run):
    docs, imp = tiny_run.table("docs"), tiny_run.table("impressions")
    first = docs.groupby("doc_id")["event_timestamp"].min()
    seen = imp["doc_id"].map(first)
    assert seen.notna().all() and (seen <= imp["event_timestamp"]).all()
    days = tiny_run.cfg.days_list()
    later = docs[docs["ds"].astype(str) == days[1]]
    day_start = pd.Timestamp(days[1], tz="UTC")
    new = later[later["publish_ts"] >= day_start]
    assert len(new) == tiny_run.cfg.sizes().new_docs_per_day
    assert (new["publish_ts"] == new["event_timestamp"]).all()
    # new docs get impressions once published
    assert imp["doc_id"].isin(docs.loc[docs["publish_ts"] >= pd.Timestamp(days[0], tz="UTC"), "doc_id"]).any()


def test_changed_doc_rows_change_title_or_brand(tiny_run):
    docs = tiny_run.table("docs").sort_values(["doc_id", "event_timestamp"])
    repeated = docs[docs.duplicated("doc_id", keep=False)]
    assert len(repeated) > 0
    for _, g in repeated.groupby("doc_id"):
        a, b = g.iloc[0], g.iloc[1]
        assert a["title"] != b["title"] or a["brand"] != b["brand"]
        assert a["category_leaf"] == b["category_leaf"] and a["publish_ts"] == b["publish_ts"]


def test_user_events_follow_clicks_and_known_users(tiny_run):
    ev, imp, req, users = (tiny_run.table(t) for t in ("user_events", "impressions", "search_requests", "users"))
    assert set(ev["source"]) == {"search", "feed"}
    search = ev[ev["source"] == "search"]
    clicks = imp[imp["clicked"]].merge(req[["request_id", "user_id"]], on="request_id")
    logged_in = clicks[clicks["user_id"].notna()]
    assert (search["event_type"] == "click").sum() == len(logged_in)
    registered = users.groupby("user_id")["register_ts"].min()
    assert (ev["user_id"].map(registered) <= ev["event_timestamp"]).all()
    # engagement never precedes the click it follows
    first_click = search[search["event_type"] == "click"].groupby(["user_id", "doc_id"])["event_timestamp"].min()
    deeper = search[search["event_type"] != "click"]
    key = pd.MultiIndex.from_frame(deeper[["user_id", "doc_id"]])
    assert (first_click.reindex(key).to_numpy() <= deeper["event_timestamp"].to_numpy()).all()


def test_requests_have_logged_out_users_and_qu_fields(tiny_run):
    req = tiny_run.table("search_requests")
    share = req["user_id"].isna().mean()
    assert 0.02 < share < 0.25  # logged_out_rate = 0.1
    assert req["query_category_leaf"].notna().mean() > 0.9
    assert req["query_brand"].notna().any()
    assert req["query"].str.len().min() > 0


def test_meta_side_files(tiny_run):
    meta = tiny_run.root / "_meta"
    info = json.loads((meta / "simulation.json").read_text(encoding="utf-8"))
    assert info["seed"] == tiny_run.cfg.seed and info["config"]["scale"] == "tiny"
    assert info["sizes"]["n_docs"] == tiny_run.cfg.sizes().n_docs
    syn = pd.read_csv(meta / "synonyms.tsv", sep="\t", dtype=str, keep_default_na=False)
    core = pd.read_csv(meta / "core_terms.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(syn.columns) == ["word", "synonym"] and len(syn) > 0
    pairs = set(zip(syn["word"], syn["synonym"], strict=True))
    assert all((b, a) in pairs for a, b in pairs)
    kind = dict(zip(core["term"], core["kind"], strict=True))
    docs = tiny_run.table("docs")
    assert all(kind[c] == "core" for c in docs["category_leaf"].unique())
    assert all(kind[b] == "core" for b in docs["brand"].dropna().unique())
    assert all(kind[c] == "non_core" for c in docs["category_l1"].unique())
    assert set(core.loc[core["role"] == "modifier", "kind"]) == {"non_core"}
    # the query generator really uses the synonyms: some query names its leaf by a synonym only
    intents = pd.read_parquet(meta / "query_intents.parquet")
    leaf_syn = {(a, b) for a, b in pairs if kind.get(a) == "core"}
    used = [
        q for q, leaf in zip(intents["query"], intents["category_leaf"], strict=True)
        if leaf not in q and any(w in q for (lf, w) in leaf_syn if lf == leaf)
    ]
    assert used


def test_refuses_non_empty_output_and_overwrites_on_request(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cfg = SimulateConfig(scale="tiny", days=1, n_docs=200, requests_per_day=20, n_users=30, n_intents=30)
    with pytest.raises(FileExistsError, match="not empty"):
        simulate(out, cfg, progress=False)
    assert (out / "keep.txt").exists()
    simulate(out, cfg, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "docs").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_failure_leaves_no_partial_output(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sim_run, "_write_labels", boom)
    cfg = SimulateConfig(scale="tiny", days=2, n_docs=200, requests_per_day=20, n_users=30, n_intents=30)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(tmp_path / "data", cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_english_world_passes_the_loader(tmp_path):
    from ebr.contract import check_dataset

    cfg = SimulateConfig(scale="tiny", days=2, lang="en", seed=1)
    simulate(tmp_path / "en", cfg, progress=False)
    assert check_dataset(tmp_path / "en").ok
    titles = pd.read_parquet(tmp_path / "en" / "docs")["title"]
    assert titles.map(lambda s: s.isascii()).all()
    queries = pd.read_parquet(tmp_path / "en" / "search_requests")["query"]
    assert (queries == queries.str.lower()).all()


def test_doc_ids_and_user_ids_are_positive(tiny_run):
    for t, col in (("docs", "doc_id"), ("users", "user_id"), ("authors", "author_id"), ("impressions", "doc_id")):
        assert (tiny_run.table(t)[col] >= 1).all()
    docs = tiny_run.table("docs")
    assert np.isin(docs["author_id"].unique(), tiny_run.table("authors")["author_id"].unique()).all()


def test_path_is_a_file_is_an_error(tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        simulate(f, SimulateConfig(scale="tiny", days=1), progress=False)


def test_zero_growth_and_no_labels_still_fit_the_contract(tmp_path):
    from ebr.contract import check_dataset

    cfg = SimulateConfig(
        scale="tiny", days=2, new_docs_per_day=0, new_users_per_day=0, feed_events_per_day=0,
        label_queries_per_day=0, doc_change_rate=0.0, n_popular_recall=0,
    )
    summary = simulate(tmp_path / "d", cfg, progress=False)
    assert summary["rows_per_day"]["docs"]["2026-11-02"] == 0
    assert summary["tables"]["relevance_labels"] == 0
    assert check_dataset(tmp_path / "d").ok
