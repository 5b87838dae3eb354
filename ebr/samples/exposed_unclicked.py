"""Exposed-but-unclicked docs as retrieval negatives: opt-in, for the ablation only.

Facebook EBR (seed 004) measured a large recall regression when these replace random negatives: they come from
the old funnel's survivors, so the model never sees the unexposed corpus it must search at serving time.
"""

from __future__ import annotations

import pandas as pd

from ebr.samples.tables import columns

EXPOSED_UNCLICKED_COLUMNS = columns("exposed_unclicked")


def exposed_unclicked(imps: pd.DataFrame, positive_requests: pd.Series) -> pd.DataFrame:
    """Exposed, unclicked impressions of requests that have a positive (a negative needs a positive to pair with)."""
    mask = (imps["stage"] == "exposed") & ~imps["clicked"].astype(bool) & imps["request_id"].isin(positive_requests)
    rows = imps.loc[mask].copy()
    rows["kind"] = "exposed_unclicked"
    rows = rows.sort_values(["event_timestamp", "request_id", "position"], kind="mergesort")
    return rows[EXPOSED_UNCLICKED_COLUMNS].reset_index(drop=True)
