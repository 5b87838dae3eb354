"""Training steps of the fine ranker (teacher) and the coarse ranker distilled from it (seed 002).

- `train_fine_ranker(samples_dir, out_dir, cfg, features_dir)`: multi-task BCE (seed 002 formula 19) on the
  ranking samples; writes the model, per-epoch curves and metrics.
- `distill_coarse_ranker(samples_dir, teacher_dir, out_dir, cfg, data_root, features_dir, retrieval_model_dir)`:
  the student with L = alpha * L_hard + beta * KL(teacher_T || student_T) and, for comparison, the same student
  with beta = 0 (with `model.retrieval_cosine`, its head also reads the same day's retrieval model's cosine);
  both and the teacher are evaluated on the samples' day D (the temporal holdout: NDCG against relevance
  labels, teacher agreement, scoring cost); exports the student (`torch.export` programs through
  `ebr.models.export`) with the doc matrix the serving bundle ships.
Features come from the feature store only (`ebr.models.rankers.rows`, service `ranking_training`).
Outputs appear whole or not at all; MLflow runs get params, per-epoch metrics, plots and the model files.
torch, mlflow and matplotlib are imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from ebr.artifacts.atomic import atomic_output_dir
from ebr.models.config import FeaturizerConfig
from ebr.models.rankers.config import CoarseRankerConfig, FineRankerConfig
from ebr.settings import Section
from ebr.train.distill import DistillConfig
from ebr.train.threads import torch_settings
from ebr.train.tracking import CURVES_PNG, MlflowConfig, RunLogger, log_run, plot_curves, untracked_note, write_json
from ebr.train.two_tower_config import OptimizerConfig

if TYPE_CHECKING:
    import torch

    from ebr.judgements.metrics import MetricValue
    from ebr.models.rankers.coarse_ranker import CoarseRanker
    from ebr.models.rankers.cross_features import CrossDocs
    from ebr.models.rankers.fine_ranker import FineRanker
    from ebr.models.rankers.rows import RankingRows
    from ebr.models.rankers.tensors import ListBatch, RankingTensors
    from ebr.models.two_tower import TwoTowerModel

MANIFEST = "manifest.json"
MODEL_FILE = "model.pt"
MODEL_CONFIG = "model_config.json"
METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"
EXPORT_DIR = "export"
DOC_IDS = "doc_ids.npy"
DOC_VECTORS = "doc_vectors.npy"
DOC_ROWS = "doc_rows.parquet"
DOC_ROW_COLUMNS = ["doc_id", "title", "category_l1", "category_l2", "category_leaf", "brand", "attributes", "tags",
                   "author_id"]
FORMAT = "ebr.rankers/1"


def _adam() -> OptimizerConfig:
    return OptimizerConfig(name="adam", lr=1e-3, sparse_lr=1e-2, grad_clip_norm=None)


def _tracking() -> MlflowConfig:
    return MlflowConfig(experiment="ebr-rankers")


class RankerTrainConfig(Section):
    """The training loop: whole candidate lists per step (listwise losses need them), Adam and SparseAdam."""

    epochs: int = Field(4, ge=1)
    batch_requests: int = Field(32, ge=1, description="requests per step; each brings its whole candidate list")
    requests_per_epoch: int | None = Field(
        4000, ge=1,
        description="each epoch trains on this many requests drawn afresh (seeded); None = every request. Bounds "
        "the daily step on 2 cores: one thread trains ~150 us (teacher) / ~100 us (student) per candidate, so "
        "4000 requests of ~45 candidates take ~25 s / ~18 s an epoch",
    )
    optimizer: OptimizerConfig = Field(
        default_factory=_adam,
        description="Adam 1e-3 on dense parameters, SparseAdam 1e-2 on the sparse hashed tables (rarely seen rows "
        "need larger steps), no clipping: the ranking losses are bounded per list",
    )
    valid_share: float = Field(
        0.1, ge=0, lt=1, description="requests held out (by a hash of request_id) for the per-epoch curves"
    )
    valid_k: int = Field(10, ge=1, description="K of the per-epoch validation NDCG / teacher agreement")
    seed: int = Field(0, description="shuffling and dropout; with the model seed, same seed -> same weights")
    num_threads: int | None = Field(
        1, ge=1,
        description="torch threads of the step (training, teacher scoring, evaluation); None = torch's default. One "
        "by default: bitwise repeatable whatever the machine or the tasks beside it "
        "(two threads changed the students' metrics in the 4th decimal between runs of the same seed) and only "
        "~15% slower than two on the small day",
    )
    progress: bool = Field(True, description="tqdm progress bar per epoch")


class RankerEvalConfig(Section):
    """Holdout evaluation of teacher, distilled student and plain student."""

    ks: list[int] = Field(default_factory=lambda: [5, 10], description="cut-offs of NDCG and teacher agreement")
    main_k: int = Field(10, ge=1, description="K of the report's summary table")
    compare_plain: bool = Field(
        False,
        description="also train the student without distillation (beta = 0), the comparison that shows what "
        "distillation adds (docs/rankers.md: +0.12 ndcg@10 on the small day). Off daily: it trains a third model, "
        "about a third of the step; switch it on to check the gain on your own logs",
    )
    max_requests: int | None = Field(
        30_000, ge=1,
        description="bound on the holdout day's requests, the two-tower evaluation's rule (a uniform sample by a "
        "stable hash of request_id; a `medium` day is whole): a `large` day's 100,000 requests have ~4M logged "
        "candidates, whose joined features took this step past 14 GB. None = every request",
    )
    cost_candidates: int = Field(1000, ge=1, description="candidates of one request scored per timing")
    cost_repeats: int = Field(
        50, ge=1, description="timings per model; the median is reported (15 let one noisy burst move it by 40%)"
    )
    cost_threads: int = Field(1, ge=1, description="torch threads while timing (single thread by default)")

    @model_validator(mode="after")
    def _check(self) -> RankerEvalConfig:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be non-empty and >= 1, got {self.ks}")
        if self.main_k not in self.ks:
            raise ValueError(f"main_k ({self.main_k}) must be one of ks {self.ks}")
        return self


class FineRankerStepConfig(Section):
    """`train_fine_ranker`: the teacher model, its training loop and tracking."""

    model: FineRankerConfig = Field(default_factory=FineRankerConfig)
    train: RankerTrainConfig = Field(default_factory=RankerTrainConfig)
    mlflow: MlflowConfig = Field(default_factory=_tracking)


class CoarseRankerStepConfig(Section):
    """`distill_coarse_ranker`: the student model, distillation, training loop, evaluation and tracking."""

    model: CoarseRankerConfig = Field(default_factory=CoarseRankerConfig)
    train: RankerTrainConfig = Field(
        default_factory=lambda: RankerTrainConfig(epochs=4),
        description="4 epochs: on the small day the distilled student's validation teacher_agreement@10 was 0.957 "
        "after 4 and 0.966 after 6 (plain student: 0.873 after 6), at ~10 s per epoch and student",
    )
    distill: DistillConfig = Field(default_factory=DistillConfig)
    evaluation: RankerEvalConfig = Field(default_factory=RankerEvalConfig)
    mlflow: MlflowConfig = Field(
        default_factory=lambda: MlflowConfig(experiment="ebr-rankers", registered_model="ebr-coarse-ranker"),
        description="tracking; a two-tower student gets a pyfunc version of `registered_model` (alias challenger)",
    )


# ------------------------------------------------------------------------------------------------- data


def split_requests(rows: RankingRows, valid_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(train request rows, validation request rows) by a stable hash of request_id."""
    from ebr.text.hashing import stable_hash64

    h = np.array([stable_hash64(str(r), "rank_split") % 10_000 for r in rows.requests["request_id"]], dtype=np.int64)
    valid = h < int(round(valid_share * 10_000))
    return np.flatnonzero(~valid), np.flatnonzero(valid)


def _split_featurized(rows: RankingRows, split: tuple[np.ndarray, np.ndarray], cross: np.ndarray,
                      retrieval: TwoTowerModel | None = None) -> tuple[_Featurized, _Featurized | None]:
    """(train, validation) featurized rows of a request split, their cross features sliced from `cross` (every
    pair of `rows`)."""
    train_idx, valid_idx = split
    train = _Featurized(rows.select_requests(train_idx), retrieval, cross[rows.pair_positions(train_idx)])
    if not len(valid_idx):
        return train, None
    return train, _Featurized(rows.select_requests(valid_idx), retrieval, cross[rows.pair_positions(valid_idx)])


class _Featurized:
    """Cross features (and, with a retrieval model, the pairs' retrieval cosines) of some rows computed once,
    tensors built per model (cached by featurizer and names)."""

    def __init__(self, rows: RankingRows, retrieval: TwoTowerModel | None = None,
                 cross: np.ndarray | None = None) -> None:
        """`cross`: the rows' cross features of every name in CROSS_FEATURE_NAMES when already computed."""
        from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES
        from ebr.models.rankers.retrieval_cosine import retrieval_cosines
        from ebr.models.rankers.tensors import rows_cross_features

        self.rows = rows
        self.names = list(CROSS_FEATURE_NAMES)
        if cross is not None and cross.shape != (len(rows.pairs), len(self.names)):
            raise ValueError(f"cross features of shape {cross.shape} for {len(rows.pairs)} pairs and "
                             f"{len(self.names)} names")
        self.cross = cross if cross is not None else rows_cross_features(rows, self.names)
        self.retrieval_cosine = retrieval_cosines(retrieval, rows) if retrieval is not None else None
        self._cache: dict[str, RankingTensors] = {}

    def tensors(self, featurizer: FeaturizerConfig, names: Sequence[str]) -> RankingTensors:
        import dataclasses

        import torch

        from ebr.models.rankers.tensors import build_tensors

        key = featurizer.model_dump_json() + "|" + ",".join(names)
        if key not in self._cache:
            cols = [self.names.index(n) for n in names]
            t = build_tensors(self.rows, featurizer, self.cross[:, cols], names)
            if self.retrieval_cosine is not None:
                t = dataclasses.replace(t, retrieval_cosine=torch.from_numpy(self.retrieval_cosine))
            self._cache[key] = t
        return self._cache[key]


def forward_batch(model: torch.nn.Module, b: ListBatch) -> torch.Tensor:
    """A ranker's scores [M] of a batch; a coarse ranker reading the retrieval cosine gets the batch's."""
    if getattr(model, "uses_retrieval_cosine", False):
        if b.retrieval_cosine is None:
            raise ValueError("the coarse ranker reads retrieval_cosine, but the tensors carry none (computed only "
                             "with a retrieval model: distill_coarse_ranker's retrieval_model_dir)")
        return model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request, b.retrieval_cosine)
    return model(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)


# --------------------------------------------------------------------------------------------- training


def fit(
    model: torch.nn.Module,
    train: RankingTensors,
    cfg: RankerTrainConfig,
    loss_fn: Callable[[ListBatch], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, float]],
    desc: str,
) -> list[dict[str, float]]:
    """Train `model` for cfg.epochs over shuffled request batches; returns one dict of metrics per epoch.

    The caller's global RNG state is left untouched; shuffling and dropout depend on cfg.seed alone."""
    import torch
    from tqdm import tqdm

    from ebr.models.rankers.tensors import make_batch
    from ebr.train.optimizers import clip_grad_norm, make_optimizers

    if train.n_requests == 0:
        raise ValueError(f"{desc}: no training request")
    history: list[dict[str, float]] = []
    try:
        with torch_settings(cfg.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            gen = torch.Generator().manual_seed(cfg.seed)
            opts = make_optimizers(model, cfg.optimizer)
            clip = cfg.optimizer.grad_clip_norm
            per_epoch = min(train.n_requests, cfg.requests_per_epoch or train.n_requests)
            steps = math.ceil(per_epoch / cfg.batch_requests)
            for epoch in range(1, cfg.epochs + 1):
                model.train()
                perm = torch.randperm(train.n_requests, generator=gen)[:per_epoch]
                sums: dict[str, float] = {}
                with tqdm(total=steps, desc=f"{desc} {epoch}/{cfg.epochs}", unit="step", disable=not cfg.progress,
                          leave=False) as bar:
                    for start in range(0, per_epoch, cfg.batch_requests):
                        batch = make_batch(train, perm[start : start + cfg.batch_requests])
                        loss, parts = loss_fn(batch)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"{desc}: loss is {float(loss)} at epoch {epoch}")
                        for o in opts:
                            o.zero_grad(set_to_none=True)
                        loss.backward()
                        if clip is not None:
                            clip_grad_norm(model.parameters(), clip)
                        for o in opts:
                            o.step()
                        for k, v in {"loss": float(loss.detach()), **parts}.items():
                            sums[k] = sums.get(k, 0.0) + v
                        bar.update(1)
                        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                model.eval()
                row = {"epoch": float(epoch), **{f"train_{k}": v / steps for k, v in sums.items()}}
                row.update(evaluate())
                history.append(row)
    finally:
        model.eval()
    return history


def score_all_pairs(model: torch.nn.Module, t: RankingTensors, batch_requests: int = 256) -> np.ndarray:
    """Every pair's score [N] in eval mode (teacher or student: both take the same batch inputs)."""
    import torch

    from ebr.models.rankers.tensors import make_batch

    out = np.zeros(t.n_pairs, dtype=np.float32)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, t.n_requests, batch_requests):
                b = make_batch(t, torch.arange(start, min(start + batch_requests, t.n_requests)))
                s = forward_batch(model, b)
                out[b.pair_index.numpy()] = s.numpy()
    finally:
        model.train(was)
    return out


def _task_logits_all(model: FineRanker, t: RankingTensors, batch_requests: int = 256) -> np.ndarray:
    import torch

    from ebr.models.rankers.tensors import make_batch

    out = np.zeros((t.n_pairs, len(model.tasks)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, t.n_requests, batch_requests):
            b = make_batch(t, torch.arange(start, min(start + batch_requests, t.n_requests)))
            out[b.pair_index.numpy()] = model.task_logits(b.query, b.doc, b.cross, b.cross_buckets,
                                                          b.pair_request).numpy()
    return out


def _metric_values(metrics: Mapping[str, MetricValue], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v.value) for k, v in metrics.items() if not math.isnan(v.value)}


# ----------------------------------------------------------------------------------------- persistence


def save_model(model: torch.nn.Module, config: Section, out_dir: Path) -> None:
    """The state dict and the model config (JSON) into `out_dir`."""
    import torch

    torch.save(model.state_dict(), out_dir / MODEL_FILE)
    (out_dir / MODEL_CONFIG).write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _load_ranker(model_dir: str | Path, kind: str, config_cls: type[Section], model_cls: type) -> Any:
    """A ranker saved by `save_model` (config + state dict), in eval mode; names the missing file otherwise."""
    import torch

    d = Path(model_dir)
    for f in (MODEL_CONFIG, MODEL_FILE):
        if not (d / f).is_file():
            raise FileNotFoundError(f"{d} is not a {kind} folder: {f} is missing")
    model = model_cls(config_cls.model_validate_json((d / MODEL_CONFIG).read_text(encoding="utf-8")))
    model.load_state_dict(torch.load(d / MODEL_FILE, weights_only=True))
    return model.eval()


def load_fine_ranker(model_dir: str | Path) -> FineRanker:
    """The teacher saved by `train_fine_ranker`, in eval mode."""
    from ebr.models.rankers.fine_ranker import FineRanker

    return _load_ranker(model_dir, "fine-ranker", FineRankerConfig, FineRanker)


def load_coarse_ranker(model_dir: str | Path) -> CoarseRanker:
    """The student saved by `distill_coarse_ranker` (eager), in eval mode."""
    from ebr.models.rankers.coarse_ranker import CoarseRanker

    return _load_ranker(model_dir, "coarse-ranker", CoarseRankerConfig, CoarseRanker)


# ------------------------------------------------------------------------------------------ reporting


def mlflow_name(key: str) -> str:
    """A metric key as MLflow accepts it: `valid_ndcg@10` -> `valid_ndcg_at_10`."""
    return key.replace("@", "_at_")


def _track(cfg: MlflowConfig, run_name: str, params: Mapping[str, Any],
           histories: Mapping[str, Sequence[Mapping[str, float]]], final: Mapping[str, float], artifacts: Path,
           tags: Mapping[str, str], after: Callable[[RunLogger], None] | None = None) -> str | None:
    """`ebr.train.tracking.log_run` with metric keys MLflow accepts."""
    hist = {m: [{mlflow_name(k): v for k, v in row.items()} for row in h] for m, h in histories.items()}
    return log_run(cfg, run_name, params, hist, {mlflow_name(k): v for k, v in final.items()}, artifacts, tags,
                   after)



# ------------------------------------------------------------------------------------------------ steps


def check_out_dir(out_dir: str | Path) -> Path:
    """Fail before any work when `out_dir` holds something other than an earlier output of these steps."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise FileExistsError(f"output dir {out} is not empty and holds no {MANIFEST}; refusing to replace it")
    return out


def _manifest_info(samples_dir: str | Path) -> dict[str, Any]:
    from ebr.models.rankers.rows import read_samples_manifest

    m = read_samples_manifest(samples_dir)
    return {"day": m.get("day"), "train_days": m.get("train_days", [])}


def _at_train_threads(default: type[Section]) -> Callable:
    """Run a ranker step with every pass at its config's `train.num_threads` (teacher scoring and evaluation too,
    not only the training loop), so its result does not depend on how many cores the task found (a local task
    beside another gets one, a pod sees its node's)."""
    import functools
    import inspect

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            cfg = bound.arguments.get("cfg") or default()
            bound.arguments["cfg"] = cfg
            with torch_settings(cfg.train.num_threads):
                return fn(*bound.args, **bound.kwargs)

        return run

    return decorate


@_at_train_threads(FineRankerStepConfig)
def train_fine_ranker(
    samples_dir: str | Path,
    out_dir: str | Path,
    cfg: FineRankerStepConfig | None = None,
    features_dir: str | Path | None = None,
    rows_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Train the teacher on the ranking samples; returns {"model_dir", "metrics", "history", "mlflow_run_id", ...}.

    `features_dir` (the feature store) is needed only when the samples carry no joined ranking features.
    `rows_cache`: a directory caching the joined training rows for the day's distillation
    (`ebr.train.ranking_rows_cache`)."""
    import torch

    from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES
    from ebr.models.rankers.evaluation import ranking_metrics
    from ebr.models.rankers.fine_ranker import FineRanker
    from ebr.models.rankers.tensors import TASKS
    from ebr.train.losses import multitask_bce_loss
    from ebr.train.ranking_rows_cache import training_cross, training_rows

    cfg = cfg or FineRankerStepConfig()
    mc, tc = cfg.model, cfg.train
    out = check_out_dir(out_dir)
    info = _manifest_info(samples_dir)
    rows, rows_entry = training_rows(samples_dir, features_dir, rows_cache)
    cross = training_cross(rows, rows_entry, list(CROSS_FEATURE_NAMES))
    train_idx, valid_idx = split_requests(rows, tc.valid_share)
    train_f, valid_f = _split_featurized(rows, (train_idx, valid_idx), cross)
    train_t = train_f.tensors(mc.featurizer, mc.cross_features)
    valid_rows = valid_f.rows if valid_f is not None else None
    valid_t = valid_f.tensors(mc.featurizer, mc.cross_features) if valid_f is not None else None
    model = FineRanker(mc)
    weights = list(mc.multi_task.task_weights) if mc.multi_task.enabled else [1.0]
    task_cols = [TASKS.index(t) for t in model.tasks]

    def loss_fn(b: ListBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model.task_logits(b.query, b.doc, b.cross, b.cross_buckets, b.pair_request)
        return multitask_bce_loss(logits, b.labels[:, task_cols], weights), {}

    def evaluate() -> dict[str, float]:
        if valid_t is None:
            return {}
        logits = torch.from_numpy(_task_logits_all(model, valid_t))
        labels = valid_t.task_labels(model.tasks)
        res = {"valid_loss": float(multitask_bce_loss(logits, labels, weights))}
        scores = model.score_logits(logits).numpy()
        res.update(_metric_values(ranking_metrics(scores, valid_rows, [tc.valid_k], names=["click_ndcg"]), "valid_"))
        return res

    history = fit(model, train_t, tc, loss_fn, evaluate, "fine ranker")
    final = {k: v for k, v in history[-1].items() if k != "epoch"}
    manifest = {
        "format": FORMAT, "kind": "fine_ranker", **info, "feature_source": rows.feature_source,
        "rows": {"requests": rows.n_requests, "pairs": len(rows.pairs), "train_requests": len(train_idx),
                 "valid_requests": len(valid_idx)},
        "config": cfg.model_dump(mode="json"),
    }
    with atomic_output_dir(out, marker=MANIFEST) as tmp:
        save_model(model, mc, tmp)
        plot_curves({"teacher": history}, tmp / CURVES_PNG, f"fine ranker ({mc.interaction}), day {info['day']}")
        metrics = {"format": FORMAT, "day": info["day"], "final": final, "history": {"teacher": history}}
        write_json(tmp / METRICS_JSON, metrics)
        run_id = _track(cfg.mlflow, "train_fine_ranker", cfg.model_dump(mode="json"), {"teacher": history},
                               final, tmp, {"ebr.day": str(info["day"])})
        manifest["mlflow_run_id"] = run_id
        write_json(tmp / MANIFEST, manifest)
    notes = list(rows.notes) + untracked_note(run_id)
    return {"model_dir": str(out), "metrics": final, "history": history, "mlflow_run_id": run_id,
            "feature_source": rows.feature_source, "notes": notes}


def _train_student(
    cfg: CoarseRankerStepConfig,
    distill: DistillConfig,
    train_t: RankingTensors,
    valid_t: RankingTensors | None,
    valid_rows: RankingRows | None,
    teacher_train: np.ndarray,
    teacher_valid: np.ndarray | None,
    desc: str,
) -> tuple[CoarseRanker, list[dict[str, float]]]:
    import torch

    from ebr.models.rankers.coarse_ranker import CoarseRanker
    from ebr.models.rankers.evaluation import ranking_metrics
    from ebr.models.rankers.tensors import make_batch
    from ebr.train.distill import distillation_loss

    model = CoarseRanker(cfg.model)
    teacher_all = torch.from_numpy(teacher_train)

    def loss_fn(b: ListBatch) -> tuple[torch.Tensor, dict[str, float]]:
        s = forward_batch(model, b)
        t = b.lists(teacher_all[b.pair_index]) if distill.beta > 0 else None
        return distillation_loss(distill, b.lists(s), t, b.lists(b.labels[:, 0]), b.mask)

    def evaluate() -> dict[str, float]:
        if valid_t is None or valid_rows is None or teacher_valid is None:
            return {}
        scores = score_all_pairs(model, valid_t)
        b = make_batch(valid_t, torch.arange(valid_t.n_requests))
        s = torch.from_numpy(scores)[b.pair_index]
        t = torch.from_numpy(teacher_valid)[b.pair_index]
        loss, parts = distillation_loss(distill, b.lists(s), b.lists(t) if distill.beta > 0 else None,
                                        b.lists(b.labels[:, 0]), b.mask)
        res = {"valid_loss": float(loss), **{f"valid_{k}": v for k, v in parts.items()}}
        m = ranking_metrics(scores, valid_rows, [cfg.train.valid_k], teacher_valid, names=["click_ndcg"])
        res.update(_metric_values(m, "valid_"))
        return res

    history = fit(model, train_t, cfg.train, loss_fn, evaluate, desc)
    return model, history


def _system_json(metrics: Mapping[str, MetricValue], cost_ms: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {k: v.to_json() for k, v in metrics.items()}
    out["cost_ms_per_1k"] = cost_ms
    return out


def render_report(day: str | None, systems: Mapping[str, Mapping[str, Any]], ks: Sequence[int], main_k: int,
                  notes: Sequence[str], eval_desc: str) -> str:
    """report.md: one row per system (teacher, student_distilled, student_plain)."""
    cols = [f"ndcg@{main_k}", f"true_ndcg@{main_k}", f"click_ndcg@{main_k}"] + [f"teacher_agreement@{k}" for k in ks]
    lines = [f"# Fine ranker and coarse ranker, day {day}", "", eval_desc, "",
             "| system | " + " | ".join(cols) + " | ms / 1k candidates |", "|---|" + "---|" * (len(cols) + 1)]
    for name, m in systems.items():
        cells = []
        for c in cols:
            v = m.get(c)
            cells.append("–" if v is None or v["value"] is None else f"{v['value']:.4f} (n={v['n_requests']})")
        cost = m.get("cost_ms_per_1k")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'–' if cost is None else f'{cost:.2f}'} |")
    lines += ["", "Cost: median of single-thread timings of scoring the candidates of one request, features and",
              "cross features precomputed, student doc vectors precomputed (the shipped matrix).", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


@_at_train_threads(CoarseRankerStepConfig)
def distill_coarse_ranker(
    samples_dir: str | Path,
    teacher_dir: str | Path,
    out_dir: str | Path,
    cfg: CoarseRankerStepConfig | None = None,
    data_root: str | Path | None = None,
    eval_day: str | None = None,
    features_dir: str | Path | None = None,
    retrieval_model_dir: str | Path | None = None,
    rows_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Distil the teacher into the coarse ranker, train the plain student, evaluate all three, export.

    `data_root` gives the evaluation day's candidates and labels (day D of the samples, or `eval_day`) and the
    corpus of the doc matrix; their features come from the feature store in `features_dir` (as do the training
    rows' when the samples carry no joined ranking features). Without `data_root` the metrics are those of the
    validation requests (clicks only) and the doc matrix covers the sampled docs. With `model.retrieval_cosine`
    (both students) every training and evaluation pair gets the cosine of the two-tower retrieval model in
    `retrieval_model_dir` (the same day's `train_two_tower` output), which is then required. `rows_cache`: the
    directory where the fine ranker step cached the day's joined training rows (`ebr.train.ranking_rows_cache`).
    Returns paths, the metrics of every system and the MLflow run id."""
    from ebr.models.rankers.coarse_ranker import encode_corpus
    from ebr.models.rankers.cost import student_cost_ms, teacher_cost_ms
    from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES
    from ebr.models.rankers.evaluation import judgement_counts, judgements, ranking_metrics
    from ebr.models.rankers.rows import load_corpus_docs, load_eval_rows
    from ebr.train.ranking_rows_cache import training_cross, training_rows

    cfg = cfg or CoarseRankerStepConfig()
    mc, tc, ec = cfg.model, cfg.train, cfg.evaluation
    if mc.retrieval_cosine and retrieval_model_dir is None:
        raise ValueError("coarse_ranker.model.retrieval_cosine is on but retrieval_model_dir is not given: the "
                         "coarse ranker's retrieval-cosine feature needs the two-tower retrieval model's directory "
                         "(in the daily DAG: compile it with `ebr pipeline compile --coarse-reads-retrieval-model`; "
                         "`ebr pipeline run --local` does so from the config)")
    out = check_out_dir(out_dir)
    info = _manifest_info(samples_dir)
    day = eval_day or info["day"]
    if data_root is not None and features_dir is None:
        raise ValueError("data_root is given without features_dir: the holdout day's features and the corpus's "
                         "come from the feature store")
    teacher = load_fine_ranker(teacher_dir)
    tcfg = teacher.config
    retrieval = None
    if mc.retrieval_cosine and retrieval_model_dir is not None:
        from ebr.train.checkpoint import load_two_tower

        retrieval = load_two_tower(retrieval_model_dir)
    rows, rows_entry = training_rows(samples_dir, features_dir, rows_cache)
    train_idx, valid_idx = split_requests(rows, tc.valid_share)
    cross = training_cross(rows, rows_entry, list(CROSS_FEATURE_NAMES))
    train_f, valid_f = _split_featurized(rows, (train_idx, valid_idx), cross, retrieval)
    valid_rows = valid_f.rows if valid_f is not None else None

    teacher_train = score_all_pairs(teacher, train_f.tensors(tcfg.featurizer, tcfg.cross_features))
    teacher_valid = (score_all_pairs(teacher, valid_f.tensors(tcfg.featurizer, tcfg.cross_features))
                     if valid_f is not None else None)
    s_train = train_f.tensors(mc.featurizer, mc.cross_features)
    s_valid = valid_f.tensors(mc.featurizer, mc.cross_features) if valid_f is not None else None
    student, hist = _train_student(cfg, cfg.distill, s_train, s_valid, valid_rows if valid_f else None,
                                   teacher_train, teacher_valid, "coarse ranker (distilled)")
    histories = {"student_distilled": hist}
    plain = None
    if ec.compare_plain:
        plain_cfg = cfg.distill.model_copy(update={"beta": 0.0})
        plain, plain_hist = _train_student(cfg, plain_cfg, s_train, s_valid, valid_rows if valid_f else None,
                                           teacher_train, teacher_valid, "coarse ranker (plain)")
        histories["student_plain"] = plain_hist

    notes = list(rows.notes)
    rows_info = {"requests": rows.n_requests, "pairs": len(rows.pairs), "feature_source": rows.feature_source}
    sampled_docs = None if data_root is not None else rows.docs.drop_duplicates("doc_id", keep="last").reset_index(
        drop=True)
    if data_root is not None:
        valid_rows = None
    # the training rows and tensors are done with: free them before the holdout day's rows are joined (at `large`
    # the 2M training rows and the evaluation rows together passed the step's memory budget)
    del rows, train_f, valid_f, s_train, s_valid, teacher_train, teacher_valid, cross
    if retrieval is not None:
        notes.append(f"both students' heads read the retrieval cosine of the two-tower model in {retrieval_model_dir}")
    elif retrieval_model_dir is not None:
        notes.append("retrieval_model_dir given but model.retrieval_cosine is off: the retrieval model is not read")
    if data_root is not None:
        ev_rows = load_eval_rows(data_root, day, features_dir, ec.max_requests)
        eval_desc = (f"Holdout day {day}: {ev_rows.n_requests} requests, {len(ev_rows.pairs)} logged candidates "
                     "(pre-ranked, ranked and exposed docs). ndcg: relevance labels where the query has complete "
                     "labels, else clicks; true_ndcg: labels only; click_ndcg: clicks only.")
    elif valid_rows is not None:
        ev_rows = valid_rows
        eval_desc = (f"No data root: metrics on {ev_rows.n_requests} validation requests of the samples "
                     "(clicks only, no relevance labels).")
        notes.append("no data_root: evaluated on validation requests, not on the holdout day")
    else:
        raise ValueError("nothing to evaluate on: pass data_root or set train.valid_share > 0")
    ev_f = _Featurized(ev_rows, retrieval)
    ev_teacher_t = ev_f.tensors(tcfg.featurizer, tcfg.cross_features)
    ev_student_t = ev_f.tensors(mc.featurizer, mc.cross_features)
    t_scores = score_all_pairs(teacher, ev_teacher_t)
    judged = judgements(ev_rows)
    systems: dict[str, dict[str, Any]] = {}
    scored = {"teacher": (teacher, ev_teacher_t), "student_distilled": (student, ev_student_t)}
    if plain is not None:
        scored["student_plain"] = (plain, ev_student_t)
    for name, (m, t) in scored.items():
        s = t_scores if m is teacher else score_all_pairs(m, t)
        metrics = ranking_metrics(s, ev_rows, ec.ks, t_scores, judged)
        cost_fn = teacher_cost_ms if m is teacher else student_cost_ms
        cost = cost_fn(m, t, ec.cost_candidates, ec.cost_repeats, ec.cost_threads)
        systems[name] = _system_json(metrics, cost)
    final = {f"{name}.{k}": v["value"] for name, m in systems.items() for k, v in m.items()
             if k != "cost_ms_per_1k" and v["value"] is not None}
    final.update({f"{name}.cost_ms_per_1k": m["cost_ms_per_1k"] for name, m in systems.items()})

    if data_root is not None:
        corpus = load_corpus_docs(data_root, day, features_dir)
    else:
        corpus = sampled_docs
    doc_ids, doc_vecs = encode_corpus(student, corpus, mc.featurizer)

    n_ex = min(4, ev_student_t.n_pairs)
    with atomic_output_dir(out, marker=MANIFEST) as tmp:
        save_model(student, mc, tmp)
        np.save(tmp / DOC_IDS, doc_ids, allow_pickle=False)
        np.save(tmp / DOC_VECTORS, doc_vecs, allow_pickle=False)
        if student.three_tower:  # the cross tower needs the docs' fields online (cross_features)
            corpus[DOC_ROW_COLUMNS].to_parquet(tmp / DOC_ROWS, index=False)
        export_student(student, ev_student_t, tmp / EXPORT_DIR, f"coarse-ranker-{day}", n_ex)
        plot_curves(histories, tmp / CURVES_PNG, f"coarse ranker ({mc.kind}), day {day}")
        metrics_doc = {
            "format": FORMAT, "day": day, "ks": ec.ks, "main_k": ec.main_k, "evaluation": eval_desc,
            "judged_requests": judgement_counts(ev_rows), "systems": systems, "history": histories,
        }
        write_json(tmp / METRICS_JSON, metrics_doc)
        (tmp / REPORT_MD).write_text(render_report(day, systems, ec.ks, ec.main_k, notes, eval_desc),
                                     encoding="utf-8")
        model_version = f"coarse-ranker-{day}"
        registered: dict[str, str] = {}

        def register(run: RunLogger) -> None:
            from ebr.train.registry import register_coarse_ranker

            registered["version"] = register_coarse_ranker(run, str(cfg.mlflow.registered_model), tmp,
                                                           f"{model_version}.{run.run_id[:8]}",
                                                           f"coarse ranker ({mc.kind}) for day {day}")

        # only a two-tower student on query and doc vectors serves from the registry's pyfunc: a three-tower one
        # (cross features) and one reading the retrieval cosine (the request's retrieval vector) are not registered
        can_register = (bool(cfg.mlflow.registered_model) and not student.three_tower
                        and not student.uses_retrieval_cosine)
        run_id = _track(cfg.mlflow, "distill_coarse_ranker", cfg.model_dump(mode="json"), histories, final,
                        tmp, {"ebr.day": str(day), "ebr.teacher_dir": str(teacher_dir)},
                        register if can_register else None)
        notes += untracked_note(run_id)
        if cfg.mlflow.registered_model and student.three_tower and run_id is not None:
            notes.append("three-tower coarse ranker: not registered (its cross tower needs doc rows online)")
        elif cfg.mlflow.registered_model and student.uses_retrieval_cosine and run_id is not None:
            notes.append("coarse ranker reading the retrieval cosine: not registered (the pyfunc has no retrieval "
                         "vectors; the serving bundle scores it)")
        manifest = {
            "format": FORMAT, "kind": "coarse_ranker", "model_kind": mc.kind, **info, "eval_day": day,
            "feature_source": rows_info["feature_source"], "teacher_dir": str(teacher_dir), "mlflow_run_id": run_id,
            "retrieval_model_dir": str(retrieval_model_dir) if retrieval is not None else None,
            "registered_model": cfg.mlflow.registered_model if registered else None,
            "registered_version": registered.get("version"),
            "rows": {"requests": rows_info["requests"], "pairs": rows_info["pairs"], "train_requests": len(train_idx),
                     "valid_requests": len(valid_idx), "corpus_docs": len(doc_ids)},
            "files": {"model": MODEL_FILE, "config": MODEL_CONFIG, "export": EXPORT_DIR, "doc_ids": DOC_IDS,
                      "doc_vectors": DOC_VECTORS, "doc_rows": DOC_ROWS if student.three_tower else None,
                      "metrics": METRICS_JSON, "report": REPORT_MD, "curves": CURVES_PNG},
            "config": cfg.model_dump(mode="json"),
        }
        write_json(tmp / MANIFEST, manifest)
    return {"model_dir": str(out), "export_dir": str(out / EXPORT_DIR), "doc_matrix": str(out / DOC_VECTORS),
            "systems": systems, "metrics": final, "history": histories, "mlflow_run_id": run_id,
            "registered_version": registered.get("version"), "notes": notes}


def open_cross_docs(coarse_dir: str | Path, exported: Any) -> CrossDocs:
    """The doc side of a three-tower coarse ranker's cross features: its `doc_rows.parquet` prepared with the
    export's featurizer text config, for the cross features its export records. A ValueError says what is missing."""
    from ebr.models.rankers.cross_features import CrossDocs

    path = Path(coarse_dir) / DOC_ROWS
    if not path.is_file():
        raise ValueError(f"three-tower coarse ranker has no doc rows ({DOC_ROWS} is missing)")
    names = (exported.manifest.get("config") or {}).get("coarse_ranker", {}).get("cross_features")
    if not names:
        raise ValueError("three-tower coarse ranker export records no cross_features")
    if exported.featurizer is None:
        raise ValueError("coarse ranker export records no featurizer config")
    return CrossDocs.open(path, list(names), exported.featurizer.text)


def export_student(student: CoarseRanker, t: RankingTensors, path: Path, model_version: str, n: int = 4) -> Path:
    """The student's query_tower, doc_tower and scorer as `torch.export` programs (`ebr.models.export`), with
    example inputs from the first pairs of `t`."""
    import torch

    from ebr.models.export import export_modules
    from ebr.models.rankers.coarse_ranker import PairScorer
    from ebr.models.rankers.tensors import make_batch

    b = make_batch(t, torch.arange(min(t.n_requests, 2)))
    idx = torch.arange(min(n, len(b.pair_index)))
    with torch.no_grad():
        q = student.encode_queries(b.query)[b.pair_request[idx]]
        d = student.encode_docs({k: v[idx] for k, v in b.doc.items()})
    scorer_in = {"query": q, "doc": d}
    if student.three_tower:
        scorer_in.update(cross=b.cross[idx], cross_buckets=b.cross_buckets[idx])
    if student.uses_retrieval_cosine:
        if b.retrieval_cosine is None:
            raise ValueError("export_student: the coarse ranker reads retrieval_cosine, the tensors carry none")
        scorer_in["retrieval_cosine"] = b.retrieval_cosine[idx]
    cfg = student.config
    return export_modules(
        path,
        {"query_tower": student.query_tower, "doc_tower": student.doc_tower, "scorer": PairScorer(student)},
        {"query_tower": b.query, "doc_tower": {k: v[idx] for k, v in b.doc.items()}, "scorer": scorer_in},
        model_version=model_version,
        featurizer=cfg.featurizer,
        config={"coarse_ranker": cfg.model_dump(mode="json"), "embedding_dim": cfg.doc_tower.out_dim,
                "cross_features": cfg.cross_features if student.three_tower else [],
                "retrieval_cosine": student.uses_retrieval_cosine},
    )
