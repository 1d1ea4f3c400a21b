"""Request bodies of the ``chat.*`` verbs (free-chat rooms), merged into ``messages.METHODS``.

Only the shape is checked here (types, ids, wire-size caps); the chat rules
(text length, emoticon set, palette, durations) are the server's and answer
``bad_request`` naming the field as well.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from .schema import Id, Request, cap

# Far above the chat's own 500-character cap: a longer frame is refused before any rule runs.
MAX_WIRE_TEXT = 2000
MAX_WIRE_REASON = 1000
MAX_WIRE_EMOTICONS = 20

Reason = Annotated[str, cap(MAX_WIRE_REASON)]


class ChatSend(Request):
    """A line in the room (chat.md: the rules on length, emoticons and colour)."""

    text: Annotated[str, cap(MAX_WIRE_TEXT)]
    emoticons: (
        Annotated[
            list[Annotated[str, cap(32)]],
            Meta(max_length=MAX_WIRE_EMOTICONS, description=f"at most {MAX_WIRE_EMOTICONS} codes"),
        ]
        | None
    ) = None
    color: Annotated[str, cap(16)] | None = None


class ChatHistory(Request):
    """Older lines of the room: at most `limit`, before the message `before`."""

    before: Id | None = None
    limit: int | None = None


class ChatTip(Request):
    """Tip the performer `credits`."""

    credits: int
    # The client's idempotency key for this tip: a retry with the same tip_id charges once.
    tip_id: Id


class ChatUserRef(Request):
    """A moderation action on one chat user (unmute, unban, kick)."""

    user: Id
    reason: Reason | None = None


class ChatMute(Request):
    """Time a chat user out for `seconds`."""

    user: Id
    seconds: int
    reason: Reason | None = None


class ChatBan(Request):
    """Ban a chat user from the room, for `seconds` or (absent) for ever."""

    user: Id
    seconds: int | None = None
    reason: Reason | None = None


class ChatDelete(Request):
    """Delete one line."""

    message_id: Id
    reason: Reason | None = None


class ChatSlow(Request):
    """Slow mode: `seconds` between two lines of one user (0: off)."""

    seconds: int


class ChatClear(Request):
    """Empty the room's history."""

    reason: Reason | None = None


class ChatReport(Request):
    """Report a line as prohibited content."""

    message_id: Id
    reason: Reason


CHAT_METHODS: dict[str, type[Request]] = {
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
