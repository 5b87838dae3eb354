"""Bad input gets a 4xx whose message names the field; 1,000+ generated requests never get a 5xx."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.schema import SearchResponse

MAX_QUERY_CHARS = 64  # loaded_app's setting
MAX_BODY_BYTES = 4096

CASES = [
    ("malformed JSON", b'{"query": "shoes",', 400, "body"),
    ("trailing garbage", b'{"query": "shoes"} x', 400, "body"),
    ("empty body", b"", 400, "body"),
    ("not an object", b'["shoes"]', 422, "body"),
    ("invalid UTF-8", b'{"query": "\xff\xfe shoes"}', 400, "body"),
    ("lone surrogate", b'{"query": "\\ud800"}', 400, "body"),
    ("NaN radius", b'{"query": "shoes", "radius": NaN}', 422, "radius"),
    ("missing query", b'{"k": 5}', 422, "query"),
    ("null query", b'{"query": null}', 422, "query"),
    ("blank query", b'{"query": "  \\t "}', 422, "query"),
    ("query too long", json.dumps({"query": "x" * (MAX_QUERY_CHARS + 1)}).encode(), 422, "query"),
    ("query a number", b'{"query": 42}', 422, "query"),
    ("k zero", b'{"query": "shoes", "k": 0}', 422, "k"),
    ("k above 1000", b'{"query": "shoes", "k": 1001}', 422, "k"),
    ("k a string", b'{"query": "shoes", "k": "5"}', 422, "k"),
    ("k a float", b'{"query": "shoes", "k": 5.0}', 422, "k"),
    ("k a bool", b'{"query": "shoes", "k": true}', 422, "k"),
    ("k huge", b'{"query": "shoes", "k": 123456789012345678901234567890}', 422, "k"),
    ("user_id zero", b'{"query": "shoes", "user_id": 0}', 422, "user_id"),
    ("user_id negative", b'{"query": "shoes", "user_id": -3}', 422, "user_id"),
    ("user_id beyond int64", b'{"query": "shoes", "user_id": 9223372036854775808}', 422, "user_id"),
    ("user_id a string", b'{"query": "shoes", "user_id": "42"}', 422, "user_id"),
    ("radius out of range", b'{"query": "shoes", "radius": 1.5}', 422, "radius"),
    ("radius a string", b'{"query": "shoes", "radius": "0.5"}', 422, "radius"),
    ("unknown filter", b'{"query": "shoes", "filters": {"color": "red"}}', 422, "filters.color"),
    ("empty filter value", b'{"query": "shoes", "filters": {"brand": ""}}', 422, "filters.brand"),
    ("filters not an object", b'{"query": "shoes", "filters": ["acme"]}', 422, "filters"),
    ("unknown top-level field", b'{"query": "shoes", "limit": 5}', 422, "limit"),
    ("relevance_control a string", b'{"query": "shoes", "relevance_control": "no"}', 422, "relevance_control"),
    ("rerank a number", b'{"query": "shoes", "rerank": 1}', 422, "rerank"),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_naming_the_field(client, name, body, status, field):
    r = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (name, r.text)
    err = r.json()
    assert field in [e["field"] for e in err["errors"]], err
    assert field in err["error"]


def test_several_bad_fields_are_all_named(client):
    r = client.post("/search", json={"query": "", "k": -1, "extra": 1})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"query", "k", "extra"}


def test_oversized_body_is_refused_before_parsing(client):
    big = b'{"query": "' + b"x" * MAX_BODY_BYTES + b'"}'
    r = client.post("/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body"

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(10):
            yield b"x" * 1000

    r = client.post("/search", content=chunks())
    assert r.status_code == 413
    # not JSON at all, but over the limit: the size check comes first
    r = client.post("/search", content=b"\xff" * (MAX_BODY_BYTES + 1))
    assert r.status_code == 413


def test_boundary_values_are_accepted(client):
    ok = [
        {"query": "x" * MAX_QUERY_CHARS, "k": 1},
        {"query": "shoes", "k": 1000, "user_id": 2**63 - 1},
        {"query": "shoes", "radius": -1, "filters": {}},
        {"query": "shoes", "user_id": None, "filters": {"brand": None}, "relevance_control": False},
    ]
    for body in ok:
        r = client.post("/search", json=body)
        assert r.status_code == 200, (body, r.text)


def test_unknown_route_and_method_are_4xx_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "path"
    assert client.get("/search").status_code == 405


# ------------------------------------------------------------------------------------------ property test

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=80),
)  # fmt: skip
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=10,
)
_valid = st.fixed_dictionaries(
    {"query": st.text(min_size=1, max_size=MAX_QUERY_CHARS).filter(lambda s: s.strip())},
    optional={
        "user_id": st.one_of(st.none(), st.integers(min_value=1, max_value=2**63 - 1)),
        "k": st.integers(min_value=1, max_value=1000),
        "radius": st.one_of(st.none(), st.floats(min_value=-1.0, max_value=1.0)),
        "filters": st.fixed_dictionaries({}, optional={
            "category_leaf": st.sampled_from(["dress", "watch", "lamp", "nothing-like-it"]),
            "brand": st.sampled_from(["acme", "hooli", "no-brand"]),
        }),
        "relevance_control": st.booleans(),
        "rerank": st.booleans(),
    },
)  # fmt: skip
_fields = st.sampled_from(["query", "user_id", "k", "radius", "filters", "relevance_control", "rerank", "other"])
_mutated = st.builds(lambda body, field, value: {**body, field: value}, _valid, _fields, _json_values)


def _encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")


_bodies = st.one_of(
    _valid.map(lambda b: ("valid", _encode(b))),
    _mutated.map(lambda b: ("any", _encode(b))),
    _json_values.map(lambda v: ("any", _encode(v))),
    st.binary(max_size=300).map(lambda b: ("any", b)),
    _valid.map(_encode).flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda i: ("any", b[:i]))),
)


def test_generated_requests_never_get_a_5xx(loaded_app):
    client = loaded_app[1]
    sent: list[int] = []

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_bodies)
    def check(case: tuple[str, bytes]) -> None:
        kind, body = case
        r = client.post("/search", content=body, headers={"content-type": "application/json"})
        sent.append(r.status_code)
        assert r.status_code < 500, r.text
        if kind == "valid":
            assert r.status_code == 200, r.text
        if r.status_code == 200:
            resp = SearchResponse.model_validate(r.json())
            assert len(resp.items) <= json.loads(body).get("k", 100)
            assert all(math.isfinite(it.score) for it in resp.items)
        else:
            err = r.json()
            assert 400 <= r.status_code < 500 and err["errors"] and all(e["field"] for e in err["errors"])

    check()
    assert len(sent) >= 1000
    assert sent.count(200) >= 100 and {400, 422} <= set(sent), "the mix must hold valid and invalid requests"
