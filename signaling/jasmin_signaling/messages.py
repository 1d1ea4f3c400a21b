"""Typed request bodies of protocol v1, validated field by field.

Each method's ``data`` object is checked against a frozen dataclass; a missing
field, an unknown field or a wrong type is a ``bad_request`` naming the field.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any

from .chat_messages import CHAT_METHODS
from .errors import SignalingError
from .text import echo, first_unstorable, unstorable

_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
MAX_SDP_CHARS = 65536


def valid_request_id(req_id: Any) -> bool:
    """A request id the server can echo: an integer, or 1-64 characters of text."""
    if isinstance(req_id, bool):
        return False
    if isinstance(req_id, int):
        return True
    return isinstance(req_id, str) and 0 < len(req_id) <= 64 and not unstorable(req_id)


def _check_id(name: str, value: str) -> None:
    if not _ID_RE.match(value):
        raise SignalingError("bad_request", f"{name}: 1-64 characters of A-Z a-z 0-9 _ . : -")


_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}\Z")


@dataclass(frozen=True)
class Join:
    show_id: str
    role: str
    # A session token (docs/accounts.md): the server derives who the caller
    # is - member, performer or guest - from it, never from the fields below.
    token: str | None = None
    # Legacy, honoured only without a token and only when the server runs
    # with accounts.trust_client_ids: a viewer says which member it is (no
    # member_id: a guest) and a performer may name itself.
    member_id: str | None = None
    performer_id: str | None = None

    def validate(self) -> None:
        _check_id("show_id", self.show_id)
        if self.role not in ("performer", "viewer"):
            raise SignalingError("bad_request", "role: must be 'performer' or 'viewer'")
        if self.token is not None:
            if not _TOKEN_RE.match(self.token):
                raise SignalingError("bad_request", "token: 1-256 characters of A-Z a-z 0-9 _ -")
            if self.member_id is not None or self.performer_id is not None:
                raise SignalingError("bad_request", "member_id, performer_id: not allowed with a token")
        if self.member_id is not None:
            _check_id("member_id", self.member_id)
            if self.role != "viewer":
                raise SignalingError("bad_request", "member_id: only for role 'viewer'")
        if self.performer_id is not None:
            _check_id("performer_id", self.performer_id)
            if self.role != "performer":
                raise SignalingError("bad_request", "performer_id: only for role 'performer'")


@dataclass(frozen=True)
class MemberRef:
    member_id: str

    def validate(self) -> None:
        _check_id("member_id", self.member_id)


@dataclass(frozen=True)
class ShowSettings:
    auto_accept: bool | None = None
    # Hundredths of a credit per minute, billed per second (docs/money.md).
    price_per_minute: int | None = None

    def validate(self) -> None:
        if self.price_per_minute is not None and not 1 <= self.price_per_minute <= 1_000_000:
            raise SignalingError("bad_request", "price_per_minute: 1..1000000 hundredths of a credit")


@dataclass(frozen=True)
class Publish:
    sdp: str

    def validate(self) -> None:
        _check_sdp(self.sdp)


@dataclass(frozen=True)
class Subscribe:
    producer_ids: list[str] | None = None
    paused: bool = False

    def validate(self) -> None:
        for pid in self.producer_ids or []:
            _check_id("producer_ids[]", pid)


@dataclass(frozen=True)
class Answer:
    transport_id: str
    sdp: str

    def validate(self) -> None:
        _check_id("transport_id", self.transport_id)
        _check_sdp(self.sdp)


@dataclass(frozen=True)
class Unsubscribe:
    transport_id: str

    def validate(self) -> None:
        _check_id("transport_id", self.transport_id)


#: Spatial layers a publisher may send (jasmin_codecs.simulcast.MAX_SIMULCAST_LAYERS)
#: and VP8's temporal layers (TID is 2 bits).
MAX_SPATIAL = 2
MAX_TEMPORAL = 3


@dataclass(frozen=True)
class SetLayers:
    """A viewer's cap on one of its video consumers' layers (docs/signaling.md,
    ``consumer.set_layers``); None (or absent) lifts a cap."""

    consumer_id: str
    max_spatial: int | None = None
    max_temporal: int | None = None

    def validate(self) -> None:
        _check_id("consumer_id", self.consumer_id)
        if self.max_spatial is not None and not 0 <= self.max_spatial <= MAX_SPATIAL:
            raise SignalingError("bad_request", f"max_spatial: 0..{MAX_SPATIAL} (0 = the lowest layer) or null")
        if self.max_temporal is not None and not 0 <= self.max_temporal <= MAX_TEMPORAL:
            raise SignalingError("bad_request", f"max_temporal: 0..{MAX_TEMPORAL} or null")


@dataclass(frozen=True)
class Empty:
    def validate(self) -> None:
        pass


def _check_sdp(sdp: str) -> None:
    if len(sdp) > MAX_SDP_CHARS:
        raise SignalingError("bad_request", f"sdp: longer than {MAX_SDP_CHARS} characters")
    if not sdp.startswith("v=0"):
        raise SignalingError("bad_sdp", "sdp: must start with v=0")


@dataclass(frozen=True)
class NotificationsSubscribe:
    # A member token; without one, the member this connection joined as.
    token: str | None = None

    def validate(self) -> None:
        if self.token is not None and not _TOKEN_RE.match(self.token):
            raise SignalingError("bad_request", "token: 1-256 characters of A-Z a-z 0-9 _ -")


METHODS: dict[str, type] = {
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


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return False  # pragma: no cover


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


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
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise SignalingError("bad_request", f"{str(key)[:64]}: unknown field for {method}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SignalingError("bad_request", f"{name}: required")
            continue
        if not _type_ok(data[name], hints[name]):
            raise SignalingError("bad_request", f"{name}: expected {_type_name(hints[name])}")
        kwargs[name] = data[name]
    body = cls(**kwargs)
    body.validate()
    return body
