"""PostgreSQL implementation of ``ChatStore`` (production; every node of a site shares it).

Each method is one READ COMMITTED transaction on a pooled connection. Sharing
the database is what makes a ban or a mute hold on every node: each send and
join reads the sanctions in force. Migrations (``jasmin_sfu.store.pg_base``) run
under their own advisory lock and version table, apart from the ledger's and the
accounts'.
"""

from __future__ import annotations

from typing import Any, Mapping

from jasmin_sfu.store import chat_migrations as migrations
from jasmin_sfu.store.chat_repo import KingRow, LogRow, MessageRow, ReportRow, SanctionRow, TipRow, row_dict
from jasmin_sfu.store.pg_base import PgTrack, PostgresStore, rows_affected
from jasmin_sfu.store.sqlite_chat import (
    KING_SQL,
    LOG_COLS,
    MSG_COLS,
    REPORT_COLS,
    ROW_OF,
    SANCTION_COLS,
    TABLE_COLS,
    TIP_COLS,
    USER_COLUMNS,
    message_args,
    message_row,
    tip_args,
)


def _p(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


class PostgresChatStore(PostgresStore):
    """Chat rows in PostgreSQL, through an asyncpg pool."""

    # Advisory lock key held while migrating ("jcht" in ASCII; accounts use "jacc", the ledger "jasm").
    track = PgTrack("chat schema", migrations.VERSION_TABLE, migrations.POSTGRES, 0x6A636874)

    # -- messages ------------------------------------------------------------------------

    async def add_message(self, row: MessageRow) -> None:
        """Insert one message."""
        async with self._transaction() as con:
            await con.execute(f"INSERT INTO chat_messages ({MSG_COLS}) VALUES ({_p(12)})", *message_args(row))

    async def message(self, message_id: str) -> MessageRow | None:
        """One message by id (deleted ones too)."""
        rows = await self._fetch(f"SELECT {MSG_COLS} FROM chat_messages WHERE id = $1", message_id)
        return message_row(tuple(rows[0])) if rows else None

    async def history(
        self, room: str, *, before: str | None, limit: int, viewer_id: str | None, see_private: bool
    ) -> list[MessageRow]:
        """Up to ``limit`` visible messages before ``before``, oldest first."""
        rows = await self._fetch(
            f"SELECT {MSG_COLS} FROM chat_messages WHERE room = $1 AND deleted_at IS NULL"
            " AND ($2::text IS NULL OR id < $2) AND (private_to IS NULL OR $3 OR private_to = $4)"
            " ORDER BY id DESC LIMIT $5",
            room,
            before,
            see_private,
            viewer_id,
            limit,
        )
        return [message_row(tuple(r)) for r in reversed(rows)]

    async def delete_message(self, message_id: str, at: int) -> bool:
        """Mark one message deleted."""
        async with self._transaction() as con:
            status = await con.execute(
                "UPDATE chat_messages SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL", at, message_id
            )
        return rows_affected(status) == 1

    async def clear_room(self, room: str, at: int) -> int:
        """Mark every message of the room deleted."""
        async with self._transaction() as con:
            status = await con.execute(
                "UPDATE chat_messages SET deleted_at = $1 WHERE room = $2 AND deleted_at IS NULL", at, room
            )
        return rows_affected(status)

    # -- sanctions -------------------------------------------------------------------------

    async def put_sanction(self, row: SanctionRow) -> None:
        """Insert or replace the user's sanction of that kind in the room."""
        s = row
        async with self._transaction() as con:
            await con.execute(
                f"INSERT INTO chat_sanctions ({SANCTION_COLS}) VALUES ({_p(7)})"
                " ON CONFLICT (room, user_id, kind) DO UPDATE SET until_at = excluded.until_at,"
                " actor_id = excluded.actor_id, reason = excluded.reason, created_at = excluded.created_at",
                s.room,
                s.user_id,
                s.kind,
                s.until_at,
                s.actor_id,
                s.reason,
                s.created_at,
            )

    async def remove_sanction(self, room: str, user_id: str, kind: str) -> bool:
        """Lift a sanction; False when there was none."""
        async with self._transaction() as con:
            status = await con.execute(
                "DELETE FROM chat_sanctions WHERE room = $1 AND user_id = $2 AND kind = $3", room, user_id, kind
            )
        return rows_affected(status) == 1

    async def sanctions(self, room: str, user_id: str, now: int) -> list[SanctionRow]:
        """Those in force at ``now``."""
        rows = await self._fetch(
            f"SELECT {SANCTION_COLS} FROM chat_sanctions WHERE room = $1 AND user_id = $2"
            " AND (until_at IS NULL OR until_at > $3) ORDER BY kind",
            room,
            user_id,
            now,
        )
        return [SanctionRow(*tuple(r)) for r in rows]

    # -- moderation log and reports ----------------------------------------------------------

    async def add_log(self, row: LogRow) -> None:
        """Append one moderation action."""
        r = row
        async with self._transaction() as con:
            await con.execute(
                f"INSERT INTO chat_moderation_log ({LOG_COLS}) VALUES ({_p(10)})",
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
            )

    async def moderation_log(self, room: str | None, limit: int) -> list[LogRow]:
        """Newest first."""
        rows = await self._fetch(
            f"SELECT {LOG_COLS} FROM chat_moderation_log WHERE ($1::text IS NULL OR room = $1)"
            " ORDER BY id DESC LIMIT $2",
            room,
            limit,
        )
        return [LogRow(*tuple(r)) for r in rows]

    async def add_report(self, row: ReportRow) -> bool:
        """File a report unless this reporter already reported this message."""
        r = row
        async with self._transaction() as con:
            status = await con.execute(
                f"INSERT INTO chat_reports ({REPORT_COLS}) VALUES ({_p(8)})"
                " ON CONFLICT (message_id, reporter_id) DO NOTHING",
                r.id,
                r.room,
                r.message_id,
                r.reporter_id,
                r.author_id,
                r.message_text,
                r.reason,
                r.created_at,
            )
        return rows_affected(status) == 1

    async def reports(self, room: str | None, limit: int) -> list[ReportRow]:
        """Newest first."""
        rows = await self._fetch(
            f"SELECT {REPORT_COLS} FROM chat_reports WHERE ($1::text IS NULL OR room = $1) ORDER BY id DESC LIMIT $2",
            room,
            limit,
        )
        return [ReportRow(*tuple(r)) for r in rows]

    # -- tips ---------------------------------------------------------------------------------

    async def add_tip(self, row: TipRow) -> bool:
        """Record a tip once per transfer id."""
        async with self._transaction() as con:
            status = await con.execute(
                f"INSERT INTO chat_tips ({TIP_COLS}) VALUES ({_p(9)}) ON CONFLICT (transfer_id) DO NOTHING",
                *tip_args(row),
            )
        return rows_affected(status) == 1

    async def king(self, room: str, show_session: str) -> KingRow | None:
        """The top spender of the session."""
        rows = await self._fetch(KING_SQL, room, show_session)
        return KingRow(rows[0][0], rows[0][1], int(rows[0][2])) if rows else None

    # -- room settings --------------------------------------------------------------------------

    async def slow_s(self, room: str) -> int:
        """The room's slow mode (0: off)."""
        rows = await self._fetch("SELECT slow_s FROM chat_rooms WHERE room = $1", room)
        return int(rows[0][0]) if rows else 0

    async def set_slow(self, room: str, slow_s: int, at: int) -> None:
        """Set the room's slow mode."""
        async with self._transaction() as con:
            await con.execute(
                "INSERT INTO chat_rooms (room, slow_s, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (room) DO UPDATE SET slow_s = excluded.slow_s, updated_at = excluded.updated_at",
                room,
                slow_s,
                at,
            )

    # -- personal data ------------------------------------------------------------------------------

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row naming the user, by table."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._pool.acquire() as con:
            for table, cols in USER_COLUMNS.items():
                where = " OR ".join(f"{c} = $1" for c in cols)
                rows = await con.fetch(f"SELECT {TABLE_COLS[table]} FROM {table} WHERE {where}", user_id)
                out[table] = [row_dict(ROW_OF[table](tuple(r))) for r in rows]
        return out

    async def erase_user(self, user_id: str, pseudonym: str) -> int:
        """Re-key the user's rows to the pseudonym; blank the texts of its messages."""
        async with self._transaction() as con:
            n = rows_affected(
                await con.execute(
                    "UPDATE chat_messages SET author_id = $1, author_username = $1, text = '', emoticons = ''"
                    " WHERE author_id = $2",
                    pseudonym,
                    user_id,
                )
            )
            n += rows_affected(
                await con.execute("UPDATE chat_reports SET message_text = '' WHERE author_id = $1", user_id)
            )
            for table, cols in USER_COLUMNS.items():
                for c in cols:
                    n += rows_affected(
                        await con.execute(f"UPDATE {table} SET {c} = $1 WHERE {c} = $2", pseudonym, user_id)
                    )
            n += rows_affected(
                await con.execute("UPDATE chat_tips SET member_username = $1 WHERE member_id = $1", pseudonym)
            )
            n += rows_affected(
                await con.execute("UPDATE chat_moderation_log SET actor_username = $1 WHERE actor_id = $1", pseudonym)
            )
        return n

    async def purge(self, cutoffs: Mapping[str, int], default_before: int, guest_before: int, now: int) -> int:
        """Retention (see ``ChatStore.purge``)."""
        async with self._transaction() as con:
            n = 0
            for r in await con.fetch("SELECT DISTINCT author_id, author_kind FROM chat_messages"):
                author_id, kind = r[0], r[1]
                before = guest_before if kind == "guest" else cutoffs.get(author_id, default_before)
                n += rows_affected(
                    await con.execute(
                        "DELETE FROM chat_messages WHERE author_id = $1 AND created_at < $2", author_id, before
                    )
                )
            for r in await con.fetch("SELECT DISTINCT member_id FROM chat_tips"):
                n += rows_affected(
                    await con.execute(
                        "DELETE FROM chat_tips WHERE member_id = $1 AND created_at < $2",
                        r[0],
                        cutoffs.get(r[0], default_before),
                    )
                )
            n += rows_affected(
                await con.execute("DELETE FROM chat_sanctions WHERE until_at IS NOT NULL AND until_at <= $1", now)
            )
            n += rows_affected(
                await con.execute("DELETE FROM chat_moderation_log WHERE created_at < $1", default_before)
            )
            n += rows_affected(await con.execute("DELETE FROM chat_reports WHERE created_at < $1", default_before))
        return n
