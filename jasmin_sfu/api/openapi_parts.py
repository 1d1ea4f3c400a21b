"""Building blocks of the OpenAPI document, shared by ``openapi`` and its per-feature parts.

Each feature module keeps its own error descriptions (what a 403 or 409 means
differs per route family) and passes them to :func:`responses`. This module
imports nothing of the API, so every ``openapi_*`` module may use it.
"""

from __future__ import annotations

from typing import Any, Mapping


def ref(name: str) -> dict[str, str]:
    """A reference to ``#/components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response with an application/json body of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def responses(
    errors_table: Mapping[int, str], ok: Mapping[int, tuple[str, str | None]], *errors: int
) -> dict[str, Any]:
    """Success responses (status -> (description, schema name or None: no body)) and the
    listed error statuses, each an ``Error`` body described by ``errors_table``."""
    out: dict[str, Any] = {}
    for status, (description, schema) in ok.items():
        out[str(status)] = json_response(ref(schema), description) if schema else {"description": description}
    for status in sorted(errors):
        out[str(status)] = json_response(ref("Error"), errors_table[status])
    return out


def body(schema: str, required: bool = True) -> dict[str, Any]:
    """A JSON request body of the named schema."""
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def closed_object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema that refuses unknown properties."""
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out
