"""Ranking features computed straight from the contract tables, for sample rows that carry no joined features.

The samples step joins point-in-time features from Feast when it is given a feature store; until then (and for
the evaluation day, which has no sample table) the rankers compute the same columns here with the same
semantics as the feature views in `ebr.features.definitions`:

- request side, as of the request time t: the user's profile (latest users row <= t), recent distinct queries
  (30 days, newest first), behaviour sequences from user_events - real-time (day start .. t), short-term (the
  10 days before the day start), long-term (days 11-30) - with each event's doc category and author;
- doc side, as of the request's day: the doc's attributes (latest docs row at the day start, or its first row
  for a doc published later that day), search statistics over the 30 days before the day start (clicks,
  smoothed CTR), age, and the author's follower count.
Nothing at or after t (request side) or after the day start (statistics) is read.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.features.config import FeaturesConfig
from ebr.models.config import MaxLengths

REQUEST_KEYS = ["request_id", "user_id", "query", "query_category_leaf", "query_brand", "event_timestamp"]
DOC_PROFILE = ["title", "category_l1", "category_l2", "category_leaf", "brand", "attributes", "tags", "author_id"]
DOC_STATS = ["doc_clicks_30d", "doc_ctr_30d", "doc_age_days", "author_follower_count"]
SEQ_FIELDS = ("doc_ids", "categories", "authors", "event_types")
DAY = pd.Timedelta(days=1)


def _days_between(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _available(root: Path, table: str, first: str, last: str) -> list[str]:
    have = set(list_days(root, table))
    return [d for d in _days_between(first, last) if d in have]


def _day_start(ts: pd.Series) -> pd.Series:
    return ts.dt.floor("D")


def _load_span(root: Path, table: str, first: str, last: str) -> pd.DataFrame | None:
    days = _available(root, table, first, last)
    return load(root, table, days) if days else None


def _doc_versions(root: Path, last: str) -> pd.DataFrame:
    docs = _load_span(root, "docs", "1970-01-01", last) if list_days(root, "docs") else None
    if docs is None or docs.empty:
        raise ValueError(f"{root}/docs has no partition up to {last}: doc features cannot be computed")
    return docs.sort_values(["event_timestamp", "doc_id"], kind="mergesort").reset_index(drop=True)


def _asof(left: pd.DataFrame, right: pd.DataFrame, key: str, cols: list[str]) -> pd.DataFrame:
    """`left` (with `at`) plus `cols` of the latest `right` row per `key` with event_timestamp <= at."""
    lt = left.reset_index(drop=True).assign(_row=lambda f: np.arange(len(f)))
    r = right[[key, "event_timestamp", *cols]].sort_values("event_timestamp", kind="mergesort")
    lt = lt.astype({key: "int64", "at": "datetime64[us, UTC]"})
    r = r.astype({key: "int64", "event_timestamp": "datetime64[us, UTC]"})
    r = r.rename(columns={"event_timestamp": "_valid_from"})
    m = pd.merge_asof(lt.sort_values("at", kind="mergesort"), r, left_on="at", right_on="_valid_from", by=key,
                      direction="backward")
    return m.sort_values("_row").drop(columns=["_row", "_valid_from"]).reset_index(drop=True)


def request_features(data_root: str | Path, requests: pd.DataFrame, max_len: MaxLengths) -> pd.DataFrame:
    """`requests` (REQUEST_KEYS) with user profile, recent queries and behaviour sequences as of each request."""
    root = rawfs.raw_root(data_root)
    missing = [c for c in REQUEST_KEYS if c not in requests.columns]
    if missing:
        raise ValueError(f"request rows lack column(s) {missing}")
    out = requests[REQUEST_KEYS].reset_index(drop=True).copy()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    cfg = FeaturesConfig()
    first_ts, last_ts = out["event_timestamp"].min(), out["event_timestamp"].max()
    last = last_ts.date().isoformat()
    first_hist = (first_ts.floor("D") - pd.Timedelta(days=cfg.lookback_days)).date().isoformat()
    logged_in = out["user_id"].notna().to_numpy()
    uid = out["user_id"].astype("Float64").fillna(-1).astype("int64").to_numpy()

    users = _load_span(root, "users", "1970-01-01", last)
    prof = pd.DataFrame({"user_id": uid, "at": out["event_timestamp"]})
    if users is not None:
        users = users.rename(columns={"gender": "user_gender", "age": "user_age", "city": "user_city",
                                      "profile_tags": "user_profile_tags"})
        prof = _asof(prof, users, "user_id", ["user_gender", "user_age", "user_city", "user_profile_tags"])
    for c in ("user_gender", "user_age", "user_city", "user_profile_tags"):
        vals = prof[c].to_numpy(dtype=object) if c in prof.columns else np.full(len(out), None, dtype=object)
        vals = np.where(logged_in, vals, None)
        out[c] = [None if (isinstance(v, float) and np.isnan(v)) else v for v in vals]
    out["user_age"] = pd.to_numeric(out["user_age"], errors="coerce").astype("float64")
    out["user_profile_tags"] = [list(v) if v is not None else [] for v in out["user_profile_tags"]]

    out["recent_queries"] = _recent_queries(root, out, uid, logged_in, first_hist, last, cfg, max_len)
    for col, values in _sequences(root, out, uid, logged_in, first_hist, last, cfg, max_len).items():
        out[col] = values
    return out


def _recent_queries(root: Path, req: pd.DataFrame, uid: np.ndarray, logged_in: np.ndarray, first: str, last: str,
                    cfg: FeaturesConfig, max_len: MaxLengths) -> list[list[str]]:
    hist = _load_span(root, "search_requests", first, last)
    empty: list[list[str]] = [[] for _ in range(len(req))]
    if hist is None:
        return empty
    hist = hist[hist["user_id"].notna()].sort_values(["user_id", "event_timestamp"], kind="mergesort")
    users = hist["user_id"].astype("int64").to_numpy()
    times = hist["event_timestamp"].to_numpy()
    queries = hist["query"].to_numpy(dtype=object)
    starts = {u: s for u, s in zip(*np.unique(users, return_index=True), strict=True)}
    ends = {u: s + c for u, s, c in zip(*np.unique(users, return_index=True, return_counts=True), strict=True)}
    window = np.timedelta64(cfg.recent_queries_days, "D")
    ts = req["event_timestamp"].to_numpy()
    out = empty
    for i in np.flatnonzero(logged_in):
        u = uid[i]
        if u not in starts:
            continue
        s, e = starts[u], ends[u]
        t = ts[i]
        lo = s + np.searchsorted(times[s:e], t - window, side="left")
        hi = s + np.searchsorted(times[s:e], t, side="left")
        seen: list[str] = []
        for q in queries[lo:hi][::-1]:
            if q not in seen:
                seen.append(q)
                if len(seen) >= max_len.recent_queries:
                    break
        out[i] = seen
    return out


def _sequences(root: Path, req: pd.DataFrame, uid: np.ndarray, logged_in: np.ndarray, first: str, last: str,
               cfg: FeaturesConfig, max_len: MaxLengths) -> dict[str, list[list]]:
    cols: dict[str, list[list]] = {f"seq_{w}_{f}": [[] for _ in range(len(req))] for w in ("rt", "st", "lt")
                                   for f in SEQ_FIELDS}
    ev = _load_span(root, "user_events", first, last)
    if ev is None or ev.empty:
        return cols
    ev = ev[ev["event_type"].isin(cfg.sequence_event_types)]
    docs = _doc_versions(root, last)
    at = ev[["doc_id", "event_timestamp"]].rename(columns={"event_timestamp": "at"})
    side = _asof(at, docs, "doc_id", ["category_leaf", "author_id"])
    ev = ev.reset_index(drop=True)
    ev["category"] = side["category_leaf"].fillna("").to_numpy(dtype=object)
    ev["author"] = side["author_id"].fillna(-1).astype("int64").to_numpy()
    ev = ev.sort_values(["user_id", "event_timestamp"], kind="mergesort")
    users = ev["user_id"].astype("int64").to_numpy()
    times = ev["event_timestamp"].to_numpy()
    fields = {"doc_ids": ev["doc_id"].astype("int64").to_numpy(), "categories": ev["category"].to_numpy(dtype=object),
              "authors": ev["author"].to_numpy(), "event_types": ev["event_type"].to_numpy(dtype=object)}
    u_ids, u_start, u_count = np.unique(users, return_index=True, return_counts=True)
    span = {u: (s, s + c) for u, s, c in zip(u_ids, u_start, u_count, strict=True)}
    ts = req["event_timestamp"].to_numpy()
    day0 = _day_start(req["event_timestamp"]).to_numpy()
    st_days = np.timedelta64(cfg.short_term_days, "D")
    lt_days = np.timedelta64(cfg.long_term_days, "D")
    for i in np.flatnonzero(logged_in):
        u = uid[i]
        if u not in span:
            continue
        s, e = span[u]
        tt = times[s:e]
        bounds = {
            "rt": (day0[i], ts[i], max_len.seq_rt),
            "st": (day0[i] - st_days, day0[i], max_len.seq_st),
            "lt": (day0[i] - lt_days, day0[i] - st_days, max_len.seq_lt),
        }
        for w, (t0, t1, n) in bounds.items():
            lo = s + np.searchsorted(tt, t0, side="left")
            hi = s + np.searchsorted(tt, t1, side="left")
            if hi <= lo:
                continue
            newest_first = np.arange(hi - 1, max(lo, hi - n) - 1, -1)
            for f in SEQ_FIELDS:
                vals = fields[f][newest_first]
                cols[f"seq_{w}_{f}"][i] = [int(x) for x in vals] if f in ("doc_ids", "authors") else list(vals)
    return cols


def doc_features(data_root: str | Path, keys: pd.DataFrame) -> pd.DataFrame:
    """One row per (doc_id, day) of `keys`: the doc's profile and statistics as of that day's start."""
    root = rawfs.raw_root(data_root)
    if not {"doc_id", "day"} <= set(keys.columns):
        raise ValueError("doc keys need columns doc_id and day (YYYY-MM-DD)")
    k = keys[["doc_id", "day"]].drop_duplicates().reset_index(drop=True).astype({"doc_id": "int64"})
    if k.empty:
        return pd.DataFrame(columns=["doc_id", "day", *DOC_PROFILE, *DOC_STATS])
    last = max(k["day"])
    docs = _doc_versions(root, last)
    k["at"] = pd.to_datetime(k["day"]).dt.tz_localize("UTC")
    prof = _asof(k, docs, "doc_id", [*DOC_PROFILE, "publish_ts"])
    late = prof["title"].isna().to_numpy()
    if late.any():  # published later that day: its first version stands in
        first = docs.drop_duplicates("doc_id", keep="first").set_index("doc_id")
        ids = prof.loc[late, "doc_id"]
        unknown = ids[~ids.isin(first.index)]
        if len(unknown):
            raise ValueError(f"doc_id not in {root}/docs up to {last}: {unknown.head(5).tolist()}")
        for c in [*DOC_PROFILE, "publish_ts"]:
            prof.loc[late, c] = first.loc[ids, c].to_numpy()
    prof["author_id"] = prof["author_id"].astype("int64")
    prof["doc_age_days"] = ((prof["at"] - pd.to_datetime(prof["publish_ts"], utc=True)) / DAY).clip(lower=0.0)
    stats = _doc_stats(root, sorted(k["day"].unique()))
    prof = prof.merge(stats, on=["doc_id", "day"], how="left")
    cfg = FeaturesConfig()
    prof["doc_clicks_30d"] = prof["doc_clicks_30d"].fillna(0).astype("int64")
    prof["doc_exposures_30d"] = prof["doc_exposures_30d"].fillna(0)
    a, p = cfg.ctr_prior_weight, cfg.ctr_prior
    prof["doc_ctr_30d"] = ((prof["doc_clicks_30d"] + a * p) / (prof["doc_exposures_30d"] + a)).astype("float64")
    authors = _load_span(root, "authors", "1970-01-01", last)
    if authors is None:
        prof["author_follower_count"] = np.nan
    else:
        fol = _asof(prof[["author_id", "at"]], authors, "author_id", ["follower_count"])
        prof["author_follower_count"] = fol["follower_count"].to_numpy(dtype="float64")
    return prof[["doc_id", "day", *DOC_PROFILE, *DOC_STATS]].reset_index(drop=True)


def _doc_stats(root: Path, days: list[str]) -> pd.DataFrame:
    """Exposures and clicks per doc over the 30 days before each day's start."""
    first = (date.fromisoformat(days[0]) - timedelta(days=30)).isoformat()
    last = (date.fromisoformat(days[-1]) - timedelta(days=1)).isoformat()
    imps = _load_span(root, "impressions", first, last) if first <= last else None
    parts = []
    for d in days:
        if imps is None:
            break
        start = pd.Timestamp(d, tz="UTC")
        w = imps[(imps["event_timestamp"] < start) & (imps["event_timestamp"] >= start - pd.Timedelta(days=30))
                 & (imps["stage"] == "exposed")]
        g = w.groupby("doc_id").agg(doc_exposures_30d=("doc_id", "size"), doc_clicks_30d=("clicked", "sum"))
        parts.append(g.reset_index().assign(day=d))
    if not parts:
        return pd.DataFrame({"doc_id": pd.Series([], dtype="int64"), "day": pd.Series([], dtype=object),
                             "doc_exposures_30d": pd.Series([], dtype="float64"),
                             "doc_clicks_30d": pd.Series([], dtype="float64")})
    return pd.concat(parts, ignore_index=True).astype({"doc_id": "int64"})
