"""The REST wire shapes' building blocks: the one place a JSON body of ``/api/v1`` is described.

Every request body and every documented response body is a :mod:`msgspec` struct, declared
once in an area module (``wire_accounts``, ``wire_social``, ``wire_privacy``, ``wire_chat``,
``wire_ice``). From those structs come:

- the validation of a request body and its error message (``rest_common.read_body``: a
  ``msgspec.ValidationError`` becomes ``400 bad_request`` naming the field, :func:`field_message`);
- the answers (a handler builds the response struct; ``rest_common.answer`` encodes it);
- the OpenAPI document (``openapi.openapi_document`` asks ``msgspec.json.schema_components``
  for the component schemas and walks each area's table of :class:`Op`, the paths written once).

Request bodies derive from :class:`Body` (unknown fields refused: a typo, or a card number,
never passes silently; ``null`` is refused too: leave a field out instead). Responses derive
from :class:`View`. This module imports nothing of the API, so every area module may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Mapping, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "UNSET",
    "Body",
    "Closed",
    "Meta",
    "Op",
    "UnsetType",
    "View",
    "field_message",
    "given",
    "one_of",
    "sent",
    "text",
]


class Body(Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: a closed JSON object (unknown fields are a 400)."""


class View(Struct, kw_only=True):
    """A response body (fields left ``UNSET`` are left out of the JSON)."""


class Closed(View, forbid_unknown_fields=True):
    """A response body documented as holding exactly these fields (``additionalProperties: false``):
    for answers where more would be a leak (privacy) or a contract (TURN credentials)."""


def one_of(values: tuple[str, ...]) -> Any:
    """``Literal[values]`` built from a service's tuple, so the list of allowed strings stays
    written once (in the service). Annotate with the alias under ``if TYPE_CHECKING: X = str``."""
    return Literal[values]


T = TypeVar("T")


def given(value: T | UnsetType) -> T | None:
    """A field left out as None (for a service that takes ``None`` for "not given")."""
    return None if isinstance(value, UnsetType) else value


def sent(body: Body) -> dict[str, Any]:
    """The fields the client sent (those left out are not keys), as plain JSON values."""
    out: dict[str, Any] = msgspec.to_builtins(body)
    return out


# Characters the API refuses in text (documented so a client, and schemathesis' positive
# generation, can know them, and enforced by the same pattern): every store refuses a NUL;
# free text refuses the C0 control characters but tab, and DEL; one-line text refuses the
# newline too. Written as JSON-Schema (ECMA-262) patterns with \u escapes, which Python's re
# reads alike. An unpaired surrogate (a JSON "\ud800" alone) is refused as well
# (``rest_common.refuse_unstorable``), but a pattern cannot say it: ECMA-262 patterns see
# UTF-16 code units, so excluding the surrogate range would exclude every character beyond
# U+FFFF; the description says it.
_NOT_STORABLE = "\\u0000"
_NOT_MULTI_LINE = "\\u0000-\\u0008\\u000b-\\u001f\\u007f"
_NOT_ONE_LINE = "\\u0000-\\u0008\\u000a-\\u001f\\u007f"
_SURROGATES = "No unpaired surrogate (a lone \\ud800-\\udfff)."
# White space as Python's str.strip() sees it (listed, not \s: its meaning differs between
# ECMA-262 and Python's re).
_SPACE = "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"


def text(
    max_len: int,
    *,
    min_len: int = 0,
    multiline: bool = False,
    storable_only: bool = False,
    description: str = "",
    **extra: Any,
) -> Meta:
    """The constraints of a text field (use as ``Annotated[str, text(...)]``): a pattern saying
    which characters the API takes, and the lengths.

    ``storable_only``: anything but NUL (passwords, search text). Otherwise free text: no
    control character but tab (and newline when ``multiline``), no DEL. ``min_len`` >= 1 on
    free text means it must hold a character other than white space (the API strips it, or
    refuses blank text). Unpaired surrogates are refused everywhere (see above). ``extra``:
    more JSON Schema keywords for the document (``format``, ``example``).
    """
    bad = _NOT_STORABLE if storable_only else _NOT_MULTI_LINE if multiline else _NOT_ONE_LINE
    if min_len >= 1 and not storable_only:
        pattern = f"^[^{bad}]*[^{_SPACE}{bad}][^{bad}]*$"
    else:
        pattern = f"^[^{bad}]*$"
    return Meta(
        pattern=pattern,
        max_length=max_len,
        min_length=min_len or None,
        description=f"{description}. {_SURROGATES}" if description else _SURROGATES,
        extra_json_schema=extra or None,
    )


USERNAME_PATTERN = "^[A-Za-z0-9_]{3,32}$(?!\n)"
Username = Annotated[str, Meta(pattern=USERNAME_PATTERN, extra_json_schema={"example": "alice"})]
LANGUAGE_PATTERN = "^[a-z]{2}$(?!\n)"
Language = Annotated[str, Meta(pattern=LANGUAGE_PATTERN)]


# -- validation errors as messages -------------------------------------------------------

_AT = re.compile(r"^(?P<what>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>.*)`$", re.S)


def field_message(exc: msgspec.ValidationError) -> str:
    """msgspec's message as the API's: ``<field>: <what is wrong>`` (``body``: the whole body).

    ``Expected `int`, got `str` - at `$.stars``` -> ``stars: expected `int`, got `str```;
    ``Object contains unknown field `x``` -> ``x: unknown field``;
    ``Object missing required field `x``` -> ``x: required``.
    """
    raw = str(exc)
    where, what = "", raw
    m = _AT.match(raw)
    if m:
        where, what = m["path"].lstrip("."), m["what"]
    unknown, missing = _UNKNOWN.match(what), _MISSING.match(what)
    if unknown or missing:
        name = (unknown or missing)[1]  # type: ignore[index]
        where = f"{where}.{name}" if where else name
        what = "unknown field" if unknown else "required"
    elif what[:1].isupper():
        what = what[0].lower() + what[1:]
    return f"{where[:64] or 'body'}: {what}"


# -- the paths table ------------------------------------------------------------------

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


@dataclass(frozen=True)
class Op:
    """One documented operation: a row of an area's paths table.

    ``ok``: status -> (description, the response struct, ``None`` for no body, or a literal
    OpenAPI response object for a non-JSON answer). ``errors``: the error statuses, described
    by ``error_texts`` (what a 403 or a 409 means differs per area). ``body``: the request
    struct (``body_required=False``: a body may be left out).
    """

    method: str
    path: str  # the full path, as served (``/api/v1/...``)
    operation_id: str
    summary: str
    ok: Mapping[int, tuple[str, Any]]
    errors: tuple[int, ...] = ()
    error_texts: Mapping[int, str] = field(default_factory=dict)
    body: type[Body] | None = None
    body_required: bool = True
    bearer: bool = False
    parameters: tuple[Mapping[str, Any], ...] = ()
    description: str = ""
    ok_headers: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    request_body: Mapping[str, Any] | None = None  # a literal requestBody (a form body)

    def described(self, error_texts: Mapping[int, str]) -> Op:
        """This operation with its area's error descriptions."""
        return replace(self, error_texts=error_texts)


def path_param(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A required path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": dict(schema)}


USERNAME_PARAM = path_param("username", {"type": "string", "pattern": USERNAME_PATTERN, "example": "alice"})
