"""The answers of protocol v1's join and media methods: one msgspec struct per method's answer ``data``
(``{"type": "response", "ok": true, "data": ...}``), declared once here.

The server builds these answers from the structs (``Struct(...).to_wire()``) and the JSON
Schema of the protocol (``/signaling-schema.json``) describes them from the same structs:
``x-responses`` maps each method to its answer's struct in ``$defs``. Null and absent as in
:mod:`.events`: a field without a default is always sent, an ``UNSET`` one only when given.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from .events import Event, Producer


class Consumer(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A consumer object; a consumer of a simulcast producer also has its layer and caps."""

    consumer_id: str
    producer_id: str
    kind: str
    paused: bool
    spatial_layer: int | None | UnsetType = UNSET
    max_spatial: int | None | UnsetType = UNSET
    max_temporal: int | None | UnsetType = UNSET


class IceServer(msgspec.Struct, forbid_unknown_fields=True):
    """An RTCIceServer with a time-limited TURN credential (docs/deploy.md)."""

    urls: list[str]
    username: str
    credential: str


class Joined(Event):
    """``join``: the show as this connection sees it; a performer also gets the show's private
    settings and requests; a member its own ``member_id``, a performer its ``performer_id``."""

    role: Literal["performer", "viewer"]
    show_id: str
    state: str
    producers: list[Producer]
    ice_servers: list[IceServer]
    auto_accept: bool | UnsetType = UNSET
    # Hundredths of a credit per minute; null: the billing default.
    price_per_minute: int | None | UnsetType = UNSET
    private_member: str | None | UnsetType = UNSET
    requests: list[str] | UnsetType = UNSET
    member_id: str | UnsetType = UNSET
    performer_id: str | UnsetType = UNSET
    # The room (docs/signaling.md, "Free chat"): room, you, history, slow_s, king, emoticons, palette.
    chat: dict[str, Any] | UnsetType = UNSET


class Published(Event):
    """``publish``: the server's SDP answer and the producers made of the offer."""

    transport_id: str
    sdp: str
    producers: list[Producer]


class Subscribed(Event):
    """``subscribe``: the server's SDP offer and the consumers it carries."""

    transport_id: str
    sdp: str
    consumers: list[Consumer]


class Answered(Event):
    """``answer``: the consumers of the transport, now negotiated."""

    transport_id: str
    consumers: list[Consumer]


class LayersSet(Event):
    """``consumer.set_layers``: the consumer with its new caps."""

    consumer: Consumer


RESPONSES: dict[str, type[Event]] = {
    "join": Joined,
    "publish": Published,
    "subscribe": Subscribed,
    "answer": Answered,
    "consumer.set_layers": LayersSet,
}
