"""HTTP details a production client and a load balancer rely on: 415 for a body that is not JSON, `Allow` on
405, `HEAD` on the probes, and an admin token from a Secret with a trailing newline still matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.settings import ServerSettings

BODY = b'{"query": "red dress", "k": 3}'


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"])
def test_a_body_that_is_not_json_is_415(client, ctype: str):
    r = client.post("/search", content=BODY, headers={"content-type": ctype})
    assert r.status_code == 415
    err = r.json()["errors"][0]
    assert err["field"] == "content-type" and ctype.split(";")[0] in err["message"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "application/vnd.x+json"])
def test_json_content_types_are_served(client, ctype: str):
    assert client.post("/search", content=BODY, headers={"content-type": ctype}).status_code == 200


def test_405_names_the_allowed_methods(client):
    r = client.get("/search")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = client.request("DELETE", "/readyz")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_probes_answer_head(client):
    for path in ("/healthz", "/readyz"):
        r = client.request("HEAD", path)
        assert r.status_code == 200 and r.content == b""


def test_admin_token_is_trimmed_or_refused(tmp_path: Path):
    s = ServerSettings.resolve({"bundles_dir": tmp_path}, env={"EBR_ADMIN_TOKEN": "s3cret\n"})
    assert s.admin_token == "s3cret"
    with pytest.raises(ValueError, match="EBR_ADMIN_TOKEN.*one word without spaces"):
        ServerSettings.resolve({"bundles_dir": tmp_path}, env={"EBR_ADMIN_TOKEN": "two words"})
    with pytest.raises(ValueError, match="of whitespace"):
        ServerSettings.resolve({"bundles_dir": tmp_path}, env={"EBR_ADMIN_TOKEN": " \n"})


def test_a_trimmed_token_authorizes_reload(loaded_app, published_root: Path):
    from serving.app import create_app
    from tests.serving.clients import InProcessClient

    app = create_app(ServerSettings(bundles_dir=published_root, admin_token="tok\n"), start=False)
    app.state.runtime.manager.reload()
    c = InProcessClient(app)
    try:
        assert c.post("/admin/reload", headers={"authorization": "Bearer tok"}).status_code == 200
    finally:
        c.close()


def test_failed_admin_calls_are_rate_limited_per_client(published_root: Path):
    from serving.app import create_app
    from tests.serving.clients import InProcessClient

    app = create_app(ServerSettings(bundles_dir=published_root, admin_token="tok", admin_max_failures=3),
                     start=False)
    app.state.runtime.manager.reload()
    c = InProcessClient(app)
    try:
        codes = [c.post("/admin/reload", headers={"authorization": f"Bearer guess{i}"}).status_code
                 for i in range(3)]
        assert codes == [403, 403, 403]
        r = c.post("/admin/reload", headers={"authorization": "Bearer guess3"})
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 61
        # locked out for the window, even with the right token: guessing does not pay
        assert c.post("/admin/reload", headers={"authorization": "Bearer tok"}).status_code == 429
    finally:
        c.close()


def test_docs_pages_can_be_switched_off(published_root: Path):
    from serving.app import create_app
    from tests.serving.clients import InProcessClient

    off = InProcessClient(create_app(ServerSettings(bundles_dir=published_root, enable_docs=False), start=False))
    on = InProcessClient(create_app(ServerSettings(bundles_dir=published_root), start=False))
    try:
        assert off.get("/docs").status_code == 404 and off.get("/redoc").status_code == 404
        assert off.get("/openapi.json").status_code == 200, "the schema stays for tooling"
        assert on.get("/docs").status_code == 200
    finally:
        off.close()
        on.close()
    s = ServerSettings.resolve({"bundles_dir": published_root}, env={"EBR_ENABLE_DOCS": "false"})
    assert s.enable_docs is False
