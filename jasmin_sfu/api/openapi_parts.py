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
        if status in ERROR_HEADERS:
            out[str(status)]["headers"] = ERROR_HEADERS[status]
    return out


# The headers error answers carry (tests/api/test_openapi_fuzz.py checks them): every 429 says
# when to retry; a 401 for a missing or bad token challenges for a bearer token (a wrong
# password does not); a 503 for a busy database says when to retry.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": False, "description": "For a missing or invalid token",
                               "schema": {"type": "string", "pattern": "^Bearer "}}},
    429: {"Retry-After": {"required": True, "description": "Seconds until a retry may succeed",
                          "schema": {"type": "integer", "minimum": 1}}},
    503: {"Retry-After": {"required": False, "description": "When the database was busy: seconds until a retry",
                          "schema": {"type": "integer", "minimum": 1}}},
}


def body(schema: str, required: bool = True) -> dict[str, Any]:
    """A JSON request body of the named schema."""
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def closed_object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema that refuses unknown properties."""
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


# Characters the API refuses in text (documented here so a client, and schemathesis' positive
# generation, can know them): every store refuses a NUL; free text refuses the C0 control
# characters but tab, and DEL; one-line text refuses the newline too. Written as JSON-Schema
# (ECMA-262) patterns with \u escapes. An unpaired surrogate (a JSON "\ud800" alone) is refused
# as well, but a pattern cannot say it: ECMA-262 patterns see UTF-16 code units, so excluding
# the surrogate range would exclude every character beyond U+FFFF; the description says it.
_NOT_STORABLE = "\\u0000"
_NOT_MULTI_LINE = "\\u0000-\\u0008\\u000b-\\u001f\\u007f"
_NOT_ONE_LINE = "\\u0000-\\u0008\\u000a-\\u001f\\u007f"
_SURROGATES = "No unpaired surrogate (a lone \\ud800-\\udfff)."
# White space as Python's str.strip() sees it (listed, not \s: its meaning differs between
# ECMA-262 and Python's re).
_SPACE = ("\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f"
          "\\u205f\\u3000")


def text(max_len: int, *, min_len: int = 0, multiline: bool = False, storable_only: bool = False,
         **extra: Any) -> dict[str, Any]:
    """A string schema whose pattern says which characters the API takes.

    ``storable_only``: anything but NUL (passwords, search text). Otherwise free text: no
    control character but tab (and newline when ``multiline``), no DEL. ``min_len`` >= 1 on
    free text means it must hold a character other than white space (the API strips it, or
    refuses blank text). Unpaired surrogates are refused everywhere (see above).
    """
    bad = _NOT_STORABLE if storable_only else _NOT_MULTI_LINE if multiline else _NOT_ONE_LINE
    if min_len >= 1 and not storable_only:
        pattern = f"^[^{bad}]*[^{_SPACE}{bad}][^{bad}]*$"
    else:
        pattern = f"^[^{bad}]*$"
    out: dict[str, Any] = {"type": "string", "maxLength": max_len, "pattern": pattern}
    if min_len:
        out["minLength"] = min_len
    description = extra.pop("description", "")
    out["description"] = f"{description}. {_SURROGATES}" if description else _SURROGATES
    return {**out, **extra}
