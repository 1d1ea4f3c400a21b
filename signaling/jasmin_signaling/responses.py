"""The answers of protocol v1's media methods: one msgspec struct per method's answer ``data``
(``{"type": "response", "ok": true, "data": ...}``), declared once here.

The server builds these answers from the structs (``Struct(...).to_wire()``) and the JSON
Schema of the protocol (``/signaling-schema.json``) describes them from the same structs:
``x-responses`` maps each method to its answer's struct in ``$defs``. Null and absent as in
:mod:`.events`: a field without a default is always sent, an ``UNSET`` one only when given.
"""

from __future__ import annotations

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
    "publish": Published,
    "subscribe": Subscribed,
    "answer": Answered,
    "consumer.set_layers": LayersSet,
}
