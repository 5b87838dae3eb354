"""Typed knobs of sample construction; every default names the seed (shared/seeds/) it comes from.

Seeds: 000 (search EBR overview: sample kinds, exposure-frequency negatives, rewrites, easy:hard 100:1),
001 (Taobao MGDSPR: softmax over a large random pool, one week of logs), 002 (coarse ranking samples),
003 (two-tower sampling: global random + popularity), 004 (Facebook EBR: random vs exposed negatives,
offline hard negatives at ranks 101-500, easy:hard 100:1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ebr.settings import Section


class PositivesConfig(Section):
    """Which clicks count as positives ("clicks with sufficient exposure", seeds 000 and 002) and their weight."""

    max_position: int | None = Field(
        None, ge=1,
        description="a click counts only when shown at a 1-based position <= this; None = every shown slot",
    )
    min_dwell_ms: int = Field(
        2000, ge=0, description="a click with a shorter dwell is a bounce, not a positive (seed 001: clicks are noisy)"
    )
    keep_missing_dwell: bool = Field(True, description="a click with no logged dwell passes the dwell filter")
    min_doc_exposures: int = Field(
        1, ge=1,
        description="a doc needs this many exposures in the window before its clicks count (seed 002: "
        "'sufficient exposure'); 1 = no filter",
    )
    relevance_filter: bool = Field(
        False,
        description="drop a click whose doc the relevance control would have removed for its request (leaf category "
        "off the query's understood one, or the understood brand missing; ebr.judgements.relevance): under strong "
        "position bias such clicks are the noisiest (MGDSPR, seed 001: clicks are noisy, relevance is controlled by "
        "structured fields). Off by default: docs/ablations.md, row relevance_positives_on",
    )
    like_weight: float = Field(0.5, ge=0.0, description="added to a positive's weight of 1 when liked")
    favorite_weight: float = Field(1.0, ge=0.0, description="added when favorited (deeper engagement, seed 000)")
    comment_weight: float = Field(1.0, ge=0.0, description="added when commented")
    position_weight_power: float = Field(
        0.0, ge=0.0, le=3.0,
        description="inverse-propensity weight of a click by where it was shown: the weight is multiplied by "
        "position ** power (examination ~ position ** -power, as in click models), so clicks the layout made "
        "likely count less than clicks on docs shown lower; 0 = no position weight. Read by the trainer only "
        "with two_tower.data.use_weights",
    )
    max_position_weight: float = Field(
        10.0, ge=1.0, description="cap of the position weight (inverse-propensity weights are clipped for variance)"
    )


class NegativesConfig(Section):
    """The random-negative sampling table over the whole corpus (seeds 000, 003, 004)."""

    exposure_power: float = Field(
        0.75, ge=0.0, le=1.0,
        description="prob ~ (exposures + smoothing) ** power: exposure-frequency sampling (seed 000) damped "
        "like word2vec's unigram^0.75 so popular docs are oversampled but do not dominate (seed 003)",
    )
    exposure_smoothing: float = Field(
        1.0, gt=0.0,
        description="pseudo-exposures added to every doc, so never-exposed docs keep prob ~ smoothing ** power",
    )
    per_positive: int = Field(
        100, ge=1,
        description="random negatives per positive for `request_negatives` (a per-row draw from this table); the "
        "two-tower trainer draws its own per batch (two_tower.negatives.random_negatives)",
    )


class HardNegativesConfig(Section):
    """Offline hard negatives mined from the previous model's ANN index (seed 004)."""

    enabled: bool = Field(True, description="mine when a previous index and query encoder are given")
    rank_min: int = Field(101, ge=1, description="first 1-based ANN rank kept (seed 004: ranks 101-500 work best)")
    rank_max: int = Field(500, ge=1, description="last 1-based ANN rank kept (seed 004)")
    per_request: int = Field(
        16, ge=1,
        description="mined negatives kept per training request (random order within the band). The trainer fills "
        "each row's hard slots (easy:hard 100:1, seeds 000 and 004: 10-11 slots at its defaults, 11 in the hard-heavy "
        "ablation row) from its request's, so 16 fills them with some left over for the request's other rows and "
        "later epochs to draw differently; fewer when the band runs out",
    )
    exclude_query_clicks: bool = Field(
        True, description="also drop docs clicked for the same query text anywhere in the window (false negatives)"
    )
    relevance_filter: Literal["none", "category", "control"] = Field(
        "category",
        description="skip candidates that may be relevant, only unclicked (false negatives), by the query's "
        "understanding (ebr.judgements.relevance): `category` keeps only docs off the query's understood leaf "
        "category (a doc of that leaf with another brand is a partial match, still relevant); `control` keeps only "
        "docs the relevance control would remove (off the leaf, or without the understood brand); `none` = seed "
        "004's unfiltered band. A request with no understood category gets none. `category` on measurement: at "
        "medium it gives back most of the graded relevance the unfiltered band costs and keeps part of its clicks "
        "(docs/ablations.md, rows hard_negatives_unfiltered and hard_negatives_control)",
    )
    batch_size: int = Field(4096, ge=1, description="queries encoded and searched per batch")

    @field_validator("relevance_filter", mode="before")
    @classmethod
    def _false_is_none(cls, value: object) -> object:
        """YAML reads `off` and `false` as False: that means no filter."""
        return "none" if value is False else value

    @model_validator(mode="after")
    def _band(self) -> HardNegativesConfig:
        if self.rank_max < self.rank_min:
            raise ValueError(f"hard_negatives.rank_max ({self.rank_max}) must be >= rank_min ({self.rank_min})")
        return self


class RewritesConfig(Section):
    """Hard positives and negatives by rewriting the query with a dictionary (seed 000)."""

    enabled: bool = Field(True, description="build rewrite samples when a dictionary is available")
    dictionary_dir: Path | None = Field(
        None,
        description="folder with synonyms.tsv (word<TAB>synonym) and core_terms.tsv (word<TAB>core|non_core); "
        "None = <data_root>/_meta when it exists, else rewrites are skipped with a note",
    )
    rate: float = Field(
        0.2, ge=0.0, le=1.0,
        description="chance that a click positive is rewritten, drawn per positive and kind; hard samples are a "
        "supplement to the clicks (seed 000), the seeds give no share",
    )
    per_positive: int = Field(1, ge=0, description="at most this many rewrites of each kind per chosen positive")
    hard_positive_weight: float = Field(
        1.0, ge=0.0, description="a hard positive's weight as a multiple of its click positive's weight"
    )


class RankingConfig(Section):
    """Samples of the fine and the coarse ranker (seed 002: exposed, cut-by-ranking, stratified random)."""

    require_click: bool = Field(
        True, description="keep only requests with at least one click (a listwise group needs a positive)"
    )
    include_preranked: bool = Field(True, description="docs cut by the coarse ranker as negatives (seed 002)")
    include_ranked: bool = Field(True, description="docs cut by the fine ranker as negatives (seed 002)")
    random_same_category: int = Field(
        2, ge=0, description="random negatives per request from the query's predicted leaf category (seed 002)"
    )
    random_other_category: int = Field(
        2, ge=0, description="random negatives per request from other categories (seed 002)"
    )
    oversample: int = Field(4, ge=1, description="draws per wanted random negative before dropping collisions")
    max_rows: int | None = Field(
        2_000_000, ge=1,
        description="bound on ranking rows (memory of the samples, fine-ranker and distillation steps): when the "
        "window's requests would give more, whole requests are kept in the order of a seeded hash of request_id "
        "until the next would pass the bound (a uniform sample of requests, lists intact); None = all. 2M keeps "
        "every row of a `small` day (1.4M) and caps `medium` (7.1M) and `large`",
    )


class SamplesConfig(Section):
    """Sample construction for day D: training window [D - days_back, D - 1] (seed 001: one week of logs)."""

    days_back: int = Field(7, ge=1, description="k: training days before D (seed 001: 7 days train, day 8 test)")
    join_features: tuple[Literal["retrieval", "ranking"], ...] = Field(
        ("retrieval",),
        description="sample tables that get point-in-time Feast features joined (written as <table>_features); "
        "without `ranking` the rankers join the same service (ranking_training) themselves from the feature store, "
        "so it is off by default (it is the largest table)",
    )
    seed: int = Field(0, ge=0, description="seed of every random draw here")
    use_exposed_unclicked_negatives: bool = Field(
        False,
        description="write exposed-but-unclicked docs as a retrieval negative source; off because they bias "
        "the model to the old funnel (seed 004: large recall regression) - for the ablation only",
    )
    features_on_missing: Literal["raise", "null"] = Field(
        "null",
        description="feature join: rows without any feature row before their time (first-day requests, "
        "rewritten queries) get null features, or raise",
    )
    positives: PositivesConfig = Field(default_factory=PositivesConfig)
    negatives: NegativesConfig = Field(default_factory=NegativesConfig)
    hard_negatives: HardNegativesConfig = Field(default_factory=HardNegativesConfig)
    rewrites: RewritesConfig = Field(default_factory=RewritesConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)
