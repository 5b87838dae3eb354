"""Statistics views (user, query, doc, author) for one day, with no look-ahead.

A row at time t counts only facts with timestamp < t over windows [t - w days, t). Rows are a daily
snapshot at the end of the day (the next day's 00:00 UTC, built from this day's and earlier facts) for every
entity that exists then, plus one row at the moment an entity appears during the day, so that an entity row
of a new doc, user, author or query always finds a feature row at or before its time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.features.config import FeaturesConfig
from ebr.features.definitions import DOC_WINDOWS, WINDOWS
from ebr.features.history import DAY_US, History, as_of


def window_sums(
    points: pd.DataFrame, facts: pd.DataFrame, key: str, values: list[str], windows: tuple[int, ...]
) -> pd.DataFrame:
    """Sums of fact `values` per point (key, ts) over [ts - w days, ts) for each window w; 0 without facts.

    Columns are named `{value}_{w}`; the frame is aligned with `points`. Prefix sums over the facts sorted by
    (key, time), read at each point's two bounds by binary search: memory stays a few arrays of the facts' length
    (a join of points to facts took ~1 GB per view at `large`, for 8M impressions)."""
    out = pd.DataFrame(0, index=points.index, columns=[f"{v}_{w}" for w in windows for v in values], dtype=np.int64)
    if points.empty or facts.empty:
        return out
    fact_code, uniques = pd.factorize(facts[key].to_numpy(), use_na_sentinel=True)
    point_code = pd.Index(uniques).get_indexer(points[key].to_numpy())
    fact_ts = facts["ts"].to_numpy(dtype=np.int64)
    point_ts = points["ts"].to_numpy(dtype=np.int64)
    lows = [point_ts - w * DAY_US for w in windows]
    # times as ranks among every time used, so that (key, time) packs into one sortable int64
    times = np.unique(np.concatenate([fact_ts, point_ts, *lows]))
    span = len(times) + 1
    keep = fact_code >= 0
    packed = fact_code[keep].astype(np.int64) * span + np.searchsorted(times, fact_ts[keep])
    order = np.argsort(packed, kind="stable")
    packed = packed[order]
    found = point_code >= 0
    base = point_code[found].astype(np.int64) * span

    def before(ts: np.ndarray) -> np.ndarray:
        """Index into the sorted facts of the first fact of the point's key at or after `ts`."""
        return np.searchsorted(packed, base + np.searchsorted(times, ts[found]), side="left")

    hi = before(point_ts)
    lo = {w: before(low) for w, low in zip(windows, lows, strict=True)}
    for v in values:
        prefix = np.zeros(len(packed) + 1, dtype=np.int64)
        np.cumsum(facts[v].to_numpy(dtype=np.int64)[keep][order], out=prefix[1:])
        for w in windows:
            col = np.zeros(len(points), dtype=np.int64)
            col[found] = prefix[hi] - prefix[lo[w]]
            out[f"{v}_{w}"] = col
    return out


def smoothed_ctr(clicks: np.ndarray, exposures: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """(clicks + a*p) / (exposures + a); the prior p itself when there are no exposures and a = 0."""
    a, p = cfg.ctr_prior_weight, cfg.ctr_prior
    den = exposures.astype(np.float64) + a
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = np.where(den > 0, (clicks + a * p) / den, p)
    return ctr.astype(np.float32)


def count_bucket(x: np.ndarray, n: int) -> np.ndarray:
    """Log2 bucket of a count: min(floor(log2(1 + x)), n - 1)."""
    return np.minimum(np.floor(np.log2(1.0 + np.maximum(x, 0))), n - 1).astype(np.int64)


def ctr_bucket(x: np.ndarray, n: int) -> np.ndarray:
    """Linear bucket of a rate in [0, 1]: min(floor(x * n), n - 1)."""
    return np.minimum(np.floor(np.clip(x, 0.0, 1.0) * n), n - 1).astype(np.int64)


def _first_seen(rows: pd.DataFrame, key: str) -> pd.Series:
    return rows.groupby(key)["ts"].min()


def _points(first: pd.Series, key: str, start_us: int) -> pd.DataFrame:
    """Snapshot points at the day's end for entities existing by then, plus a point when one appears."""
    end_us = start_us + DAY_US
    existing = first[first < end_us]
    new = first[(first >= start_us) & (first < end_us)]
    pts = pd.concat([
        pd.DataFrame({key: new.index.to_numpy(), "ts": new.to_numpy(dtype=np.int64)}),
        pd.DataFrame({key: existing.index.to_numpy(), "ts": np.full(len(existing), end_us, dtype=np.int64)}),
    ], ignore_index=True)
    return pts.drop_duplicates([key, "ts"]).sort_values([key, "ts"], kind="stable").reset_index(drop=True)


def doc_stats(h: History, start_us: int, cfg: FeaturesConfig) -> pd.DataFrame:
    """doc_stats rows of the day starting at `start_us`."""
    pts = _points(_first_seen(h.docs, "doc_id"), "doc_id", start_us)
    imp = h.impressions  # only the columns summed (a copy of the whole frame is ~1 GB at `large`)
    facts = pd.DataFrame({"doc_id": imp["doc_id"].to_numpy(), "ts": imp["ts"].to_numpy(), "exposures": 1,
                          "clicks": imp["clicked"].to_numpy(), "likes": imp["liked"].to_numpy(),
                          "favorites": imp["favorited"].to_numpy(), "comments": imp["commented"].to_numpy()})
    kinds = ["exposures", "clicks", "likes", "favorites", "comments"]
    sums = window_sums(pts, facts, "doc_id", kinds, DOC_WINDOWS)
    out = pd.DataFrame({"doc_id": pts["doc_id"].to_numpy(dtype=np.int64), "ts": pts["ts"].to_numpy()})
    publish = as_of(h.docs, "doc_id", pts, ["publish_us"], strict=False)["publish_us"].astype("float64")
    out["doc_age_days"] = ((pts["ts"] - publish) / DAY_US).astype(np.float32).to_numpy()
    for w in DOC_WINDOWS:
        for k in kinds:
            out[f"doc_{k}_{w}d"] = sums[f"{k}_{w}"].to_numpy()
    for w in DOC_WINDOWS:
        out[f"doc_ctr_{w}d"] = smoothed_ctr(sums[f"clicks_{w}"].to_numpy(), sums[f"exposures_{w}"].to_numpy(), cfg)
    for w in DOC_WINDOWS:
        out[f"doc_exposures_{w}d_bucket"] = count_bucket(out[f"doc_exposures_{w}d"].to_numpy(), cfg.count_buckets)
        out[f"doc_clicks_{w}d_bucket"] = count_bucket(out[f"doc_clicks_{w}d"].to_numpy(), cfg.count_buckets)
        out[f"doc_ctr_{w}d_bucket"] = ctr_bucket(out[f"doc_ctr_{w}d"].to_numpy(), cfg.ctr_buckets)
    return out


def _mode_as_of(points: pd.DataFrame, facts: pd.DataFrame, key: str, value: str, days: int) -> np.ndarray:
    """Most frequent non-null `value` per point over [ts - days, ts); ties go to the smallest value."""
    out = np.full(len(points), None, dtype=object)
    if points.empty:
        return out
    lo, hi = int(points["ts"].min()) - days * DAY_US, int(points["ts"].max())
    keep = facts[value].notna() & (facts["ts"] >= lo) & (facts["ts"] < hi)
    f = facts.loc[keep, [key, "ts", value]].rename(columns={"ts": "fact_ts"})
    if f.empty:
        return out
    left = pd.DataFrame({"_i": np.arange(len(points)), key: points[key].to_numpy(), "ts": points["ts"].to_numpy()})
    m = left.merge(f, on=key, how="inner")
    m = m[(m["fact_ts"] < m["ts"]) & (m["fact_ts"] >= m["ts"] - days * DAY_US)]
    if m.empty:
        return out
    c = m.groupby(["_i", value]).size().rename("n").reset_index()
    c = c.sort_values(["_i", "n", value], ascending=[True, False, True], kind="stable").drop_duplicates("_i")
    out[c["_i"].to_numpy()] = c[value].to_numpy()
    return out


def query_stats(h: History, start_us: int, cfg: FeaturesConfig) -> pd.DataFrame:
    """query_stats rows of the day starting at `start_us`.

    The snapshot covers queries searched in the 30 days before it; a query searched during the day that was
    not searched in the 30 days before the day's start gets an all-null row at its first request."""
    end_us = start_us + DAY_US
    req = h.requests
    longest = max(WINDOWS) * DAY_US
    in_window = req[(req["ts"] >= end_us - longest) & (req["ts"] < end_us)]
    before = set(req.loc[(req["ts"] >= start_us - longest) & (req["ts"] < start_us), "query"])
    today = req[(req["ts"] >= start_us) & (req["ts"] < end_us)]
    new = today[~today["query"].isin(before)].groupby("query")["ts"].min()
    snap = np.unique(in_window["query"].to_numpy().astype(str))
    pts = pd.concat([
        pd.DataFrame({"query": new.index.to_numpy(), "ts": new.to_numpy(dtype=np.int64)}),
        pd.DataFrame({"query": snap, "ts": np.full(len(snap), end_us, dtype=np.int64)}),
    ], ignore_index=True).drop_duplicates(["query", "ts"]).sort_values(["query", "ts"], kind="stable")
    pts = pts.reset_index(drop=True)
    searches = window_sums(pts, pd.DataFrame({"query": req["query"].to_numpy(), "ts": req["ts"].to_numpy(),
                                              "searches": 1}), "query", ["searches"], WINDOWS)
    imp = pd.DataFrame({"query": h.impressions["query"].to_numpy(), "ts": h.impressions["ts"].to_numpy(),
                        "impressions": 1, "clicks": h.impressions["clicked"].to_numpy()})
    sums = window_sums(pts, imp, "query", ["impressions", "clicks"], WINDOWS)
    out = pd.DataFrame({"query": pts["query"].to_numpy(), "ts": pts["ts"].to_numpy()})
    for w in WINDOWS:
        out[f"query_searches_{w}d"] = searches[f"searches_{w}"].to_numpy()
        out[f"query_impressions_{w}d"] = sums[f"impressions_{w}"].to_numpy()
        out[f"query_clicks_{w}d"] = sums[f"clicks_{w}"].to_numpy()
    for w in WINDOWS:
        out[f"query_ctr_{w}d"] = smoothed_ctr(sums[f"clicks_{w}"].to_numpy(), sums[f"impressions_{w}"].to_numpy(), cfg)
    out["qu_category_leaf"] = _mode_as_of(pts, req, "query", "qu_category_leaf", max(WINDOWS))
    out["qu_brand"] = _mode_as_of(pts, req, "query", "qu_brand", max(WINDOWS))
    # A query's appearance row only keeps its entity rows from being dropped: null, like an unknown query online.
    appear = out["ts"].to_numpy() != end_us
    for c in out.columns[2:]:
        if out[c].dtype.kind == "i":
            out[c] = out[c].astype("Int64")
        out.loc[appear, c] = None
    return out


def user_stats(h: History, start_us: int, cfg: FeaturesConfig) -> pd.DataFrame:
    """user_stats rows of the day starting at `start_us` (users of the users table)."""
    pts = _points(_first_seen(h.users, "user_id"), "user_id", start_us)
    req = h.requests[h.requests["user_id"].notna()]
    req = pd.DataFrame({"user_id": req["user_id"].to_numpy(dtype=np.int64), "ts": req["ts"].to_numpy(), "searches": 1})
    imp = h.impressions[h.impressions["user_id"].notna()]
    imp = pd.DataFrame({
        "user_id": imp["user_id"].to_numpy(dtype=np.int64), "ts": imp["ts"].to_numpy(),
        "exposures": 1, "clicks": imp["clicked"].to_numpy(),
    })  # fmt: skip
    searches = window_sums(pts, req, "user_id", ["searches"], WINDOWS)
    sums = window_sums(pts, imp, "user_id", ["exposures", "clicks"], WINDOWS)
    out = pd.DataFrame({"user_id": pts["user_id"].to_numpy(dtype=np.int64), "ts": pts["ts"].to_numpy()})
    reg = as_of(h.users, "user_id", pts, ["register_us"], strict=False)["register_us"].astype("float64")
    out["user_register_days"] = ((pts["ts"] - reg) / DAY_US).astype(np.float32).to_numpy()
    for w in WINDOWS:
        out[f"user_searches_{w}d"] = searches[f"searches_{w}"].to_numpy()
        out[f"user_clicks_{w}d"] = sums[f"clicks_{w}"].to_numpy()
    for w in WINDOWS:
        out[f"user_ctr_{w}d"] = smoothed_ctr(sums[f"clicks_{w}"].to_numpy(), sums[f"exposures_{w}"].to_numpy(), cfg)
    return out


def _docs_per_author(docs: pd.DataFrame, t_us: int) -> pd.Series:
    """Docs per author among docs whose latest version before t names that author."""
    cur = docs[docs["ts"] < t_us].drop_duplicates("doc_id", keep="last")
    return cur.groupby("author_id").size()


def author_stats(h: History, start_us: int, cfg: FeaturesConfig) -> pd.DataFrame:
    """author_stats rows of the day starting at `start_us` (authors of the authors table)."""
    pts = _points(_first_seen(h.authors, "author_id"), "author_id", start_us)
    imp = h.impressions[h.impressions["author_id"].notna()]
    imp = pd.DataFrame({
        "author_id": imp["author_id"].to_numpy(dtype=np.int64), "ts": imp["ts"].to_numpy(),
        "exposures": 1, "clicks": imp["clicked"].to_numpy(),
    })  # fmt: skip
    sums = window_sums(pts, imp, "author_id", ["exposures", "clicks"], WINDOWS)
    out = pd.DataFrame({"author_id": pts["author_id"].to_numpy(dtype=np.int64), "ts": pts["ts"].to_numpy()})
    n_docs = np.zeros(len(pts), dtype=np.int64)
    for t, idx in pts.groupby("ts").groups.items():
        counts = _docs_per_author(h.docs, int(t))
        n_docs[idx] = counts.reindex(pts.loc[idx, "author_id"].to_numpy()).fillna(0).to_numpy(dtype=np.int64)
    out["author_docs"] = n_docs
    for w in WINDOWS:
        out[f"author_exposures_{w}d"] = sums[f"exposures_{w}"].to_numpy()
        out[f"author_clicks_{w}d"] = sums[f"clicks_{w}"].to_numpy()
    for w in WINDOWS:
        out[f"author_ctr_{w}d"] = smoothed_ctr(sums[f"clicks_{w}"].to_numpy(), sums[f"exposures_{w}"].to_numpy(), cfg)
    return out
