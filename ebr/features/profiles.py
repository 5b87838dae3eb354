"""Profile views (user, doc, author) for one day: the dimension tables' change rows of that day, renamed.

The current value of an entity at t is its latest change row with event_timestamp <= t, which is exactly
Feast's point-in-time join over these rows, so they need no TTL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.features.history import DAY_US, History


def _rows_of_day(df: pd.DataFrame, start_us: int) -> pd.DataFrame:
    return df[(df["ts"] >= start_us) & (df["ts"] < start_us + DAY_US)]


def _float_or_nan(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()


def user_profile(h: History, start_us: int) -> pd.DataFrame:
    """Users' change rows of the day starting at `start_us`."""
    u = _rows_of_day(h.users, start_us)
    return pd.DataFrame({
        "user_id": u["user_id"].to_numpy(dtype=np.int64),
        "ts": u["ts"].to_numpy(),
        "user_gender": u["gender"].to_numpy(),
        "user_age": _float_or_nan(u["age"]),
        "user_city": u["city"].to_numpy(),
        "user_profile_tags": u["profile_tags"].to_numpy(),
    })


def doc_profile(h: History, start_us: int) -> pd.DataFrame:
    """Docs' change rows of the day starting at `start_us`."""
    d = _rows_of_day(h.docs, start_us)
    out = pd.DataFrame({"doc_id": d["doc_id"].to_numpy(dtype=np.int64), "ts": d["ts"].to_numpy()})
    for c in ("title", "category_l1", "category_l2", "category_leaf", "brand", "attributes", "tags"):
        out[c] = d[c].to_numpy()
    out["author_id"] = d["author_id"].to_numpy(dtype=np.int64)
    return out


def author_profile(h: History, start_us: int) -> pd.DataFrame:
    """Authors' change rows of the day starting at `start_us`."""
    a = _rows_of_day(h.authors, start_us)
    return pd.DataFrame({
        "author_id": a["author_id"].to_numpy(dtype=np.int64),
        "ts": a["ts"].to_numpy(),
        "author_gender": a["gender"].to_numpy(),
        "author_age": _float_or_nan(a["age"]),
        "author_city": a["city"].to_numpy(),
        "author_follower_count": a["follower_count"].to_numpy(dtype=np.int64),
    })
