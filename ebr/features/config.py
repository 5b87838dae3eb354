"""Configuration of the feature step: sequence lengths and windows, snapshot cadence, statistics, retrieval."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ebr.contract.schema import EVENT_TYPES
from ebr.settings import Section

OnMissing = Literal["raise", "null", "drop"]
OnlineStoreType = Literal["sqlite", "redis"]
OfflineEngine = Literal["asof", "file"]
OFFLINE_ENGINES: tuple[str, ...] = ("asof", "file")


class FeaturesConfig(Section):
    """Knobs of `build_features` and of historical retrieval; names and windows of features are fixed."""

    project: str = Field("ebr", pattern=r"^[a-z][a-z0-9_]*$", description="Feast project name")
    # --- behaviour sequences (seed 001, Taobao MGDSPR: real-time, short-term 10 days, long-term 1 month) ----
    realtime_max_len: int = Field(50, ge=1, le=1000, description="real-time sequence length (MGDSPR: 50)")
    short_term_max_len: int = Field(100, ge=1, le=1000, description="short-term sequence length (MGDSPR: 100)")
    long_term_max_len: int = Field(100, ge=1, le=1000, description="long-term sequence length (MGDSPR: 100)")
    short_term_days: int = Field(10, ge=1, le=365, description="short-term window, days (seed 001: 10 days)")
    long_term_days: int = Field(30, ge=2, le=365, description="long-term window, days (seed 001: one month)")
    sequence_event_types: tuple[str, ...] = Field(
        ("click", "like", "favorite", "comment", "purchase"),
        min_length=1,
        description="user_events types kept in sequences (seed 001: clicks, purchases, favorites)",
    )
    realtime_bucket_seconds: int = Field(
        0, ge=0, le=86_400,
        description="0: a real-time/recent-query row per event (freshest, most rows); N>0: one row per user per "
        "N-second bucket, visible at the bucket's end (3600 = hourly: at most 24 rows/user/day, up to 1 h stale)",
    )  # fmt: skip
    recent_queries_max_len: int = Field(20, ge=1, le=200, description="distinct recent queries kept (newest first)")
    recent_queries_days: int = Field(30, ge=1, le=365, description="recent queries look back this many days")
    # --- statistics ------------------------------------------------------------------------------------------
    ctr_prior: float = Field(
        0.05, ge=0.0, le=1.0, description="prior CTR of the smoothed CTR (clicks + a*p) / (exposures + a)"
    )
    ctr_prior_weight: float = Field(20.0, ge=0.0, description="a: pseudo-exposures of the CTR prior")
    count_buckets: int = Field(16, ge=2, le=64, description="log2 buckets of counts: min(floor(log2(1+x)), n-1)")
    ctr_buckets: int = Field(20, ge=2, le=1000, description="linear buckets of CTRs over [0, 1]")
    snapshot_ttl_days: int = Field(
        2, ge=1, le=30, description="daily-snapshot views older than this count as missing (a day never built)"
    )
    # --- build -------------------------------------------------------------------------------------------------
    backfill: bool = Field(True, description="build missing earlier days' partitions before day D (in order)")
    materialize: bool = Field(True, description="load the online store after the build")
    online_write_batch_size: int = Field(
        10_000, ge=1,
        description="rows converted to protos and written per online-store batch while materializing (Feast's "
        "default converts a whole view at once: at `large` build_features grew past 23 GB in materialization; "
        "docs/features.md)",
    )
    # --- online store ------------------------------------------------------------------------------------------
    online_store: OnlineStoreType = Field(
        "sqlite",
        description="online store of the features directory: sqlite (online_store.db in the directory) or "
        "redis (the server at redis_connection; needs the `redis` package: pip install 'ebr[prod]')",
    )
    redis_connection: str = Field(
        "localhost:6379",
        min_length=1,
        description="Feast Redis connection string, host:port[,db=N,password=...,ssl=true] (online_store: redis); "
        "${ENV} placeholders are kept in store.json and expanded when the store is opened",
    )
    # --- retrieval ---------------------------------------------------------------------------------------------
    offline_engine: OfflineEngine = Field(
        "asof",
        description="historical (point-in-time) join of training and evaluation rows: asof (DuckDB ASOF JOIN over "
        "the Feast views' tables, same rows as Feast's file store, fastest on one machine: bench/results/"
        "features.md) or file (Feast's file offline store on Dask). Feast 0.67's DuckDB offline store cannot read "
        "directory-partitioned file sources (docs/features.md). Recorded in store.json so every reader of the "
        "directory joins the same way",
    )
    offline_memory_limit: str = Field(
        "2GB",
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit in the asof engine's joins and the online-store load (past it DuckDB "
        "spills to a temporary directory): without one DuckDB takes up to 80% of the machine's memory, and the "
        "doc views' join of a `large` day's ranking rows added ~5.7 GB to build_samples (docs/features.md)",
    )
    on_missing: OnMissing = Field(
        "raise",
        description="entity rows the file offline store drops (features outside TTL or all in the future): "
        "raise, keep them with null features (null), or drop them (drop); all three report count and examples",
    )

    @field_validator("sequence_event_types")
    @classmethod
    def _check_event_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in v if e not in EVENT_TYPES]
        if bad:
            raise ValueError(f"sequence_event_types: {bad} are not user_events types {list(EVENT_TYPES)}")
        return v

    @model_validator(mode="after")
    def _check_windows(self) -> FeaturesConfig:
        if self.short_term_days >= self.long_term_days:
            raise ValueError(
                f"short_term_days ({self.short_term_days}) must be < long_term_days ({self.long_term_days})"
            )
        return self

    @property
    def lookback_days(self) -> int:
        """Days of facts before a boundary that any feature reads."""
        return max(self.long_term_days, self.recent_queries_days, 30)
