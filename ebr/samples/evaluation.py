"""The evaluation-day table: requests of day D with their clicked docs and, where available, relevance labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ebr import rawfs
from ebr.contract import list_days, load
from ebr.samples.window import REQUEST_COLUMNS, check_day

EVAL_COLUMNS = REQUEST_COLUMNS + [
    "clicked_doc_ids", "exposed_doc_ids", "labels_complete", "label_doc_ids", "label_values", "relevant_doc_ids",
    "relevant_labels",
]


def _labels(root: Path, day: str) -> pd.DataFrame:
    """Per query: its labeled docs from the latest label partition <= day, and whether that list is complete."""
    days = [d for d in list_days(root, "relevance_labels") if d <= day]
    if not days:
        return pd.DataFrame(columns=["query", "labels_complete", "label_doc_ids", "label_values"])
    lab = load(root, "relevance_labels", days)
    latest = lab.groupby("query")["ds"].transform("max")
    lab = lab[lab["ds"] == latest].sort_values(["query", "doc_id"], kind="mergesort")
    g = lab.groupby("query", sort=True)
    return pd.DataFrame({
        "labels_complete": g["complete"].all(),
        "label_doc_ids": g["doc_id"].agg(list),
        "label_values": g["label"].agg(lambda s: [int(x) for x in s]),
    }).reset_index()


def eval_requests(data_root: str | Path, day: str) -> pd.DataFrame:
    """Requests of `day` with clicked and exposed doc ids; labeled queries get their labels, and queries with
    complete labels get `relevant_doc_ids`/`relevant_labels` (label >= 1; every unlisted doc is label 0)."""
    root = rawfs.raw_root(data_root)
    day = check_day(day, "day")
    if not rawfs.is_dir(root):
        raise FileNotFoundError(f"data root {root} is not a directory")
    available = list_days(root, "search_requests")
    if day not in available:
        span = f"{available[0]}..{available[-1]}" if available else "none"
        raise ValueError(f"day {day} has no partition in {root}/search_requests (days there: {span})")
    req = load(root, "search_requests", [day])[REQUEST_COLUMNS].copy()
    req["user_id"] = req["user_id"].astype("Int64")
    imp_days = [d for d in list_days(root, "impressions") if d in (day, _next_day(day))]
    imps = load(root, "impressions", imp_days) if imp_days else pd.DataFrame(columns=["request_id", "doc_id"])
    imps = imps[imps["request_id"].isin(req["request_id"])]
    exposed = imps[imps["stage"] == "exposed"].sort_values(["request_id", "position"], kind="mergesort")
    clicked = exposed[exposed["clicked"].astype(bool)]
    out = req.merge(clicked.groupby("request_id")["doc_id"].agg(list).rename("clicked_doc_ids"),
                    left_on="request_id", right_index=True, how="left")
    out = out.merge(exposed.groupby("request_id")["doc_id"].agg(list).rename("exposed_doc_ids"),
                    left_on="request_id", right_index=True, how="left")
    for c in ("clicked_doc_ids", "exposed_doc_ids"):
        out[c] = [v if isinstance(v, list) else [] for v in out[c]]
    out = out.merge(_labels(root, day), on="query", how="left")
    out["labels_complete"] = out["labels_complete"].eq(True).to_numpy(dtype=bool)
    for c in ("label_doc_ids", "label_values"):
        out[c] = [v if isinstance(v, list) else None for v in out[c]]
    rel_ids, rel_labels = [], []
    for complete, ids, vals in zip(out["labels_complete"], out["label_doc_ids"], out["label_values"], strict=True):
        if complete:
            keep = [(i, v) for i, v in zip(ids, vals, strict=True) if v >= 1]
            rel_ids.append([i for i, _ in keep])
            rel_labels.append([v for _, v in keep])
        else:
            rel_ids.append(None)
            rel_labels.append(None)
    out["relevant_doc_ids"] = rel_ids
    out["relevant_labels"] = rel_labels
    out = out.sort_values(["event_timestamp", "request_id"], kind="mergesort")
    return out[EVAL_COLUMNS].reset_index(drop=True)


def _next_day(day: str) -> str:
    return (pd.Timestamp(day) + pd.Timedelta(days=1)).date().isoformat()
