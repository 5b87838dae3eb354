"""`ebr serve`: the query-tower server on uvicorn (uvloop, httptools), registered through `ebr.commands`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

    from serving.settings import ServerSettings

GRACEFUL_SHUTDOWN_S = 20  # after SIGTERM, answers in progress get this long before their tasks are cancelled


def uvicorn_config(app: Any, settings: ServerSettings) -> uvicorn.Config:
    """The uvicorn configuration of `ebr serve` (uvloop; httptools with the header read timeout)."""
    import uvicorn

    from serving.http_protocol import with_header_timeout

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",  # with the header read timeout, below
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        limit_concurrency=settings.max_connections,  # a connection cap: slow or idle clients cannot pile up
        timeout_keep_alive=5,  # idle keep-alive connections are closed after 5 s
    )
    return with_header_timeout(config, settings.header_timeout_s)  # closes slow-header (slowloris) connections


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handler: before the server runs (nothing to drain) and when uvicorn re-raises
    it after the drain; either way a requested stop, so the exit status is 0."""
    raise SystemExit(0)


def _metrics_dir() -> tuple[Path, bool]:
    """The directory the worker processes share their metrics through (EBR_METRICS_MULTIPROC_DIR or a new temp
    dir), emptied of an earlier run's files, and whether this process created it."""
    from serving.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="ebr-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    for var in (MULTIPROC_ENV, "PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        os.environ[var] = str(path)  # before any worker imports prometheus_client (or Feast, which sets its own)
    return path, not given


def _serve_workers(settings: ServerSettings) -> None:
    """`settings.workers` uvicorn worker processes on one socket, each building the app from the environment."""
    from uvicorn.supervisors import Multiprocess

    from serving.settings import to_environment

    os.environ.update(to_environment(settings))
    path, created = _metrics_dir()
    config = uvicorn_config("serving.app:app_from_env", settings)
    config.factory, config.workers = True, settings.workers
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        if created:
            shutil.rmtree(path, ignore_errors=True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import create_app
    from serving.settings import ServerSettings

    settings = ServerSettings.resolve({
        "bundles_dir": args.bundles, "feature_repo": args.feature_repo, "host": args.host, "port": args.port,
        "log_level": args.log_level, "search_workers": args.search_workers, "max_queue": args.max_queue,
        "workers": args.workers,
    })  # fmt: skip
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if settings.workers > 1:
        _serve_workers(settings)
        return 0
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    server.run()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` sub-command (the `ebr.commands` entry point)."""
    p = subparsers.add_parser(
        "serve",
        help="run the query-tower server (POST /search, /healthz, /readyz, /metrics, /admin/reload)",
        description="Serve top-K docs from the bundle <bundles>/CURRENT names, hot-swapping when it changes. "
        "Unset options fall back to EBR_BUNDLES_DIR, EBR_FEATURE_REPO, EBR_HOST, EBR_PORT (8080) and "
        "EBR_LOG_LEVEL; EBR_ADMIN_TOKEN, EBR_WATCH_INTERVAL_S, EBR_MAX_QUERY_CHARS, EBR_MAX_BODY_BYTES, "
        "EBR_COMPUTE_THREADS, EBR_FEATURE_RETRY_S, EBR_FEATURE_TRIP_AFTER, EBR_FEATURE_TIMEOUT_S, "
        "EBR_RETRY_AFTER_S, EBR_BODY_TIMEOUT_S and EBR_HEADER_TIMEOUT_S are read from the environment.",
    )
    p.add_argument("--search-workers", dest="search_workers", type=int,
                   help="threads computing searches, off the event loop (EBR_SEARCH_WORKERS, default 1; more than "
                        "one needs a thread-safe online store such as Redis)")
    p.add_argument("--workers", type=int,
                   help="server processes on one socket (EBR_WORKERS, default 1); /metrics aggregates all of them "
                        "(the chart runs one per pod and scales replicas instead)")
    p.add_argument("--max-queue", dest="max_queue", type=int,
                   help="searches that may wait for a worker; beyond it 503 + Retry-After (EBR_MAX_QUEUE, default 32)")
    p.add_argument("--bundles", type=Path, help="bundles root holding CURRENT and <version>/ (EBR_BUNDLES_DIR)")
    p.add_argument("--feature-repo", dest="feature_repo", type=Path,
                   help="features directory (ebr.features.open_store) or Feast repo (EBR_FEATURE_REPO)")
    p.add_argument("--host", help="bind address (EBR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (EBR_PORT, default 8080)")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR or CRITICAL (EBR_LOG_LEVEL)")
    p.set_defaults(func=_serve)
