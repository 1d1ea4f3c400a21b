"""The REST wire shapes (``jasmin_sfu/api/wire*.py``) and the OpenAPI document generated from them
(``jasmin_sfu/api/openapi.py``): the document covers the route table exactly, every documented
request body takes its example both as the document describes it and as the struct decodes it,
the document stays OpenAPI 3.0 (no JSON Schema 2020 null types), and a refused body names the
field in the one error shape."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from aiohttp import web

from jasmin_sfu.api import openapi
from jasmin_sfu.api.rest import RestApi
from jasmin_sfu.api.wire import Body, field_message
from jasmin_sfu.api.wire_social import PresetRequest, RatingRequest
from tests.api.conftest import Api


def _served_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route the REST API registers, from its own route table."""
    root = web.Application()
    RestApi(lambda: None, lambda: None).install(root)
    served: set[tuple[str, str]] = set()
    for resource in root.router.resources():
        info = resource.get_info()
        routers = [r for r in ([info["app"].router] if "app" in info else [])]
        for sub in (s for router in routers for s in router.resources()):
            served.update((route.method, sub.canonical) for route in sub)
        if not routers:
            served.update((route.method, resource.canonical) for route in resource)
    return {(m, p) for m, p in served if m != "HEAD"}


def test_the_document_covers_every_route_of_the_route_table() -> None:
    """Protects the paths table written once: every route the API registers has exactly one
    documented operation and every documented operation is a route (a route added without its
    row, or a row without its route, fails here before any daemon starts); operation ids are
    unique."""
    documented = {(op.method.upper(), op.path) for op in openapi.operations()}
    assert documented == _served_routes()
    ids = [op.operation_id for op in openapi.operations()]
    assert len(ids) == len(set(ids))
    doc = openapi.openapi_document()
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == documented


def _bodies() -> list[type[Body]]:
    return sorted({op.body for op in openapi.operations() if op.body is not None}, key=lambda t: t.__name__)


def _validator(name: str) -> Any:
    schemas = openapi.openapi_document()["components"]["schemas"]
    return jsonschema_rs.Draft4Validator({"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}})


@pytest.mark.parametrize("shape", _bodies(), ids=lambda t: t.__name__)
def test_every_documented_body_takes_its_example(shape: type[Body]) -> None:
    """Protects the one definition of each request body: its example (carried in the document
    for clients and schemathesis) is valid under the generated schema and decodes into the
    struct, and the document's example is that same example; a field the struct does not know
    is refused by both, naming the field."""
    example = openapi.EXAMPLES[shape]
    validator = _validator(shape.__name__)
    assert validator.is_valid(example), list(validator.iter_errors(example))
    msgspec.convert(example, shape)
    media = [op for op in openapi.operations() if op.body is shape]
    doc = openapi.openapi_document()
    for op in media:
        content = doc["paths"][op.path][op.method]["requestBody"]["content"]["application/json"]
        assert content["example"] == example
    unknown = {**example, "card_number": "4242424242424242"}
    assert not validator.is_valid(unknown)
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert(unknown, shape)
    assert field_message(refused.value) == "card_number: unknown field"


def test_the_generated_document_is_openapi_3_0() -> None:
    """Protects the document's dialect: msgspec writes JSON Schema 2020-12 (a null is
    ``{"type": "null"}``), OpenAPI 3.0.3 says ``nullable``; schemathesis and clients read 3.0.
    No null type and no 2020 keyword may leak into the served document, and every $ref
    resolves to a component."""
    doc = openapi.openapi_document()
    text = json.dumps(doc)
    assert doc["openapi"] == "3.0.3"
    assert '"type": "null"' not in text and "$defs" not in text and '"const"' not in text
    schemas = doc["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                assert node["$ref"].removeprefix("#/components/schemas/") in schemas, node["$ref"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    # A nullable answer field stays a typed, nullable schema (what the fuzz checks answers against).
    assert schemas["Principal"]["properties"]["username"] == {"type": "string", "nullable": True}


def test_validation_messages_name_the_field() -> None:
    """Protects the error message of a refused body: msgspec's wording becomes the API's
    ``<field>: <what>``, for a wrong type, a missing field and a nested field."""
    cases: list[tuple[type[Body], dict[str, Any], str]] = [
        (RatingRequest, {"stars": "five"}, "stars: expected `int`, got `str`"),
        (RatingRequest, {}, "stars: required"),
        (RatingRequest, {"stars": 9}, "stars: expected `int` <= 5"),
        (PresetRequest, {"name": "x", "query": {"age_min": 3}}, "query.age_min: expected `int` >= 18"),
        (PresetRequest, {"name": "x", "query": {"colour": ["red"]}}, "query.colour: unknown field"),
    ]
    for shape, data, message in cases:
        with pytest.raises(msgspec.ValidationError) as refused:
            msgspec.convert(data, shape)
        assert field_message(refused.value) == message


async def test_a_refused_body_is_a_400_in_the_one_error_shape(api: Api) -> None:
    """Protects the edge over real HTTP: a body the struct refuses is 400 ``bad_request`` with a
    message naming the field (never a 500, never msgspec's raw text), on the accounts, social
    and privacy routes alike; null is refused where a field may only be left out."""
    token, _ = await api.member("wira")
    cases = [
        (
            "POST",
            "/api/v1/accounts",
            {"username": "ok_name", "password": "password-1", "adult_confirmed": None},
            "adult_confirmed: expected `bool`, got `null`",
        ),
        (
            "POST",
            "/api/v1/me/search-presets",
            {"name": "n", "query": {"sort": "cheapest"}},
            "query.sort: invalid enum value 'cheapest'",
        ),
        ("PATCH", "/api/v1/me/privacy", {"mask_visibility": 1}, "mask_visibility: expected `str`, got `int`"),
    ]
    for method, path, body, message in cases:
        status, answer, _ = await api.call(method, path, token=token, json=body)
        assert status == 400 and answer == {"error": {"code": "bad_request", "message": message}}, (path, answer)


@pytest.mark.parametrize(
    ("struct", "body"),
    [
        ("RegisterRequest", {"username": "alice\n", "password": "correct horse battery"}),
        ("PurchaseRequest", {"package": "p2999", "idempotency_key": "order-00000001\n"}),
        ("PurchaseRequest", {"package": "p2999", "idempotency_key": "order-00000001", "card_last4": "4242\n"}),
        ("PrivacyProfilePatch", {"country": "DE\n"}),
    ],
)
def test_a_fixed_format_field_refuses_a_trailing_newline(struct: str, body: dict[str, Any]) -> None:
    """Protects the REST patterns: msgspec matches them with re.search, where `$` also matches
    before a final newline, so "alice\\n" passed as a username (and an idempotency key, card digits
    or a country with a newline after them) until each pattern ended in `$(?!\\n)`; the same
    pattern is published in /openapi.json, where ECMA-262 reads it the same way."""
    from jasmin_sfu.api import wire_accounts, wire_privacy

    cls = getattr(wire_accounts, struct, None) or getattr(wire_privacy, struct)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, cls)
    good = {k: v.rstrip("\n") if isinstance(v, str) else v for k, v in body.items()}
    msgspec.convert(good, cls)
