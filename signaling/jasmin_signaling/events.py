"""The events of protocol v1: one msgspec struct per event's ``data``, the bodies the server
sends (``{"type": "event", "event": <name>, "data": ...}``), declared once here.

The server builds each event's ``data`` from its struct (``Struct(...).to_wire()``) and
the JSON Schema of the protocol (``messages.json_schema``, ``/signaling-schema.json``)
describes them from the same structs: ``$defs/EventFrame`` is an event frame (one ``oneOf``
branch per event), ``x-events`` maps each event to its struct's name.

Null and absent are the wire's, kept apart: a field without a default is always sent (a
``T | None`` one as ``null`` when it has no value); a field defaulting to ``UNSET`` is left
out until it is given (``reason`` of ``chat.moderation``; a producer's ``layers``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType


class Event(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``data`` of an event (or of an answer, :mod:`.responses`): a closed object (the
    schema says ``additionalProperties: false``)."""

    def to_wire(self) -> dict[str, Any]:
        """The ``data`` as sent: plain dicts, lists and scalars (JSON and msgpack alike)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


# -- media ----------------------------------------------------------------------------------


class Layer(msgspec.Struct, forbid_unknown_fields=True):
    """One spatial layer of a video producer, lowest quality first."""

    spatial: int
    rid: str | None
    active: bool
    bitrate_bps: int
    width: int
    height: int
    temporal_layers: int


class Producer(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A producer object (docs/signaling.md); ``simulcast`` and ``layers`` only for video."""

    producer_id: str
    kind: Literal["audio", "video"]
    codec: str
    # ``session_id`` and ``mid``; a Cam2Cam producer also ``cam2cam`` and ``member_id``.
    app_data: dict[str, Any]
    simulcast: bool | UnsetType = UNSET
    layers: list[Layer] | UnsetType = UNSET


class ProducerAdded(Event):
    show_id: str
    producer: Producer


class ProducerRemoved(Event):
    show_id: str
    producer_id: str


class ConsumerLayer(Event):
    """The layer the node forwards a viewer; all three null while its video is paused."""

    producer_id: str
    consumer_id: str
    spatial: int | None
    temporal: int | None
    rid: str | None


# -- the show -------------------------------------------------------------------------------


class ShowEnded(Event):
    show_id: str


class ShowState(Event):
    show_id: str
    state: str
    at: float


class _MemberEvent(Event):
    """An event of one member's private, sneak peek or Cam2Cam; only the performers and that
    member get it. ``member_id`` is null for an event of no member."""

    show_id: str
    member_id: str
    at: float


class PrivateRequested(_MemberEvent):
    pass


class PrivateWithdrawn(_MemberEvent):
    pass


class PrivateStarted(_MemberEvent):
    pass


class PrivateDeclined(_MemberEvent):
    reason: Literal["declined", "performer_busy"]


class PrivateEnded(_MemberEvent):
    reason: str


class Cam2CamStarted(_MemberEvent):
    pass


class Cam2CamEnded(_MemberEvent):
    reason: str


class SneakPeekStarted(_MemberEvent):
    until: float


class SneakPeekEnded(_MemberEvent):
    reason: str


class PrivateCreditWarning(Event):
    show_id: str
    member_id: str
    seconds_left: int


class PrivateCreditExhausted(Event):
    show_id: str
    member_id: str


# -- social ---------------------------------------------------------------------------------


class FavouriteOnline(Event):
    performer: str
    show_id: str
    at: float


# -- chat -----------------------------------------------------------------------------------


class ChatMessage(Event):
    # The message as chat.md shows it: id, room, author, text, emoticons, ts (and private).
    message: dict[str, Any]


class ChatDeleted(Event):
    room: str
    message_id: str


class ChatCleared(Event):
    room: str


class ChatModeration(Event):
    room: str
    action: str
    # Each as the action has it: ``target`` for a sanction, ``until`` for a mute or a ban
    # (null: a ban for ever), ``reason`` when one was given, ``slow_s`` for ``slow``.
    target: str | UnsetType = UNSET
    until: float | None | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    slow_s: int | UnsetType = UNSET


class ChatRemoved(Event):
    room: str
    action: Literal["kick", "ban"]
    until: float | None


class ChatTipEvent(Event):
    # id, from, credits, ts (and private).
    tip: dict[str, Any]


class King(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    username: str
    credits: float


class ChatKing(Event):
    room: str
    king: King | None


EVENTS: dict[str, type[Event]] = {
    "producer.added": ProducerAdded,
    "producer.removed": ProducerRemoved,
    "show.ended": ShowEnded,
    "consumer.layer": ConsumerLayer,
    "show.state": ShowState,
    "private.requested": PrivateRequested,
    "private.withdrawn": PrivateWithdrawn,
    "private.started": PrivateStarted,
    "private.declined": PrivateDeclined,
    "private.ended": PrivateEnded,
    "private.credit_warning": PrivateCreditWarning,
    "private.credit_exhausted": PrivateCreditExhausted,
    "cam2cam.started": Cam2CamStarted,
    "cam2cam.ended": Cam2CamEnded,
    "sneak_peek.started": SneakPeekStarted,
    "sneak_peek.ended": SneakPeekEnded,
    "favourite.online": FavouriteOnline,
    "chat.message": ChatMessage,
    "chat.deleted": ChatDeleted,
    "chat.cleared": ChatCleared,
    "chat.moderation": ChatModeration,
    "chat.removed": ChatRemoved,
    "chat.tip": ChatTipEvent,
    "chat.king": ChatKing,
}


def event_body(name: str, **fields: Any) -> dict[str, Any]:
    """The ``data`` of event ``name`` built from its struct: for a sender that holds the name
    in a variable (the show machine's commands). An unknown name or field is a bug: ``KeyError``
    / ``TypeError``."""
    return EVENTS[name](**fields).to_wire()
