"""A human-readable summary of a raw-log dataset: rows per table and day, and example requests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ebr.contract.check import DatasetReport
from ebr.contract.load import load


def example_requests(root: str | Path, day: str, n: int = 3, exposed: int = 5) -> list[dict]:
    """Up to `n` requests of `day` that have clicks, each with its top exposed docs (title, clicked)."""
    req = load(root, "search_requests", [day])
    imp = load(root, "impressions", [day])
    docs = load(root, "docs").sort_values("event_timestamp").drop_duplicates("doc_id", keep="last")
    titles = docs.set_index("doc_id")["title"]
    shown = imp[imp["stage"] == "exposed"].sort_values(["request_id", "position"])
    clicked_ids = shown.loc[shown["clicked"], "request_id"].unique()
    picks = req[req["request_id"].isin(clicked_ids)].sort_values("request_id").head(n)
    out = []
    for r in picks.itertuples(index=False):
        rows = shown[shown["request_id"] == r.request_id].head(exposed)
        out.append(
            {
                "request_id": r.request_id,
                "user_id": None if pd.isna(r.user_id) else int(r.user_id),
                "query": r.query,
                "query_category_leaf": r.query_category_leaf,
                "exposed": [
                    {"position": int(x.position), "doc_id": int(x.doc_id), "title": titles.get(x.doc_id, "?"),
                     "clicked": bool(x.clicked)}
                    for x in rows.itertuples(index=False)
                ],
            }
        )
    return out


def render_summary(report: DatasetReport, examples: list[dict]) -> str:
    """Text block printed at the end of a run: the table report and the example requests."""
    lines = [report.render(), "", "example requests (exposed docs, * = clicked):"]
    for e in examples:
        user = e["user_id"] if e["user_id"] is not None else "logged-out"
        lines.append(f"  [{e['request_id']}] user={user} query={e['query']!r} "
                     f"(understood category: {e['query_category_leaf']})")
        for x in e["exposed"]:
            mark = "*" if x["clicked"] else " "
            lines.append(f"     {mark} #{x['position']:<2} doc {x['doc_id']:<8} {x['title']}")
    return "\n".join(lines)
