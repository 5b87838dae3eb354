"""Request and response models of the HTTP API (strict: no type coercion, unknown fields rejected)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

INT64_MAX = 2**63 - 1
MAX_K = 1000
MAX_FILTER_CHARS = 256
MAX_EVENTS = 100  # events per POST /events
MAX_EVENT_AHEAD_S = 300  # an event may be this far ahead of the server's clock (clock skew), not more
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _well_formed(value: str, field: str) -> str:
    """Reject text that is not encodable as UTF-8 (lone surrogates from JSON escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{field} holds an unpaired surrogate at position {e.start}") from e
    return value


class SearchFilters(_Strict):
    """Structured constraints: a candidate whose field differs is dropped (the relevance-control rule)."""

    category_leaf: str | None = Field(None, min_length=1, max_length=MAX_FILTER_CHARS)
    brand: str | None = Field(None, min_length=1, max_length=MAX_FILTER_CHARS)

    @field_validator("category_leaf", "brand")
    @classmethod
    def _text(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _well_formed(v, info.field_name or "filter")


class SearchRequest(_Strict):
    """POST /search body."""

    query: str = Field(description="the query text; blank is rejected, longer than EBR_MAX_QUERY_CHARS too")
    user_id: int | None = Field(
        None, ge=1, le=INT64_MAX, description="logged-in user id (1..2^63-1); null or absent = logged out"
    )
    k: int = Field(100, ge=1, le=MAX_K, description="number of docs to return")
    radius: float | None = Field(
        None, ge=-1.0, le=1.0, description="keep only docs with cosine score >= radius (at most k of them)"
    )
    filters: SearchFilters | None = None
    relevance_control: bool = Field(
        True, description="drop docs whose category/brand contradict the query-understanding fields"
    )
    rerank: bool = Field(False, description="re-score the candidates with the bundle's coarse ranker")
    candidates: int | None = Field(
        None, ge=1, le=MAX_K, description="the pre-rank funnel of a re-rank request: docs retrieved and scored by "
        "the coarse ranker before the best k are returned (at least k); null = the server's EBR_FUNNEL_CANDIDATES")
    retrieval: Literal["auto", "hybrid", "ann", "lexical"] | None = Field(
        None, description="channels: `ann` (embedding), `lexical` (BM25 over titles), `hybrid` (both, merged) or "
        "`auto` (query selection picks); null = the server's EBR_RETRIEVAL")
    fusion: Literal["rrf", "weighted"] | None = Field(
        None, description="how hybrid lists merge: reciprocal-rank or weighted normalized-score fusion; null = "
        "the server's EBR_FUSION")
    lexical_weight: float | None = Field(
        None, ge=0.0, le=100.0, description="weight of the lexical channel in the merge (embedding = 1); null = "
        "the server's EBR_LEXICAL_WEIGHT")
    relax: bool | None = Field(
        None, description="when relevance control leaves fewer than k docs, fill the rest from retrieval without the "
        "query-understanding constraint (explicit `filters` still apply), each such item marked `relaxed`; null = "
        "the server's EBR_RELAX")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str, info: ValidationInfo) -> str:
        return _query_text(v, info)


def _query_text(v: str, info: ValidationInfo) -> str:
    """A query: encodable, not blank, at most the server's `max_query_chars` (validation context)."""
    _well_formed(v, "query")
    if not v.strip():
        raise ValueError("query must not be blank")
    limit = (info.context or {}).get("max_query_chars")
    if limit is not None and len(v) > limit:
        raise ValueError(f"query has {len(v)} characters, more than the limit of {limit}")
    return v


class Event(_Strict):
    """One user event: a search (its query) or a click on a doc (its doc_id; the query it came from optional)."""

    type: Literal["search", "click"] = Field(description="`search` updates the user's recent queries, `click` the "
                                             "real-time behaviour sequence")
    user_id: int = Field(ge=1, le=INT64_MAX, description="the logged-in user (1..2^63-1)")
    query: str | None = Field(None, validate_default=True, description="the query: required for a search, "
                              "optional for a click; blank or longer than EBR_MAX_QUERY_CHARS is rejected")
    doc_id: int | None = Field(None, ge=0, le=INT64_MAX, validate_default=True,
                               description="the clicked doc: required for a click, absent for a search")
    event_timestamp: AwareDatetime = Field(description="when it happened, ISO-8601 with a UTC offset; at most "
                                           f"{MAX_EVENT_AHEAD_S} s ahead of the server's clock")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            if info.data.get("type") == "search":
                raise ValueError("a search event needs its query")
            return None
        return _query_text(v, info)

    @field_validator("doc_id")
    @classmethod
    def _doc(cls, v: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if kind == "click" and v is None:
            raise ValueError("a click event needs the clicked doc_id")
        if kind == "search" and v is not None:
            raise ValueError("a search event carries no doc_id")
        return v

    @field_validator("event_timestamp")
    @classmethod
    def _when(cls, v: datetime) -> datetime:
        if v < MIN_EVENT_TIME:
            raise ValueError(f"{v.isoformat()} is before {MIN_EVENT_TIME.isoformat()}")
        ahead = v.timestamp() - time.time()
        if ahead > MAX_EVENT_AHEAD_S:
            raise ValueError(f"{v.isoformat()} is {ahead:.0f} s ahead of the server's clock (at most "
                             f"{MAX_EVENT_AHEAD_S} s allowed)")
        return v.astimezone(UTC)


class EventsRequest(_Strict):
    """POST /events body: a batch of events, all pushed or (on any invalid event) none."""

    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS,
                                description=f"1..{MAX_EVENTS} events, any users, any order")


class EventsResponse(BaseModel):
    """POST /events answer: what happened to the batch's events."""

    received: int = Field(description="events in the batch")
    applied: int = Field(description="events folded into their users' real-time features and pushed")
    stale: int = Field(description="events older than their user's current row, not applied (its sequence is "
                       "newest first)")
    ignored: int = Field(description="clicks when clicks are not a sequence event type of the feature build")
    users: int = Field(description="users whose real-time rows were pushed")


class SearchItem(BaseModel):
    """One retrieved doc: its retrieval score (cosine from the embedding channel alone, BM25 from the lexical
    channel alone, the fused score when merged), the channels that returned it and, when re-ranked, the coarse
    ranker's score."""

    doc_id: int
    score: float
    channels: list[Literal["ann", "lexical"]] = Field(default_factory=list)
    coarse_score: float | None = None
    relaxed: bool = Field(False, description="filled in without the query-understanding constraint (`relax`)")


class SearchResponse(BaseModel):
    """POST /search answer."""

    items: list[SearchItem]
    bundle_version: str
    personalized: bool = Field(description="the user's features from the online store shaped this answer: read by "
                                          "a query tower that takes them, or by the coarse ranker's rerank")
    degraded: str | None = Field(
        None, description="why online features were not used when that is a fault, not an unknown user: "
        "`features_unavailable` (store down or failing), `features_timeout` (store did not answer within "
        "EBR_FEATURE_TIMEOUT_S), `bad_features` (stored values rejected), `no_feature_store` (none configured); "
        "null otherwise")
    reranked: bool = Field(description="items are ordered by the coarse ranker's score")
    retrieval: Literal["ann", "lexical", "hybrid"] = Field("ann", description="the channels that ran")
    fusion: Literal["rrf", "weighted"] | None = Field(None, description="the merge rule when both channels ran")
    took_ms: float = Field(description="server time of the search path (features to re-score)")


class FieldError(BaseModel):
    """One problem with the input: the field (dotted path, `body` for the whole body) and what is wrong."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a one-line summary naming the field(s), and the list of problems."""

    error: str
    errors: list[FieldError] = Field(default_factory=list)


class ReloadResponse(BaseModel):
    """POST /admin/reload answer."""

    version: str
    previous_version: str | None
    changed: bool


class ReadyResponse(BaseModel):
    """GET /readyz answer."""

    ready: bool
    bundle_version: str | None
    detail: str
