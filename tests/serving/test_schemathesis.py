"""The server against its own OpenAPI document: schemathesis generates requests for every operation (valid and
invalid, from the schema) and sends them to a real uvicorn server on loopback; no answer may be a 5xx, and each
must carry a declared status code, content type, headers and a body matching the declared schema.

Cases per operation come from EBR_SCHEMATHESIS_CASES (100 here; `make test-reliability` runs 1000). Generation
is derandomized (the same cases every run) and hypothesis keeps no example database."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import LiveServer

CASES = int(os.environ.get("EBR_SCHEMATHESIS_CASES", "100"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
SENT: Counter[str] = Counter()  # cases sent per operation (printed at the end: `pytest -s`)


@pytest.fixture(scope="module")
def live(published_root: Path) -> Iterator[LiveServer]:
    app = create_app(ServerSettings(bundles_dir=published_root, max_query_chars=64, admin_token="fuzz-token",
                                    enable_docs=False), start=False)
    app.state.runtime.set_threads()
    app.state.runtime.manager.reload()
    with LiveServer(app) as server:
        yield server
    print(f"\nschemathesis: {sum(SENT.values())} cases sent ({dict(sorted(SENT.items()))})")


def _document() -> dict:
    """The OpenAPI document the server serves (it does not depend on the bundles root or the settings)."""
    return create_app(ServerSettings(bundles_dir=Path("unused")), start=False).openapi()


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(max_examples=CASES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_declared_and_never_5xx(case, live):
    SENT[f"{case.method} {case.path}"] += 1
    case.call_and_validate(base_url=live.url, checks=CHECKS, timeout=30)
