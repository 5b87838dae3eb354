"""Ground-truth relevance from structured fields, and the complete relevance labels of sampled queries.

Grade 2: the doc's leaf category is the intent's and every asked brand and attribute matches; grade 1: the leaf
matches but an asked brand or attribute differs (or is unset); grade 0: another leaf. An ambiguous query is
labelled by its best reading (both meanings are relevant to the query text; clicks follow the user's).
"""

from __future__ import annotations

import numpy as np

from ebr.simulate.corpus import Docs
from ebr.simulate.queries import Intents, QueryPool


def grade(
    leaf: np.ndarray, brand: np.ndarray, attr_key: np.ndarray, attr_val: np.ndarray,
    doc_leaf: np.ndarray, doc_brand: np.ndarray, doc_attrs: np.ndarray,
) -> np.ndarray:
    """Relevance (int8, 0/1/2) of docs to intents.

    Intent arrays have shape (R,) (attributes (R, 2)); doc arrays (R, C) (attributes (R, C, n_keys)).
    """
    leaf_ok = doc_leaf == leaf[:, None]
    ok = leaf_ok & ((brand[:, None] < 0) | (doc_brand == brand[:, None]))
    for j in range(attr_key.shape[1]):
        k = attr_key[:, j].astype(np.int64)
        kc = np.broadcast_to(np.maximum(k, 0)[:, None, None], doc_attrs.shape[:2] + (1,))
        dv = np.take_along_axis(doc_attrs, kc, axis=2)[:, :, 0]
        ok &= (k[:, None] < 0) | (dv == attr_val[:, j][:, None])
    return np.where(ok, 2, np.where(leaf_ok, 1, 0)).astype(np.int8)


def request_grades(
    intents: Intents, intent: np.ndarray, reading: np.ndarray, docs: Docs, doc_idx: np.ndarray
) -> np.ndarray:
    """(R, C) grades of docs `doc_idx` (R, C; -1 = none) for each request's intent and resolved reading."""
    d = np.maximum(doc_idx, 0)
    g = grade(
        intents.leaf[intent, reading], intents.brand[intent, reading], intents.attr_key[intent, reading],
        intents.attr_val[intent, reading], docs.leaf[d], docs.brand[d], docs.attrs[d],
    )
    return np.where(doc_idx >= 0, g, 0).astype(np.int8)


def leaf_members(docs: Docs, n_leaves: int) -> tuple[np.ndarray, np.ndarray]:
    """Doc indices grouped by leaf: (order, offsets) with leaf i's docs at order[offsets[i]:offsets[i+1]]."""
    order = np.argsort(docs.leaf, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(docs.leaf, minlength=n_leaves))])
    return order, offsets


def query_labels(
    pool: QueryPool, intents: Intents, docs: Docs, n_leaves: int, queries: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, doc, label >= 1) of `queries` over the whole corpus: (query index, doc index, label)."""
    order, offsets = leaf_members(docs, n_leaves)
    q_out, d_out, l_out = [], [], []
    for q in queries.tolist():
        i = int(pool.intent[q])
        best: dict[int, int] = {}
        for r in range(int(intents.n_read[i])):
            lf = int(intents.leaf[i, r])
            members = order[offsets[lf] : offsets[lf + 1]]
            if len(members) == 0:
                continue
            g = grade(
                intents.leaf[i : i + 1, r], intents.brand[i : i + 1, r], intents.attr_key[i : i + 1, r],
                intents.attr_val[i : i + 1, r], docs.leaf[members][None, :], docs.brand[members][None, :],
                docs.attrs[members][None, :, :],
            )[0]
            for dd, gg in zip(members.tolist(), g.tolist(), strict=True):
                if gg > best.get(dd, 0):
                    best[dd] = gg
        ds = np.array(sorted(best), dtype=np.int64)
        q_out.append(np.full(len(ds), q, dtype=np.int64))
        d_out.append(ds)
        l_out.append(np.array([best[x] for x in ds.tolist()], dtype=np.int8))
    if not q_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
    return np.concatenate(q_out), np.concatenate(d_out), np.concatenate(l_out)
