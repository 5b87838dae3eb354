"""The two-tower retrieval training step of day D (Taobao MGDSPR, seed 001; Facebook EBR, seed 004).

`train_two_tower(samples_dir, features_dir, out_dir, cfg, warm_start=None)` trains on the
samples of the days before D: sampled softmax over in-batch positives and random negatives of the whole corpus
(drawn by the samples' `prob`; each log-Q corrected by its own sampler's probability), each row's own offline hard
negatives at easy:hard `negatives.easy_hard_ratio`:1 (uncorrected; the ratio used is reported in the summary) and
MGDSPR mixed hard negatives, query rewrites; validates each epoch by exact retrieval over the whole corpus for
held-out requests of the last training day (early stopping on click_recall@K); writes the model directory whole
or not at all:

    checkpoint.pt  model_config.json  export/  metrics.json  curves.png  manifest.json

and tracks the run in MLflow (params, per-epoch metrics, the files, and a new registered version: the query
tower as an MLflow pyfunc model, alias `challenger`; see `ebr.train.registry`).
torch and mlflow are imported inside functions.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ebr.artifacts.atomic import atomic_output_dir
from ebr.train.checkpoint import save_two_tower
from ebr.train.featurized_cache import training_data
from ebr.train.retrieval_data import DocTable, RowSet, TrainingData, ValidationSet
from ebr.train.threads import torch_settings
from ebr.train.tracking import CURVES_PNG, RunLogger, mlflow_run, plot_curves, untracked_note, write_json
from ebr.train.two_tower_config import TwoTowerTrainConfig

if TYPE_CHECKING:
    import torch

    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.losses import RetrievalLossConfig

log = logging.getLogger(__name__)
FORMAT = "ebr.two_tower/1"
MANIFEST = "manifest.json"
METRICS_JSON = "metrics.json"
EXPORT_DIR = "export"
ARTIFACT_PATH = "model"
_ORDER, _NEGATIVES, _VALID = 1, 2, 3


# ------------------------------------------------------------------------------------------------ batches


@dataclass
class Batch:
    """One step's rows and negatives (doc-table rows): `shared` random negatives seen by every row, and `per_row`
    [B, S] each row's own slots: `hard_slots` ANN hard negatives first, then exposed-unclicked docs (ablation);
    `per_row_valid` [B, S] is False where a hard slot is not the row's or found no mined negative (no candidate);
    `hard_allotted` [B] the hard slots each row was given (`hard_slots` or one fewer, see `NegativeSampler`)."""

    idx: np.ndarray
    shared: np.ndarray
    per_row: np.ndarray | None = None
    per_row_valid: np.ndarray | None = None
    hard_slots: int = 0
    pos_prob: np.ndarray | None = None
    hard_allotted: np.ndarray | None = None

    @property
    def hard_per_row(self) -> np.ndarray:
        """Hard negatives actually present per row [B]."""
        if self.per_row_valid is None or not self.hard_slots:
            return np.zeros(len(self.idx), dtype=np.int64)
        return self.per_row_valid[:, : self.hard_slots].sum(axis=1)

    @property
    def easy_per_row(self) -> int:
        """Easy candidates of every row: the other rows' positives, the random and exposed-unclicked negatives."""
        other = 0 if self.per_row is None else self.per_row.shape[1] - self.hard_slots
        return len(self.idx) - 1 + len(self.shared) + other

    @property
    def hard_filled(self) -> int:
        return int(self.hard_per_row.sum())


def hard_slots_for(easy: int, ratio: float) -> int:
    """The most hard slots a row with `easy` easy candidates gets at easy:hard = ratio:1: ceil(easy / ratio),
    at least 1 (the width of a batch's hard slots; rows get easy / ratio on average, see `NegativeSampler`)."""
    return max(1, math.ceil(easy / ratio - 1e-9))


class NegativeSampler:
    """Draws each batch's negatives: random docs by `prob` shared by the batch's rows, and per row its own hard
    slots, filled without replacement from its request's mined negatives; the exposed-unclicked ablation adds
    per-row slots of the request's shown-unclicked docs.

    easy:hard is exactly `easy_hard_ratio`:1 over training, not rounded per row: with E easy candidates a row,
    every row gets floor(E / ratio) hard slots and one more goes to as many rows (drawn from the seeded stream)
    as keep the slots given so far within half a slot of (rows so far x E / ratio). The defaults (E = 1023 at
    100:1) give 10.23 slots a row, where rounding each row up would give 11 (93.0:1). A slot whose request has no mined
    negative left goes to another row of the batch that has (`refill_hard_slots`), so the ratio holds when some
    requests mined none; what no row of the batch can fill stays empty and is reported."""

    def __init__(self, data: TrainingData, cfg: TwoTowerTrainConfig) -> None:
        nc = cfg.negatives
        self.docs = data.docs
        self.ratio = nc.easy_hard_ratio
        self.weighted = cfg.data.use_weights
        self.exposed = data.exposed if nc.use_exposed_unclicked else None
        self.hard = data.hard if nc.hard_negatives else None
        self.shared = 0 if self.exposed is not None else nc.random_negatives
        self.exposed_slots = nc.exposed_unclicked_per_row if self.exposed is not None else 0
        self.refill = nc.refill_hard_slots
        self._owed = 0.0  # hard slots the ratio asks for over the batches drawn so far
        self._given = 0  # hard slots given

    def hard_slots(self, rows: int) -> int:
        """Hard slots per row of a batch of `rows` rows (0 without mined negatives)."""
        if self.hard is None:
            return 0
        return hard_slots_for(rows - 1 + self.shared + self.exposed_slots, self.ratio)

    def _allot(self, rows: int, rng: np.random.Generator) -> np.ndarray:
        """Hard slots of each of `rows` rows: floor(E / ratio), plus one for the rows (drawn) that keep the slots
        given within half a slot of what the ratio asks for so far."""
        per_row = (rows - 1 + self.shared + self.exposed_slots) / self.ratio
        base = math.floor(per_row + 1e-9)
        self._owed += rows * per_row
        extra = min(max(math.floor(self._owed + 0.5) - self._given - rows * base, 0), rows)
        out = np.full(rows, base, dtype=np.int64)
        if extra:
            out[rng.choice(rows, extra, replace=False)] += 1
        self._given += int(out.sum())
        return out

    def _fill(self, allotted: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Hard negatives each row gets: its allotment, at most what its request mined; with `refill_hard_slots`
        the slots left empty go one at a time (round robin, in a drawn order) to the batch's rows whose requests
        have mined negatives left, so the batch holds its allotted total whenever its rows' requests can fill it."""
        counts = np.minimum(allotted, available)
        left = int(allotted.sum() - counts.sum())
        if not (self.refill and left):
            return counts
        spare = available - counts
        order = rng.permutation(len(counts))
        while left:
            open_rows = order[spare[order] > 0]
            if not len(open_rows):
                break  # the batch's requests ran out: the rest stays empty (hard_shortfall)
            take = open_rows[:left]
            counts[take] += 1
            spare[take] -= 1
            left -= len(take)
        return counts

    def batch(self, rows: RowSet, idx: np.ndarray, rng: np.random.Generator, own: bool = True) -> Batch:
        """Negatives of the rows `idx`; `own` = False (rows of another split) skips the per-request sources."""
        shared = self.docs.sample(self.shared, rng).astype(np.int64)
        codes = rows.request_code[idx] if own else np.full(len(idx), -1)
        h = self.hard_slots(len(idx)) if own else 0
        x = self.exposed_slots
        pos_prob = rows.positive_share(self.weighted)[idx]
        if h + x == 0:
            return Batch(idx, shared, pos_prob=pos_prob)
        allotted = counts = None
        if h:
            allotted = self._allot(len(idx), rng)
            mined = [self.hard[code] if code >= 0 else () for code in codes]
            counts = self._fill(allotted, np.array([len(m) for m in mined], dtype=np.int64), rng)
            h = max(h, int(counts.max()))  # a refilled row may hold more than the widest allotment
        per_row = np.zeros((len(idx), h + x), dtype=np.int64)
        valid = np.ones((len(idx), h + x), dtype=bool)
        if counts is not None:
            valid[:, :h] = False
            for i, n in enumerate(counts):
                if n:
                    per_row[i, :n] = rng.choice(mined[i], int(n), replace=False)
                    valid[i, :n] = True
        if x:
            # Ablation: a row's slots hold its request's exposed-unclicked docs (with replacement), else random docs.
            per_row[:, h:] = self.docs.sample(len(idx) * x, rng).reshape(len(idx), x)
            for i, code in enumerate(codes):
                if code >= 0 and len(self.exposed[code]):
                    per_row[i, h:] = rng.choice(self.exposed[code], x)
        return Batch(idx, shared, per_row, valid, h, pos_prob, allotted)


@dataclass
class HardNegativeStats:
    """What the trained batches held: easy and hard candidates per row, and the hard slots left empty."""

    ratio: float
    rows: int = 0
    easy: int = 0
    hard: int = 0
    slots: int = 0
    rows_short: int = 0
    rows_without_hard: int = 0
    refilled: int = 0

    def add(self, batch: Batch) -> None:
        got = batch.hard_per_row
        self.rows += len(batch.idx)
        self.easy += batch.easy_per_row * len(batch.idx)
        self.hard += int(got.sum())
        if batch.hard_allotted is not None:
            allotted = batch.hard_allotted
            self.slots += int(allotted.sum())
            self.rows_short += int((got < allotted).sum())
            self.rows_without_hard += int(((got == 0) & (allotted > 0)).sum())
            self.refilled += int(np.maximum(got - allotted, 0).sum())

    def merge(self, totals: dict[str, float]) -> None:
        for k in ("rows", "easy", "hard", "slots", "rows_short", "rows_without_hard", "refilled"):
            setattr(self, k, int(totals[k]))

    def totals(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("rows", "easy", "hard", "slots", "rows_short",
                                                     "rows_without_hard", "refilled")}

    def summary(self) -> dict[str, Any]:
        """`effective_easy_hard_ratio` = easy candidates / hard candidates present, summed over the trained rows
        (None without hard candidates), beside the configured ratio, the shortfall of mined negatives (per row:
        `rows_short` got fewer than allotted, `rows_without_hard` none) and `refilled`, the slots that went to
        another row of the batch because their own request had no mined negative left."""
        n = max(self.rows, 1)
        return {
            "configured_easy_hard_ratio": self.ratio,
            "effective_easy_hard_ratio": (self.easy / self.hard) if self.hard else None,
            "easy_candidates_per_row": self.easy / n,
            "hard_negatives_per_row": self.hard / n,
            "hard_slots_given_per_row": self.slots / n,
            "hard_slots_filled": (self.hard / self.slots) if self.slots else 0.0,
            "hard_shortfall": {"rows_short": self.rows_short, "rows_without_hard": self.rows_without_hard,
                               "missing_slots": self.slots - self.hard, "rows": self.rows,
                               "refilled": self.refilled},
        }


def easy_hard_line(summary: dict[str, Any]) -> str:
    """One line of a run summary: the effective easy:hard ratio of the trained rows against the configured one
    and how full the hard slots were (seeds 000/004 ask for 100:1), so a shortfall of mined negatives shows."""
    configured = summary.get("configured_easy_hard_ratio")
    effective = summary.get("effective_easy_hard_ratio")
    if effective is None:
        return f"easy:hard -, no hard negative trained on (configured {configured}:1)"
    filled = summary.get("hard_slots_filled", 0.0)
    return f"easy:hard {effective:.0f}:1 effective (configured {configured}:1, hard slots {filled:.0%} filled)"


def epoch_order(rows: RowSet, use_weights: bool, rng: np.random.Generator) -> np.ndarray:
    """Row order of one epoch: weighted draws with replacement (a row's weight is its rate), else a permutation.

    The retrieval losses average over rows without weights, so weighting by sampling gives the weighted loss in
    expectation."""
    n = len(rows)
    if use_weights and not np.allclose(rows.weights, rows.weights[0]):
        p = rows.weights / rows.weights.sum()
        return rng.choice(n, size=n, replace=True, p=p)
    return rng.permutation(n)


# --------------------------------------------------------------------------------------------------- loss


def _cat_inputs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch

    return {k: torch.cat([a[k], b[k]]) for k in a}


def batch_loss(
    model: TwoTowerModel,
    rows: RowSet,
    docs: DocTable,
    batch: Batch,
    lcfg: RetrievalLossConfig,
    rewrite_weight: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured retrieval loss of one batch (+ the rewrite hard-negative term); returns (loss, parts)."""
    import torch
    import torch.nn.functional as F

    from ebr.train.losses import RowNegatives, retrieval_loss, sampling_log_q

    idx = batch.idx
    b, m = len(idx), len(batch.shared)
    s = 0 if batch.per_row is None else batch.per_row.shape[1]
    neg_rows = batch.shared if batch.per_row is None else np.concatenate([batch.shared, batch.per_row.ravel()])
    rr = rows.rewrite_row[idx] if rows.rewrite_row is not None and rewrite_weight > 0 else None
    sel = np.flatnonzero(rr >= 0) if rr is not None else np.empty(0, dtype=np.int64)
    q_in = rows.query_tensors(idx)
    if len(sel):  # the rewritten queries ride in the same pass of the query tower (rows are independent)
        q_all = model.encode_queries(_cat_inputs(q_in, rows.rewrite_tensors(rr[sel])))
        q, q_neg = q_all[:b], q_all[b:]
    else:
        q = model.encode_queries(q_in)
    pos_in = rows.doc_tensors(idx)
    if len(neg_rows):  # each distinct doc of the negatives is encoded once
        uniq, inv = np.unique(neg_rows, return_inverse=True)
        d = model.encode_docs(_cat_inputs(pos_in, _doc_inputs(docs, uniq)))
        pos, neg_vecs = d[:b], d[b:].index_select(0, torch.from_numpy(inv.reshape(-1)))
    else:
        pos, neg_vecs = model.encode_docs(pos_in), None
    pos_ids = torch.from_numpy(rows.doc_ids[idx])
    pos_prob = batch.pos_prob if batch.pos_prob is not None else rows.positive_share(True)[idx]
    rand_prob = torch.from_numpy(docs.prob[batch.shared]) if m else None
    pos_lq, neg_lq = sampling_log_q(torch.from_numpy(pos_prob), rand_prob, s)
    pos_lq = pos_lq.to(q.dtype)
    neg_lq = None if neg_lq is None else neg_lq.to(q.dtype)
    neg = neg_ids = valid = None
    if s:
        neg = RowNegatives(neg_vecs[:m], neg_vecs[m:].view(b, s, -1))  # the shared m once, not b times
        ids = np.concatenate([np.broadcast_to(docs.ids[batch.shared], (b, m)), docs.ids[batch.per_row]], axis=1)
        ok = np.ones((b, m + s), dtype=bool)
        if batch.per_row_valid is not None:
            ok[:, m:] = batch.per_row_valid
        neg_ids, valid = torch.from_numpy(np.where(ok, ids, -1)), torch.from_numpy(ok)
    elif m:
        neg = neg_vecs
        neg_ids = torch.from_numpy(docs.ids[batch.shared])
    loss = retrieval_loss(lcfg, q, pos, neg, pos_ids=pos_ids, neg_ids=neg_ids, pos_log_q=pos_lq, neg_log_q=neg_lq,
                          neg_valid=valid, generator=generator)
    parts = {"loss_retrieval": float(loss.detach())}
    if len(sel):
        # The clicked doc must prefer its query to the query with a core term dropped (seed 000).
        tau = lcfg.effective_temperature
        anchor = pos[sel]
        logits = torch.stack([(q[sel] * anchor).sum(-1), (q_neg * anchor).sum(-1)], dim=1) / tau
        rewrite = F.cross_entropy(logits, torch.zeros(len(sel), dtype=torch.long))
        parts["loss_rewrite"] = float(rewrite.detach())
        loss = loss + rewrite_weight * rewrite
    return loss, parts


def _doc_inputs(docs: DocTable, rows: np.ndarray) -> dict[str, torch.Tensor]:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v[rows]).astype(np.int64, copy=False))
            for k, v in docs.arrays.items()}  # the doc table's arrays are int32


# ---------------------------------------------------------------------------------------------- validation


def encode_doc_table(model: TwoTowerModel, docs: DocTable, batch_size: int) -> np.ndarray:
    """Doc vectors [N, k] of the whole doc table (eval mode, no gradients)."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(docs), batch_size):
            out.append(model.encode_docs(_doc_inputs(docs, np.arange(start, min(start + batch_size, len(docs))))))
    return torch.cat(out).numpy()


def exact_top_k(queries: np.ndarray, doc_vectors: np.ndarray, doc_ids: np.ndarray, k: int) -> np.ndarray:
    """Doc ids [Q, k] of the highest inner products over every doc (exact search, chunks of queries)."""
    import torch

    k = min(k, len(doc_ids))
    d = torch.from_numpy(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    out = []
    for start in range(0, len(queries), 256):
        q = torch.from_numpy(np.ascontiguousarray(queries[start : start + 256], dtype=np.float32))
        out.append(torch.topk(q @ d.T, k, dim=1).indices.numpy())
    idx = np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)
    return doc_ids[idx]


def validate(
    model: TwoTowerModel,
    data: TrainingData,
    valid: ValidationSet,
    cfg: TwoTowerTrainConfig,
    sampler: NegativeSampler,
) -> dict[str, float]:
    """Validation click_recall@K (exact search over the whole doc table) and the loss on fixed negatives."""
    import torch

    from ebr.judgements.metrics import Judgements, click_recall

    tc = cfg.train
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            vecs = encode_doc_table(model, data.docs, tc.encode_batch_size)
            qi = valid.query_index
            qv = torch.cat([model.encode_queries(valid.rows.query_tensors(qi[s : s + tc.encode_batch_size]))
                            for s in range(0, len(qi), tc.encode_batch_size)]).numpy()
            k = min(tc.valid_k, len(data.docs))
            top = exact_top_k(qv, vecs, data.docs.ids, k)
            recall = click_recall(top, Judgements.from_clicks(valid.clicked), [k])[k]
            rng = np.random.default_rng([tc.seed, 0, _VALID])
            gen = torch.Generator().manual_seed(tc.seed)
            losses = []
            for start in range(0, len(valid.rows), tc.batch_size):
                idx = np.arange(start, min(start + tc.batch_size, len(valid.rows)))
                if len(idx) < 2:
                    continue
                loss, _ = batch_loss(model, valid.rows, data.docs, sampler.batch(valid.rows, idx, rng, own=False),
                                     cfg.loss_config(), 0.0, gen)
                losses.append(float(loss))
    finally:
        model.train(was)
    out = {f"valid_click_recall_at_{tc.valid_k}": recall.value}
    if losses:
        out["valid_loss"] = float(np.mean(losses))
    return out


# ------------------------------------------------------------------------------------------------ training


def fit_two_tower(
    model: TwoTowerModel,
    data: TrainingData,
    cfg: TwoTowerTrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    trained_rows: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train with early stopping on validation recall; the best epoch's weights end in `model`.

    Under an initialized process group (`ebr.train.distributed`) each rank trains on its shard of every epoch
    with batches of train.batch_size / world_size rows (the same steps as one process), DDP averages the
    gradients and rank 0 validates for all. `trained_rows`, when given, gets one entry per
    epoch: this rank's positions in the epoch order and the row indices it trained on.
    Returns the history (epoch 0 = before training) and a summary (best epoch, stopped early, hard share)."""
    import torch
    from tqdm import tqdm

    from ebr.train.distributed import current
    from ebr.train.optimizers import clip_grad_norm, make_optimizers

    dctx = current()
    tc, oc = cfg.train, cfg.optimizer
    bs = dctx.per_rank_batch(tc.batch_size)  # train.batch_size is the global batch, split over the ranks
    lcfg = cfg.loss_config()
    sampler = NegativeSampler(data, cfg)
    metric = f"valid_click_recall_at_{tc.valid_k}"
    history: list[dict[str, float]] = []
    summary: dict[str, Any] = {"shared_random_negatives": sampler.shared,
                               "hard_slots_per_row": sampler.hard_slots(bs),
                               "exposed_unclicked_slots_per_row": sampler.exposed_slots}
    stats = HardNegativeStats(cfg.negatives.easy_hard_ratio)
    with torch_settings(tc.num_threads, tc.deterministic), torch.random.fork_rng(devices=[]):
        torch.manual_seed(dctx.torch_seed(tc.seed))
        gen = torch.Generator().manual_seed(dctx.torch_seed(tc.seed))
        opts = make_optimizers(model, oc)
        params = [p for p in model.parameters() if p.requires_grad]
        step_loss = dctx.wrap_loss(model, batch_loss)  # batch_loss itself for one process
        row0: dict[str, float] = {"epoch": 0.0}
        if data.valid is not None:
            row0.update(dctx.on_main(validate, model, data, data.valid, cfg, sampler))
        history.append(row0)
        if on_epoch:
            on_epoch(row0)
        best, best_epoch, best_state, stale = row0.get(metric, -math.inf), 0, None, 0
        for epoch in range(1, tc.epochs + 1):
            model.train()
            order = epoch_order(data.train, cfg.data.use_weights, np.random.default_rng([tc.seed, epoch, _ORDER]))
            positions = dctx.shard(len(order)) if dctx.distributed else np.arange(len(order))
            if dctx.distributed:  # the same order on every rank; each trains on its own disjoint shard
                order = order[positions]
            rng = np.random.default_rng(dctx.seed_key(tc.seed, epoch, _NEGATIVES))
            starts = [s for s in range(0, len(order), bs) if len(order) - s >= 2]
            sums: dict[str, float] = {}
            t0 = time.perf_counter()
            with tqdm(total=len(starts), desc=f"two-tower {epoch}/{tc.epochs}", unit="step",
                      disable=not tc.progress or not dctx.is_main, leave=False) as bar:
                for s in starts:
                    batch = sampler.batch(data.train, order[s : s + bs], rng)
                    stats.add(batch)
                    loss, parts = step_loss(model, data.train, data.docs, batch, lcfg,
                                            cfg.data.rewrite_negative_weight, gen)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"two-tower loss is {float(loss)} at epoch {epoch}")
                    for o in opts:
                        o.zero_grad(set_to_none=True)
                    loss.backward()
                    if oc.grad_clip_norm is not None:
                        parts["grad_norm"] = clip_grad_norm(params, oc.grad_clip_norm)
                    for o in opts:
                        o.step()
                    for k, v in {"loss": float(loss.detach()), **parts}.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if trained_rows is not None:
                used = np.concatenate([np.arange(s, min(s + bs, len(order))) for s in starts])
                trained_rows.append({"epoch": epoch, "rank": dctx.rank, "positions": positions[used].tolist(),
                                     "rows": order[used].tolist()})
            n_steps = len(starts)
            if dctx.distributed:  # every rank takes the same number of steps: means over all of them
                sums, n_steps = dctx.sum_over_ranks(sums), n_steps * dctx.world_size
            row = {"epoch": float(epoch), **{f"train_{k}": v / n_steps for k, v in sums.items()},
                   "examples_per_s": n_steps * bs / max(time.perf_counter() - t0, 1e-9)}
            if data.valid is not None:
                row.update(dctx.on_main(validate, model, data, data.valid, cfg, sampler))
            history.append(row)
            log.info("two-tower epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
            if on_epoch:
                on_epoch(row)
            if metric in row:
                if row[metric] > best + tc.min_delta:
                    best, best_epoch, stale = row[metric], epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if tc.early_stopping_patience and stale >= tc.early_stopping_patience:
                        summary["stopped_early"] = True
                        break
        if data.valid is None:
            best_epoch = len(history) - 1
        elif best_state is not None:
            model.load_state_dict(best_state)
        else:
            summary["note"] = "no epoch beat the untrained model on validation: the weights of the last epoch are kept"
            best_epoch = len(history) - 1
    model.eval()
    if dctx.distributed:
        stats.merge(dctx.sum_over_ranks(stats.totals()))
        summary["distributed"] = dctx.describe()
    summary.update(best_epoch=best_epoch, epochs_run=len(history) - 1, stopped_early=summary.get("stopped_early",
                   False), **stats.summary())
    if metric in history[best_epoch]:
        summary["best_" + metric] = history[best_epoch][metric]
    return history, summary


# --------------------------------------------------------------------------------------------------- step


def _example_inputs(rows: RowSet, n: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    idx = np.arange(min(n, len(rows)))
    return rows.query_tensors(idx), rows.doc_tensors(idx)


def _final_metrics(history: list[dict[str, float]], best_epoch: int) -> dict[str, float]:
    best = history[best_epoch]
    out = {k: v for k, v in best.items() if k != "epoch"}
    out["best_epoch"] = float(best_epoch)
    if history[0]:
        out.update({f"untrained_{k}": v for k, v in history[0].items() if k.startswith("valid_")})
    return out


def train_two_tower(
    samples_dir: str | Path,
    features_dir: str | Path,
    out_dir: str | Path,
    cfg: TwoTowerTrainConfig | None = None,
    warm_start: str | Path | None = None,
    record_rows: bool = False,
) -> dict[str, Any]:
    """Train the two-tower model on the samples of day D and write its model directory (see module doc).

    `warm_start` is a previous model directory (the champion) whose matching weights initialize the model.
    Returns the model dir, export dir, model version, registered version, MLflow run id, metrics and history.
    Under torchrun (`ebr.train.ddp_main`) every rank trains and rank 0 alone writes the directory and tracks the
    run; the other ranks return `model_dir` None. `record_rows` adds `trained_rows` (every rank's, per epoch;
    see `fit_two_tower`) to rank 0's result."""
    from ebr.models.export import export_two_tower
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.checkpoint import warm_start as load_warm
    from ebr.train.distributed import current

    cfg = cfg or TwoTowerTrainConfig()
    if not isinstance(cfg, TwoTowerTrainConfig):
        raise TypeError(f"cfg must be a TwoTowerTrainConfig, got {type(cfg).__name__}")
    t_start = time.perf_counter()
    # featurized once per day and job: a matching cache entry is memory-mapped; under DDP rank 0 builds it
    data, _ = training_data(samples_dir, features_dir, cfg, out_dir, current())
    timings = {"load_data": time.perf_counter() - t_start}
    notes = list(data.notes)
    model = TwoTowerModel(cfg.model)
    warm = load_warm(model, warm_start) if warm_start is not None else None
    tags = {"ebr.day": data.day, "ebr.samples_dir": str(samples_dir)}
    dctx = current()
    with mlflow_run(cfg.mlflow, "train_two_tower", tags) if dctx.is_main else nullcontext() as run:
        model_version = f"{data.day}.{(run.run_id if run else uuid.uuid4().hex)[:8]}"
        if run is not None:
            run.log_params(cfg.model_dump(mode="json"))
            run.set_tags({"ebr.model_version": model_version})
        t0 = time.perf_counter()
        rows_log: list[dict[str, Any]] | None = [] if record_rows else None
        history, summary = fit_two_tower(model, data, cfg, _epoch_logger(run), trained_rows=rows_log)
        timings["train"] = time.perf_counter() - t0
        final = _final_metrics(history, summary["best_epoch"])
        if summary.get("effective_easy_hard_ratio") is not None:
            final["effective_easy_hard_ratio"] = summary["effective_easy_hard_ratio"]
        rows_by_rank = dctx.all_gather(rows_log) if record_rows else None
        if not dctx.is_main:  # rank 0 writes the model directory and tracks the run
            return {"model_dir": None, "rank": dctx.rank, "metrics": final, "history": history, "summary": summary}
        if "note" in summary:
            notes.append(summary["note"])
        out = Path(out_dir)
        with atomic_output_dir(out, marker=MANIFEST) as tmp:
            t0 = time.perf_counter()
            save_two_tower(model, tmp, {"epoch": summary["best_epoch"], "model_version": model_version})
            q_ex, d_ex = _example_inputs(data.train, cfg.train.example_rows)
            export_two_tower(model, tmp / EXPORT_DIR, query_inputs=q_ex, doc_inputs=d_ex, model_version=model_version)
            if cfg.train.onnx_query_tower:
                notes += _onnx_query_tower(tmp / EXPORT_DIR)
            timings["export"] = time.perf_counter() - t0
            plot_curves({"two_tower": history}, tmp / CURVES_PNG, f"two-tower {model_version} (day {data.day})")
            write_json(tmp / METRICS_JSON, {"format": FORMAT, "day": data.day, "model_version": model_version,
                                            "final": final, "summary": summary, "history": history})
            registered = None
            if run is not None:
                run.log_metrics({f"final.{k}": v for k, v in final.items()})
                run.log_artifacts(tmp, ARTIFACT_PATH)
                if cfg.mlflow.registered_model:
                    from ebr.train.registry import register_two_tower

                    # the version is the pyfunc model (run artifact `pyfunc/<name>/`); alias `challenger` moves to it
                    registered = register_two_tower(
                        run, cfg.mlflow.registered_model, tmp / EXPORT_DIR, model_version,
                        f"two-tower trained on {data.train_days[0]}..{data.train_days[-1]}")
            notes += untracked_note(run.run_id if run else None)
            timings["total"] = time.perf_counter() - t_start
            manifest = {
                "format": FORMAT, "kind": "two_tower", "model_version": model_version, "day": data.day,
                "train_days": data.train_days, "rows": data.counts, "seed": {"model": cfg.model.seed,
                                                                              "train": cfg.train.seed},
                "best_epoch": summary["best_epoch"], "summary": summary, "warm_start": warm,
                "mlflow_run_id": run.run_id if run else None,
                "registered_model": cfg.mlflow.registered_model if registered else None,
                "registered_version": registered, "samples_dir": str(samples_dir),
                "features_dir": str(features_dir), "notes": notes,
                "timings_s": {k: round(v, 2) for k, v in timings.items()},
                "files": {"checkpoint": "checkpoint.pt", "config": "model_config.json", "export": EXPORT_DIR,
                          "metrics": METRICS_JSON, "curves": CURVES_PNG},
                "config": cfg.model_dump(mode="json"),
            }
            write_json(tmp / MANIFEST, manifest)
            if run is not None:
                run.log_artifact(tmp / MANIFEST, ARTIFACT_PATH)
    result = {"model_dir": str(out), "export_dir": str(out / EXPORT_DIR), "model_version": model_version,
              "registered_version": registered, "mlflow_run_id": manifest["mlflow_run_id"], "metrics": final,
              "history": history, "summary": summary, "notes": notes}
    if rows_by_rank is not None:
        result["trained_rows"] = rows_by_rank
    return result


def _onnx_query_tower(export_dir: Path) -> list[str]:
    """Convert the exported query tower to ONNX for serving; a tower that does not convert within the parity
    tolerance (or a host without onnx) keeps the torch.export program, with a note saying why."""
    try:
        from ebr.models.runtime import RuntimeConversionError, convert_query_tower
    except ImportError as e:
        return [f"query tower not converted to ONNX ({e}): the server runs the torch.export program"]
    try:
        convert_query_tower(export_dir)
    except (RuntimeConversionError, ImportError) as e:
        return [f"query tower not converted to ONNX ({e}): the server runs the torch.export program"]
    return []


def _epoch_logger(run: RunLogger | None) -> Callable[[dict[str, float]], None] | None:
    if run is None:
        return None
    return lambda row: run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
