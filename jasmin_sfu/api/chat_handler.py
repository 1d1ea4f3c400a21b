"""The ``chat.*`` signaling verbs of one connection, on top of ``jasmin_sfu.services.chat``.

``SessionHandler`` owns one ``ChatConnection`` and delegates to it in four
places: a join is checked against bans before the connection enters the show,
the join's answer carries ``chat`` (who you are in chat, the last messages,
slow mode, the King), leaving the show leaves the room, and every ``chat.*``
verb lands in ``handle``. Chat errors become wire codes here, at the edge.

The room of a show is the show's id. Who may do what is decided from the
connection's server-side identity (its token's principal, or the legacy
trusted ids): moderators are the show's performers and support (admin
accounts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Callable, Coroutine, Protocol

import msgspec

from jasmin_signaling import responses as rs
from jasmin_signaling.errors import SignalingError
from jasmin_signaling.chat_messages import (
    ChatBan,
    ChatClear,
    ChatDelete,
    ChatHistory,
    ChatMute,
    ChatReport,
    ChatSend,
    ChatSlow,
    ChatTip,
    ChatUserRef,
)
from jasmin_signaling.events import ChatRemoved

from jasmin_sfu.services.accounts import Principal
from jasmin_sfu.services.chat import ADMIN, GUEST, MEMBER, PERFORMER, ChatService, ChatUser
from jasmin_sfu.services.errors import (
    ChatBannedError,
    ChatError,
    ChatForbiddenError,
    ChatMutedError,
    ChatRateLimitedError,
    ChatUnavailableError,
    ChatValidationError,
    InsufficientFundsError,
    TransferConflictError,
    TransferRejectedError,
    UnknownChatMessageError,
)
from jasmin_sfu.shows import machine as m
from jasmin_sfu.shows.show import Show
from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)


class ChatRefusal(SignalingError):
    """A signaling error with extra fields on the wire (``retry_after``, ``until``)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(code, message)
        self.extra = extra

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), **self.extra}


def map_chat_error(exc: Exception) -> SignalingError | None:
    """Chat and ledger errors as wire codes (None: not ours)."""
    if isinstance(exc, ChatRateLimitedError):
        return ChatRefusal("rate_limited", str(exc), retry_after=round(exc.retry_after, 3))
    if isinstance(exc, ChatBannedError):
        return ChatRefusal("banned", str(exc), until=exc.until)
    if isinstance(exc, ChatMutedError):
        return ChatRefusal("muted", str(exc), until=exc.until)
    if isinstance(exc, ChatValidationError):
        return SignalingError("bad_request", str(exc))
    if isinstance(exc, ChatForbiddenError):
        return SignalingError("forbidden", str(exc))
    if isinstance(exc, UnknownChatMessageError):
        return SignalingError("unknown_message", str(exc))
    if isinstance(exc, ChatUnavailableError):
        return SignalingError("invalid_state", str(exc))
    if isinstance(exc, InsufficientFundsError):
        return SignalingError("insufficient_credits", "not enough credits for this tip; nothing was charged")
    if isinstance(exc, TransferConflictError):
        return SignalingError("idempotency_conflict", "this tip_id was already used for another tip")
    if isinstance(exc, TransferRejectedError):
        return SignalingError("invalid_state", f"the tip was refused: {exc}")
    if isinstance(exc, ChatError):  # pragma: no cover - every chat error is mapped above
        return SignalingError("bad_request", str(exc))
    return None


def guest_chat_id(session_id: str) -> str:
    """A guest's id in chat: derived from its session, never the session id itself."""
    return "guest:" + hashlib.sha256(b"jasmin-chat-guest:" + session_id.encode()).hexdigest()[:16]


def chat_user(
    principal: Principal | None, role: str, member_id: str | None, performer_id: str | None, session_id: str
) -> ChatUser:
    """Who a connection is in chat, from its server-side identity only."""
    if role == "performer":
        pid = performer_id or session_id
        name = principal.username if principal is not None and principal.username else pid
        return ChatUser(pid, name, PERFORMER)
    if principal is not None:
        if principal.kind == GUEST:
            gid = guest_chat_id(principal.session_id)
            return ChatUser(gid, "guest-" + gid[6:10], GUEST)
        # A performer watching another room writes as an ordinary member there (no colour, no moderation).
        kind = ADMIN if principal.kind == ADMIN else MEMBER
        return ChatUser(principal.id, principal.username or principal.id, kind)
    if member_id is not None:  # legacy trusted ids
        return ChatUser(member_id, member_id, MEMBER)
    gid = guest_chat_id(session_id)
    return ChatUser(gid, "guest-" + gid[6:10], GUEST)


class ChatOwner(Protocol):
    """The parts of ``SessionHandler`` a chat connection reads."""

    session_id: str
    principal: Principal | None
    role: str
    member_id: str | None
    performer_id: str | None
    show: Show | None

    def notify(self, event: str, data: dict[str, Any]) -> None: ...


class ChatConnection:
    """One connection's place in its show's room (a ``ChatListener``)."""

    def __init__(self, owner: ChatOwner, service: ChatService, leave: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.owner = owner
        self.service = service
        self._leave = leave
        self.room: str | None = None
        self._user: ChatUser | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- ChatListener -------------------------------------------------------------------

    @property
    def chat_user(self) -> ChatUser:
        if self._user is None:
            o = self.owner
            self._user = chat_user(o.principal, o.role, o.member_id, o.performer_id, o.session_id)
        return self._user

    @property
    def sees_private(self) -> bool:
        return self.owner.role == "performer"

    def deliver(self, event: str, data: dict[str, Any]) -> None:
        self.owner.notify(event, data)

    def removed(self, action: str, data: dict[str, Any]) -> None:
        """Kicked or banned: this connection leaves the show (a kicked user may join again)."""
        room = self.room
        if room is not None:  # always: the service tells only the listeners attached to a room
            removed = ChatRemoved(room=room, action="ban" if action == "ban" else "kick", until=data.get("until"))
            self.owner.notify("chat.removed", removed.to_wire())
        spawn_tracked(self._tasks, self._leave(), f"leaving the show after chat.removed ({action})", log)

    # -- the join ------------------------------------------------------------------------

    async def check_join(
        self, show_id: str, principal: Principal | None, role: str, member_id: str | None, performer_id: str | None
    ) -> None:
        """Before the connection enters the show: a banned user is refused (``banned``)."""
        user = chat_user(principal, role, member_id, performer_id, self.owner.session_id)
        try:
            await self.service.check_join(show_id, user)
        except ChatError as exc:
            raise _wire(exc) from None

    async def joined(self, show: Show) -> dict[str, Any]:
        """The connection is in the show: enter its room; returns the join's ``chat`` part."""
        self._user = None
        self.room = show.id
        self.service.attach(show.id, self)
        return await self.service.welcome(
            show.id,
            self.chat_user,
            sees_private=self.sees_private,
            show_session=self.service.show_session(show.id, show),
        )

    def left(self) -> None:
        if self.room is not None:
            self.service.detach(self.room, self)
            self.room = None

    # -- verbs ------------------------------------------------------------------------------

    def _show(self) -> Show:
        show = self.owner.show
        if show is None or self.room is None:
            raise SignalingError("not_joined", "join a show first: its room is the show's chat")
        if show.closed:
            raise SignalingError("invalid_state", "the show has ended")
        return show

    @property
    def moderator(self) -> bool:
        p = self.owner.principal
        return self.owner.role == "performer" or (p is not None and p.kind == ADMIN)

    def _private_to(self, show: Show) -> str | None:
        """Inside a private, what its member and the performers say stays between them."""
        pm = show.machine.private_member
        if show.machine.state != m.State.PRIVATE or pm is None:
            return None
        if self.owner.role == "performer" or self.owner.member_id == pm:
            return pm
        return None

    async def handle(self, method: str, body: Any) -> dict[str, Any]:
        try:
            result = await self._handle(method, body)
        except ChatError as exc:
            raise _wire(exc) from None
        except TransferRejectedError as exc:
            raise _wire(exc) from None
        # The chat service answers in plain dicts; the answer's struct (jasmin_signaling.responses)
        # checks and shapes them, and the schema's ``x-responses`` describes them from it.
        answer: dict[str, Any] = msgspec.convert(result, rs.RESPONSES[method]).to_wire()
        return answer

    async def _handle(self, method: str, body: Any) -> dict[str, Any]:
        show = self._show()
        room, user, svc = show.id, self.chat_user, self.service
        if method == "chat.send":
            b: ChatSend = body
            msg = await svc.send(
                room,
                user,
                b.text,
                emoticons=b.emoticons,
                color=b.color,
                moderator=self.moderator,
                private_to=self._private_to(show),
            )
            return {"message": msg}
        if method == "chat.history":
            h: ChatHistory = body
            return {
                "messages": await svc.history(
                    room, user, sees_private=self.sees_private, before=h.before, limit=h.limit
                )
            }
        if method == "chat.tip":
            t: ChatTip = body
            p = self.owner.principal
            if p is not None and p.kind != MEMBER:
                # A performer (or support) watching a room chats there as a member,
                # but surprises are a member's spending (docs/product.md), not an earner's.
                raise SignalingError("forbidden", "only members send surprises")
            if not show.performer_ids:  # pragma: no cover - a show without performers is closed
                raise SignalingError("invalid_state", "nobody to tip")
            return await svc.tip(
                room,
                user,
                t.credits,
                t.tip_id,
                performer_id=show.performer_ids[0],
                show_session=svc.show_session(room, show),
                private_to=self._private_to(show),
            )
        protected = frozenset(show.performer_ids)
        if method in ("chat.mute", "chat.ban"):
            s: ChatMute | ChatBan = body
            return await svc.sanction(
                room,
                user,
                method[5:],
                s.user,
                moderator=self.moderator,
                protected=protected,
                seconds=s.seconds,
                reason=s.reason,
            )
        if method in ("chat.unmute", "chat.unban", "chat.kick"):
            u: ChatUserRef = body
            return await svc.sanction(
                room, user, method[5:], u.user, moderator=self.moderator, protected=protected, reason=u.reason
            )
        if method == "chat.delete":
            d: ChatDelete = body
            return await svc.delete(room, user, d.message_id, moderator=self.moderator, reason=d.reason)
        if method == "chat.slow":
            sl: ChatSlow = body
            return await svc.slow(room, user, sl.seconds, moderator=self.moderator)
        if method == "chat.clear":
            c: ChatClear = body
            return await svc.clear(room, user, moderator=self.moderator, reason=c.reason)
        if method == "chat.report":
            r: ChatReport = body
            return await svc.report(room, user, r.message_id, r.reason)
        raise SignalingError("unknown_method", f"no method {method!r}")  # pragma: no cover


def _wire(exc: Exception) -> SignalingError:
    mapped = map_chat_error(exc)
    assert mapped is not None
    return mapped
