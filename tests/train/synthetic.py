"""A small synthetic training set built through the trainer's own featurization (no feature store): docs, click
rows with user-side features, and a chosen number of mined hard negatives per request."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ebr.train.retrieval_data import DocTable, TrainingData, build_rowset
from ebr.train.two_tower_config import TwoTowerTrainConfig, deep_merge

WORDS = ["red", "blue", "shoe", "bag", "lamp", "desk", "coat", "hat", "sock", "ring", "cup", "pen"]


def small_config(**overrides: Any) -> TwoTowerTrainConfig:
    """Hidden 8, short sequences, one thread, no validation, no tracking."""
    base: dict[str, Any] = {
        "model": {
            "featurizer": {
                "vocab": {"unigram": 500, "bigram": 500, "word": 500, "user_id": 100, "doc_id": 500,
                          "author_id": 50, "brand": 50, "attribute": 50, "tag": 50, "category": 50},
                "max_len": {"seq_rt": 3, "seq_st": 3, "seq_lt": 3, "recent_queries": 2, "title_words": 6},
            },
            "query_tower": {"hidden_dim": 8, "out_dim": 8, "num_heads": 2, "personalization": True,
                            "cls_fusion": True},
            "doc_tower": {"hidden_dim": 8, "out_dim": 8, "mlp_dims": [8]},
            "seed": 3,
        },
        "loss": {"num_hard_negatives": 4},
        "data": {"valid_share": 0.0},
        "train": {"epochs": 1, "num_threads": 1, "progress": False, "seed": 2},
        "mlflow": {"tracking_uri": None},
    }  # fmt: skip
    return TwoTowerTrainConfig.model_validate(deep_merge(base, overrides))


def doc_frame(n_docs: int) -> pd.DataFrame:
    ids = np.arange(100, 100 + n_docs, dtype=np.int64)
    return pd.DataFrame({
        "doc_id": ids,
        "title": [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]}" for i in range(n_docs)],
        "category_l1": [f"c{i % 3}" for i in range(n_docs)],
        "category_l2": [f"c{i % 5}" for i in range(n_docs)],
        "category_leaf": [f"c{i % 7}" for i in range(n_docs)],
        "author_id": ids % 11,
        "doc_clicks_30d": (ids % 13).astype(float),
        "doc_ctr_30d": (ids % 5) / 10.0,
        "author_follower_count": (ids % 17).astype(float),
        "doc_age_days": (ids % 9).astype(float),
    })


def query_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Query-side rows of logged-in users with profile and behaviour sequences."""
    rng = np.random.default_rng(seed)
    seq = [list(map(int, rng.integers(100, 160, 3))) for _ in range(n)]
    return pd.DataFrame({
        "query": [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 5 + 1) % len(WORDS)]}" for i in range(n)],
        "user_id": pd.array(rng.integers(1, 40, n), dtype="Int64"),
        "user_gender": rng.choice(["f", "m"], n),
        "user_age": rng.integers(18, 70, n).astype(float),
        "user_city": rng.choice(["a", "b", "c"], n),
        "user_profile_tags": [[WORDS[j] for j in rng.integers(0, len(WORDS), 2)] for _ in range(n)],
        "recent_queries": [[WORDS[j] for j in rng.integers(0, len(WORDS), 2)] for _ in range(n)],
        "seq_rt_doc_ids": seq,
        "seq_st_doc_ids": seq,
        "seq_lt_doc_ids": seq,
    })


def training_data(
    cfg: TwoTowerTrainConfig, n_rows: int, rows_per_request: int, mined: list[int], n_docs: int = 60, seed: int = 0
) -> TrainingData:
    """`n_rows` click rows, `rows_per_request` per request; request r gets `mined[r % len(mined)]` hard negatives
    (distinct docs that are not its positives)."""
    rng = np.random.default_rng(seed)
    docs_frame = doc_frame(n_docs)
    probs = rng.uniform(1.0, 5.0, n_docs)
    negatives = pd.DataFrame({"doc_id": docs_frame["doc_id"], "prob": probs / probs.sum()})
    docs = DocTable.build(docs_frame, negatives, cfg.model.featurizer)
    n_req = n_rows // rows_per_request
    req = np.repeat([f"r{i:03d}" for i in range(n_req)], rows_per_request)
    q = query_rows(n_req, seed).iloc[np.repeat(np.arange(n_req), rows_per_request)].reset_index(drop=True)
    pos_rows = rng.integers(0, n_docs, n_rows)
    frame = pd.concat([q, docs_frame.iloc[pos_rows].reset_index(drop=True)], axis=1).assign(
        request_id=req, weight=1.0, kind="click",
        event_timestamp=pd.Timestamp("2026-11-02T00:00:00Z"))
    requests = pd.Index(pd.unique(req))
    train = build_rowset(frame, docs, cfg.model.featurizer, requests, None)
    hard = []
    for r in range(n_req):
        own = set(pos_rows[r * rows_per_request : (r + 1) * rows_per_request].tolist())
        pool = np.array([d for d in rng.permutation(n_docs) if d not in own], dtype=np.int64)
        hard.append(pool[: mined[r % len(mined)]])
    return TrainingData("2026-11-03", ["2026-11-02"], docs, train, None, hard, None,
                        {"train_rows": n_rows}, [])
