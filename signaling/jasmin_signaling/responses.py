"""The answers of protocol v1's methods: one msgspec struct per method's answer ``data``
(``{"type": "response", "ok": true, "data": ...}``), declared once here; the methods whose
answer is ``{}`` share :class:`Done` (``Empty`` is the request without fields).

The server builds these answers from the structs (``Struct(...).to_wire()``) and the JSON
Schema of the protocol (``/signaling-schema.json``) describes them from the same structs:
``x-responses`` maps each method to its answer's struct in ``$defs``. Null and absent as in
:mod:`.events`: a field without a default is always sent, an ``UNSET`` one only when given.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from .events import Event, King, Producer


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


class Done(Event):
    """``{}``: the answer of a method that has nothing to say but that it was done."""


# -- the show ---------------------------------------------------------------------------------


class PrivateRequestSent(Event):
    """``private.request``: the show's state as the member sees it; ``private_member`` true
    when the request was auto-accepted (the private started)."""

    state: str
    private_member: bool


class PrivateAccepted(Event):
    """``private.accept``: ``accepted_at`` is the instant every other viewer was paused."""

    member_id: str
    accepted_at: float


class PrivateEndedAnswer(Event):
    """``private.end``."""

    ended_at: float


class SneakPeekAnswer(Event):
    """``sneak_peek``: the peek runs from ``started_at`` until ``until`` (UNIX seconds)."""

    started_at: float
    until: float


class ShowFreed(Event):
    """``show.free``."""

    state: str
    at: float


class ShowSettingsSaved(Event):
    """``show.settings``: the settings now; ``price_per_minute`` null: the billing default."""

    auto_accept: bool
    price_per_minute: int | None


class NotificationsSubscribed(Event):
    """``notifications.subscribe``: the member followed and the events it gets."""

    member_id: str
    events: list[str]


# -- chat -------------------------------------------------------------------------------------


class ChatSent(Event):
    """``chat.send``: the message as ``chat.message`` carries it."""

    message: dict[str, Any]


class ChatHistoryAnswer(Event):
    """``chat.history``: messages as ``chat.message`` carries them, oldest first."""

    messages: list[dict[str, Any]]


class ChatTipped(Event):
    """``chat.tip``: the tip as ``chat.tip`` carries it, the King of the Room after it (null:
    none), ``replayed`` true when this ``tip_id`` was already paid (nothing charged again)."""

    tip: dict[str, Any]
    king: King | None
    replayed: bool


class ChatSanctioned(Event):
    """``chat.mute`` / ``unmute`` / ``ban`` / ``unban`` / ``kick``: as ``chat.moderation``
    says it; ``until`` for a mute or a ban (null: a ban for ever), ``reason`` when given."""

    room: str
    action: Literal["mute", "unmute", "ban", "unban", "kick"]
    target: str
    until: float | None | UnsetType = UNSET
    reason: str | UnsetType = UNSET


class ChatDeleteAnswer(Event):
    """``chat.delete``."""

    room: str
    message_id: str


class ChatSlowSet(Event):
    """``chat.slow``: seconds between two messages of one user (0: off)."""

    room: str
    action: Literal["slow"]
    slow_s: int


class ChatClearAnswer(Event):
    """``chat.clear``: how many messages were deleted."""

    room: str
    messages: int


class ChatReportFiled(Event):
    """``chat.report``: ``filed`` false when this reporter already reported that message."""

    message_id: str
    filed: bool


RESPONSES: dict[str, type[Event]] = {
    "join": Joined,
    "publish": Published,
    "unpublish": Done,
    "subscribe": Subscribed,
    "answer": Answered,
    "unsubscribe": Done,
    "consumer.set_layers": LayersSet,
    "leave": Done,
    "ping": Done,
    "private.request": PrivateRequestSent,
    "private.withdraw": Done,
    "private.accept": PrivateAccepted,
    "private.decline": Done,
    "private.end": PrivateEndedAnswer,
    "sneak_peek": SneakPeekAnswer,
    "show.free": ShowFreed,
    "show.settings": ShowSettingsSaved,
    "notifications.subscribe": NotificationsSubscribed,
    "chat.send": ChatSent,
    "chat.history": ChatHistoryAnswer,
    "chat.tip": ChatTipped,
    "chat.mute": ChatSanctioned,
    "chat.unmute": ChatSanctioned,
    "chat.ban": ChatSanctioned,
    "chat.unban": ChatSanctioned,
    "chat.kick": ChatSanctioned,
    "chat.delete": ChatDeleteAnswer,
    "chat.slow": ChatSlowSet,
    "chat.clear": ChatClearAnswer,
    "chat.report": ChatReportFiled,
}
