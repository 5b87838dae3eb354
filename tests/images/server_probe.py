"""Run in a fresh interpreter by test_server_extras: hide every installed distribution that the server install
(`ebr[serve]`) does not pull, then import the server, answer /search over a real bundle in-process and parse
`ebr serve --help`, printing one JSON object of what happened.

Usage: python -m tests.images.server_probe SPEC.json (keys: hidden_dists, hidden_modules, expect_missing, bundles,
query, features and user_id optional). Only the standard library is imported before the finder is in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata as md
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any


class HideDistributions(MetaPathFinder):
    """Wraps a finder of sys.meta_path: a module whose file belongs to a hidden distribution, or whose top-level
    name is hidden, is not found (import raises ModuleNotFoundError, importlib.util.find_spec gives None), as on
    a host where it is not installed."""

    def __init__(self, inner: Any, hidden_dists: set[str], hidden_files: set[str], hidden_modules: set[str],
                 refused: set[str]) -> None:
        self.inner = inner
        self.hidden_dists = hidden_dists
        self.hidden_files = hidden_files
        self.hidden_modules = hidden_modules
        self.refused = refused

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name.partition(".")[0] in self.hidden_modules:
            self.refused.add(name)
            return None
        find = getattr(self.inner, "find_spec", None)
        spec = find(name, path, target) if find is not None else None
        if spec is not None and spec.origin and os.path.realpath(spec.origin) in self.hidden_files:
            self.refused.add(name)
            return None
        return spec

    def find_distributions(self, *args: Any, **kwargs: Any) -> Iterator[md.Distribution]:
        """The inner finder's distributions (importlib.metadata asks here), less the hidden ones."""
        find = getattr(self.inner, "find_distributions", None)
        for dist in find(*args, **kwargs) if find is not None else ():
            if _canonical(dist.metadata["Name"] or "") not in self.hidden_dists:
                yield dist

    def invalidate_caches(self) -> None:
        invalidate = getattr(self.inner, "invalidate_caches", None)
        if invalidate is not None:
            invalidate()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install(hidden_dists: list[str], hidden_modules: list[str]) -> set[str]:
    """Wrap every finder on sys.meta_path so hidden modules are not found; forget hidden modules already imported.
    Returns the set that collects the names of the imports refused."""
    files: set[str] = set()
    for name in hidden_dists:
        dist = md.distribution(name)
        for f in dist.files or []:
            if f.suffix in {".py", ".so", ".pyc", ".pyd"}:
                files.add(os.path.realpath(dist.locate_file(f)))
    refused: set[str] = set()
    hidden = set(hidden_modules)
    dists = {_canonical(d) for d in hidden_dists}
    sys.meta_path[:] = [HideDistributions(m, dists, files, hidden, refused) for m in sys.meta_path]
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if name.partition(".")[0] in hidden or (origin and os.path.realpath(origin) in files):
            del sys.modules[name]
    importlib.invalidate_caches()
    return refused


async def asgi_call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP request straight into the ASGI app (no server, no client library): status and body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"in-process"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("in-process", 80),
    }  # fmt: skip
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    status, chunks = 0, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _cli(argv: list[str]) -> dict[str, Any]:
    """`ebr ARGV` through ebr.cli.main: exit status, stdout and stderr."""
    from ebr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main(spec_path: str) -> int:
    """Run the probe described by the JSON file `spec_path`; print the findings as JSON."""
    spec = json.loads(open(spec_path, encoding="utf-8").read())
    refused = install(spec["hidden_dists"], spec["hidden_modules"])
    hidden = set(spec["hidden_modules"])
    import importlib.util

    found = sorted(m for m in spec["expect_missing"] if importlib.util.find_spec(m) is not None)

    from serving.app import create_app
    from serving.settings import ServerSettings

    features = spec.get("features")
    settings = ServerSettings(bundles_dir=Path(spec["bundles"]), feature_repo=Path(features) if features else None)
    app = create_app(settings, start=False)
    runtime = app.state.runtime
    runtime.set_threads()
    if runtime.features is not None:
        runtime.features.open()
    runtime.manager.reload()
    request = {"query": spec["query"], "k": 5}
    if spec.get("user_id") is not None:
        request["user_id"] = spec["user_id"]
    status, body = asyncio.run(asgi_call(app, "POST", "/search", json.dumps(request).encode()))
    runtime.stop()
    report = {
        "found_hidden": found,
        "search_status": status,
        "search": json.loads(body),
        "serve_help": _cli(["serve", "--help"]),
        "pipeline_run": _cli(["pipeline", "run", "--local", "--data", "d", "--day", "latest"]),
        "refused": sorted(refused),
        "loaded_hidden": sorted(m for m in sys.modules if m.partition(".")[0] in hidden),
    }
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
