"""Typed configuration of `train_two_tower`: model, loss, data, negatives, optimizer, loop and tracking.

Defaults follow the seeds where they give a value: Taobao MGDSPR (seed 001: softmax over in-batch and
random negatives, gradient clipping at L2 norm 3, mixed hard negatives a ~ U(0.4, 0.6)) and Facebook EBR (seed 004:
random negatives over the whole corpus, offline hard negatives easy:hard 100:1, exposed-unclicked negatives only as
an ablation). Four defaults depart from MGDSPR on measurement (docs/training.md): Adam instead of AdaGrad at 0.1
(which stalls the query tower's attention layers here), temperature 0.07 instead of 2 (our scores are cosines in
[-1, 1], MGDSPR's are raw inner products; 0.07 chosen by docs/ablations.md), batch 512 instead of 256
(docs/ablations.md) and 64 mixed hard negatives instead of 684 (CPU cost); sizes are tuned to train the
`small` simulated day in a few minutes on 2 cores.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ebr.models.config import TwoTowerConfig
from ebr.settings import Section
from ebr.train.losses import RetrievalLossConfig
from ebr.train.tracking import MlflowConfig

TEMPERATURE_FIELDS = ("temperature", "use_temperature")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` applied key by key (nested dicts merge, everything else replaces)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def default_loss() -> RetrievalLossConfig:
    """MGDSPR's loss with fewer mixed hard negatives than its 684 (their cost is per row and candidate on CPU)."""
    return RetrievalLossConfig(num_hard_negatives=64)


def default_model() -> TwoTowerConfig:
    """The model trained by default: MGDSPR's multi-granular query tower and item tower with CPU-sized dimensions,
    vocabularies and sequences; its personalization is measured, not assumed (off, docs/ablations.md)."""
    return TwoTowerConfig.model_validate({
        "featurizer": {
            "vocab": {"unigram": 20_000, "bigram": 50_000, "word": 50_000, "user_id": 50_000, "doc_id": 100_000,
                      "author_id": 20_000},
            "max_len": {"seq_rt": 10, "seq_st": 20, "seq_lt": 20, "recent_queries": 10},
        },
        # 0.07, not 0.05 (the default until the medium rows): on the three kinds of logs at medium, true_recall@100
        # +0.004 to +0.008 and p_good@100 +0.009 to +0.018 for ndcg@10 -0.001 to -0.006; at small every metric
        # held or rose (docs/ablations.md, row tau_0.05). MGDSPR's 2 applies to raw inner products, not cosines.
        "temperature": 0.07,
        # Personalization off: on all three kinds of simulated logs, at small and at medium, the tower without the
        # user profile and behaviour sequences retrieves more relevant docs (docs/ablations.md, row
        # personalization_on) and trains ~2.6x faster (bench/results/train.md); MGDSPR's blocks stay one flag away.
        # [CLS] fusion off too: without personalization it only mixes the query's own granules and understanding
        # token, and flatten + linear gave +0.007 to +0.027 click_recall@100 and +0.010 to +0.028 ndcg@10 on the
        # three kinds of logs at small and medium (docs/ablations.md, row cls_fusion_on), true_recall@100 -0.003 to
        # +0.024.
        "query_tower": {"hidden_dim": 64, "out_dim": 64, "num_heads": 4, "personalization": False,
                        "cls_fusion": False},
        # Bucketized click/CTR statistics let the model score "was clicked before": never-exposed relevant docs
        # sink (true_recall@100 0.42 with them, 0.59 without on the small day): content, id and author only.
        "doc_tower": {"hidden_dim": 64, "out_dim": 64, "mlp_dims": [128], "use_statistics": False},
        "sparse_embeddings": True,
    })  # fmt: skip


class TwoTowerDataConfig(Section):
    """Which sample rows train the model and which are held out for validation."""

    valid_share: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="share of the last training day's requests (by a hash of request_id) held out to validate "
        "(early stopping); 0 = no validation",
    )
    use_weights: bool = Field(
        False, description="positives are drawn in proportion to their weight (deeper engagement counts more; "
        "seed 000). Off by default: docs/ablations.md row engagement_weights_off, 3 seeds on the small day: "
        "true_recall@100 +0.024, click_recall@100 +0.022, p_good@100 +0.031 without the weights",
    )
    use_rewrites: bool = Field(
        True,
        description="query rewrites (seed 000): synonym / non-core-drop hard positives train as positives and "
        "core-term-drop rewrites as hard negatives of the clicked doc; off: clicks only",
    )
    rewrite_negative_weight: float = Field(
        1.0, ge=0.0, description="weight of the rewrite hard-negative term (doc prefers its query to the rewrite)"
    )
    positive_doc_features: Literal["doc_table", "point_in_time"] = Field(
        "doc_table",
        description="doc features of positives: the doc table's (as of D, like every negative and the served "
        "index) or the click-time ones joined by the samples step; point-in-time positives against as-of-D "
        "negatives let the model separate them by the statistics' date instead of by relevance",
    )
    max_rows: int | None = Field(None, ge=1, description="cap on training rows (latest kept); None = all")
    cache: bool = Field(
        True,
        description="featurize a day once: the featurized arrays go to a cache entry keyed by the samples, the "
        "feature store, the featurizer and these data fields, and a later load with the same key (a retry, the "
        "other DDP ranks) memory-maps them (ebr/train/featurized_cache.py); off: featurize in every process",
    )
    cache_dir: str | None = Field(
        None,
        description="root of the featurization cache; None = `featurized/` beside the model directory (the "
        "samples may be a read-only pipeline artifact). Point it at a workspace folder to share entries across "
        "runs; under DDP on several nodes it must be on a volume every rank sees",
    )
    cache_keep: int = Field(2, ge=1, description="entries kept under the cache root, newest first (older removed)")


class TwoTowerNegativesConfig(Section):
    """Negatives of the sampled softmax besides the in-batch ones (seeds 001, 003, 004)."""

    random_negatives: int = Field(
        512, ge=0,
        description="random docs per batch drawn by the samples' `prob` (exposure^0.75) over the whole corpus, "
        "shared by the batch's rows (seeds 003, 004)",
    )
    hard_negatives: bool = Field(
        True, description="use the samples' offline ANN hard negatives (seed 004: ranks 101-500) when present"
    )
    easy_hard_ratio: float = Field(
        100.0, gt=0.0,
        description="easy:hard candidates per row (seeds 000, 004: 100:1). A row's easy candidates are the batch's "
        "other positives plus the random (and exposed-unclicked) negatives, E = batch - 1 + random_negatives; its "
        "hard slots are E / ratio on average (floor or ceil per row, drawn so the ratio is exact over training: 10.23 "
        "at the defaults, E = 1023), each filled with a different mined negative of its request, drawn without "
        "replacement; slots its request cannot fill go to other rows of the batch (refill_hard_slots), and what "
        "none can fill stays empty and is counted (summary.hard_shortfall). The ratio trained with is "
        "summary.effective_easy_hard_ratio",
    )
    refill_hard_slots: bool = Field(
        True,
        description="a hard slot whose request has no mined negative left (the relevance filter leaves some "
        "requests none) goes to another row of the same batch whose request has, so easy:hard stays the "
        "configured ratio over training; false leaves it empty (effective ratio above the configured one)",
    )
    use_exposed_unclicked: bool = Field(
        False,
        description="ablation (seed 004): each row's negatives are its request's exposed-unclicked docs instead "
        "of random ones (needs samples built with use_exposed_unclicked_negatives)",
    )
    exposed_unclicked_per_row: int = Field(9, ge=1, description="exposed-unclicked negatives per row (ablation)")


class OptimizerConfig(Section):
    """Optimizer and clipping (seed 001: AdaGrad at 0.1, clip at gradient L2 norm 3; Adam is the default here)."""

    name: Literal["adagrad", "adam"] = Field(
        "adam",
        description="adam (+ SparseAdam for sparse tables) or adagrad (MGDSPR, lr 0.1; sparse tables natively). "
        "AdaGrad at 0.1 left the query tower's Transformer/attention layers stuck near a uniform softmax here",
    )
    lr: float = Field(1e-3, gt=0.0, description="learning rate of the dense parameters (MGDSPR: AdaGrad 0.1)")
    sparse_lr: float | None = Field(
        1e-2, gt=0.0, description="learning rate of the sparse embedding tables; None = lr"
    )
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay of the dense parameters")
    grad_clip_norm: float | None = Field(
        3.0, gt=0.0, description="clip the global gradient L2 norm to this (MGDSPR: 3); None = no clipping"
    )


class TrainLoopConfig(Section):
    """Epochs, batches, early stopping, threads and determinism."""

    epochs: int = Field(
        1, ge=1,
        description="maximum epochs. One pass a day, warm-started from the champion: on the small day more epochs "
        "raised click recall a little and lowered true recall (3 epochs: true_recall@100 0.546, 1 epoch: 0.590)",
    )
    batch_size: int = Field(
        512, ge=2,
        description="positives per step (MGDSPR: 256). 512 at medium on the three kinds of logs, first and second "
        "day: ndcg@10 +0.002 to +0.014 and filtered_share@100 lower everywhere, true_recall@100 -0.001 to +0.003, "
        "click_recall@100 -0.004 to +0.003 (docs/ablations.md, \"Batch 512\")",
    )
    early_stopping_patience: int = Field(
        1, ge=0, description="stop after this many epochs without a better validation recall; 0 = never stop early"
    )
    min_delta: float = Field(0.0, ge=0.0, description="smallest validation-recall gain that counts as better")
    valid_k: int = Field(100, ge=1, description="K of the validation click_recall@K (exact search, whole corpus)")
    encode_batch_size: int = Field(2048, ge=1, description="rows per forward pass when encoding without gradients")
    seed: int = Field(0, description="row order, negatives and dropout; with model.seed, same seeds -> same weights")
    num_threads: int | None = Field(
        1, ge=1,
        description="torch threads while training; None = torch's default. One by default: the ops are small, and "
        "when another step shares the cores OpenMP barriers made 2 threads several times slower than 1",
    )
    deterministic: bool = Field(
        False, description="torch.use_deterministic_algorithms while training (bitwise repeatable on any thread count)"
    )
    progress: bool = Field(True, description="tqdm progress bar per epoch")
    example_rows: int = Field(4, ge=1, description="featurized rows given to torch.export as example inputs")
    onnx_query_tower: bool = Field(
        True, description="also write the query tower as ONNX (checked against the torch.export program within "
        "1e-5; skipped with a note when it does not convert): the server then runs it on ONNX Runtime, ~4x faster "
        "at batch 1 (bench/results/tower.md)",
    )


class TwoTowerTrainConfig(Section):
    """`train_two_tower`: one flag per technique (see docs/training.md)."""

    model: TwoTowerConfig = Field(default_factory=default_model)
    loss: RetrievalLossConfig = Field(
        default_factory=default_loss,
        description="loss kind, log-Q, hard-negative mixing; its temperature follows model.temperature",
    )
    data: TwoTowerDataConfig = Field(default_factory=TwoTowerDataConfig)
    negatives: TwoTowerNegativesConfig = Field(default_factory=TwoTowerNegativesConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    train: TrainLoopConfig = Field(default_factory=TrainLoopConfig)
    features_as_of: Literal["day_start", "day_end"] = Field(
        "day_start", description="doc features of negatives and validation: as of day D's start (no look-ahead)"
    )
    mlflow: MlflowConfig = Field(
        default_factory=lambda: MlflowConfig(experiment="ebr-two-tower", registered_model="ebr-two-tower")
    )

    @field_validator("model", "loss", "mlflow", mode="before")
    @classmethod
    def _onto_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        """A partial section (dict) overrides this config's defaults, not the section class's own defaults."""
        if not isinstance(value, dict):
            return value
        factory = cls.model_fields[info.field_name].default_factory
        base = factory().model_dump(mode="json", exclude=set(TEMPERATURE_FIELDS) if info.field_name == "loss" else None)
        return deep_merge(base, value)

    @model_validator(mode="after")
    def _one_temperature(self) -> TwoTowerTrainConfig:
        for name in TEMPERATURE_FIELDS:
            if name in self.loss.model_fields_set and getattr(self.loss, name) != getattr(self.model, name):
                raise ValueError(
                    f"loss.{name} ({getattr(self.loss, name)}) differs from model.{name} "
                    f"({getattr(self.model, name)}): the temperature is set once, on the model"
                )
        return self

    def loss_config(self) -> RetrievalLossConfig:
        """The loss section with the model's temperature (one switch: model.use_temperature)."""
        return self.loss.model_copy(update={n: getattr(self.model, n) for n in TEMPERATURE_FIELDS})
