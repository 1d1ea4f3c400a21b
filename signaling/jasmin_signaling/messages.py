"""The request bodies of protocol v1: one msgspec struct per method's ``data``, and from them
the validation (:func:`parse_request`) and the JSON Schema of the protocol (:func:`json_schema`,
served at ``/signaling-schema.json``).

A missing field, an unknown field, a wrong type or a broken constraint is ``bad_request``
naming the field (``schema.field_message``); what a schema cannot say (a token excludes the
legacy ids; an SDP starts with ``v=0``) is checked once, in the struct's ``__post_init__``.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .chat_messages import CHAT_METHODS
from .errors import SignalingError
from .events import EVENTS
from .responses import RESPONSES
from .schema import Id, Request, Token, bounds, field_message
from .text import echo, first_unstorable, unstorable

MAX_SDP_CHARS = 65536
#: Spatial layers a publisher may send (jasmin_codecs.simulcast.MAX_SIMULCAST_LAYERS)
#: and VP8's temporal layers (TID is 2 bits).
MAX_SPATIAL = 2
MAX_TEMPORAL = 3

#: An SDP; one that does not start with ``v=0`` is ``bad_sdp`` (``__post_init__``), not ``bad_request``.
Sdp = Annotated[str, Meta(max_length=MAX_SDP_CHARS, description=f"at most {MAX_SDP_CHARS} characters, from v=0")]
Role = Annotated[Literal["performer", "viewer"], Meta(description="must be 'performer' or 'viewer'")]


def valid_request_id(req_id: Any) -> bool:
    """A request id the server can echo: an integer, or 1-64 characters of text."""
    if isinstance(req_id, bool):
        return False
    if isinstance(req_id, int):
        return True
    return isinstance(req_id, str) and 0 < len(req_id) <= 64 and not unstorable(req_id)


def _sdp(sdp: str) -> None:
    if not sdp.startswith("v=0"):
        raise SignalingError("bad_sdp", "sdp: must start with v=0")


class Join(Request):
    """Enter a show as its performer or a viewer; who the caller is comes from its token."""

    show_id: Id
    role: Role
    # A session token (docs/accounts.md): the server derives who the caller
    # is - member, performer or guest - from it, never from the fields below.
    token: Token | None = None
    # Legacy, honoured only without a token and only when the server runs
    # with accounts.trust_client_ids: a viewer says which member it is (no
    # member_id: a guest) and a performer may name itself.
    member_id: Id | None = None
    performer_id: Id | None = None

    def __post_init__(self) -> None:
        if self.token is not None and (self.member_id is not None or self.performer_id is not None):
            raise SignalingError("bad_request", "member_id, performer_id: not allowed with a token")
        if self.member_id is not None and self.role != "viewer":
            raise SignalingError("bad_request", "member_id: only for role 'viewer'")
        if self.performer_id is not None and self.role != "performer":
            raise SignalingError("bad_request", "performer_id: only for role 'performer'")


class MemberRef(Request):
    """The member whose private request the performer answers."""

    member_id: Id


class ShowSettings(Request):
    """The performer's settings; a field left out (or null) is left as it is."""

    auto_accept: bool | None = None
    # Hundredths of a credit per minute, billed per second (docs/money.md).
    price_per_minute: Annotated[int, bounds(1, 1_000_000, "1..1000000 hundredths of a credit")] | None = None


class Publish(Request):
    """The client's offer (sendonly or sendrecv audio/video)."""

    sdp: Sdp

    def __post_init__(self) -> None:
        _sdp(self.sdp)


class Subscribe(Request):
    """Open a transport carrying these producers (default: all this connection may see)."""

    producer_ids: list[Id] | None = None
    paused: bool = False


class Answer(Request):
    """The client's answer to a subscribe's offer."""

    transport_id: Id
    sdp: Sdp

    def __post_init__(self) -> None:
        _sdp(self.sdp)


class Unsubscribe(Request):
    """Close a transport this connection subscribed."""

    transport_id: Id


class SetLayers(Request):
    """A viewer's cap on one of its video consumers' layers (docs/signaling.md,
    consumer.set_layers); null (or absent) lifts a cap."""

    consumer_id: Id
    max_spatial: Annotated[int, bounds(0, MAX_SPATIAL, f"0..{MAX_SPATIAL} (0 = the lowest layer) or null")] | None = (
        None
    )
    max_temporal: Annotated[int, bounds(0, MAX_TEMPORAL, f"0..{MAX_TEMPORAL} or null")] | None = None


class Empty(Request):
    """No fields: {}, or data left out (or null)."""


class NotificationsSubscribe(Request):
    """Follow a member's favourites coming online."""

    # A member token; without one, the member this connection joined as.
    token: Token | None = None


METHODS: dict[str, type[Request]] = {
    "join": Join,
    "publish": Publish,
    "unpublish": Empty,
    "subscribe": Subscribe,
    "answer": Answer,
    "unsubscribe": Unsubscribe,
    "consumer.set_layers": SetLayers,
    "leave": Empty,
    "ping": Empty,
    "private.request": Empty,
    "private.withdraw": Empty,
    "private.accept": MemberRef,
    "private.decline": MemberRef,
    "private.end": Empty,
    "sneak_peek": Empty,
    "show.free": Empty,
    "show.settings": ShowSettings,
    **CHAT_METHODS,
    "notifications.subscribe": NotificationsSubscribe,
}


def parse_request(method: str, data: Any) -> Any:
    """Validate ``data`` for ``method``; returns the typed body."""
    cls = METHODS.get(method)
    if cls is None:
        raise SignalingError("unknown_method", f"no method {echo(method)}; known: {', '.join(sorted(METHODS))}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SignalingError("bad_request", "data: must be an object")
    # Before anything echoes a key or writes a value: such text can neither be
    # answered (no UTF-8) nor stored (PostgreSQL refuses a NUL).
    where = first_unstorable(data)
    if where is not None:
        raise SignalingError("bad_request", f"{where or 'data'}: NUL or unpaired surrogate in text")
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise SignalingError("bad_request", field_message(exc, cls)) from None


# -- the JSON Schema of the protocol -----------------------------------------------------

SCHEMA_ID = "/signaling-schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a request frame, generated from :data:`METHODS`: one
    ``oneOf`` branch per method (``method`` a ``const``, ``data`` its struct in ``$defs``).
    ``x-methods`` maps each method to its struct's name; the server's events are described
    beside it (``$defs/EventFrame``, ``x-events``: each event to its struct's name,
    :mod:`.events`), and the answers of the methods (``x-responses``: the method to its
    answer's struct, :mod:`.responses`). A fresh dict each call."""
    out: dict[str, Any] = json.loads(json_schema_text())
    return out


@functools.cache
def json_schema_text() -> str:
    """:func:`json_schema` as JSON text, built once (msgspec's schema generation is too slow to
    repeat on the event loop for every request)."""
    structs: list[type[Any]] = sorted(set(METHODS.values()), key=lambda c: c.__name__)
    structs += sorted(set(EVENTS.values()) | set(RESPONSES.values()), key=lambda c: c.__name__)
    _, defs = msgspec.json.schema_components(structs, ref_template="#/$defs/{name}")
    request_id = {
        "anyOf": [
            {"type": "integer"},
            {"type": "string", "minLength": 1, "maxLength": 64, "description": "No NUL, no unpaired surrogate"},
        ],
        "description": "Unique among the connection's last 1024 requests",
    }
    branches = []
    for method, cls in METHODS.items():
        ref = {"$ref": f"#/$defs/{cls.__name__}"}
        # ``data`` may be left out (or null) when the body has no required field.
        optional = not any(f.required for f in msgspec.structs.fields(cls))
        branches.append(
            {
                "type": "object",
                "properties": {
                    "type": {"const": "request"},
                    "id": {"$ref": "#/$defs/RequestId"},
                    "method": {"const": method},
                    "data": {"anyOf": [ref, {"type": "null"}]} if optional else ref,
                },
                "required": ["type", "id", "method"] if optional else ["type", "id", "method", "data"],
            }
        )
    # The events the server sends, from jasmin_signaling.events: not a request frame, so beside
    # the ``oneOf``, in ``$defs/EventFrame`` (validate an event with ``{"$ref": ".../EventFrame"}``).
    event_frame = {
        "description": "An event frame the server sends (docs/signaling.md, Events), generated from "
        "jasmin_signaling.events.",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "type": {"const": "event"},
                    "event": {"const": name},
                    "data": {"$ref": f"#/$defs/{cls.__name__}"},
                },
                "required": ["type", "event", "data"],
                "additionalProperties": False,
            }
            for name, cls in EVENTS.items()
        ],
    }
    return json.dumps(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
            "title": "jasmin/1 signaling request",
            "description": "A request frame of the signaling protocol (docs/signaling.md), generated from "
            "jasmin_signaling.messages. A frame is a JSON text frame or a msgpack binary frame; "
            "text anywhere in data holding a NUL or an unpaired surrogate is bad_request.",
            "oneOf": branches,
            "x-methods": {method: cls.__name__ for method, cls in METHODS.items()},
            "x-events": {name: cls.__name__ for name, cls in EVENTS.items()},
            "x-responses": {method: cls.__name__ for method, cls in RESPONSES.items()},
            "$defs": {**defs, "RequestId": request_id, "EventFrame": event_frame},
        }
    )
