"""Text that can be echoed on the wire and kept in a store.

Two kinds of string decode fine but go nowhere: a lone surrogate (a JSON
``"\\ud800"``, a percent-encoded path) has no UTF-8, so neither a websocket
text frame, a msgpack str nor a database can carry it; and PostgreSQL refuses
a NUL in text. Input holding either is refused at the edge (signaling:
``bad_request`` naming the field; REST: 400), before any handler echoes it
back or writes it anywhere.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 32
# Stands in a path for a key that is itself refused (it cannot be printed).
KEY = "<key>"


def unstorable(text: str) -> bool:
    """True for text no store can keep and no frame can carry: a NUL or an unpaired surrogate."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def echo(value: object, limit: int = 64) -> str:
    """A client's value as an error message may quote it: ``repr`` (escapes a surrogate or a
    control character), cut to ``limit`` characters so a large frame is not mirrored back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_unstorable(value: Any, depth: int = 0) -> str | None:
    """The key path of the first string (key or value) in ``value`` that ``unstorable`` refuses.

    ``""`` names ``value`` itself, ``"a.b"`` a nested field, ``"a[]"`` an item
    of a list and ``"a.<key>"`` a mapping one of whose keys is refused (that key
    is never put in the path: it cannot be printed).
    """
    if isinstance(value, str):
        return "" if unstorable(value) else None
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and unstorable(k):
                return KEY
            inner = first_unstorable(v, depth + 1)
            if inner is not None:
                name = k if isinstance(k, str) else repr(k)
                return name + inner if inner.startswith("[") else ".".join(x for x in (name, inner) if x)
    elif isinstance(value, list):
        for v in value:
            inner = first_unstorable(v, depth + 1)
            if inner is not None:
                return "[]" + ("." + inner if inner else "")
    return None
