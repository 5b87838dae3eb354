"""Typed configuration of the fine ranker (teacher) and the coarse ranker (student); torch-free.

Seed 002 (coarse ranking) fixes the structure: the fine ranker is a one-tower interaction model with feature
crossing (DCN, FiBiNet) and multi-objective MMoE heads (click, like, favorite, comment; formulas 19-23); the
coarse ranker is a two-tower model (cosine similarity, formula 1) or a three-tower model whose cross tower
takes query-doc and user-doc cross features online, with a post-interaction MLP ("突破双塔"). Sizes are not
given by the seed; they are chosen so the teacher is the expensive model and the student scores a candidate
with one inner product (two towers) or two small MLPs (three towers).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ebr.models.config import DocTowerConfig, FeaturizerConfig, MultiObjectiveConfig, QueryTowerConfig
from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES, check_names
from ebr.settings import Section

TASK_LABELS = {"click": "label_click", "like": "label_like", "favorite": "label_favorite", "comment": "label_comment"}

def _all_cross() -> list[str]:
    return list(CROSS_FEATURE_NAMES)


def _fine_tasks() -> MultiObjectiveConfig:
    return MultiObjectiveConfig(enabled=True)


class FineRankerConfig(Section):
    """The teacher: query, user, doc and cross-feature fields -> DCN-v2 or FiBiNet -> MMoE task heads."""

    featurizer: FeaturizerConfig = Field(default_factory=FeaturizerConfig)
    embed_dim: int = Field(
        8, ge=1, description="size of every field embedding: ~33 fields of 8 keep the crossed input near 280 wide"
    )
    interaction: Literal["dcn", "fibinet"] = Field(
        "dcn", description="feature crossing (seed 002 '特征交叉'): DCN-v2 cross layers beside a deep MLP, or "
        "FiBiNet (SENet + bilinear interaction of raw and reweighted fields, then a deep MLP)",
    )
    dcn_layers: int = Field(3, ge=1, description="DCN-v2 cross layers x_{l+1} = x0 * (W x_l + b) + x_l (formula 12)")
    dcn_low_rank: int | None = Field(
        64, ge=1, description="DCN-v2's low-rank cross layers W = U V^T (rank 64, about a quarter of the input); "
        "None = full rank",
    )
    senet_reduction: int = Field(3, ge=1, description="SENet squeeze ratio r (FiBiNet default 3)")
    bilinear_kind: Literal["field_all", "field_each", "field_interaction"] = Field(
        "field_all", description="FiBiNet weight sharing of the bilinear interaction"
    )
    deep_dims: list[int] = Field(default_factory=lambda: [256, 128], description="the deep MLP beside the crossing")
    dropout: float = Field(0.0, ge=0, lt=1)
    multi_task: MultiObjectiveConfig = Field(
        default_factory=_fine_tasks,
        description="MMoE heads (seed 002 formulas 19-23); enabled=false keeps one plain click head",
    )
    score_weights: list[float] | None = Field(
        None,
        description="the teacher's ranking score = sum_t w_t * logit_t, the logits the student distils; None = "
        "the click logit alone (clicks are the densest label; deeper actions shape it through the shared experts)",
    )
    cross_features: list[str] = Field(default_factory=_all_cross, description="cross features the model reads")
    sparse_embeddings: bool = Field(True, description="sparse gradients for the hashed id/text tables (SparseAdam)")
    seed: int = Field(0, description="initial weights are a function of this seed")

    @field_validator("cross_features")
    @classmethod
    def _cross(cls, v: list[str]) -> list[str]:
        return check_names(v)

    @model_validator(mode="after")
    def _check(self) -> FineRankerConfig:
        if any(d < 1 for d in self.deep_dims) or not self.deep_dims:
            raise ValueError(f"deep_dims must be non-empty and positive, got {self.deep_dims}")
        unknown = [t for t in self.tasks if t not in TASK_LABELS]
        if unknown:
            raise ValueError(f"multi_task.tasks: unknown task(s) {unknown}; known: {list(TASK_LABELS)}")
        if self.score_weights is not None:
            if len(self.score_weights) != len(self.tasks):
                raise ValueError(f"score_weights has {len(self.score_weights)} entries, tasks has {len(self.tasks)}")
            if not any(w != 0 for w in self.score_weights):
                raise ValueError("score_weights must not be all zero")
        elif "click" not in self.tasks:
            raise ValueError("score_weights = None scores by the click logit, but 'click' is not among the tasks")
        return self

    @property
    def tasks(self) -> list[str]:
        """Task names of the heads: the configured tasks, or ['click'] with MMoE off."""
        return list(self.multi_task.tasks) if self.multi_task.enabled else ["click"]

    @property
    def effective_score_weights(self) -> list[float]:
        """One weight per task: `score_weights`, or 1 for click and 0 for the rest."""
        if self.score_weights is not None:
            return list(self.score_weights)
        return [1.0 if t == "click" else 0.0 for t in self.tasks]


def _coarse_query() -> QueryTowerConfig:
    return QueryTowerConfig(hidden_dim=32, out_dim=32, num_heads=4, lstm_layers=1)


def _coarse_doc() -> DocTowerConfig:
    return DocTowerConfig(hidden_dim=32, out_dim=32, mlp_dims=[64])


class CoarseRankerConfig(Section):
    """The student: MGDSPR query tower and doc tower of `ebr.models` (smaller), cosine scaled by a learned s.

    score = s * cos(q, d) + b (two towers; seed 002 prefers cosine to the raw inner product) and, with three
    towers, + MLP_post([q * d, cross_tower(cross features)]) (seed 002 "引入交叉塔", "引入后交互层"); with
    `retrieval_cosine`, + w * cos_retrieval(q, d) (the retrieval model's cosine as a feature, Facebook EBR).
    """

    kind: Literal["two_tower", "three_tower"] = Field(
        "two_tower", description="two_tower: doc side fully precomputable; three_tower: adds the online cross tower"
    )
    featurizer: FeaturizerConfig = Field(default_factory=FeaturizerConfig)
    query_tower: QueryTowerConfig = Field(
        default_factory=_coarse_query,
        description="the MGDSPR tower at hidden 32 / 4 heads / 1 LSTM layer (a quarter of MGDSPR's 128 / 8 / 2): it "
        "runs once per request, and its pass dominates the student's cost per request",
    )
    doc_tower: DocTowerConfig = Field(
        default_factory=_coarse_doc, description="out 32: one 32-d inner product per candidate online"
    )
    scale_init: float = Field(
        5.0, gt=0,
        description="initial s of s * cos: cosines live in [-1, 1] and s lets scores reach the teacher's logit range",
    )
    learn_scale: bool = Field(True, description="learn s (as log s); off: s stays scale_init")
    cross_features: list[str] = Field(default_factory=_all_cross, description="three towers: the cross tower's input")
    cross_embed_dim: int = Field(8, ge=1, description="three towers: bucket embedding size per cross feature")
    cross_dims: list[int] = Field(default_factory=lambda: [32], description="three towers: cross-tower MLP")
    post_dims: list[int] = Field(default_factory=lambda: [32], description="three towers: post-interaction MLP")
    retrieval_cosine: bool = Field(
        False,
        description="add w * cos_retrieval(q, d) to the score, the cosine of the two-tower retrieval model trained "
        "the same day (Facebook EBR: the cosine as a ranking feature); training needs the retrieval model's "
        "directory, serving the request's query vector and the candidates' ANN scores. Small day, distilled student, "
        "seeds 0/1: ndcg@10 0.795/0.787 -> 0.800/0.801, true_ndcg@10 0.886/0.879 -> 0.892/0.894, "
        "teacher_agreement@10 0.937/0.935 -> 0.945/0.944 (docs/rankers.md). Off by default until the MLflow pyfunc "
        "of the coarse ranker (ebr.train.registry) and bench/bench_rankers.py pass the cosine: a student reading it "
        "is not registered",
    )
    retrieval_cosine_init: float = Field(
        1.0, description="initial w of w * cos_retrieval (the student's own cosine starts at s = scale_init)"
    )
    sparse_embeddings: bool = Field(True, description="sparse gradients for the hashed id/text tables (SparseAdam)")
    seed: int = Field(0, description="initial weights are a function of this seed")

    @field_validator("cross_features")
    @classmethod
    def _cross(cls, v: list[str]) -> list[str]:
        return check_names(v)

    @model_validator(mode="after")
    def _check(self) -> CoarseRankerConfig:
        if self.query_tower.out_dim != self.doc_tower.out_dim:
            raise ValueError(f"query_tower.out_dim ({self.query_tower.out_dim}) must equal doc_tower.out_dim "
                             f"({self.doc_tower.out_dim})")
        for name in ("cross_dims", "post_dims"):
            dims = getattr(self, name)
            if not dims or any(d < 1 for d in dims):
                raise ValueError(f"{name} must be non-empty and positive, got {dims}")
        return self
