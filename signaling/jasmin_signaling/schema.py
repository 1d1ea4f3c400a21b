"""The building blocks of the request bodies (``messages``, ``chat_messages``): the one place
a field's wire constraints, and the message a client gets when one is broken, are written.

A body is a :class:`Request` (a :mod:`msgspec` struct; a field the method does not
define is ``bad_request``). Its fields are annotated with the types below (``Id``, ``Token``,
:func:`cap`, :func:`bounds`), whose ``Meta`` carries the pattern or the bounds *and* the sentence that
describes them: the JSON Schema of the protocol (``messages.json_schema``) prints that
sentence, and :func:`field_message` answers it when the constraint is broken, so a rule and
its explanation cannot drift apart. Explicit ``null`` is accepted wherever a field is
optional (``T | None = None``), as the protocol always did (REST, unlike signaling, refuses
it).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

import msgspec
from msgspec import Meta


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """The ``data`` of a request: a closed object (unknown fields are ``bad_request``)."""


def whole(body: str) -> str:
    """A pattern matching the whole string, alike in Python's ``re`` and in ECMA-262.

    msgspec checks a ``pattern`` with ``re.search``, where ``$`` also matches before a final
    newline ("alice\\n" would pass as "alice"); ``(?!\\n)`` after it refuses that, and means
    nothing to an ECMA-262 reader, whose ``$`` is the end.
    """
    return f"^{body}$(?!\\n)"


ID_TEXT = "1-64 characters of A-Z a-z 0-9 _ . : -"
TOKEN_TEXT = "1-256 characters of A-Z a-z 0-9 _ -"
#: Ids of the protocol: shows, members, transports, producers, consumers, chat users and messages.
Id = Annotated[str, Meta(pattern=whole("[A-Za-z0-9_.:-]{1,64}"), description=ID_TEXT)]
#: A session token (docs/accounts.md); what it proves is the server's to find out.
Token = Annotated[str, Meta(pattern=whole("[A-Za-z0-9_-]{1,256}"), description=TOKEN_TEXT)]


def cap(max_len: int) -> Meta:
    """A text of at most ``max_len`` characters (``Annotated[str, cap(...)]``): the wire's cap,
    so a longer field is refused before any rule of the service runs."""
    return Meta(max_length=max_len, description=f"at most {max_len} characters")


def bounds(lo: int, hi: int, description: str) -> Meta:
    """An integer in ``lo..hi`` (``Annotated[int, bounds(...)]``), described for the client."""
    return Meta(ge=lo, le=hi, description=description)


# -- validation errors as messages -------------------------------------------------------

_AT = re.compile(r"^(?P<what>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>.*)`$", re.S)
# A type mismatch ("Expected `int | null`, got `str`"), as opposed to a broken constraint.
_WRONG_TYPE = re.compile(r"^Expected `[^`]*`, got `[^`]*`$")
_INDEX = re.compile(r"\[\d+\]")
_MAX_MESSAGE = 200


@functools.cache
def _descriptions(cls: type[Request]) -> dict[str, str]:
    """Field name (``producer_ids[]`` for a list's items) -> the description its Meta gives."""
    (ref,), defs = msgspec.json.schema_components([cls])
    props = defs[cls.__name__].get("properties", {})
    out: dict[str, str] = {}

    def walk(name: str, node: dict[str, Any]) -> None:
        if "description" in node:
            out.setdefault(name, node["description"])
        for branch in node.get("anyOf", ()):
            walk(name, branch)
        if isinstance(node.get("items"), dict):
            walk(name + "[]", node["items"])

    for name, node in props.items():
        walk(name, node)
    return out


def field_message(exc: msgspec.ValidationError, cls: type[Request]) -> str:
    """msgspec's message as the protocol's: ``<field>: <what is wrong>`` (``data``: the whole body).

    A broken constraint (a pattern, a length, a range, a choice) is answered with the field's
    description (``show_id: 1-64 characters of A-Z a-z 0-9 _ . : -``); a wrong type with
    msgspec's words (``sdp: expected `str`, got `int```); ``x: unknown field``; ``x: required``.
    Nothing the client sent is quoted but a field name, cut at 64 characters.
    """
    raw = str(exc)
    where, what = "", raw
    m = _AT.match(raw)
    if m:
        where, what = _INDEX.sub("[]", m["path"].lstrip(".")), m["what"]
    unknown, missing = _UNKNOWN.match(what), _MISSING.match(what)
    if unknown or missing:
        name = (unknown or missing)[1]  # type: ignore[index]
        where = f"{where}.{name}" if where else name
        what = "unknown field" if unknown else "required"
    elif m is None:
        what = "keys must be text"  # "Expected `str` - at `key` in `$`": a msgpack key of another type
    elif not _WRONG_TYPE.match(what) and where in _descriptions(cls):
        what = _descriptions(cls)[where]
    else:
        what = what[0].lower() + what[1:]
    return f"{where[:64] or 'data'}: {what}"[:_MAX_MESSAGE]
