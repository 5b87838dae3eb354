"""Typed configuration of the featurizer, the towers and the two-tower model (torch-free).

Defaults follow the seeds: Taobao MGDSPR (seed 001) for the query tower and loss temperature, FiBiNet/SENet,
DCN-v2 and MMoE as described in the vector-recall overview (seed 000) and the two-tower survey (seed 003).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ebr.settings import Section
from ebr.text.analyzer import TextConfig

SEQUENCE_WINDOWS = ("rt", "st", "lt")
SEQUENCE_FIELDS = ("doc_ids", "categories", "authors", "event_types")


class NumericFeature(Section):
    """A numeric column bucketized on fixed boundaries: geometric from `low` to `high` (log scale), or
    explicit `boundaries`. Null -> id 0, below the first boundary -> id 1, then one id per boundary passed."""

    name: str
    low: float = Field(1.0, gt=0, description="first positive boundary of the log-scale grid")
    high: float = Field(1e7, gt=0, description="last boundary of the log-scale grid")
    num_boundaries: int = Field(24, ge=1, le=1000, description="positive boundaries between low and high")
    boundaries: list[float] | None = Field(
        None, description="explicit increasing boundaries (overrides grid)"
    )

    @model_validator(mode="after")
    def _check(self) -> NumericFeature:
        if not self.name:
            raise ValueError("numeric feature name must not be empty")
        if self.boundaries is not None:
            b = self.boundaries
            if (
                not b
                or any(not math.isfinite(x) for x in b)
                or any(x >= y for x, y in zip(b, b[1:], strict=False))
            ):
                raise ValueError(f"{self.name}: boundaries must be finite and strictly increasing, got {b}")
        elif self.high <= self.low:
            raise ValueError(f"{self.name}: high ({self.high}) must be greater than low ({self.low})")
        return self

    def edges(self) -> list[float]:
        """The boundaries: explicit ones, or 0 followed by `num_boundaries` log-spaced points low..high."""
        if self.boundaries is not None:
            return list(self.boundaries)
        n = self.num_boundaries
        if n == 1:
            return [0.0, self.low]
        ratio = (self.high / self.low) ** (1.0 / (n - 1))
        return [0.0] + [self.low * ratio**i for i in range(n)]

    @property
    def num_ids(self) -> int:
        """Embedding rows: null (0), below the first edge (1) and one per edge passed."""
        return len(self.edges()) + 2

    def bucket(self, value: float | None) -> int:
        """Bucket id of one value (the vectorized featurizer gives the same ids)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return 0
        return 1 + bisect_right(self.edges(), float(value))


def _count(name: str, high: float = 1e7) -> NumericFeature:
    return NumericFeature(name=name, low=1.0, high=high, num_boundaries=24)


def default_doc_numeric() -> list[NumericFeature]:
    """Doc/author statistics the doc tower bucketizes by default (exposure-derived counts, ratios, age)."""
    return [
        _count("doc_clicks_30d"),
        NumericFeature(name="doc_ctr_30d", low=1e-4, high=1.0, num_boundaries=20),
        _count("author_follower_count", high=1e8),
        NumericFeature(name="doc_age_days", low=1.0, high=3650.0, num_boundaries=16),
    ]


class VocabSizes(Section):
    """Hash bucket counts per vocabulary (ids 1..n, 0 = padding); fixed so ids never change between days."""

    unigram: int = Field(20_000, ge=1, description="query char unigrams / Latin trigrams")
    bigram: int = Field(100_000, ge=1, description="query char bigrams / Latin word pairs")
    word: int = Field(100_000, ge=1, description="query, recent-query and title words")
    user_id: int = Field(100_000, ge=1)
    city: int = Field(2_000, ge=1)
    profile_tag: int = Field(5_000, ge=1)
    doc_id: int = Field(200_000, ge=1, description="doc ids in the doc tower and in behaviour sequences")
    category: int = Field(5_000, ge=1, description="all category levels (each level hashes apart)")
    author_id: int = Field(50_000, ge=1)
    brand: int = Field(20_000, ge=1)
    attribute: int = Field(20_000, ge=1)
    tag: int = Field(20_000, ge=1)


class MaxLengths(Section):
    """Fixed padded lengths; sequence lengths are Taobao MGDSPR's (seed 001): real-time 50, short/long 100."""

    query_unigrams: int = Field(32, ge=1)
    query_bigrams: int = Field(32, ge=1)
    query_words: int = Field(16, ge=1)
    recent_queries: int = Field(10, ge=1, description="recent queries kept, newest first")
    profile_tags: int = Field(16, ge=1)
    seq_rt: int = Field(50, ge=1, description="real-time sequence (MGDSPR: 50)")
    seq_st: int = Field(100, ge=1, description="short-term sequence, 10 days (MGDSPR: 100)")
    seq_lt: int = Field(100, ge=1, description="long-term sequence, 30 days (MGDSPR: 100)")
    title_words: int = Field(32, ge=1)
    attributes: int = Field(16, ge=1)
    tags: int = Field(16, ge=1)

    def seq(self, window: str) -> int:
        """Padded length of one behaviour-sequence window (`rt`, `st` or `lt`)."""
        if window not in SEQUENCE_WINDOWS:
            raise ValueError(f"sequence window must be one of {SEQUENCE_WINDOWS}, got {window!r}")
        return int(getattr(self, f"seq_{window}"))


class FeaturizerConfig(Section):
    """How feature rows become tensors (ebr.models.inputs); saved with every exported model."""

    text: TextConfig = Field(default_factory=TextConfig)
    vocab: VocabSizes = Field(default_factory=VocabSizes)
    max_len: MaxLengths = Field(default_factory=MaxLengths)
    user_age: NumericFeature = Field(
        default_factory=lambda: NumericFeature(name="user_age", boundaries=[18, 25, 30, 35, 40, 45, 50, 60])
    )
    user_numeric: list[NumericFeature] = Field(default_factory=list, description="bucketized user columns")
    doc_numeric: list[NumericFeature] = Field(
        default_factory=default_doc_numeric, description="bucketized doc/author statistic columns"
    )

    @field_validator("user_numeric", "doc_numeric")
    @classmethod
    def _unique(cls, v: list[NumericFeature]) -> list[NumericFeature]:
        names = [f.name for f in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"numeric column names must be unique, repeated: {dup}")
        return v


class QueryTowerConfig(Section):
    """The Taobao MGDSPR user/query tower (seed 001); every part can be switched off by one flag."""

    hidden_dim: int = Field(128, ge=1, description="MGDSPR: user tower, item tower and LSTM hidden size 128")
    out_dim: int = Field(64, ge=1, description="output embedding size (L2-normalized)")
    num_heads: int = Field(8, ge=1, description="MGDSPR: 8 self-attention heads")
    lstm_layers: int = Field(2, ge=1, description="MGDSPR: 2-layer LSTM with residual connections")
    lstm_dropout: float = Field(0.2, ge=0, lt=1, description="MGDSPR: LSTM dropout 0.2")
    attention_dropout: float = Field(0.0, ge=0, lt=1)
    word_transformer_layers: int = Field(
        1, ge=1, description="Transformer layers over query words (q_seg_seq)"
    )
    fusion_layers: int = Field(1, ge=1, description="[CLS] self-attention fusion layers")
    personalization: bool = Field(True, description="off: query semantics only (no user, history, sequences)")
    multi_granular: bool = Field(True, description="off: the semantic unit is the word mean q_seg alone")
    query_history: bool = Field(True, description="q_his_seq: attention of q_seg over recent queries")
    user_profile: bool = True
    realtime_sequence: bool = Field(True, description="real-time sequence: LSTM + self-attention")
    short_term_sequence: bool = Field(True, description="short-term sequence: self-attention")
    long_term_sequence: bool = Field(True, description="long-term sequence: mean-pooled per field")
    senet: bool = Field(True, description="SENet field reweighting on the user profile (seeds 000, 003)")
    senet_reduction: int = Field(3, ge=1, description="SENet squeeze ratio r (FiBiNet default 3)")
    dcn: bool = Field(True, description="DCN-v2 cross layers on the user profile (seed 000)")
    dcn_layers: int = Field(2, ge=1)
    dcn_low_rank: int | None = Field(None, ge=1, description="low-rank W = U V^T in cross layers; None: full")
    bilinear: bool = Field(False, description="FiBiNet bilinear interaction on the user profile (seed 000)")
    bilinear_kind: Literal["field_all", "field_each", "field_interaction"] = "field_all"
    cls_fusion: bool = Field(True, description="MGDSPR [CLS] self-attention fusion; off: flatten + linear")
    query_understanding: bool = Field(
        True,
        description="one more fusion token from the query's understood leaf category and brand (the feature "
        "store's qu_category_leaf / qu_brand: query attribute features, seeds 000 and 002). On since "
        "docs/ablations.md: +0.032 true_recall@100 on the en marketplace logs, within the seed spread on the zh ones",
    )

    @model_validator(mode="after")
    def _check(self) -> QueryTowerConfig:
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


# The personalization inputs of the query tower, by the flag that switches each on (all under `personalization`).
USER_INPUTS = ("user_profile", "query_history", "realtime_sequence", "short_term_sequence", "long_term_sequence")
REALTIME_INPUTS = ("query_history", "realtime_sequence")  # the ones an event push changes


def tower_reads(recorded: Mapping[str, Any] | None, inputs: tuple[str, ...] = USER_INPUTS) -> bool:
    """Whether a query tower recorded as `recorded` (an export manifest's config.two_tower.query_tower) reads any
    of the personalization `inputs`, so that a caller fetches them only when they count. A missing record counts
    as reading them; a flag it lacks takes QueryTowerConfig's default."""
    if not isinstance(recorded, Mapping):
        return True
    fields = QueryTowerConfig.model_fields

    def on(flag: str) -> bool:
        return bool(recorded.get(flag, fields[flag].default))

    return on("personalization") and any(on(flag) for flag in inputs)


class DocTowerConfig(Section):
    """The doc tower: MGDSPR item representation e + tanh(W * mean(title words)) (seed 001) plus side info."""

    hidden_dim: int = Field(128, ge=1, description="MGDSPR: item tower hidden size 128")
    out_dim: int = Field(64, ge=1)
    mlp_dims: list[int] = Field(default_factory=lambda: [256], description="hidden layers of the output MLP")
    dropout: float = Field(0.0, ge=0, lt=1)
    use_id: bool = Field(True, description="doc id embedding e")
    use_title: bool = True
    use_categories: bool = True
    use_brand: bool = True
    use_attributes: bool = True
    use_tags: bool = True
    use_author: bool = True
    use_statistics: bool = Field(True, description="bucketized doc/author statistics")
    senet: bool = Field(False, description="SENet field reweighting over the doc fields (seed 003)")
    senet_reduction: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DocTowerConfig:
        if not (
            self.use_id
            or self.use_title
            or self.use_categories
            or self.use_brand
            or self.use_attributes
            or self.use_tags
            or self.use_author
            or self.use_statistics
        ):
            raise ValueError("doc tower: at least one input field must be switched on")
        if any(d < 1 for d in self.mlp_dims):
            raise ValueError(f"doc tower mlp_dims must be positive, got {self.mlp_dims}")
        return self


class MultiObjectiveConfig(Section):
    """Multi-objective MMoE heads of the fine ranker: tasks, per-task BCE weights, experts (seed 000, formula 18)."""

    enabled: bool = Field(False, description="off: one plain click head")
    tasks: list[str] = Field(default_factory=lambda: ["click", "like", "favorite", "comment"])
    task_weights: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    num_experts: int = Field(4, ge=1)
    expert_dims: list[int] = Field(default_factory=lambda: [128])
    tower_dims: list[int] = Field(default_factory=lambda: [64])

    @model_validator(mode="after")
    def _check(self) -> MultiObjectiveConfig:
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be non-empty and unique, got {self.tasks}")
        if len(self.task_weights) != len(self.tasks):
            raise ValueError(
                f"task_weights has {len(self.task_weights)} entries but tasks has {len(self.tasks)}"
            )
        if any(w < 0 for w in self.task_weights):
            raise ValueError(f"task_weights must be >= 0, got {self.task_weights}")
        return self


class TwoTowerConfig(Section):
    """The retrieval model: featurizer, both towers and the score temperature."""

    featurizer: FeaturizerConfig = Field(default_factory=FeaturizerConfig)
    query_tower: QueryTowerConfig = Field(default_factory=QueryTowerConfig)
    doc_tower: DocTowerConfig = Field(default_factory=DocTowerConfig)
    temperature: float = Field(2.0, gt=0, description="score = cos / tau; Taobao MGDSPR tau = 2 (seed 001)")
    use_temperature: bool = Field(True, description="off: tau = 1")
    sparse_embeddings: bool = Field(
        False, description="sparse gradients for id/text tables (Adagrad/SparseAdam)"
    )
    seed: int = Field(0, description="initial weights are a function of this seed")
    share_word_embeddings: bool = Field(
        False,
        description="the doc tower's title words use the query tower's word table (seed 000: the towers encode "
        "'shared or non-shared'), so a word means the same vector on both sides; needs equal hidden_dim",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: object) -> object:
        """Models saved before the retrieval model lost its multi-objective heads carry a disabled
        `multi_objective` section; it changed nothing, so it is dropped. An enabled one is refused by name."""
        if isinstance(data, dict) and "multi_objective" in data:
            legacy = data["multi_objective"]
            if isinstance(legacy, dict) and legacy.get("enabled"):
                raise ValueError("multi_objective: the retrieval model has no multi-objective heads any more "
                                 "(a model trained with them cannot be loaded); the fine ranker has MMoE heads")
            data = {k: v for k, v in data.items() if k != "multi_objective"}
        return data

    @model_validator(mode="after")
    def _check(self) -> TwoTowerConfig:
        if self.share_word_embeddings:
            if not self.doc_tower.use_title:
                raise ValueError("share_word_embeddings: the doc tower has no title words (doc_tower.use_title "
                                 "is false), nothing to share")
            if self.query_tower.hidden_dim != self.doc_tower.hidden_dim:
                raise ValueError(f"share_word_embeddings needs query_tower.hidden_dim "
                                 f"({self.query_tower.hidden_dim}) equal to doc_tower.hidden_dim "
                                 f"({self.doc_tower.hidden_dim})")
        if self.query_tower.out_dim != self.doc_tower.out_dim:
            raise ValueError(
                f"query_tower.out_dim ({self.query_tower.out_dim}) must equal doc_tower.out_dim "
                f"({self.doc_tower.out_dim})"
            )
        return self

    @property
    def effective_temperature(self) -> float:
        """The temperature scores are divided by: `temperature`, or 1.0 when switched off."""
        return self.temperature if self.use_temperature else 1.0
