"""Re-scoring retrieved candidates with the bundle's coarse ranker (`coarse_ranker/` in the bundle).

The directory is what `ebr.train.rankers.distill_coarse_ranker` writes: `export/` holding the `query_tower`
and `scorer` programs (`ebr.models.export`), `doc_ids.npy` and `doc_vectors.npy` (the doc matrix computed
offline). An export directory at the top level with the doc matrix beside it is accepted too. Online: the
request row is featurized with the ranker's featurizer, encoded once, and `scorer({"query", "doc"})` scores
every candidate found in the doc matrix. A three-tower ranker's scorer also takes "cross" / "cross_buckets": the
query-doc and user-doc cross features of each pair (`ebr.models.rankers.cross_features`, the function training
used), computed from the request row (query, the store's query understanding and the user's profile tags and
behaviour sequences) and the candidate's row of `doc_rows.parquet`, which the distill step ships beside the doc
matrix (the doc side is prepared once per bundle); a candidate without a doc row scores NaN, like one missing from
the doc matrix.

A ranker trained with `retrieval_cosine` has a scorer that also takes "retrieval_cosine" [N]: the retrieval
model's cosine of the request's query vector and each candidate (`retrieval_cosines`): the ANN score of an
embedding-channel candidate; for one only the lexical channel found, q . d over the vector the index stores
when the index keeps it exactly (Flat or IVF-Flat under inner product), else 0, counted in
`missing_retrieval_cosines`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ebr.index.export import export_dir_of
from ebr.models.export import ExportedModule, load_exported
from ebr.models.rankers.cross_features import CROSS_INPUTS, CrossDocs
from ebr.train.rankers import DOC_IDS, DOC_VECTORS, open_cross_docs

if TYPE_CHECKING:
    import torch

    from ebr.index.search import ShardedSearcher
    from ebr.models.config import FeaturizerConfig

RETRIEVAL_COSINE = "retrieval_cosine"
SCORER_INPUTS = tuple(
    {"query", "doc"} | extra for extra in ({*c, *r} for c in (set(), CROSS_INPUTS) for r in (set(), {RETRIEVAL_COSINE}))
)
# The request row's query-understanding fields as the cross features name them (training reads the log's
# columns), from the fields the feature store serves for the query.
CROSS_QU_FIELDS = {"query_category_leaf": "qu_category_leaf", "query_brand": "qu_brand"}


class CoarseRescorer:
    """A loaded coarse ranker: `usable` says whether it can score; `reason` says why not."""

    def __init__(
        self,
        *,
        query_tower: ExportedModule | None = None,
        scorer: ExportedModule | None = None,
        featurizer: FeaturizerConfig | None = None,
        doc_ids: np.ndarray | None = None,
        doc_vectors: np.ndarray | None = None,
        cross_docs: CrossDocs | None = None,
        reason: str | None = None,
    ) -> None:
        self.query_tower = query_tower
        self.scorer = scorer
        self.featurizer = featurizer
        self.cross_docs = cross_docs
        self.reason = reason
        self.usable = reason is None
        self.uses_retrieval_cosine = scorer is not None and RETRIEVAL_COSINE in scorer.input_spec
        self.three_tower = scorer is not None and CROSS_INPUTS <= set(scorer.input_spec)
        if self.three_tower and cross_docs is None and self.usable:
            raise ValueError("a three-tower coarse ranker needs its doc rows (cross_docs)")
        self.missing_retrieval_cosines = 0  # candidates scored with cos_retrieval = 0 (index keeps no exact vector)
        self._lock = threading.Lock()
        if doc_ids is not None and doc_vectors is not None:
            order = np.argsort(doc_ids, kind="stable")
            self._ids = np.ascontiguousarray(doc_ids[order], dtype=np.int64)
            self._vectors = np.ascontiguousarray(doc_vectors[order], dtype=np.float32)
        else:
            self._ids = np.zeros(0, dtype=np.int64)
            self._vectors = np.zeros((0, 0), dtype=np.float32)

    @classmethod
    def unusable(cls, reason: str) -> CoarseRescorer:
        """A placeholder that never scores."""
        return cls(reason=reason)

    @classmethod
    def open(cls, directory: str | Path) -> CoarseRescorer:
        """Load a coarse-ranker directory (files already verified by the bundle's checksums)."""
        root = Path(directory)
        exported = load_exported(export_dir_of(root), verify=False)
        missing = [m for m in ("query_tower", "scorer") if m not in exported.modules]
        if missing:
            return cls.unusable(f"coarse ranker export has no {' or '.join(missing)} module")
        scorer = exported["scorer"]
        if set(scorer.input_spec) not in SCORER_INPUTS:
            return cls.unusable(f"coarse ranker scorer takes {sorted(scorer.input_spec)}, which the server cannot feed")
        if exported.featurizer is None:
            return cls.unusable("coarse ranker export records no featurizer config")
        cross_docs = None
        if CROSS_INPUTS <= set(scorer.input_spec):
            try:
                cross_docs = open_cross_docs(root, exported)
            except ValueError as e:
                return cls.unusable(str(e))
        for name in (DOC_IDS, DOC_VECTORS):
            if not (root / name).is_file():
                return cls.unusable(f"coarse ranker has no doc matrix ({name} is missing)")
        ids = np.load(root / DOC_IDS, allow_pickle=False)
        vectors = np.load(root / DOC_VECTORS, allow_pickle=False)
        dim = int(scorer.input_spec["doc"]["shape"][-1])
        if ids.ndim != 1 or vectors.shape != (len(ids), dim):
            raise ValueError(
                f"coarse ranker doc matrix: {ids.shape[0]} ids, vectors {vectors.shape}, scorer expects dim {dim}"
            )
        return cls(
            query_tower=exported["query_tower"],
            scorer=scorer,
            featurizer=exported.featurizer,
            doc_ids=ids,
            doc_vectors=vectors,
            cross_docs=cross_docs,
        )

    def retrieval_cosines(
        self,
        searcher: ShardedSearcher,
        query_vector: np.ndarray,
        doc_ids: np.ndarray,
        ann_ids: np.ndarray,
        ann_scores: np.ndarray,
        count: bool = True,
    ) -> tuple[np.ndarray, int]:
        """(cos_retrieval float32 [n] of the candidates, how many got 0): the ANN score of a candidate the
        embedding channel returned (`ann_ids`, `ann_scores`), else q . d over the index's stored vector when the
        index keeps it exactly, else 0 (counted in `missing_retrieval_cosines` unless `count` is off: warm-up)."""
        ids = np.asarray(doc_ids, dtype=np.int64)
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != searcher.dim:
            raise ValueError(f"query_vector has {q.shape[0]} dims, the index {searcher.dim}")
        a_ids = np.asarray(ann_ids, dtype=np.int64)
        a_scores = np.asarray(ann_scores, dtype=np.float32)
        if a_ids.shape != a_scores.shape:
            raise ValueError(f"ann_ids {a_ids.shape} and ann_scores {a_scores.shape} differ in shape")
        out = np.zeros(len(ids), dtype=np.float32)
        have = np.zeros(len(ids), dtype=bool)
        if len(a_ids) and len(ids):
            order = np.argsort(a_ids, kind="stable")
            at = np.minimum(np.searchsorted(a_ids[order], ids), len(a_ids) - 1)
            have = a_ids[order][at] == ids
            out[have] = a_scores[order][at[have]]
        rest = np.flatnonzero(~have)
        if len(rest) and searcher.stores_exact_vectors:
            vecs, found = searcher.stored_vectors(ids[rest])
            out[rest[found]] = vecs[found] @ q
            have[rest[found]] = True
        missing = int((~have).sum())
        if missing and count:
            with self._lock:
                self.missing_retrieval_cosines += missing
        return out, missing

    def score(
        self,
        row: Mapping[str, Any],
        doc_ids: np.ndarray,
        query_inputs: Mapping[str, torch.Tensor] | None = None,
        retrieval_cosine: np.ndarray | None = None,
    ) -> np.ndarray:
        """Coarse scores [n] (float64) of the candidates, NaN for a doc missing from the doc matrix (or, three
        towers, from the doc rows); `query_inputs` (featurized with the ranker's featurizer config) are reused when
        given; `retrieval_cosine` [n] (see `retrieval_cosines`) is required by a ranker trained with it. A
        three-tower ranker reads the cross features of `row` (the query, the store's user and query fields)."""
        import torch

        from ebr.models.inputs import featurize_queries

        if not self.usable or self.query_tower is None or self.scorer is None or self.featurizer is None:
            raise RuntimeError(f"coarse ranker is not usable: {self.reason}")
        ids = np.asarray(doc_ids, dtype=np.int64)
        if self.uses_retrieval_cosine:
            if retrieval_cosine is None:
                raise ValueError("this coarse ranker reads retrieval_cosine: pass the candidates' retrieval cosines")
            rc = np.asarray(retrieval_cosine, dtype=np.float32).reshape(-1)
            if rc.shape != ids.shape:
                raise ValueError(f"retrieval_cosine has {rc.shape[0]} values for {len(ids)} candidates")
        out = np.full(len(ids), np.nan, dtype=np.float64)
        if not len(ids) or not len(self._ids):
            return out
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        found = self._ids[pos] == ids
        cross_rows = None
        if self.three_tower:
            assert self.cross_docs is not None
            cross_rows, has_row = self.cross_docs.rows_of(ids[found])
            found[np.flatnonzero(found)[~has_row]] = False
        if not found.any():
            return out
        x = query_inputs if query_inputs is not None else featurize_queries([dict(row)], self.featurizer)
        q = self.query_tower(x)
        d = torch.from_numpy(self._vectors[pos[found]])
        inputs = {"query": q.expand(len(d), -1).contiguous(), "doc": d}
        if self.uses_retrieval_cosine:
            inputs[RETRIEVAL_COSINE] = torch.from_numpy(np.ascontiguousarray(rc[found]))
        if cross_rows is not None:
            assert self.cross_docs is not None
            request = dict(row)
            for name, served in CROSS_QU_FIELDS.items():
                request.setdefault(name, row.get(served))
            values, buckets = self.cross_docs.features([request], np.zeros(len(cross_rows), np.int64), cross_rows)
            inputs["cross"], inputs["cross_buckets"] = torch.from_numpy(values), torch.from_numpy(buckets)
        scores = self.scorer(inputs)
        out[found] = scores.reshape(-1).double().numpy()
        return out
