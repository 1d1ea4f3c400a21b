"""The OpenAPI 3 document of the REST API, served at ``/openapi.json``, generated.

Nothing here describes a body: the component schemas come from the wire structs
(``msgspec.json.schema_components`` over every struct the paths table names), and the paths
from the areas' tables of :class:`jasmin_sfu.api.wire.Op` (``wire_accounts.OPS``, ...), each
operation written once. ``tests/api/test_openapi_fuzz.py`` generates requests from this
document and checks the answers against it; ``tests/api/test_wire.py`` checks that it covers
every route and that every documented body takes its example.

msgspec writes JSON Schema 2020-12; the document is OpenAPI 3.0.3, so :func:`openapi30`
rewrites the one difference that occurs: ``anyOf [X, {"type": "null"}]`` becomes
``X`` with ``nullable: true``.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Iterable, Mapping

import msgspec

from jasmin_sfu import __version__
from jasmin_sfu.api import wire_accounts, wire_chat, wire_ice, wire_privacy, wire_social
from jasmin_sfu.api.wire import BEARER, Body, Op

REF = "#/components/schemas/{name}"

# Every area's paths table, in the document's order.
AREAS: tuple[tuple[Op, ...], ...] = (
    wire_accounts.OPS,
    wire_chat.OPS,
    wire_social.OPS,
    wire_privacy.OPS,
    wire_ice.OPS,
)
EXAMPLES: dict[type[Body], dict[str, Any]] = {
    **wire_accounts.EXAMPLES,
    **wire_social.EXAMPLES,
    **wire_privacy.EXAMPLES,
}

# The headers error answers carry (tests/api/test_openapi_fuzz.py checks them): every 429 says
# when to retry; a 401 for a missing or bad token challenges for a bearer token (a wrong
# password does not); a 503 for a busy database says when to retry.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "required": False,
            "description": "For a missing or invalid token",
            "schema": {"type": "string", "pattern": "^Bearer "},
        }
    },
    429: {
        "Retry-After": {
            "required": True,
            "description": "Seconds until a retry may succeed",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    503: {
        "Retry-After": {
            "required": False,
            "description": "When the database was busy: seconds until a retry",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def ref(shape: type) -> dict[str, str]:
    """A reference to the component schema of a struct."""
    return {"$ref": REF.format(name=shape.__name__)}


def openapi30(node: Any) -> Any:
    """JSON Schema 2020-12 (msgspec's) as OpenAPI 3.0 schema objects: a null branch of an
    ``anyOf`` becomes ``nullable``; an enum of strings gets its ``type``."""
    if isinstance(node, list):
        return [openapi30(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi30(v) for k, v in node.items()}
    branches = out.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        rest = [b for b in branches if b != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        elif len(rest) == 1:
            out = {"allOf": rest, **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
        if isinstance(out.get("enum"), list):
            out["enum"] = [*out["enum"], None]
    enum = out.get("enum")
    if "type" not in out and isinstance(enum, list) and all(isinstance(v, str) for v in enum if v is not None):
        out["type"] = "string"
    return out


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def _responses(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (description, shape) in op.ok.items():
        if shape is None:
            out[str(status)] = {"description": description}
        elif isinstance(shape, Mapping):
            out[str(status)] = {"description": description, **shape}
        else:
            out[str(status)] = _json(ref(shape), description)
        if status in op.ok_headers:
            out[str(status)]["headers"] = dict(op.ok_headers[status])
    for status in sorted(op.errors):
        out[str(status)] = _json(ref(wire_accounts.Error), op.error_texts[status])
        if status in ERROR_HEADERS:
            out[str(status)]["headers"] = ERROR_HEADERS[status]
    return out


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    if op.bearer:
        out["security"] = BEARER
    if op.parameters:
        out["parameters"] = [dict(p) for p in op.parameters]
    if op.request_body is not None:
        out["requestBody"] = dict(op.request_body)
    elif op.body is not None:
        media: dict[str, Any] = {"schema": ref(op.body)}
        if op.body in EXAMPLES:
            media["example"] = EXAMPLES[op.body]
        out["requestBody"] = {"required": op.body_required, "content": {"application/json": media}}
    out["responses"] = _responses(op)
    return out


def operations() -> Iterable[Op]:
    """Every documented operation."""
    for ops in AREAS:
        yield from ops


def shapes() -> list[type]:
    """Every struct the document names (request and response bodies, and the error)."""
    found: dict[str, type] = {wire_accounts.Error.__name__: wire_accounts.Error}
    for op in operations():
        named = [op.body, *(shape for _, shape in op.ok.values())]
        for shape in named:
            if isinstance(shape, type):
                if found.setdefault(shape.__name__, shape) is not shape:
                    raise ValueError(f"two wire structs are named {shape.__name__}")
    return list(found.values())


def component_schemas() -> dict[str, Any]:
    """The component schemas, generated from the structs."""
    _, components = msgspec.json.schema_components(shapes(), ref_template=REF)
    return {name: openapi30(schema) for name, schema in sorted(components.items())}


def paths() -> dict[str, Any]:
    """The paths object, from the areas' tables."""
    out: dict[str, Any] = {}
    for op in operations():
        item = out.setdefault(op.path, {})
        if op.method in item:
            raise ValueError(f"{op.method.upper()} {op.path} is documented twice")
        item[op.method] = _operation(op)
    return out


def openapi_document() -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    out: dict[str, Any] = json.loads(openapi_json())
    return out


@functools.cache
def openapi_json() -> str:
    """The document as JSON text, built once: msgspec's schema generation takes a few hundred
    milliseconds, too long for the event loop on every request (``RestApi.install`` builds it
    at start)."""
    return json.dumps(_document())


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "jasmin-sfu accounts API",
            "version": __version__,
            "description": "Accounts, sessions, the 18+ confirmation, wallet and performer profiles. "
            'Errors are {"error": {"code", "message"}}. See docs/accounts.md. '
            "WHIP and WHEP (/whip, /whep) are not here: they carry application/sdp, "
            "see docs/whip-whep.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths(),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
