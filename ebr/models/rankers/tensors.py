"""Ranking rows as tensors, and batches of whole candidate lists for listwise training and scoring.

Query and doc tensors come from `ebr.models.inputs` (the one featurizer); cross features from
`ebr.models.rankers.cross_features`. A batch holds B requests and the M candidate pairs of their lists, laid
out flat ([M]) for the models and as padded lists ([B, C] slots, -1 = padding) for the losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ebr.models.config import FeaturizerConfig
from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.rankers.config import TASK_LABELS
from ebr.models.rankers.cross_features import bucketize, compute_cross_features
from ebr.models.rankers.rows import RankingRows

TASKS = tuple(TASK_LABELS)


def rows_cross_features(
    rows: RankingRows, names: Sequence[str], text_config: FeaturizerConfig | None = None
) -> np.ndarray:
    """Cross features [N, F] of every pair of `rows`."""
    pairs = (rows.pairs["request_row"].to_numpy(), rows.pairs["doc_row"].to_numpy())
    text = text_config.text if text_config is not None else None
    return compute_cross_features(rows.requests, rows.docs, pairs, names, text)


@dataclass
class RankingTensors:
    """Featurized rows: query tensors per request, doc tensors per doc row, cross features and labels per pair."""

    query: dict[str, torch.Tensor]
    doc: dict[str, torch.Tensor]
    cross: torch.Tensor  # float32 [N, F]
    cross_buckets: torch.Tensor  # int64 [N, F]
    request_row: torch.Tensor  # int64 [N]
    doc_row: torch.Tensor  # int64 [N]
    labels: torch.Tensor  # float32 [N, len(TASKS)]
    offsets: torch.Tensor  # int64 [R + 1]: pairs of request r are offsets[r]:offsets[r + 1]
    retrieval_cosine: torch.Tensor | None = None  # float32 [N]: the retrieval model's cosine of each pair

    @property
    def n_requests(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_pairs(self) -> int:
        return len(self.request_row)

    def task_labels(self, tasks: Sequence[str]) -> torch.Tensor:
        """Labels [N, T] of the given tasks, in their order."""
        return self.labels[:, [TASKS.index(t) for t in tasks]]


def build_tensors(
    rows: RankingRows, featurizer: FeaturizerConfig, cross: np.ndarray, names: Sequence[str]
) -> RankingTensors:
    """Featurize `rows` for one model; `cross` [N, F] holds the values of the cross features `names`."""
    cross = np.asarray(cross, dtype=np.float32)
    if cross.shape != (len(rows.pairs), len(names)):
        raise ValueError(f"cross features must be [{len(rows.pairs)}, {len(names)}], got {cross.shape}")
    req = rows.pairs["request_row"].to_numpy(dtype=np.int64)
    counts = np.bincount(req, minlength=rows.n_requests)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    labels = np.stack([rows.pairs[TASK_LABELS[t]].to_numpy(dtype=np.float32) for t in TASKS], axis=1)
    return RankingTensors(
        query=featurize_queries(rows.requests, featurizer),
        doc=featurize_docs(rows.docs, featurizer),
        cross=torch.from_numpy(cross),
        cross_buckets=torch.from_numpy(bucketize(cross, names)),
        request_row=torch.from_numpy(req),
        doc_row=torch.from_numpy(rows.pairs["doc_row"].to_numpy(dtype=np.int64)),
        labels=torch.from_numpy(labels),
        offsets=torch.from_numpy(offsets),
    )


@dataclass
class ListBatch:
    """B requests and their M candidates: flat pair tensors plus the padded list layout [B, C]."""

    query: dict[str, torch.Tensor]  # [B, ...]
    doc: dict[str, torch.Tensor]  # [M, ...], one row per pair
    cross: torch.Tensor  # [M, F]
    cross_buckets: torch.Tensor  # [M, F]
    pair_request: torch.Tensor  # [M] in 0..B-1
    pair_index: torch.Tensor  # [M] pair numbers in the full tensors
    labels: torch.Tensor  # [M, len(TASKS)]
    slots: torch.Tensor  # [B, C] indices into 0..M-1, -1 = padding
    retrieval_cosine: torch.Tensor | None = None  # [M], when the tensors carry it

    @property
    def mask(self) -> torch.Tensor:
        """[B, C] true where a slot holds a candidate."""
        return self.slots >= 0

    def lists(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Per-pair values [M] laid out as padded lists [B, C] (`fill` in padding)."""
        out = values[self.slots.clamp(min=0)]
        return out.masked_fill(~self.mask, fill)


def make_batch(t: RankingTensors, requests: torch.Tensor) -> ListBatch:
    """The batch of the given request rows (1-D int64 tensor) with all their candidates."""
    requests = requests.to(torch.int64)
    starts = t.offsets[requests]
    lengths = t.offsets[requests + 1] - starts
    b = len(requests)
    c = int(lengths.max()) if b else 0
    pair_request = torch.repeat_interleave(torch.arange(b), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(int(lengths.sum())) - first[pair_request]
    pair_index = starts[pair_request] + within
    slots = torch.full((b, c), -1, dtype=torch.int64)
    slots[pair_request, within] = torch.arange(len(pair_index))
    doc_rows = t.doc_row[pair_index]
    return ListBatch(
        query={k: v[requests] for k, v in t.query.items()},
        doc={k: v[doc_rows] for k, v in t.doc.items()},
        cross=t.cross[pair_index],
        cross_buckets=t.cross_buckets[pair_index],
        pair_request=pair_request,
        pair_index=pair_index,
        labels=t.labels[pair_index],
        slots=slots,
        retrieval_cosine=t.retrieval_cosine[pair_index] if t.retrieval_cosine is not None else None,
    )
