"""Repository protocol of the free-chat rooms: messages, bans and mutes, the moderation log,
reports, tips (King of the Room) and room settings.

The service (``jasmin_sfu.services.chat``) holds the rules; a store keeps rows
and makes each method one atomic transaction:

* ``add_tip`` is idempotent on the ledger transfer id (the PRIMARY KEY): a
  retried tip is counted once towards King of the Room, as the ledger charges
  it once.
* ``add_report`` is idempotent on (message, reporter): reporting twice files one report.
* ``put_sanction`` replaces the user's sanction of that kind in the room (a new
  ban replaces an old one's duration); ``sanctions`` returns those in force at ``now``.
* ``history`` never returns deleted messages, and returns a private's messages
  (``private_to`` set) only to its member or with ``see_private`` (the performers).

All times are integer microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol


@dataclass(frozen=True)
class MessageRow:
    """One chat line. ``private_to``: the member of the private it was said in (None: the room)."""

    id: str
    room: str
    author_id: str
    author_username: str
    author_kind: str  # guest | member | performer | admin
    top_member: bool
    color: str | None
    text: str
    emoticons: tuple[str, ...]
    private_to: str | None
    created_at: int
    deleted_at: int | None = None


@dataclass(frozen=True)
class SanctionRow:
    """A ban or a mute of one user in one room, until ``until_at`` (None: for ever)."""

    room: str
    user_id: str
    kind: str  # ban | mute
    until_at: int | None
    actor_id: str
    reason: str
    created_at: int


@dataclass(frozen=True)
class LogRow:
    """One moderation action; ``params`` is a JSON object (seconds, message id ...)."""

    id: str
    room: str
    actor_id: str
    actor_username: str
    actor_kind: str
    action: str
    target_id: str | None
    reason: str
    params: str
    created_at: int


@dataclass(frozen=True)
class ReportRow:
    """A prohibited-content report, with a copy of the reported text for support."""

    id: str
    room: str
    message_id: str
    reporter_id: str
    author_id: str
    message_text: str
    reason: str
    created_at: int


@dataclass(frozen=True)
class TipRow:
    """A surprise; ``counted``: it counts towards King of the Room (free-chat tips only)."""

    transfer_id: str
    room: str
    show_session: str
    member_id: str
    member_username: str
    performer_id: str
    units: int
    counted: bool
    created_at: int


@dataclass(frozen=True)
class KingRow:
    """The member who spent most in a room's show session, and how much (ledger units)."""

    member_id: str
    member_username: str
    units: int


def row_dict(row: Any) -> dict[str, Any]:
    """A row as a JSON-ready dict (tuples as lists), for the data download."""
    out = asdict(row)
    for k, v in out.items():
        if isinstance(v, tuple):
            out[k] = list(v)
    return out


class ChatStore(Protocol):
    """Chat rows; each method is one transaction."""

    async def add_message(self, row: MessageRow) -> None: ...

    async def message(self, message_id: str) -> MessageRow | None: ...

    async def history(
        self, room: str, *, before: str | None, limit: int, viewer_id: str | None, see_private: bool
    ) -> list[MessageRow]:
        """Up to ``limit`` visible messages before ``before`` (an id), oldest first."""
        ...

    async def delete_message(self, message_id: str, at: int) -> bool:
        """Mark one message deleted; False when unknown or already deleted."""
        ...

    async def clear_room(self, room: str, at: int) -> int:
        """Mark every message of the room deleted; how many."""
        ...

    async def put_sanction(self, row: SanctionRow) -> None: ...

    async def remove_sanction(self, room: str, user_id: str, kind: str) -> bool: ...

    async def sanctions(self, room: str, user_id: str, now: int) -> list[SanctionRow]:
        """The user's bans and mutes in force at ``now`` in the room."""
        ...

    async def add_log(self, row: LogRow) -> None: ...

    async def moderation_log(self, room: str | None, limit: int) -> list[LogRow]:
        """Newest first; ``room`` None: every room."""
        ...

    async def add_report(self, row: ReportRow) -> bool:
        """False when this reporter already reported this message."""
        ...

    async def reports(self, room: str | None, limit: int) -> list[ReportRow]: ...

    async def add_tip(self, row: TipRow) -> bool:
        """False when the transfer id is already recorded (a retry)."""
        ...

    async def king(self, room: str, show_session: str) -> KingRow | None:
        """Most units of counted tips; a tie goes to whoever reached the total first."""
        ...

    async def slow_s(self, room: str) -> int: ...

    async def set_slow(self, room: str, slow_s: int, at: int) -> None: ...

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row naming ``user_id``, by table."""
        ...

    async def erase_user(self, user_id: str, pseudonym: str) -> int:
        """Re-key ``user_id``'s rows to ``pseudonym``, blank its message texts; rows touched."""
        ...

    async def purge(self, cutoffs: Mapping[str, int], default_before: int, guest_before: int, now: int) -> int:
        """Retention: delete each author's messages older than its cutoff; rows deleted.

        ``cutoffs`` maps a member id to its own cut-off (its last purchase
        decides); other members, performers and admins use ``default_before``,
        guests ``guest_before``. Expired sanctions go, as do moderation log rows,
        reports and tips older than ``default_before``.
        """
        ...

    async def close(self) -> None: ...
