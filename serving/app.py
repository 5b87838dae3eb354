"""The FastAPI application: routes, error mapping, and the runtime (bundle manager, feature source, engine)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.admission import Overloaded, SearchAdmission
from serving.batching import TowerBatcher
from serving.bundle_manager import BundleManager, NoBundle
from serving.errors import InputError, from_validation
from serving.events import EventPusher, PushFailed
from serving.feature_source import MAX_PENDING_LOOKUPS, FeatureCache, OnlineFeatureSource
from serving.loaded_bundle import BundleRefused
from serving.metrics import ServerMetrics
from serving.middleware import BodyLimit, RequestMetrics
from serving.schema import (
    MAX_EVENTS,
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    ReadyResponse,
    ReloadResponse,
    SearchRequest,
    SearchResponse,
)
from serving.search import NotReady, RetrievalDefaults, SearchEngine, SearchResult
from serving.settings import ServerSettings

BodyT = TypeVar("BodyT", bound=BaseModel)

log = logging.getLogger(__name__)


class ServerRuntime:
    """Everything behind the routes; `start` begins loading (watcher thread), `stop` ends the watcher."""

    def __init__(self, settings: ServerSettings, features: OnlineFeatureSource | None = None) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        if features is None and settings.feature_repo is not None:
            features = OnlineFeatureSource(settings.feature_repo, settings.feature_retry_s,
                                           timeout_s=settings.feature_timeout_s,
                                           trip_after=settings.feature_trip_after,
                                           max_pending=max(MAX_PENDING_LOOKUPS, 2 * settings.search_workers),
                                           cache=FeatureCache(settings.feature_cache_ttl_s,
                                                              settings.feature_cache_size))
        self.features = features
        self.events = EventPusher(features) if features is not None else None  # POST /events
        self.manager = BundleManager(
            settings.bundles_dir,
            warm=lambda bundle: self.engine.warm(bundle),
            metrics=self.metrics,
            interval_s=settings.watch_interval_s,
            before_first_load=features.open if features is not None else None,
        )
        self.batcher = TowerBatcher(settings.max_batch, settings.batch_wait_ms / 1000, self.metrics)
        retrieval = RetrievalDefaults(settings.retrieval, settings.fusion, settings.lexical_weight,
                                      relax=settings.relax)
        self.engine = SearchEngine(lambda: self.manager.current, features, self.metrics, batcher=self.batcher,
                                   retrieval=retrieval, funnel_candidates=settings.funnel_candidates)
        self.admission = SearchAdmission(settings.search_workers, settings.max_queue, self.metrics)

    def set_threads(self) -> None:
        """Compute threads of torch, Faiss and the BLAS libraries (numpy's, Faiss'): one request at a time gains
        little from more on small inputs, and an idle BLAS thread spins: with BLAS on every core, the server
        burned ~2x the CPU of its requests (bench/results/serve.md)."""
        import faiss
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(self.settings.compute_threads)
        faiss.omp_set_num_threads(self.settings.compute_threads)
        threadpool_limits(self.settings.compute_threads, user_api="blas")  # process-wide, kept after the call

    def start(self) -> None:
        self.set_threads()
        if self.features is None:
            log.warning("no feature store configured (--feature-repo / EBR_FEATURE_REPO): requests are unpersonalized")
        self.manager.start()

    def stop(self) -> None:
        self.manager.stop()
        self.admission.close()
        self.metrics.worker_exit()


ADMIN_WINDOW_S = 60.0


async def _json_body(request: Request, model: type[BodyT], max_query_chars: int) -> BodyT:
    """The request's JSON body validated as `model`, or an InputError naming what is wrong: a content type that
    is not JSON (415), bytes that are not UTF-8 (400), a field the model refuses (422)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise InputError.one(415, "content-type", f"{ctype!r} is not JSON: send Content-Type: application/json")
    body = await request.body()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError.one(400, "body", f"not valid UTF-8 (byte {e.start})") from e
    try:
        return model.model_validate_json(body, context={"max_query_chars": max_query_chars})
    except ValidationError as e:
        raise from_validation(e) from e


def _error(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = InputError.one(status, field, message).body()
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _payload(result: SearchResult, took_s: float) -> dict[str, Any]:
    items = []
    relaxed = result.relaxed or [False] * len(result.items)
    for (d, s, c), channels, loose in zip(result.items, result.channels or [()] * len(result.items), relaxed,
                                          strict=True):
        item: dict[str, Any] = {"doc_id": d, "score": s, "channels": list(channels)}
        if c is not None:
            item["coarse_score"] = c
        if loose:
            item["relaxed"] = True
        items.append(item)
    return {"items": items, "bundle_version": result.version, "personalized": result.personalized,
            "degraded": DEGRADED.get(result.fallback),
            "reranked": result.reranked, "retrieval": result.retrieval, "fusion": result.fusion,
            "took_ms": round(took_s * 1000, 3)}


# why an answer was served without online features (an unknown user is not degraded: `degraded` is null)
DEGRADED = {"unavailable": "features_unavailable", "error": "features_unavailable", "timeout": "features_timeout",
            "bad_features": "bad_features", "no_feature_store": "no_feature_store"}


def _batch_size(body: bytes) -> int:
    """Events in a refused /events body: the length of its `events` list when it has one, else 1 (the body)."""
    try:
        events = json.loads(body).get("events")
    except (ValueError, AttributeError, RecursionError):
        return 1
    return len(events) if isinstance(events, list) and events else 1


def _server_timing(result: SearchResult, total_s: float) -> str:
    parts = [f"{name};dur={seconds * 1000:.3f}" for name, seconds in result.stages.items()]
    return ", ".join([*parts, f"total;dur={total_s * 1000:.3f}"])


def create_app(settings: ServerSettings, runtime: ServerRuntime | None = None, start: bool = True) -> FastAPI:
    """The ASGI app. With `start`, the lifespan starts the bundle watcher; `app.state.runtime` is the runtime."""
    rt = runtime or ServerRuntime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start:
            rt.start()
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(
        title="ebr query-tower server",
        version="1",
        description="query + user -> top-K docs: online features, query tower, Faiss, relevance control, "
        "coarse re-score.",
        lifespan=lifespan,
        docs_url="/docs" if settings.enable_docs else None,
        redoc_url="/redoc" if settings.enable_docs else None,
    )
    app.state.runtime = rt
    private = [(str(form), label) for path, label in ((settings.bundles_dir, "<bundles>"),
                                                      (settings.feature_repo, "<feature-repo>")) if path is not None
               for form in {path, path.resolve()}]
    private.sort(key=lambda pair: len(pair[0]), reverse=True)  # the longest first: no partial replacement

    def public(text: str) -> str:
        """A message for a response body: the server's own paths become placeholders (the log keeps them)."""
        for path, label in private:
            text = text.replace(path, label)
        return text

    admin_failures: dict[str, list[float]] = {}  # client address -> times of its failed admin calls
    body_schema = {"$ref": "#/components/schemas/SearchRequest"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "path", str(exc.detail), headers=getattr(exc, "headers", None))  # 405: Allow

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", exc)
        return JSONResponse(ErrorResponse(error="internal error").model_dump(), status_code=500)

    @app.post(
        "/search",
        response_model=SearchResponse,
        responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                   422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
        summary="top-K docs for a query (and user)",
    )
    async def search(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            req = await _json_body(request, SearchRequest, settings.max_query_chars)
            result = await rt.admission.run(lambda: rt.engine.search(req))
        except InputError as e:
            return JSONResponse(e.body().model_dump(), status_code=e.status)
        except NotReady as e:
            return _error(503, "bundle", public(str(e)))
        except Overloaded as e:
            return _error(503, "server", str(e), headers={"Retry-After": str(settings.retry_after_s)})
        took = result.seconds
        data = json.dumps(_payload(result, took)).encode()
        total = time.perf_counter() - t0
        return Response(data, media_type="application/json", headers={"Server-Timing": _server_timing(result, total)})

    @app.post(
        "/events",
        response_model=EventsResponse,
        responses={400: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                   415: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/EventsRequest"}}}}},
        summary=f"search and click events of users (at most {MAX_EVENTS} per call), folded into their real-time "
        "features: the next search of the user sees them",
    )
    async def events(request: Request) -> JSONResponse:
        try:
            req = await _json_body(request, EventsRequest, settings.max_query_chars)
        except InputError as e:
            if e.status != 415:  # a body of another type was never read as events
                rt.metrics.events.labels("rejected").inc(_batch_size(await request.body()))
            return JSONResponse(e.body().model_dump(), status_code=e.status)
        if rt.events is None:
            rt.metrics.events.labels("failed").inc(len(req.events))
            return _error(409, "feature_store", "this server has no feature store (--feature-repo): events cannot "
                          "be pushed")
        try:
            outcome = await rt.events.push(req)
        except PushFailed as e:
            rt.metrics.events.labels("failed").inc(len(req.events))
            return _error(503, "feature_store", public(str(e)),
                          headers={"Retry-After": str(settings.retry_after_s)} if e.retry else None)
        for label, n in (("pushed", outcome.applied), ("stale", outcome.stale), ("ignored", outcome.ignored)):
            rt.metrics.events.labels(label).inc(n)
        body_out = EventsResponse(received=outcome.received, applied=outcome.applied, stale=outcome.stale,
                                  ignored=outcome.ignored, users=outcome.users)
        return JSONResponse(body_out.model_dump())

    @app.api_route("/healthz", methods=["GET", "HEAD"], summary="the process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"], response_model=ReadyResponse,
                   responses={503: {"model": ReadyResponse}}, summary="a bundle is loaded and warmed")
    async def readyz() -> JSONResponse:
        bundle = rt.manager.current
        if bundle is None:
            detail = public(rt.manager.last_error or "loading the first bundle")
            return JSONResponse(ReadyResponse(ready=False, bundle_version=None, detail=detail).model_dump(), 503)
        detail = f"{bundle.ntotal} docs" + (f"; last reload refused: {rt.manager.last_error}"
                                             if rt.manager.last_error else "")
        if rt.features is None:
            detail += "; no feature store: unpersonalized"
        elif not rt.features.healthy:  # degraded, not down: answers stay unpersonalized until it is back
            detail += "; feature store unavailable, serving unpersonalized (retrying)"
        detail = public(detail)
        return JSONResponse(ReadyResponse(ready=True, bundle_version=bundle.version, detail=detail).model_dump())

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        if rt.features is not None:  # derived when scraped: the feature source itself knows whether it is healthy
            rt.metrics.feature_store_up.set(1 if rt.features.healthy else 0)
            cache = rt.features.cache
            rt.metrics.feature_cache.labels("hit").set(cache.hits)
            rt.metrics.feature_cache.labels("miss").set(cache.misses)
        return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 409: {"model": ErrorResponse},
                   429: {"model": ErrorResponse}},
        summary="load the bundle CURRENT names now (Authorization: Bearer <EBR_ADMIN_TOKEN>)",
    )
    async def admin_reload(request: Request) -> JSONResponse:
        token = settings.admin_token
        if not token:
            return _error(403, "authorization", "admin API disabled: no EBR_ADMIN_TOKEN is configured")
        client = request.client.host if request.client else "unknown"
        now = time.monotonic()
        recent = [t for t in admin_failures.pop(client, []) if now - t < ADMIN_WINDOW_S]
        if recent:  # only clients with failures inside the window keep an entry
            admin_failures[client] = recent
        if len(recent) >= settings.admin_max_failures:  # guessing tokens costs a minute per few tries
            wait = max(1, int(ADMIN_WINDOW_S - (now - recent[0])) + 1)
            return _error(429, "authorization", f"too many failed admin calls; retry in {wait} s",
                          headers={"Retry-After": str(wait)})
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            admin_failures[client] = [*recent, now]
            return _error(401, "authorization", "missing bearer token (Authorization: Bearer <token>)",
                          headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            admin_failures[client] = [*recent, now]
            return _error(403, "authorization", "invalid admin token")
        try:
            outcome = await anyio.to_thread.run_sync(lambda: rt.manager.reload(force=True))
        except (NoBundle, BundleRefused) as e:
            return _error(409, "bundle", public(str(e)))
        body = ReloadResponse(version=outcome.version, previous_version=outcome.previous, changed=outcome.changed)
        return JSONResponse(body.model_dump())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (SearchRequest, EventsRequest):
                request_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(request_schema.pop("$defs", {}))
                components[model.__name__] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(RequestMetrics, metrics=rt.metrics)
    return app


def app_from_env() -> FastAPI:
    """The app of one `ebr serve --workers N` worker process, configured from the EBR_* environment the parent
    process resolved and exported (uvicorn imports this factory in each worker)."""
    settings = ServerSettings.resolve({})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(settings)
