"""Configuration of the search-log simulator: scale table, world knobs, logging policy and click model.

Sizes come from a per-scale table (`SCALES`); every size can be overridden by its own field. The defaults of
the behaviour knobs are chosen so that the logs show what the seeds describe: a lexical, popularity-biased
production system whose exposures cover a small share of the relevant docs (sample selection bias, seeds 000
and 002), position bias in clicks, noisy clicks that only partly follow relevance (seed 001 section 2.4).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ebr.settings import Section


@dataclass(frozen=True)
class ScaleSizes:
    """Resolved sizes of one simulated world (after per-field overrides)."""

    n_docs: int
    n_users: int
    n_authors: int
    requests_per_day: int
    new_docs_per_day: int
    new_users_per_day: int
    n_intents: int
    n_l1: int
    n_l2_per_l1: int
    n_leaf_per_l2: int
    brands_per_l2: int
    feed_events_per_day: int
    label_queries_per_day: int

    @property
    def n_leaves(self) -> int:
        return self.n_l1 * self.n_l2_per_l1 * self.n_leaf_per_l2

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


SCALES: dict[str, ScaleSizes] = {
    # tests: under 1k docs, a few hundred requests a day
    "tiny": ScaleSizes(
        n_docs=900, n_users=300, n_authors=60, requests_per_day=300, new_docs_per_day=15,
        new_users_per_day=5, n_intents=250, n_l1=3, n_l2_per_l1=2, n_leaf_per_l2=2, brands_per_l2=4,
        feed_events_per_day=300, label_queries_per_day=40,
    ),
    # the daily `make run`: the whole downstream pipeline must fit in ~15 minutes on 2 cores
    "small": ScaleSizes(
        n_docs=20_000, n_users=5_000, n_authors=1_500, requests_per_day=6_000, new_docs_per_day=200,
        new_users_per_day=50, n_intents=5_000, n_l1=8, n_l2_per_l1=5, n_leaf_per_l2=5, brands_per_l2=8,
        feed_events_per_day=6_000, label_queries_per_day=250,
    ),
    "medium": ScaleSizes(
        n_docs=100_000, n_users=30_000, n_authors=8_000, requests_per_day=30_000, new_docs_per_day=1_000,
        new_users_per_day=300, n_intents=25_000, n_l1=12, n_l2_per_l1=6, n_leaf_per_l2=6, brands_per_l2=10,
        feed_events_per_day=30_000, label_queries_per_day=500,
    ),
    # about 1M docs and a few million impressions a day
    "large": ScaleSizes(
        n_docs=1_000_000, n_users=300_000, n_authors=60_000, requests_per_day=100_000,
        new_docs_per_day=10_000, new_users_per_day=3_000, n_intents=120_000, n_l1=16, n_l2_per_l1=8,
        n_leaf_per_l2=8, brands_per_l2=12, feed_events_per_day=200_000, label_queries_per_day=1_000,
    ),
}

_SIZE_FIELDS = tuple(ScaleSizes.__dataclass_fields__)


# Presets of knobs: one kind of logs each, so no default is tuned to one simulator setting (docs/simulator.md).
PROFILES: dict[str, dict[str, object]] = {
    "default": {},
    "marketplace": {
        "position_bias_eta": 1.8, "n_exposed": 30, "n_rank": 40, "n_prerank": 80, "query_synonym_rate": 0.6,
        "title_synonym_rate": 0.45, "synonyms_per_leaf": 3, "brand_null_rate": 0.4, "doc_zipf": 1.4,
        "click_rel_coef": 0.9,
    },
}


class SimulateConfig(Section):
    """Knobs of the search-log simulator; `sizes()` resolves the scale table with the overrides below."""

    # --- run ---------------------------------------------------------------------------------------------
    days: int = Field(8, ge=1, le=366, description="days to simulate; Taobao's dataset is 8 days of logs (seed 001)")
    scale: Literal["tiny", "small", "medium", "large"] = Field("small", description="row of the size table")
    seed: int = Field(0, ge=0, description="master seed; every random stream derives from it")
    lang: Literal["zh", "en"] = Field("zh", description="language of titles and queries")
    start_date: str = Field("2026-11-01", description="first simulated day (UTC), YYYY-MM-DD")
    profile: Literal["default", "marketplace"] = Field(
        "default", description="a kind of logs: `marketplace` is a different click model and catalogue (PROFILES): "
        "stronger position bias, 3x the impressions per request, synonym-heavy queries and titles, more docs "
        "without a brand, a steeper popularity head; a knob set explicitly wins over its profile value",
    )

    # --- size overrides (None = take the scale table's value) ----------------------------------------------
    n_docs: int | None = Field(None, ge=1, description="docs published before the first day")
    n_users: int | None = Field(None, ge=1, description="users registered before the first day")
    n_authors: int | None = Field(None, ge=1, description="authors (sellers, creators)")
    requests_per_day: int | None = Field(None, ge=1, description="search requests per day")
    new_docs_per_day: int | None = Field(None, ge=0, description="docs published during each later day")
    new_users_per_day: int | None = Field(None, ge=0, description="users registering during each later day")
    n_intents: int | None = Field(None, ge=1, description="intent draws behind the query pool (identical draws merge)")
    n_l1: int | None = Field(None, ge=1, description="top-level categories")
    n_l2_per_l1: int | None = Field(None, ge=1, description="second-level categories under each l1")
    n_leaf_per_l2: int | None = Field(None, ge=1, description="leaf categories under each l2")
    brands_per_l2: int | None = Field(None, ge=1, description="brands selling in each l2 category")
    feed_events_per_day: int | None = Field(None, ge=0, description="feed clicks per day (user_events source=feed)")
    label_queries_per_day: int | None = Field(None, ge=0, description="queries a day given complete labels")

    # --- corpus ----------------------------------------------------------------------------------------------
    doc_zipf: float = Field(1.0, gt=0.0, le=3.0, description="exponent of the Zipf-like latent doc popularity")
    popularity_quality_corr: float = Field(0.3, ge=-1.0, le=1.0, description="copula corr. of popularity, quality")
    brand_null_rate: float = Field(0.2, ge=0.0, le=1.0, description="share of docs without a brand")
    attr_fill_rate: float = Field(0.85, ge=0.0, le=1.0, description="chance a doc sets each attribute of its leaf")
    title_attr_rate: float = Field(0.7, ge=0.0, le=1.0, description="chance a set attribute value is in the title")
    title_synonym_rate: float = Field(0.2, ge=0.0, le=1.0, description="chance a title names its leaf by a synonym")
    title_max_modifiers: int = Field(3, ge=0, le=6, description="at most this many modifier words per title")
    body_null_rate: float = Field(0.15, ge=0.0, le=1.0, description="share of docs without a body")
    synonyms_per_leaf: int = Field(2, ge=0, le=4, description="synonyms of each leaf word (query rewrites)")
    doc_change_rate: float = Field(0.003, ge=0.0, le=1.0, description="share of docs changed (title/brand) a day")
    user_change_rate: float = Field(0.002, ge=0.0, le=1.0, description="share of users whose profile changes a day")
    author_change_rate: float = Field(0.01, ge=0.0, le=1.0, description="share of authors gaining followers a day")
    user_pref_concentration: float = Field(
        0.3, gt=0.0, le=100.0, description="Dirichlet concentration of users' l1 preferences (small = focused)"
    )

    # --- queries -------------------------------------------------------------------------------------------
    query_zipf: float = Field(1.0, gt=0.0, le=3.0, description="Zipf exponent of intent frequency (head/tail)")
    query_zipf_offset: float = Field(5.0, ge=0.0, description="rank offset of the intent Zipf (flattens the head)")
    query_surfaces_mean: float = Field(0.7, ge=0.0, le=5.0, description="mean extra surface forms per intent")
    query_brand_rate: float = Field(0.35, ge=0.0, le=1.0, description="share of intents asking for a brand")
    query_attr_probs: tuple[float, float, float] = Field(
        (0.5, 0.35, 0.15), description="probability of asking for 0, 1 and 2 attributes"
    )
    query_synonym_rate: float = Field(0.25, ge=0.0, le=1.0, description="variant forms naming the leaf by synonym")
    query_reorder_rate: float = Field(0.3, ge=0.0, le=1.0, description="variant forms with shuffled word order")
    query_variant_rate: float = Field(0.1, ge=0.0, le=1.0, description="variant forms with a variant-char/typo word")
    query_modifier_rate: float = Field(0.3, ge=0.0, le=1.0, description="variant forms adding a non-core word")
    ambiguous_leaf_share: float = Field(0.1, ge=0.0, le=1.0, description="share of leaves paired by an ambiguous word")
    ambiguous_query_share: float = Field(0.06, ge=0.0, le=1.0, description="share of intents that are ambiguous")
    logged_out_rate: float = Field(0.1, ge=0.0, le=1.0, description="share of requests without a user_id")
    query_pref_share: float = Field(
        0.6, ge=0.0, le=1.0, description="share of requests whose query comes from the user's preferred l1"
    )

    # --- query understanding -------------------------------------------------------------------------------
    qu_error_rate: float = Field(0.1, ge=0.0, le=1.0, description="share of queries with a wrong QU category/brand")
    qu_null_rate: float = Field(0.03, ge=0.0, le=1.0, description="share of queries with no QU category")

    # --- logging policy (today's production system) ----------------------------------------------------------
    n_recall: int = Field(200, ge=1, description="candidates recalled per request (lexical + popular)")
    n_popular_recall: int = Field(50, ge=0, description="of n_recall: popular docs of the QU category")
    n_prerank: int = Field(40, ge=1, description="docs kept by the coarse ranker (logged as impressions)")
    n_rank: int = Field(20, ge=1, description="docs the fine ranker scores (stage ranked or exposed)")
    n_exposed: int = Field(10, ge=1, description="docs shown (stage exposed, positions 1..n)")
    lexical_max_df: float = Field(0.05, gt=0.0, le=1.0, description="terms above this doc frequency do not recall")
    lexical_pool_max: int = Field(
        2000, ge=1, description="postings read per query (rarest term first, popularity-ordered) before scoring"
    )
    coarse_w_lex: float = Field(2.0, description="coarse score weight of the idf-weighted title match")
    coarse_w_pop: float = Field(0.4, description="coarse score weight of log popularity (the popularity bias)")
    coarse_w_pref: float = Field(0.3, description="coarse score weight of the user's l1 preference")
    coarse_noise: float = Field(0.3, ge=0.0, description="std of coarse score noise")
    fine_w_leaf: float = Field(1.0, description="fine score bonus when the doc's leaf equals the QU category")
    fine_w_brand: float = Field(0.8, description="fine score bonus when the doc's brand equals the QU brand")
    fine_w_quality: float = Field(1.0, description="fine score weight of doc quality")
    fine_w_pref: float = Field(0.5, description="fine score weight of the user's l1 preference")
    fine_noise: float = Field(0.3, ge=0.0, description="std of fine score noise")

    # --- click model -------------------------------------------------------------------------------------------
    position_bias_eta: float = Field(1.0, ge=0.0, le=5.0, description="examination prob. = position ** -eta")
    click_bias: float = Field(-2.0, description="click logit intercept")
    click_rel_coef: float = Field(1.2, description="click logit per relevance grade (0/1/2)")
    click_pref_coef: float = Field(0.5, description="click logit per unit of user preference for the doc's l1")
    click_quality_coef: float = Field(1.0, description="click logit per unit of doc quality (centred)")
    click_noise: float = Field(0.5, ge=0.0, description="std of per-impression click logit noise")
    like_bias: float = Field(-2.0, description="like logit intercept, given a click")
    favorite_bias: float = Field(-2.5, description="favorite logit intercept, given a click")
    comment_bias: float = Field(-3.5, description="comment logit intercept, given a click")
    purchase_bias: float = Field(-3.0, description="purchase logit intercept, given a search click")
    engage_quality_coef: float = Field(1.5, description="engagement logit per unit of doc quality (centred)")
    engage_rel_coef: float = Field(0.5, description="engagement logit per relevance grade")
    dwell_median_ms: float = Field(15_000.0, gt=0.0, description="median dwell of a relevance-0 click")
    dwell_sigma: float = Field(0.8, gt=0.0, description="log-normal sigma of dwell time")

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: object) -> object:
        """Fill the knobs the chosen profile sets and the caller did not."""
        if not isinstance(data, dict):
            return data
        name = data.get("profile", "default")
        if name not in PROFILES:
            return data  # the Literal check names the bad value
        return {**PROFILES[name], **data}

    @field_validator("start_date")
    @classmethod
    def _check_date(cls, v: str) -> str:
        try:
            dt.date.fromisoformat(v)
        except ValueError as e:
            raise ValueError(f"start_date must be YYYY-MM-DD, got {v!r}") from e
        if len(v) != 10:
            raise ValueError(f"start_date must be YYYY-MM-DD, got {v!r}")
        return v

    @field_validator("query_attr_probs")
    @classmethod
    def _check_probs(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(p < 0 for p in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"query_attr_probs must be 3 non-negative numbers summing to 1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _check_funnel(self) -> SimulateConfig:
        if not self.n_exposed <= self.n_rank <= self.n_prerank <= self.n_recall:
            raise ValueError(
                "funnel must narrow: n_exposed <= n_rank <= n_prerank <= n_recall, got "
                f"n_exposed={self.n_exposed}, n_rank={self.n_rank}, n_prerank={self.n_prerank}, "
                f"n_recall={self.n_recall}"
            )
        if self.n_popular_recall > self.n_recall:
            raise ValueError(
                f"n_popular_recall ({self.n_popular_recall}) must not exceed n_recall ({self.n_recall})"
            )
        return self

    def sizes(self) -> ScaleSizes:
        """The scale table's row with every non-None size field of this config applied."""
        base = SCALES[self.scale].as_dict()
        for name in _SIZE_FIELDS:
            v = getattr(self, name)
            if v is not None:
                base[name] = v
        return ScaleSizes(**base)

    def days_list(self) -> list[str]:
        """The simulated days as YYYY-MM-DD strings."""
        d0 = dt.date.fromisoformat(self.start_date)
        return [(d0 + dt.timedelta(days=i)).isoformat() for i in range(self.days)]
