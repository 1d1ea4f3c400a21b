"""SQLite implementation of ``ChatStore`` (the embedded default).

As the accounts store (``jasmin_sfu.store.sqlite_base``): one connection driven
by one worker thread (a commit fsyncs, 0.1-10 ms, and must never stall the media
event loop), each method one function run whole in the thread inside
``BEGIN IMMEDIATE`` ... ``COMMIT``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Mapping, Sequence

from jasmin_sfu.store import chat_migrations as migrations
from jasmin_sfu.store.chat_repo import KingRow, LogRow, MessageRow, ReportRow, SanctionRow, TipRow, row_dict
from jasmin_sfu.store.sqlite_base import SqliteStore, Track

MSG_COLS = (
    "id, room, author_id, author_username, author_kind, top_member, color, text, emoticons, private_to,"
    " created_at, deleted_at"
)
SANCTION_COLS = "room, user_id, kind, until_at, actor_id, reason, created_at"
LOG_COLS = "id, room, actor_id, actor_username, actor_kind, action, target_id, reason, params, created_at"
REPORT_COLS = "id, room, message_id, reporter_id, author_id, message_text, reason, created_at"
TIP_COLS = "transfer_id, room, show_session, member_id, member_username, performer_id, units, counted, created_at"


def message_row(r: Sequence[Any]) -> MessageRow:
    """A ``chat_messages`` row (both dialects store emoticons space-separated)."""
    return MessageRow(
        r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], tuple(r[8].split()) if r[8] else (), r[9], r[10], r[11]
    )


def tip_row(r: Sequence[Any]) -> TipRow:
    return TipRow(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), bool(r[7]), r[8])


def message_args(m: MessageRow) -> tuple[Any, ...]:
    return (
        m.id,
        m.room,
        m.author_id,
        m.author_username,
        m.author_kind,
        int(m.top_member),
        m.color,
        m.text,
        " ".join(m.emoticons),
        m.private_to,
        m.created_at,
        m.deleted_at,
    )


def tip_args(t: TipRow) -> tuple[Any, ...]:
    return (
        t.transfer_id,
        t.room,
        t.show_session,
        t.member_id,
        t.member_username,
        t.performer_id,
        t.units,
        int(t.counted),
        t.created_at,
    )


# Which columns of which table name a user, for the data download and erasure: every column,
# not only the author's (a performer's line in a member's private names the member in
# ``private_to``; a surprise names the performer who received it).
USER_COLUMNS: dict[str, tuple[str, ...]] = {
    "chat_messages": ("author_id", "private_to"),
    "chat_sanctions": ("user_id", "actor_id"),
    "chat_moderation_log": ("actor_id", "target_id"),
    "chat_reports": ("reporter_id", "author_id"),
    "chat_tips": ("member_id", "performer_id"),
}
TABLE_COLS = {
    "chat_messages": MSG_COLS,
    "chat_sanctions": SANCTION_COLS,
    "chat_moderation_log": LOG_COLS,
    "chat_reports": REPORT_COLS,
    "chat_tips": TIP_COLS,
}
ROW_OF: dict[str, Callable[[Sequence[Any]], Any]] = {
    "chat_messages": message_row,
    "chat_sanctions": lambda r: SanctionRow(*r),
    "chat_moderation_log": lambda r: LogRow(*r),
    "chat_reports": lambda r: ReportRow(*r),
    "chat_tips": tip_row,
}


class SqliteChatStore(SqliteStore):
    """Chat rows in one SQLite file (or ``:memory:``)."""

    track = Track("chat schema", migrations.VERSION_TABLE, migrations.SQLITE)
    thread_name = "sqlite-chat"

    # -- messages ------------------------------------------------------------------------

    async def add_message(self, row: MessageRow) -> None:
        """Insert one message."""
        await self._in_tx(
            lambda db: db.execute(f"INSERT INTO chat_messages ({MSG_COLS}) VALUES ({_q(12)})", message_args(row))
        )

    async def message(self, message_id: str) -> MessageRow | None:
        """One message by id (deleted ones too)."""
        rows = await self._rows(f"SELECT {MSG_COLS} FROM chat_messages WHERE id = ?", (message_id,))
        return message_row(rows[0]) if rows else None

    async def history(
        self, room: str, *, before: str | None, limit: int, viewer_id: str | None, see_private: bool
    ) -> list[MessageRow]:
        """Up to ``limit`` visible messages before ``before``, oldest first."""
        rows = await self._rows(
            f"SELECT {MSG_COLS} FROM chat_messages WHERE room = ? AND deleted_at IS NULL"
            " AND (? IS NULL OR id < ?) AND (private_to IS NULL OR ? = 1 OR private_to = ?)"
            " ORDER BY id DESC LIMIT ?",
            (room, before, before, int(see_private), viewer_id, limit),
        )
        return [message_row(r) for r in reversed(rows)]

    async def delete_message(self, message_id: str, at: int) -> bool:
        """Mark one message deleted."""
        cur = await self._in_tx(
            lambda db: db.execute(
                "UPDATE chat_messages SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (at, message_id)
            )
        )
        return cur.rowcount == 1

    async def clear_room(self, room: str, at: int) -> int:
        """Mark every message of the room deleted."""
        cur = await self._in_tx(
            lambda db: db.execute(
                "UPDATE chat_messages SET deleted_at = ? WHERE room = ? AND deleted_at IS NULL", (at, room)
            )
        )
        return int(cur.rowcount)

    # -- sanctions -------------------------------------------------------------------------

    async def put_sanction(self, row: SanctionRow) -> None:
        """Insert or replace the user's sanction of that kind in the room."""
        s = row
        await self._in_tx(
            lambda db: db.execute(
                f"INSERT INTO chat_sanctions ({SANCTION_COLS}) VALUES ({_q(7)})"
                " ON CONFLICT (room, user_id, kind) DO UPDATE SET until_at = excluded.until_at,"
                " actor_id = excluded.actor_id, reason = excluded.reason, created_at = excluded.created_at",
                (s.room, s.user_id, s.kind, s.until_at, s.actor_id, s.reason, s.created_at),
            )
        )

    async def remove_sanction(self, room: str, user_id: str, kind: str) -> bool:
        """Lift a sanction; False when there was none."""
        cur = await self._in_tx(
            lambda db: db.execute(
                "DELETE FROM chat_sanctions WHERE room = ? AND user_id = ? AND kind = ?", (room, user_id, kind)
            )
        )
        return cur.rowcount == 1

    async def sanctions(self, room: str, user_id: str, now: int) -> list[SanctionRow]:
        """Those in force at ``now``."""
        rows = await self._rows(
            f"SELECT {SANCTION_COLS} FROM chat_sanctions WHERE room = ? AND user_id = ?"
            " AND (until_at IS NULL OR until_at > ?) ORDER BY kind",
            (room, user_id, now),
        )
        return [SanctionRow(*r) for r in rows]

    # -- moderation log and reports ----------------------------------------------------------

    async def add_log(self, row: LogRow) -> None:
        """Append one moderation action."""
        r = row
        await self._in_tx(
            lambda db: db.execute(
                f"INSERT INTO chat_moderation_log ({LOG_COLS}) VALUES ({_q(10)})",
                (
                    r.id,
                    r.room,
                    r.actor_id,
                    r.actor_username,
                    r.actor_kind,
                    r.action,
                    r.target_id,
                    r.reason,
                    r.params,
                    r.created_at,
                ),
            )
        )

    async def moderation_log(self, room: str | None, limit: int) -> list[LogRow]:
        """Newest first."""
        rows = await self._rows(
            f"SELECT {LOG_COLS} FROM chat_moderation_log WHERE (? IS NULL OR room = ?) ORDER BY id DESC LIMIT ?",
            (room, room, limit),
        )
        return [LogRow(*r) for r in rows]

    async def add_report(self, row: ReportRow) -> bool:
        """File a report unless this reporter already reported this message."""
        r = row
        cur = await self._in_tx(
            lambda db: db.execute(
                f"INSERT INTO chat_reports ({REPORT_COLS}) VALUES ({_q(8)}) ON CONFLICT (message_id, reporter_id) DO NOTHING",
                (r.id, r.room, r.message_id, r.reporter_id, r.author_id, r.message_text, r.reason, r.created_at),
            )
        )
        return cur.rowcount == 1

    async def reports(self, room: str | None, limit: int) -> list[ReportRow]:
        """Newest first."""
        rows = await self._rows(
            f"SELECT {REPORT_COLS} FROM chat_reports WHERE (? IS NULL OR room = ?) ORDER BY id DESC LIMIT ?",
            (room, room, limit),
        )
        return [ReportRow(*r) for r in rows]

    # -- tips ---------------------------------------------------------------------------------

    async def add_tip(self, row: TipRow) -> bool:
        """Record a tip once per transfer id."""
        cur = await self._in_tx(
            lambda db: db.execute(
                f"INSERT INTO chat_tips ({TIP_COLS}) VALUES ({_q(9)}) ON CONFLICT (transfer_id) DO NOTHING",
                tip_args(row),
            )
        )
        return cur.rowcount == 1

    async def king(self, room: str, show_session: str) -> KingRow | None:
        """The top spender of the session."""
        rows = await self._rows(KING_SQL.replace("$1", "?").replace("$2", "?"), (room, show_session))
        return KingRow(rows[0][0], rows[0][1], int(rows[0][2])) if rows else None

    # -- room settings --------------------------------------------------------------------------

    async def slow_s(self, room: str) -> int:
        """The room's slow mode (0: off)."""
        rows = await self._rows("SELECT slow_s FROM chat_rooms WHERE room = ?", (room,))
        return int(rows[0][0]) if rows else 0

    async def set_slow(self, room: str, slow_s: int, at: int) -> None:
        """Set the room's slow mode."""
        await self._in_tx(
            lambda db: db.execute(
                "INSERT INTO chat_rooms (room, slow_s, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (room) DO UPDATE SET slow_s = excluded.slow_s, updated_at = excluded.updated_at",
                (room, slow_s, at),
            )
        )

    # -- personal data ------------------------------------------------------------------------------

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row naming the user, by table."""

        def go(db: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for table, cols in USER_COLUMNS.items():
                where = " OR ".join(f"{c} = ?" for c in cols)
                rows = db.execute(
                    f"SELECT {TABLE_COLS[table]} FROM {table} WHERE {where}", (user_id,) * len(cols)
                ).fetchall()
                out[table] = [row_dict(ROW_OF[table](r)) for r in rows]
            return out

        return await self._call(go)

    async def erase_user(self, user_id: str, pseudonym: str) -> int:
        """Re-key the user's rows to the pseudonym; blank the texts of its messages."""

        def go(db: sqlite3.Connection) -> int:
            n = db.execute(
                "UPDATE chat_messages SET author_id = ?, author_username = ?, text = '', emoticons = ''"
                " WHERE author_id = ?",
                (pseudonym, pseudonym, user_id),
            ).rowcount
            n += db.execute("UPDATE chat_reports SET message_text = '' WHERE author_id = ?", (user_id,)).rowcount
            for table, cols in USER_COLUMNS.items():
                for c in cols:
                    n += db.execute(f"UPDATE {table} SET {c} = ? WHERE {c} = ?", (pseudonym, user_id)).rowcount
            n += db.execute(
                "UPDATE chat_tips SET member_username = ? WHERE member_id = ?", (pseudonym, pseudonym)
            ).rowcount
            n += db.execute(
                "UPDATE chat_moderation_log SET actor_username = ? WHERE actor_id = ?", (pseudonym, pseudonym)
            ).rowcount
            return int(n)

        return await self._in_tx(go)

    async def purge(self, cutoffs: Mapping[str, int], default_before: int, guest_before: int, now: int) -> int:
        """Retention (see ``ChatStore.purge``)."""

        def go(db: sqlite3.Connection) -> int:
            n = 0
            for author_id, kind in db.execute("SELECT DISTINCT author_id, author_kind FROM chat_messages").fetchall():
                before = guest_before if kind == "guest" else cutoffs.get(author_id, default_before)
                n += db.execute(
                    "DELETE FROM chat_messages WHERE author_id = ? AND created_at < ?", (author_id, before)
                ).rowcount
            for (member_id,) in db.execute("SELECT DISTINCT member_id FROM chat_tips").fetchall():
                n += db.execute(
                    "DELETE FROM chat_tips WHERE member_id = ? AND created_at < ?",
                    (member_id, cutoffs.get(member_id, default_before)),
                ).rowcount
            n += db.execute("DELETE FROM chat_sanctions WHERE until_at IS NOT NULL AND until_at <= ?", (now,)).rowcount
            n += db.execute("DELETE FROM chat_moderation_log WHERE created_at < ?", (default_before,)).rowcount
            n += db.execute("DELETE FROM chat_reports WHERE created_at < ?", (default_before,)).rowcount
            return int(n)

        return await self._in_tx(go)


# Ties go to whoever reached the total first: the lower time of their last tip.
KING_SQL = (
    "SELECT member_id, max(member_username), sum(units) AS total, max(created_at) AS last FROM chat_tips"
    " WHERE room = $1 AND show_session = $2 AND counted = 1 GROUP BY member_id"
    " ORDER BY total DESC, last ASC, member_id LIMIT 1"
)


def _q(n: int) -> str:
    return ", ".join("?" * n)
