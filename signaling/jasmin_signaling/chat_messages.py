"""Typed request bodies of the ``chat.*`` verbs (free-chat rooms), merged into ``messages.METHODS``.

Only the shape is checked here (types, ids, wire-size caps); the chat rules
(text length, emoticon set, palette, durations) are the server's and answer
``bad_request`` naming the field as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SignalingError

_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
# Far above the chat's own 500-character cap: a longer frame is refused before any rule runs.
MAX_WIRE_TEXT = 2000
MAX_WIRE_REASON = 1000
MAX_WIRE_EMOTICONS = 20


def _check_id(name: str, value: str) -> None:
    if not _ID_RE.match(value):
        raise SignalingError("bad_request", f"{name}: 1-64 characters of A-Z a-z 0-9 _ . : -")


def _check_len(name: str, value: str | None, cap: int) -> None:
    if value is not None and len(value) > cap:
        raise SignalingError("bad_request", f"{name}: longer than {cap} characters")


@dataclass(frozen=True)
class ChatSend:
    text: str
    emoticons: list[str] | None = None
    color: str | None = None

    def validate(self) -> None:
        _check_len("text", self.text, MAX_WIRE_TEXT)
        if self.emoticons is not None:
            if len(self.emoticons) > MAX_WIRE_EMOTICONS:
                raise SignalingError("bad_request", f"emoticons: more than {MAX_WIRE_EMOTICONS}")
            for e in self.emoticons:
                _check_len("emoticons[]", e, 32)
        _check_len("color", self.color, 16)


@dataclass(frozen=True)
class ChatHistory:
    before: str | None = None
    limit: int | None = None

    def validate(self) -> None:
        if self.before is not None:
            _check_id("before", self.before)


@dataclass(frozen=True)
class ChatTip:
    credits: int
    # The client's idempotency key for this tip: a retry with the same tip_id charges once.
    tip_id: str

    def validate(self) -> None:
        _check_id("tip_id", self.tip_id)


@dataclass(frozen=True)
class ChatUserRef:
    user: str
    reason: str | None = None

    def validate(self) -> None:
        _check_id("user", self.user)
        _check_len("reason", self.reason, MAX_WIRE_REASON)


@dataclass(frozen=True)
class ChatMute:
    user: str
    seconds: int
    reason: str | None = None

    def validate(self) -> None:
        _check_id("user", self.user)
        _check_len("reason", self.reason, MAX_WIRE_REASON)


@dataclass(frozen=True)
class ChatBan:
    user: str
    seconds: int | None = None
    reason: str | None = None

    def validate(self) -> None:
        _check_id("user", self.user)
        _check_len("reason", self.reason, MAX_WIRE_REASON)


@dataclass(frozen=True)
class ChatDelete:
    message_id: str
    reason: str | None = None

    def validate(self) -> None:
        _check_id("message_id", self.message_id)
        _check_len("reason", self.reason, MAX_WIRE_REASON)


@dataclass(frozen=True)
class ChatSlow:
    seconds: int

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class ChatClear:
    reason: str | None = None

    def validate(self) -> None:
        _check_len("reason", self.reason, MAX_WIRE_REASON)


@dataclass(frozen=True)
class ChatReport:
    message_id: str
    reason: str

    def validate(self) -> None:
        _check_id("message_id", self.message_id)
        _check_len("reason", self.reason, MAX_WIRE_REASON)


CHAT_METHODS: dict[str, type] = {
    "chat.send": ChatSend,
    "chat.history": ChatHistory,
    "chat.tip": ChatTip,
    "chat.mute": ChatMute,
    "chat.unmute": ChatUserRef,
    "chat.ban": ChatBan,
    "chat.unban": ChatUserRef,
    "chat.kick": ChatUserRef,
    "chat.delete": ChatDelete,
    "chat.slow": ChatSlow,
    "chat.clear": ChatClear,
    "chat.report": ChatReport,
}
