"""Server settings: command-line arguments first, then the `EBR_*` environment variables the Helm chart sets."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebr.hybrid.defaults import DEFAULT_FUSION, DEFAULT_RETRIEVAL
from ebr.hybrid.fusion import FUSION_METHODS

RETRIEVAL_MODES = ("auto", "hybrid", "ann", "lexical")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# setting name -> (environment variable, default)
ENV: dict[str, tuple[str, Any]] = {
    "bundles_dir": ("EBR_BUNDLES_DIR", None),
    "feature_repo": ("EBR_FEATURE_REPO", None),
    "host": ("EBR_HOST", "127.0.0.1"),
    "port": ("EBR_PORT", 8080),
    "admin_token": ("EBR_ADMIN_TOKEN", None),
    "log_level": ("EBR_LOG_LEVEL", "INFO"),
    "watch_interval_s": ("EBR_WATCH_INTERVAL_S", 5.0),
    "max_query_chars": ("EBR_MAX_QUERY_CHARS", 256),
    "max_body_bytes": ("EBR_MAX_BODY_BYTES", 65536),
    "compute_threads": ("EBR_COMPUTE_THREADS", 1),
    "feature_retry_s": ("EBR_FEATURE_RETRY_S", 5.0),
    "feature_trip_after": ("EBR_FEATURE_TRIP_AFTER", 3),
    "search_workers": ("EBR_SEARCH_WORKERS", 1),
    "max_queue": ("EBR_MAX_QUEUE", 32),
    "workers": ("EBR_WORKERS", 1),
    "max_batch": ("EBR_MAX_BATCH", 16),
    "batch_wait_ms": ("EBR_BATCH_WAIT_MS", 2.0),
    "funnel_candidates": ("EBR_FUNNEL_CANDIDATES", 500),
    "retrieval": ("EBR_RETRIEVAL", DEFAULT_RETRIEVAL),
    "fusion": ("EBR_FUSION", DEFAULT_FUSION),
    "lexical_weight": ("EBR_LEXICAL_WEIGHT", None),  # unset: the bundle's tuned weight, else the default
    "relax": ("EBR_RELAX", False),
    "retry_after_s": ("EBR_RETRY_AFTER_S", 1),
    "body_timeout_s": ("EBR_BODY_TIMEOUT_S", 10.0),
    "header_timeout_s": ("EBR_HEADER_TIMEOUT_S", 10.0),
    "feature_timeout_s": ("EBR_FEATURE_TIMEOUT_S", 0.1),
    "feature_cache_ttl_s": ("EBR_FEATURE_CACHE_TTL_S", 60.0),
    "feature_cache_size": ("EBR_FEATURE_CACHE_SIZE", 100_000),
    "max_connections": ("EBR_MAX_CONNECTIONS", 1024),
    "admin_max_failures": ("EBR_ADMIN_MAX_FAILURES", 5),
    "enable_docs": ("EBR_ENABLE_DOCS", True),
}


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server is configured with; `resolve` builds it from arguments and environment."""

    bundles_dir: Path
    feature_repo: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    log_level: str = "INFO"
    watch_interval_s: float = 5.0
    max_query_chars: int = 256
    max_body_bytes: int = 65536
    compute_threads: int = 1
    feature_retry_s: float = 5.0
    feature_trip_after: int = 3
    search_workers: int = 1  # compute threads serving searches; >1 needs a thread-safe feature store (Redis)
    max_queue: int = 32  # searches that may wait for a worker; beyond it 503 + Retry-After
    workers: int = 1  # server processes (`ebr serve --workers`); metrics aggregate over them
    max_batch: int = 16  # requests per query-tower forward pass + Faiss search (1: no micro-batching)
    batch_wait_ms: float = 2.0  # how long a batch waits for requests already on their way (never for new ones)
    funnel_candidates: int = 500  # a re-rank request retrieves this many, coarse-ranks them, returns the top k
    retrieval: str = DEFAULT_RETRIEVAL  # channels when a request does not say: auto, hybrid, ann, lexical
    fusion: str = DEFAULT_FUSION  # merge of the two channels: rrf or weighted
    # lexical weight in the merge (embedding: 1); None: the weight the bundle's evaluation chose (its manifest's
    # info.retrieval), else DEFAULT_LEXICAL_WEIGHT
    lexical_weight: float | None = None
    relax: bool = False  # fill short relevance-controlled answers without the query-understanding constraint
    retry_after_s: int = 1
    body_timeout_s: float = 10.0  # a request body must be complete within this long, else 408 and close
    header_timeout_s: float = 10.0  # request line + headers must be complete within this long, else closed
    feature_cache_ttl_s: float = 60.0  # a user's or query's features are reused this long (0: no cache)
    feature_cache_size: int = 100_000  # users + queries kept in the feature cache
    feature_timeout_s: float = 0.1  # an online-store lookup taking longer is abandoned: unpersonalized answer
    max_connections: int = 1024  # uvicorn's limit_concurrency: beyond it new connections get 503
    admin_max_failures: int = 5  # failed /admin calls per client per minute before 429
    enable_docs: bool = True  # the interactive /docs and /redoc pages (off in the chart's defaults)

    def __post_init__(self) -> None:
        if self.admin_token is not None:
            token = self.admin_token.strip()  # a Secret made with `echo` ends in a newline that no header carries
            if not token or any(ch.isspace() for ch in token):
                raise ValueError("admin token (EBR_ADMIN_TOKEN) must be one word without spaces, got "
                                 f"{len(self.admin_token)} characters{' of whitespace' if not token else ''}")
            object.__setattr__(self, "admin_token", token)
        checks = [
            (1 <= self.port <= 65535, f"port must be in 1..65535, got {self.port}"),
            (self.log_level in LOG_LEVELS, f"log level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"),
            (self.watch_interval_s > 0, f"watch interval must be > 0 seconds, got {self.watch_interval_s}"),
            (self.max_query_chars >= 1, f"max query chars must be >= 1, got {self.max_query_chars}"),
            (self.max_body_bytes >= 256, f"max body bytes must be >= 256, got {self.max_body_bytes}"),
            (self.compute_threads >= 1, f"compute threads must be >= 1, got {self.compute_threads}"),
            (self.feature_retry_s >= 0, f"feature retry must be >= 0 seconds, got {self.feature_retry_s}"),
            (self.feature_trip_after >= 1,
             f"feature trip-after (EBR_FEATURE_TRIP_AFTER) must be >= 1 failures, got {self.feature_trip_after}"),
            (self.search_workers >= 1, f"search workers must be >= 1, got {self.search_workers}"),
            (self.max_queue >= 0, f"max queue must be >= 0, got {self.max_queue}"),
            (1 <= self.workers <= 64, f"workers (EBR_WORKERS) must be in 1..64, got {self.workers}"),
            (0 <= self.feature_cache_ttl_s <= 86_400,
             f"feature cache ttl (EBR_FEATURE_CACHE_TTL_S) must be in 0..86400 s, got {self.feature_cache_ttl_s}"),
            (self.feature_cache_size >= 0,
             f"feature cache size (EBR_FEATURE_CACHE_SIZE) must be >= 0, got {self.feature_cache_size}"),
            (self.max_batch >= 1, f"max batch (EBR_MAX_BATCH) must be >= 1, got {self.max_batch}"),
            (0 <= self.batch_wait_ms <= 100,
             f"batch wait (EBR_BATCH_WAIT_MS) must be in 0..100 ms, got {self.batch_wait_ms}"),
            (1 <= self.funnel_candidates <= 1000,
             f"funnel candidates (EBR_FUNNEL_CANDIDATES) must be in 1..1000, got {self.funnel_candidates}"),
            (self.retrieval in RETRIEVAL_MODES,
             f"retrieval (EBR_RETRIEVAL) must be one of {', '.join(RETRIEVAL_MODES)}, got {self.retrieval!r}"),
            (self.fusion in FUSION_METHODS,
             f"fusion (EBR_FUSION) must be one of {', '.join(FUSION_METHODS)}, got {self.fusion!r}"),
            (self.lexical_weight is None or 0 <= self.lexical_weight <= 100,
             f"lexical weight (EBR_LEXICAL_WEIGHT) must be in 0..100, got {self.lexical_weight}"),
            (self.retry_after_s >= 0, f"retry after must be >= 0 seconds, got {self.retry_after_s}"),
            (self.body_timeout_s > 0, f"body timeout must be > 0 seconds, got {self.body_timeout_s}"),
            (0 < self.header_timeout_s < math.inf,
             f"header timeout (EBR_HEADER_TIMEOUT_S) must be > 0 seconds, got {self.header_timeout_s}"),
            (0 < self.feature_timeout_s < math.inf,
             f"feature timeout (EBR_FEATURE_TIMEOUT_S) must be > 0 seconds, got {self.feature_timeout_s}"),
            (self.max_connections >= 8, f"max connections must be >= 8, got {self.max_connections}"),
            (self.admin_max_failures >= 1, f"admin max failures must be >= 1, got {self.admin_max_failures}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def resolve(cls, given: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ServerSettings:
        """Each setting from `given` (None = not given), else its environment variable, else the default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, (var, default) in ENV.items():
            value = given.get(name)
            if value is None and env.get(var, "") != "":
                value = _parse(name, var, env[var])
            values[name] = default if value is None else value
        if values["bundles_dir"] is None:
            raise ValueError("the bundles directory is required: pass --bundles or set EBR_BUNDLES_DIR")
        values["bundles_dir"] = Path(values["bundles_dir"])
        if values["feature_repo"] is not None:
            values["feature_repo"] = Path(values["feature_repo"])
        values["log_level"] = str(values["log_level"]).upper()
        return cls(**values)


def to_environment(settings: ServerSettings) -> dict[str, str]:
    """The EBR_* variables that `resolve` turns back into `settings` (how worker processes get them)."""
    out = {}
    for name, (var, _) in ENV.items():
        value = getattr(settings, name)
        out[var] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return out


FLOAT_SETTINGS = frozenset({"lexical_weight"})  # settings whose default is None but whose values are numbers


def _parse(name: str, var: str, raw: str) -> Any:
    """An environment value converted to the type of the setting's default; the error names the variable."""
    default = ENV[name][1]
    if name in FLOAT_SETTINGS:
        default = 0.0
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as e:
        raise ValueError(f"{var}={raw!r} is not a valid {type(default).__name__}") from e
    return raw
