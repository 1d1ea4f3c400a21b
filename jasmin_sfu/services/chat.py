"""Free-chat text rooms: messages, history, tips with King of the Room, moderation, reports.

The room of a show is the show's id (the performer's username). This service
holds the rules; ``jasmin_sfu.api.chat_handler`` maps the signaling verbs onto
it and its errors onto wire codes. Time is injected (``clock``, epoch seconds).

Rules, with their numbers (docs/chat.md says the same):

* Text: 1-500 characters after trimming (guests 200), no control characters
  (newlines included: a chat line is one line), no unpaired surrogate (no store
  can keep it: ``jasmin_signaling.text.unstorable``, the edge's own rule). Emoticons: up to 5 codes of
  ``EMOTICONS``, for TopMembers and performers only.
* Colours: performers write in ``PERFORMER_COLOR``, support in ``SUPPORT_COLOR``,
  TopMembers in ``TOP_MEMBER_COLOR`` or one colour of ``TOP_MEMBER_PALETTE``
  they pick; everybody else has no colour.
* Rate limits per user and room, sliding windows: members 5 messages / 10 s,
  guests 1 / 10 s, performers and support 20 / 10 s. Slow mode (3-120 s
  between two messages of one user) applies on top, to everybody but the
  room's moderators. A refusal carries ``retry_after`` in seconds. The windows
  (jasmin_sfu/services/windows.py, tables ``chat`` and ``chatslow``) are this
  process's, or with ``[cluster]`` the site's in Redis, shared by every node
  (jasmin_sfu/services/redis_windows.py).
* Moderators of a room: its performers and support (admin accounts). A ban
  (optionally timed) refuses messages and joins; a mute (1 s - 14 days)
  refuses messages until it passes; a kick removes the user's connections
  from the show (it may rejoin). Performers of the room cannot be sanctioned.
  Every action is appended to ``chat_moderation_log``.
* Privacy: while a show is private, what the performer and the private's member
  write goes to them only (``private_to``), in delivery and in history; their
  tips there are private too and do not count towards King of the Room.
* King of the Room: the member with the most credits tipped in free chat during
  the current show session (one session: from the show opening on this node
  until it closes); a tie stays with whoever reached the total first.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

import msgspec

from jasmin_sfu.services.accounts import AccountsSettings
from jasmin_sfu.services.chat_bus import ChatBus, Envelope, InMemoryBus
from jasmin_sfu.services.errors import (
    ChatBannedError,
    ChatForbiddenError,
    ChatMutedError,
    ChatRateLimitedError,
    ChatUnavailableError,
    ChatValidationError,
    UnknownChatMessageError,
)
from jasmin_sfu.services.ledger import UNITS_PER_CREDIT
from jasmin_sfu.services.personal_data import RetentionPolicy
from jasmin_sfu.services.windows import LocalWindows, Windows
from jasmin_sfu.store.chat_repo import ChatStore, KingRow, LogRow, MessageRow, ReportRow, SanctionRow, TipRow
from jasmin_signaling.text import unstorable
from jasmin_signaling import events as ev

log = logging.getLogger(__name__)

US = 1_000_000
GUEST, MEMBER, PERFORMER, ADMIN = "guest", "member", "performer", "admin"

MAX_TEXT = 500
MAX_GUEST_TEXT = 200
MAX_REASON = 500
MAX_EMOTICONS = 5
EMOTICONS = (
    ":smile:",
    ":laugh:",
    ":wink:",
    ":blush:",
    ":kiss:",
    ":heart:",
    ":fire:",
    ":rose:",
    ":star:",
    ":clap:",
    ":devil:",
    ":angel:",
    ":crown:",
    ":gift:",
    ":wow:",
    ":100:",
)
PERFORMER_COLOR = "#e0357a"
SUPPORT_COLOR = "#2f6fdb"
TOP_MEMBER_COLOR = "#d4a017"
TOP_MEMBER_PALETTE = ("#d4a017", "#e67e22", "#16a085", "#8e44ad", "#c0392b", "#2980b9")
# Twitch's timeout range: 1 s to two weeks.
MAX_MUTE_S = 14 * 86400
# A timed ban: up to a year; leave `seconds` out for a permanent one.
MAX_BAN_S = 365 * 86400
# Twitch's slow-mode range: 3-120 s between two messages (0: off).
SLOW_RANGE = (3, 120)
MAX_TIP_CREDITS = 10_000
HISTORY_DEFAULT = 50
HISTORY_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MODERATION_ACTIONS = ("mute", "unmute", "ban", "unban", "kick", "delete", "slow", "clear")


class TipLedger(Protocol):
    """The part of ``jasmin_sfu.services.ledger.Ledger`` a tip needs."""

    async def open_member(self, member_id: str) -> str: ...

    async def open_performer(self, performer_id: str) -> str: ...

    async def tip(
        self, transfer_id: str, member_id: str, performer_id: str, amount_units: int, performer_share_bp: int
    ) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ChatSettings:
    """Free-chat rooms (docs/chat.md): the config section ``[chat]``. The store follows
    ``[accounts]``: its data_dir or its dsn.

    Declared once, here: jasmin_sfu/config.py loads this class as the section (``ChatConfig``
    there) and validates it; :func:`open_chat` hands it to :class:`ChatService` as is.
    """

    # Set on every node of a site: room events go through Redis pub/sub (empty: this process only).
    redis_url: str = ""
    # Channels are <redis_prefix>:chat:<room>; tests use a unique prefix each.
    redis_prefix: str = "jasmin"
    # Messages per window per user and room (sliding windows).
    member_messages: int = 5
    member_window_s: float = 10.0
    guest_messages: int = 1
    guest_window_s: float = 10.0
    staff_messages: int = 20
    staff_window_s: float = 10.0
    # Messages a joining connection gets in its join answer.
    history_on_join: int = HISTORY_DEFAULT
    # The performer's share of a tip in basis points; the house keeps the rest.
    tip_performer_share_bp: int = 5000


@dataclass(frozen=True)
class ChatUser:
    """Who writes: ``id`` is the user id (guests: a pseudonymous id derived from their session)."""

    id: str
    username: str
    kind: str  # guest | member | performer | admin

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "kind": self.kind}


class ChatListener(Protocol):
    """One local connection in a room, as the chat service sees it."""

    @property
    def chat_user(self) -> ChatUser: ...

    @property
    def sees_private(self) -> bool:
        """A performer of the room: sees the private's messages."""
        ...

    def deliver(self, event: str, data: dict[str, Any]) -> None: ...

    def removed(self, action: str, data: dict[str, Any]) -> None:
        """Kicked or banned: leave the show."""
        ...


def _always_false(_user_id: str) -> Awaitable[bool]:
    async def no() -> bool:
        return False

    return no()


def message_view(m: MessageRow) -> dict[str, Any]:
    """A message on the wire (``ts`` in epoch seconds)."""
    out: dict[str, Any] = {
        "id": m.id,
        "room": m.room,
        "author": {
            "id": m.author_id,
            "username": m.author_username,
            "kind": m.author_kind,
            "top_member": m.top_member,
            "color": m.color,
        },
        "text": m.text,
        "emoticons": list(m.emoticons),
        "ts": m.created_at / US,
    }
    if m.private_to is not None:
        out["private"] = True
    return out


def king_view(k: KingRow | None, units_per_credit: int) -> dict[str, Any] | None:
    if k is None:
        return None
    return {"id": k.member_id, "username": k.member_username, "credits": k.units / units_per_credit}


def log_view(r: LogRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "room": r.room,
        "actor": {"id": r.actor_id, "username": r.actor_username, "kind": r.actor_kind},
        "action": r.action,
        "target": r.target_id,
        "reason": r.reason,
        "params": json.loads(r.params),
        "ts": r.created_at / US,
    }


def report_view(r: ReportRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "room": r.room,
        "message_id": r.message_id,
        "reporter": r.reporter_id,
        "author": r.author_id,
        "text": r.message_text,
        "reason": r.reason,
        "ts": r.created_at / US,
    }


class ChatService:
    """Rooms of this process, the rules, and the bus to the other processes."""

    name = "chat"  # as a PersonalDataSource

    def __init__(
        self,
        store: ChatStore,
        clock: Callable[[], float] = time.time,
        *,
        bus: ChatBus | None = None,
        ledger: TipLedger | None = None,
        is_top_member: Callable[[str], Awaitable[bool]] = _always_false,
        limits: ChatSettings | None = None,
        windows: Windows | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.bus: ChatBus = bus if bus is not None else InMemoryBus()
        self.ledger = ledger
        self.is_top_member = is_top_member
        self.limits = limits if limits is not None else ChatSettings()
        # Messages per user and room, and each user's last message (slow mode): this process's
        # windows, or the site's in Redis with [cluster] (docs/cluster.md, "Shared limits").
        self.windows: Windows = windows if windows is not None else LocalWindows()
        self.origin = uuid.uuid4().hex
        self.rooms: dict[str, set[ChatListener]] = {}
        self._slow: dict[str, int] = {}
        self._sessions: dict[str, tuple[weakref.ref[Any], str]] = {}
        self._kings: dict[tuple[str, str], tuple[str, int] | None] = {}
        self._last_us = 0

    async def start(self) -> None:
        await self.bus.start(self.origin, self._receive)

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()

    # -- ids, time -----------------------------------------------------------------------

    def now_us(self) -> int:
        return int(self.clock() * US)

    def new_id(self) -> str:
        """Sortable and unique: microseconds (strictly increasing in this process) and 32 random bits."""
        us = max(self.now_us(), self._last_us + 1)
        self._last_us = us
        return f"{us:016d}-{secrets.token_hex(4)}"

    def show_session(self, room: str, show: object) -> str:
        """The key of ``show``'s session in ``room``: a new show object is a new session (King resets)."""
        known = self._sessions.get(room)
        if known is not None and known[0]() is show:
            return known[1]
        key = f"{room}@{self.now_us()}"
        self._sessions[room] = (weakref.ref(show), key)
        return key

    # -- local connections and the bus ------------------------------------------------------

    def attach(self, room: str, listener: ChatListener) -> None:
        self.rooms.setdefault(room, set()).add(listener)

    def detach(self, room: str, listener: ChatListener) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(listener)
            if not members:
                del self.rooms[room]

    async def _publish(
        self,
        room: str,
        event: str,
        data: dict[str, Any],
        *,
        to: str | None = None,
        effect: dict[str, Any] | None = None,
    ) -> None:
        """Deliver here at once, then to the other processes."""
        env: Envelope = {"v": 1, "origin": self.origin, "room": room, "event": event, "data": data}
        if to is not None:
            env["to"] = to
        if effect is not None:
            env["effect"] = effect
        self._deliver(env)
        await self.bus.publish(room, env)

    def _receive(self, env: Envelope) -> None:
        if env.get("v") != 1 or not isinstance(env.get("room"), str) or not isinstance(env.get("data"), dict):
            log.warning("chat: dropped an envelope of an unknown shape")
            return
        self._deliver(env)

    def _deliver(self, env: Envelope) -> None:
        room, event, data = env["room"], env["event"], env["data"]
        to = env.get("to")
        effect = env.get("effect") or {}
        if "slow_s" in effect:
            self._slow[room] = int(effect["slow_s"])
        leave = effect.get("leave")
        for listener in list(self.rooms.get(room, ())):
            user = listener.chat_user
            # A private's lines reach its member and the performers, and nobody else.
            if to is not None and not (listener.sees_private or user.id == to):
                continue
            listener.deliver(event, data)
            if leave is not None and user.id == leave:
                listener.removed(effect.get("action", "kick"), data)

    # -- checks ----------------------------------------------------------------------------

    async def _sanctions(self, room: str, user_id: str) -> dict[str, SanctionRow]:
        return {s.kind: s for s in await self.store.sanctions(room, user_id, self.now_us())}

    async def check_join(self, room: str, user: ChatUser) -> None:
        """Refuse a banned user's join (``ChatBannedError``)."""
        ban = (await self._sanctions(room, user.id)).get("ban")
        if ban is not None:
            raise ChatBannedError(_sanction_text("banned from", room, ban), _until(ban))

    def _allowance(self, user: ChatUser, moderator: bool) -> tuple[int, float]:
        """Messages per window, and the window in seconds, for ``user`` in a room."""
        lim = self.limits
        if moderator or user.kind in (PERFORMER, ADMIN):
            return lim.staff_messages, lim.staff_window_s
        if user.kind == GUEST:
            return lim.guest_messages, lim.guest_window_s
        return lim.member_messages, lim.member_window_s

    async def _rate(self, room: str, user: ChatUser, moderator: bool) -> tuple[str, float, float]:
        """Raise ``ChatRateLimitedError`` when a message now would exceed the user's window or slow
        mode; else the window's key, its length and now, for :meth:`_count` once the message is stored."""
        count, window = self._allowance(user, moderator)
        now = self.clock()
        key = f"{room}\x00{user.id}"
        retry = await self.windows.retry_after(f"chat:{key}", count, window, now)
        if retry is not None:
            raise ChatRateLimitedError(f"{count} messages per {window:g} s; retry in {retry:.1f} s", retry)
        slow = self._slow.get(room, 0)
        if slow and not moderator:
            retry = await self.windows.retry_after(f"chatslow:{key}", 1, slow, now)
            if retry is not None:
                raise ChatRateLimitedError(f"slow mode: one message per {slow} s; retry in {retry:.1f} s", retry)
        return key, window, now

    async def _count(self, key: str, window: float, now: float) -> None:
        """Count a stored message in its window, and as the user's last (kept as long as slow mode can ask)."""
        await self.windows.add(f"chat:{key}", window, now)
        await self.windows.add(f"chatslow:{key}", SLOW_RANGE[1], now)

    async def slow_s(self, room: str) -> int:
        if room not in self._slow:
            self._slow[room] = await self.store.slow_s(room)
        return self._slow[room]

    # -- joining ------------------------------------------------------------------------------

    async def welcome(self, room: str, user: ChatUser, *, sees_private: bool, show_session: str) -> dict[str, Any]:
        """What a joining connection gets: who it is in chat, the last messages, slow mode, the King."""
        history = await self.store.history(
            room, before=None, limit=self.limits.history_on_join, viewer_id=user.id, see_private=sees_private
        )
        top = user.kind == MEMBER and await self.is_top_member(user.id)
        return {
            "room": room,
            "you": {**user.view(), "top_member": top},
            "history": [message_view(m) for m in history],
            "slow_s": await self.slow_s(room),
            "king": king_view(await self.store.king(room, show_session), UNITS_PER_CREDIT),
            "emoticons": list(EMOTICONS) if top or user.kind == PERFORMER else [],
            "palette": list(TOP_MEMBER_PALETTE) if top else [],
        }

    async def history(
        self, room: str, user: ChatUser, *, sees_private: bool, before: str | None, limit: int | None
    ) -> list[dict[str, Any]]:
        n = HISTORY_DEFAULT if limit is None else limit
        if not 1 <= n <= HISTORY_MAX:
            raise ChatValidationError("limit", f"1..{HISTORY_MAX}")
        rows = await self.store.history(room, before=before, limit=n, viewer_id=user.id, see_private=sees_private)
        return [message_view(m) for m in rows]

    # -- writing ------------------------------------------------------------------------------

    async def send(
        self,
        room: str,
        user: ChatUser,
        text: str,
        *,
        emoticons: list[str] | None = None,
        color: str | None = None,
        moderator: bool = False,
        private_to: str | None = None,
    ) -> dict[str, Any]:
        """Post one message; ``private_to``: said inside that member's private (goes to it and the performers)."""
        text = text.strip()
        codes = list(emoticons or [])
        max_text = MAX_GUEST_TEXT if user.kind == GUEST else MAX_TEXT
        if _CONTROL.search(text):
            raise ChatValidationError("text", "control characters (newlines included) are not allowed")
        if unstorable(text):
            raise ChatValidationError("text", "an unpaired surrogate cannot be stored")
        if len(text) > max_text:
            raise ChatValidationError("text", f"at most {max_text} characters")
        if not text and not codes:
            raise ChatValidationError("text", "empty; write something or send emoticons")
        top = user.kind == MEMBER and await self.is_top_member(user.id)
        if codes:
            if not (top or user.kind == PERFORMER):
                raise ChatForbiddenError("emoticons are for TopMembers and performers")
            if len(codes) > MAX_EMOTICONS:
                raise ChatValidationError("emoticons", f"at most {MAX_EMOTICONS}")
            for c in codes:
                if c not in EMOTICONS:
                    raise ChatValidationError("emoticons", f"{c[:20]!r} is not one of {' '.join(EMOTICONS)}")
        if color is not None and not top:
            raise ChatForbiddenError("picking a colour is for TopMembers")
        if color is not None and color not in TOP_MEMBER_PALETTE:
            raise ChatValidationError("color", f"one of {', '.join(TOP_MEMBER_PALETTE)}")
        sanctions = await self._sanctions(room, user.id)
        if "ban" in sanctions:
            raise ChatBannedError(_sanction_text("banned from", room, sanctions["ban"]), _until(sanctions["ban"]))
        if "mute" in sanctions:
            raise ChatMutedError(_sanction_text("timed out in", room, sanctions["mute"]), _until(sanctions["mute"]))
        await self.slow_s(room)
        key, window, now = await self._rate(room, user, moderator)
        if user.kind == PERFORMER:
            shown = PERFORMER_COLOR
        elif user.kind == ADMIN:
            shown = SUPPORT_COLOR
        elif top:
            shown = color or TOP_MEMBER_COLOR
        else:
            shown = None
        row = MessageRow(
            self.new_id(),
            room,
            user.id,
            user.username,
            user.kind,
            top,
            shown,
            text,
            tuple(codes),
            private_to,
            int(now * US),
        )
        await self.store.add_message(row)
        # Counted only once stored: a refused or failed message costs no quota. (Two sends of one
        # user on two nodes at once can both pass the check: at most one message over, once.)
        await self._count(key, window, now)
        view = message_view(row)
        await self._publish(room, "chat.message", ev.ChatMessage(message=view).to_wire(), to=private_to)
        return view

    async def tip(
        self,
        room: str,
        user: ChatUser,
        credits: int,
        tip_id: str,
        *,
        performer_id: str,
        show_session: str,
        private_to: str | None = None,
    ) -> dict[str, Any]:
        """A surprise of ``credits`` to the room's performer; idempotent on (member, ``tip_id``)."""
        if user.kind != MEMBER:
            raise ChatForbiddenError("only members tip")
        if not 1 <= credits <= MAX_TIP_CREDITS:
            raise ChatValidationError("credits", f"1..{MAX_TIP_CREDITS} whole credits")
        if self.ledger is None:
            raise ChatUnavailableError("tips need billing, which is not enabled on this node")
        units = credits * UNITS_PER_CREDIT
        # Derived from the member's request key: a retry (even on a new connection) is the same transfer.
        transfer_id = f"chat-tip:{user.id}:{tip_id}"
        await self.ledger.open_member(user.id)
        await self.ledger.open_performer(performer_id)
        await self.ledger.tip(transfer_id, user.id, performer_id, units, self.limits.tip_performer_share_bp)
        counted = private_to is None
        at = self.now_us()
        inserted = await self.store.add_tip(
            TipRow(transfer_id, room, show_session, user.id, user.username, performer_id, units, counted, at)
        )
        tip = {"id": transfer_id, "from": user.view(), "credits": credits, "ts": at / US}
        if private_to is not None:
            tip["private"] = True
        king = await self.store.king(room, show_session)
        kv = king_view(king, UNITS_PER_CREDIT)
        if inserted:
            await self._publish(room, "chat.tip", ev.ChatTipEvent(tip=tip).to_wire(), to=private_to)
            key = (room, show_session)
            now_king = (king.member_id, king.units) if king is not None else None
            if counted and now_king != self._kings.get(key):
                self._kings[key] = now_king
                king_ev = ev.ChatKing(room=room, king=None if kv is None else msgspec.convert(kv, ev.King))
                await self._publish(room, "chat.king", king_ev.to_wire())
        return {"tip": tip, "king": kv, "replayed": not inserted}

    # -- moderation ------------------------------------------------------------------------------

    async def _log(
        self, room: str, actor: ChatUser, action: str, target: str | None, reason: str, params: dict[str, Any]
    ) -> None:
        await self.store.add_log(
            LogRow(
                self.new_id(),
                room,
                actor.id,
                actor.username,
                actor.kind,
                action,
                target,
                reason,
                json.dumps(params, sort_keys=True),
                self.now_us(),
            )
        )

    @staticmethod
    def _check_reason(reason: str | None) -> str:
        r = (reason or "").strip()
        if len(r) > MAX_REASON or _CONTROL.search(r) or unstorable(r):
            raise ChatValidationError("reason", f"at most {MAX_REASON} characters, no control characters")
        return r

    @staticmethod
    def _require_moderator(moderator: bool) -> None:
        if not moderator:
            raise ChatForbiddenError("only the room's performers and support may moderate")

    async def sanction(
        self,
        room: str,
        actor: ChatUser,
        action: str,
        target: str,
        *,
        moderator: bool,
        protected: frozenset[str] = frozenset(),
        seconds: int | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """mute / unmute / ban / unban / kick ``target`` (a chat user id)."""
        self._require_moderator(moderator)
        why = self._check_reason(reason)
        if target == actor.id or target in protected:
            raise ChatForbiddenError("a performer of the room (or yourself) cannot be sanctioned")
        now = self.now_us()
        params: dict[str, Any] = {}
        effect: dict[str, Any] | None = None
        data: dict[str, Any] = {"room": room, "action": action, "target": target}
        if action == "mute":
            if seconds is None or not 1 <= seconds <= MAX_MUTE_S:
                raise ChatValidationError("seconds", f"1..{MAX_MUTE_S}")
            until = now + seconds * US
            await self.store.put_sanction(SanctionRow(room, target, "mute", until, actor.id, why, now))
            params, data["until"] = {"seconds": seconds}, until / US
        elif action == "ban":
            if seconds is not None and not 1 <= seconds <= MAX_BAN_S:
                raise ChatValidationError("seconds", f"1..{MAX_BAN_S}, or leave it out for a permanent ban")
            ban_until = None if seconds is None else now + seconds * US
            await self.store.put_sanction(SanctionRow(room, target, "ban", ban_until, actor.id, why, now))
            params = {"seconds": seconds}
            data["until"] = None if ban_until is None else ban_until / US
            effect = {"leave": target, "action": "ban"}
        elif action in ("unmute", "unban"):
            if seconds is not None:
                raise ChatValidationError("seconds", f"not used by {action}")
            lifted = await self.store.remove_sanction(room, target, action[2:])
            params = {"lifted": lifted}
        elif action == "kick":
            if seconds is not None:
                raise ChatValidationError("seconds", "not used by kick")
            effect = {"leave": target, "action": "kick"}
        else:  # pragma: no cover - the handler maps verbs to these actions
            raise ChatValidationError("action", action)
        if why:
            data["reason"] = why
        await self._log(room, actor, action, target, why, params)
        await self._publish(room, "chat.moderation", ev.ChatModeration(**data).to_wire(), effect=effect)
        return data

    async def delete(
        self, room: str, actor: ChatUser, message_id: str, *, moderator: bool, reason: str | None = None
    ) -> dict[str, Any]:
        """Delete one message of the room."""
        self._require_moderator(moderator)
        why = self._check_reason(reason)
        m = await self.store.message(message_id)
        if m is None or m.room != room or m.deleted_at is not None:
            raise UnknownChatMessageError(f"no message {message_id} in room {room}")
        await self.store.delete_message(message_id, self.now_us())
        await self._log(room, actor, "delete", m.author_id, why, {"message_id": message_id})
        data = ev.ChatDeleted(room=room, message_id=message_id).to_wire()
        await self._publish(room, "chat.deleted", data, to=m.private_to)
        return data

    async def clear(self, room: str, actor: ChatUser, *, moderator: bool, reason: str | None = None) -> dict[str, Any]:
        """Delete every message of the room."""
        self._require_moderator(moderator)
        why = self._check_reason(reason)
        n = await self.store.clear_room(room, self.now_us())
        await self._log(room, actor, "clear", None, why, {"messages": n})
        data = ev.ChatCleared(room=room).to_wire()
        await self._publish(room, "chat.cleared", data)
        return {**data, "messages": n}

    async def slow(self, room: str, actor: ChatUser, seconds: int, *, moderator: bool) -> dict[str, Any]:
        """Slow mode: ``seconds`` between two messages of one user (0: off)."""
        self._require_moderator(moderator)
        lo, hi = SLOW_RANGE
        if seconds != 0 and not lo <= seconds <= hi:
            raise ChatValidationError("seconds", f"0 (off) or {lo}..{hi}")
        await self.store.set_slow(room, seconds, self.now_us())
        await self._log(room, actor, "slow", None, "", {"seconds": seconds})
        data = ev.ChatModeration(room=room, action="slow", slow_s=seconds).to_wire()
        await self._publish(room, "chat.moderation", data, effect={"slow_s": seconds})
        return data

    async def report(self, room: str, user: ChatUser, message_id: str, reason: str) -> dict[str, Any]:
        """A prohibited-content report for support (one per reporter and message)."""
        why = self._check_reason(reason)
        if not why:
            raise ChatValidationError("reason", "say what is wrong (1-500 characters)")
        m = await self.store.message(message_id)
        if m is None or m.room != room:
            raise UnknownChatMessageError(f"no message {message_id} in room {room}")
        row = ReportRow(self.new_id(), room, message_id, user.id, m.author_id, m.text, why, self.now_us())
        filed = await self.store.add_report(row)
        return {"message_id": message_id, "filed": filed}

    async def moderation_log(self, room: str | None, limit: int = 100) -> list[dict[str, Any]]:
        return [log_view(r) for r in await self.store.moderation_log(room, limit)]

    async def reports(self, room: str | None, limit: int = 100) -> list[dict[str, Any]]:
        return [report_view(r) for r in await self.store.reports(room, limit)]

    # -- personal data (PersonalDataSource "chat") ------------------------------------------------

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        return await self.store.export_user(user_id)

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Keep the rows (ids in reports and the log stay valid) under the pseudonym, texts blanked."""
        return await self.store.erase_user(user_id, pseudonym)

    async def purge(self, policy: RetentionPolicy) -> int:
        """Members' chat logs go 120 days after their last purchase, guests' after 15 days."""
        cutoffs = {
            # The last purchase is older than the limit: the whole log goes; else all of it stays.
            m: (policy.now_us + 1 if p < policy.usage_before_us else 0)
            for m, p in policy.last_purchase_us.items()
        }
        return await self.store.purge(cutoffs, policy.usage_before_us, policy.guest_before_us, policy.now_us)


def _until(s: SanctionRow) -> float | None:
    return None if s.until_at is None else s.until_at / US


def _sanction_text(what: str, room: str, s: SanctionRow) -> str:
    when = "for ever" if s.until_at is None else f"until {s.until_at / US:.0f} (epoch seconds)"
    return f"you are {what} room {room} {when}"


async def open_chat(
    chat_cfg: ChatSettings,
    accounts_cfg: AccountsSettings,
    clock: Callable[[], float],
    *,
    ledger: TipLedger | None = None,
    is_top_member: Callable[[str], Awaitable[bool]] = _always_false,
    windows: Windows | None = None,
) -> ChatService:
    """Open the chat store beside the accounts store (same data_dir or dsn) and the bus; start it.
    The rate limits count in ``windows`` (None: this process's memory; the daemon passes the
    cluster's Redis windows with ``[cluster]``).

    Without accounts (legacy nodes that trust client ids) the store is an
    in-memory SQLite database: chat works, and nothing is written to disk.
    """
    import os

    store: Any
    if accounts_cfg.enabled and accounts_cfg.dsn:
        from jasmin_sfu.store.postgres_chat import PostgresChatStore

        store = await PostgresChatStore.open(accounts_cfg.dsn)
    else:
        from jasmin_sfu.store.sqlite_chat import SqliteChatStore

        path = os.path.join(accounts_cfg.data_dir, "chat.sqlite3") if accounts_cfg.enabled else ":memory:"
        store = await SqliteChatStore.open(path)
    bus: ChatBus
    if chat_cfg.redis_url:
        from jasmin_sfu.services.chat_bus import RedisBus

        bus = RedisBus(chat_cfg.redis_url, chat_cfg.redis_prefix)
    else:
        bus = InMemoryBus()
    service = ChatService(
        store, clock, bus=bus, ledger=ledger, is_top_member=is_top_member, limits=chat_cfg, windows=windows
    )
    try:
        await service.start()
    except BaseException:
        await store.close()
        raise
    return service
