"""The samples step of day D: every sample table of the window [D - k, D - 1], written atomically with a manifest."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ebr import rawfs
from ebr.artifacts.atomic import atomic_output_dir
from ebr.samples.config import SamplesConfig
from ebr.samples.exposed_unclicked import exposed_unclicked
from ebr.samples.feature_join import join_features
from ebr.samples.hard_negatives import (
    QueryEncoder,
    Searcher,
    empty_hard_negatives,
    hard_negative_quota,
    mine_hard_negatives,
)
from ebr.samples.negatives import sampling_table
from ebr.samples.positives import POSITIVE_COLUMNS, click_positives
from ebr.samples.ranking import SOURCES, ranking_samples
from ebr.samples.rewrites import empty_rewrites, hard_positive_rows, load_dictionary, rewrite_samples
from ebr.samples.tables import SCHEMAS, to_arrow
from ebr.samples.window import attach_author, check_day, load_window

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_STREAMS = {"rewrites": 1, "hard_negatives": 2, "ranking": 3}


def _rng(cfg: SamplesConfig, day: str, stream: str) -> np.random.Generator:
    """An independent seeded stream per (seed, day, purpose): switching one source on does not move the others."""
    return np.random.default_rng([cfg.seed, date.fromisoformat(day).toordinal(), _STREAMS[stream]])


def _write(frame: pd.DataFrame, path: Path, name: str) -> None:
    table = to_arrow(frame, name) if name in SCHEMAS else pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def mining_requests(
    requests: pd.DataFrame,
    retrieval: pd.DataFrame,
    retrieval_features: pd.DataFrame | None,
    features_dir: str | Path | None,
) -> tuple[pd.DataFrame, str | None]:
    """The window's requests with the query-side features the trainer encodes them with, and a note when none.

    A request's features are those of its first click row in the point-in-time joined retrieval table (the row the
    trainer featurizes for the request's query): `retrieval_features` when the step joined it, else a join of
    those rows through the same Feast service (`retrieval_training`); without a feature store only the request's
    own columns (query text, user id) are there, and the note says so."""
    rows = retrieval.reset_index(drop=True)
    clicks = rows[rows["kind"] == "click"].drop_duplicates("request_id", keep="first")
    if retrieval_features is not None:
        feats = retrieval_features.iloc[clicks.index.to_numpy()]
    elif features_dir is not None:
        feats = join_features(clicks.reset_index(drop=True), features_dir, "retrieval_training", "null")
        feats.attrs.pop("feature_report", None)
    else:
        return requests, ("no features_dir: hard negatives mined with the request's query text and user id only "
                          "(no user profile or sequence features, unlike training)")
    extra = [c for c in feats.columns if c not in retrieval.columns and c not in requests.columns]
    side = feats[["request_id", *extra]].reset_index(drop=True)
    return requests.merge(side, on="request_id", how="left", validate="one_to_one"), None


def build_samples(
    data_root: str | Path,
    day: str,
    out_dir: str | Path,
    cfg: SamplesConfig,
    features_dir: str | Path | None = None,
    prev_index: Searcher | str | Path | None = None,
    encode_queries: QueryEncoder | None = None,
) -> dict[str, Any]:
    """Build retrieval and ranking samples for training on [day - k, day - 1]; returns the manifest."""
    if not isinstance(cfg, SamplesConfig):
        raise TypeError(f"cfg must be a SamplesConfig, got {type(cfg).__name__}")
    day = check_day(day, "day")
    if prev_index is not None and encode_queries is None:
        raise ValueError("prev_index is given but encode_queries is None: hard-negative mining needs both")
    notes: list[str] = []
    win = load_window(data_root, day, cfg.days_back)
    if len(win.days) < cfg.days_back:
        notes.append(f"window has {len(win.days)} of {cfg.days_back} days (logs start later)")
    imps = attach_author(win.impressions, win.docs)
    positives = click_positives(imps, cfg.positives, win.docs)
    if positives.empty:
        raise ValueError(f"no positive in the window {win.days[0]}..{win.days[-1]}: no click passes the filters "
                         f"(samples.positives = {cfg.positives.model_dump()})")
    filtered = positives.attrs.get("relevance_filtered", 0)
    if cfg.positives.relevance_filter:
        notes.append(f"relevance filter: {filtered} click(s) off the request's understood category or brand dropped "
                     f"({filtered / (filtered + len(positives)):.1%} of the clicks that passed the other filters)")
    negatives = sampling_table(win.docs, imps, cfg.negatives)

    rewrites = empty_rewrites()
    if cfg.rewrites.enabled:
        dict_dir = (Path(cfg.rewrites.dictionary_dir) if cfg.rewrites.dictionary_dir
                    else rawfs.join(rawfs.raw_root(data_root), "_meta"))
        dictionary = load_dictionary(dict_dir)
        if dictionary is None:
            notes.append(f"no rewrite dictionary in {dict_dir}: rewrite samples skipped")
        else:
            rewrites = rewrite_samples(positives, dictionary, cfg.rewrites, _rng(cfg, day, "rewrites"))
    hard_pos = hard_positive_rows(rewrites, POSITIVE_COLUMNS)
    retrieval = pd.concat([positives, hard_pos], ignore_index=True) if len(hard_pos) else positives

    ranking = ranking_samples(imps, negatives, cfg.ranking, _rng(cfg, day, "ranking"))
    tables: dict[str, pd.DataFrame] = {
        "retrieval": retrieval, "negatives": negatives, "rewrites": rewrites, "ranking": ranking,
    }
    if cfg.use_exposed_unclicked_negatives:
        tables["exposed_unclicked"] = exposed_unclicked(imps, positives["request_id"])
    # the window's impressions (28M rows, ~6 GB at `large`) are not needed past here: keep the clicks and the
    # requests that hard-negative mining reads, and free the rest before the feature joins allocate theirs
    clicks = imps.loc[imps["clicked"].astype(bool), ["request_id", "query", "doc_id"]].reset_index(drop=True)
    window_requests, days = win.requests, win.days
    hn_filter = cfg.hard_negatives.relevance_filter
    doc_fields = win.docs[["doc_id", "category_leaf", "brand"]] if hn_filter != "none" else None
    del imps, win
    if features_dir is not None:
        services = {"retrieval": "retrieval_training", "ranking": "ranking_training"}
        for name in cfg.join_features:
            service = services[name]
            joined = join_features(tables[name], features_dir, service, cfg.features_on_missing)
            report = joined.attrs.pop("feature_report", None)
            if report is not None and report.missing_rows:
                notes.append(f"{name}_features: {report.missing_rows} row(s) with null features (keys the "
                             f"offline store dropped: no feature row before the row's time)")
            tables[f"{name}_features"] = joined

    quota = hard_negative_quota(retrieval["request_id"].nunique(), cfg.hard_negatives)
    hard = empty_hard_negatives()
    if prev_index is None or not cfg.hard_negatives.enabled:
        notes.append("no previous index: hard negatives skipped" if prev_index is None
                     else "hard negatives disabled by config")
    else:
        searcher = prev_index
        if isinstance(prev_index, str | Path):
            from ebr.index import load_index

            searcher = load_index(prev_index)
        requests, how = mining_requests(window_requests, retrieval, tables.get("retrieval_features"), features_dir)
        if how:
            notes.append(how)
        hard = mine_hard_negatives(requests, retrieval, clicks, negatives, searcher, encode_queries, quota,
                                   cfg.hard_negatives, _rng(cfg, day, "hard_negatives"), doc_fields)
        if hn_filter != "none":
            notes.append(f"hard-negative relevance filter ({hn_filter}): {hard.attrs.get('relevance_filtered', 0)} "
                         f"candidate(s) that match the request's understanding skipped (possibly relevant); "
                         f"{hard.attrs.get('requests_not_understood', 0)} training request(s) with nothing "
                         f"understood left without hard negatives")
    tables["hard_negatives"] = hard

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "day": day,
        "train_days": days,
        "day_range": [days[0], days[-1]],
        "seed": cfg.seed,
        "tables": {name: {"file": f"{name}.parquet", "rows": int(len(t)), "columns": list(t.columns)}
                   for name, t in tables.items()},
        "positives": {k: int(v) for k, v in retrieval["kind"].value_counts().sort_index().items()},
        "relevance_filtered_clicks": int(filtered),
        "hard_negative_quota": quota,
        "ranking_sources": {s: int((ranking["source"] == s).sum()) for s in SOURCES},
        "rewrites": {k: int(v) for k, v in rewrites["rewrite"].value_counts().sort_index().items()},
        "notes": notes,
        "config": cfg.model_dump(mode="json"),
    }
    out = Path(out_dir)
    with atomic_output_dir(out, MANIFEST) as tmp:
        for name, t in tables.items():
            _write(t, tmp / f"{name}.parquet", name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
