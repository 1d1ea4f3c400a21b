"""SQLite implementation of ``AccountsStore`` (the embedded default).

One connection driven by one worker thread (``jasmin_sfu.store.sqlite_base``,
as the ledger's, the chat's and the social SQLite stores): a commit fsyncs
(``synchronous=FULL``, 0.1-10 ms on real disks) and must never stall the media
event loop. Each store method is one function run whole in the
thread inside ``BEGIN IMMEDIATE`` ... ``COMMIT``, so a check and the write it
guards (a blacklist check and the user insert) are atomic.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from jasmin_sfu.store import accounts_migrations as migrations
from jasmin_sfu.store.accounts_repo import (
    ERASE_STATEMENTS,
    ERASED_KEY_PREFIX,
    EXPORT_TABLES,
    INACTIVE_SQL,
    LAST_PURCHASES_SQL,
    BlacklistRow,
    ErasureRow,
    MemberProfileRow,
    PaymentRow,
    PerformerRow,
    SessionRow,
    UserRow,
)
from jasmin_sfu.store.errors import DuplicateKeyError
from jasmin_sfu.store.sqlite_base import SqliteStore, Track

# Column lists and row builders, shared with the PostgreSQL store (same tables on both dialects).
USER_COLS = "id, username, username_key, role, password_hash, created_at, adult_confirmed_at, last_login_at, closed_at"
SESSION_COLS = "id, token_hash, kind, user_id, created_at, expires_at, adult_confirmed_at, revoked_at"
PROFILE_COLS = (
    "user_id, display_name, gender, age_range, country, languages, about, profile_visibility, mask_visibility,"
    " updated_at"
)
PAY_COLS = (
    "id, user_id, idempotency_key, package_code, amount_cents, provider, status, created_at,"
    " card_last4, card_expiry, credited_at"
)


def user_row(r: Sequence[Any]) -> UserRow:
    return UserRow(*r)


def session_row(r: Sequence[Any]) -> SessionRow:
    return SessionRow(*r)


def payment_row(r: Sequence[Any]) -> PaymentRow:
    return PaymentRow(*r)


def profile_row(r: Sequence[Any]) -> MemberProfileRow:
    langs = tuple(x for x in (r[5] or "").split(",") if x)
    return MemberProfileRow(r[0], r[1], r[2], r[3], r[4], langs, r[6], r[7], r[8], r[9])


def _blacklisted_sql(p: str) -> str:
    return f"SELECT username_key, reason, created_at, until_at FROM acc_username_blacklist WHERE username_key = {p}"


class SqliteAccountsStore(SqliteStore):
    """Accounts in one SQLite file (or ``:memory:``)."""

    track = Track("accounts schema", migrations.VERSION_TABLE, migrations.SQLITE, migrations.SQLITE_HOOKS)
    foreign_keys = True
    thread_name = "sqlite-accounts"
    _blacklist_secret = ""

    def _open_sync(self) -> None:
        super()._open_sync()
        assert self._db is not None
        row = self._db.execute(
            "SELECT value FROM acc_secrets WHERE name = ?", (migrations.BLACKLIST_SECRET,)
        ).fetchone()
        self._blacklist_secret = row[0]

    def _bl(self, username_key: str) -> str:
        """The blacklist's key for a name: its keyed hash (docs/privacy.md)."""
        return migrations.blacklist_hash(self._blacklist_secret, username_key)

    # -- users -------------------------------------------------------------------

    async def create_user(self, user: UserRow, performer: PerformerRow | None = None) -> None:
        """Insert a user (and profile) unless the name is taken or blacklisted."""
        u = user

        def go(db: sqlite3.Connection) -> None:
            bl = db.execute(
                "SELECT 1 FROM acc_username_blacklist WHERE username_key = ? AND (until_at IS NULL OR until_at > ?)",
                (self._bl(u.username_key), u.created_at),
            ).fetchone()
            if bl is not None:
                raise DuplicateKeyError(f"username {u.username!r} is blacklisted")
            db.execute(
                f"INSERT INTO acc_users ({USER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    u.id,
                    u.username,
                    u.username_key,
                    u.role,
                    u.password_hash,
                    u.created_at,
                    u.adult_confirmed_at,
                    u.last_login_at,
                    u.closed_at,
                ),
            )
            if performer is not None:
                self._put_performer_sync(db, performer)

        await self._in_tx(go)

    async def user_by_id(self, user_id: str) -> UserRow | None:
        """A user by id."""
        rows = await self._rows(f"SELECT {USER_COLS} FROM acc_users WHERE id = ?", (user_id,))
        return user_row(rows[0]) if rows else None

    async def user_by_username(self, username_key: str) -> UserRow | None:
        """A user by case-folded username."""
        rows = await self._rows(f"SELECT {USER_COLS} FROM acc_users WHERE username_key = ?", (username_key,))
        return user_row(rows[0]) if rows else None

    async def set_adult_confirmed(self, user_id: str, at: int) -> None:
        """Record the user's 18+ confirmation."""
        await self._in_tx(
            lambda db: db.execute("UPDATE acc_users SET adult_confirmed_at = ? WHERE id = ?", (at, user_id))
        )

    async def record_login(self, user_id: str, at: int, password_hash: str | None = None) -> None:
        """Note a login (and a rehash)."""
        await self._in_tx(
            lambda db: db.execute(
                "UPDATE acc_users SET last_login_at = ?, password_hash = coalesce(?, password_hash) WHERE id = ?",
                (at, password_hash, user_id),
            )
        )

    # -- blacklist ---------------------------------------------------------------------

    async def blacklist_username(self, row: BlacklistRow) -> None:
        """Insert or replace a blacklist entry."""
        await self._in_tx(
            lambda db: db.execute(
                "INSERT INTO acc_username_blacklist (username_key, reason, created_at, until_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (username_key) DO UPDATE SET reason = excluded.reason,"
                " created_at = excluded.created_at, until_at = excluded.until_at",
                (self._bl(row.username_key), row.reason, row.created_at, row.until_at),
            )
        )

    async def blacklisted(self, username_key: str, now: int) -> BlacklistRow | None:
        """The entry in force at ``now``."""
        rows = await self._rows(
            _blacklisted_sql("?") + " AND (until_at IS NULL OR until_at > ?)", (self._bl(username_key), now)
        )
        return BlacklistRow(*rows[0]) if rows else None

    # -- sessions ---------------------------------------------------------------------

    async def create_session(self, row: SessionRow) -> None:
        """Insert a session."""
        s = row
        await self._in_tx(
            lambda db: db.execute(
                f"INSERT INTO acc_sessions ({SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (s.id, s.token_hash, s.kind, s.user_id, s.created_at, s.expires_at, s.adult_confirmed_at, s.revoked_at),
            )
        )

    async def session_by_token_hash(self, token_hash: str) -> SessionRow | None:
        """A session by its token's hash."""
        rows = await self._rows(f"SELECT {SESSION_COLS} FROM acc_sessions WHERE token_hash = ?", (token_hash,))
        return session_row(rows[0]) if rows else None

    async def confirm_session_adult(self, session_id: str, at: int) -> None:
        """Record a guest session's 18+ confirmation."""
        await self._in_tx(
            lambda db: db.execute("UPDATE acc_sessions SET adult_confirmed_at = ? WHERE id = ?", (at, session_id))
        )

    async def revoke_session(self, session_id: str, at: int) -> bool:
        """Revoke one session."""

        def go(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE acc_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, session_id)
            )
            return cur.rowcount == 1

        return await self._in_tx(go)

    async def revoke_user_sessions(self, user_id: str, at: int) -> int:
        """Revoke every live session of a user."""

        def go(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE acc_sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (at, user_id)
            )
            return int(cur.rowcount)

        return await self._in_tx(go)

    async def purge_sessions(self, now: int) -> int:
        """Delete expired and revoked sessions."""

        def go(db: sqlite3.Connection) -> int:
            cur = db.execute("DELETE FROM acc_sessions WHERE expires_at <= ? OR revoked_at IS NOT NULL", (now,))
            return int(cur.rowcount)

        return await self._in_tx(go)

    # -- performers -------------------------------------------------------------------------

    @staticmethod
    def _put_performer_sync(db: sqlite3.Connection, p: PerformerRow) -> None:
        db.execute(
            "INSERT INTO acc_performers (user_id, display_name, bio, price_per_minute, is_group, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,"
            " bio = excluded.bio, price_per_minute = excluded.price_per_minute, is_group = excluded.is_group,"
            " updated_at = excluded.updated_at",
            (p.user_id, p.display_name, p.bio, p.price_per_minute, int(p.is_group), p.updated_at),
        )
        db.execute("DELETE FROM acc_performer_categories WHERE performer_id = ?", (p.user_id,))
        db.executemany(
            "INSERT INTO acc_performer_categories (performer_id, category) VALUES (?, ?)",
            [(p.user_id, c) for c in p.categories],
        )
        db.execute("DELETE FROM acc_group_members WHERE group_id = ?", (p.user_id,))
        db.executemany(
            "INSERT INTO acc_group_members (group_id, performer_id) VALUES (?, ?)",
            [(p.user_id, m) for m in p.group_members],
        )

    async def performer(self, user_id: str) -> PerformerRow | None:
        """A performer's profile."""

        def go(db: sqlite3.Connection) -> PerformerRow | None:
            r = db.execute(
                "SELECT user_id, display_name, bio, price_per_minute, is_group, updated_at FROM acc_performers"
                " WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            if r is None:
                return None
            cats = db.execute(
                "SELECT category FROM acc_performer_categories WHERE performer_id = ? ORDER BY category", (user_id,)
            ).fetchall()
            members = db.execute(
                "SELECT performer_id FROM acc_group_members WHERE group_id = ? ORDER BY performer_id", (user_id,)
            ).fetchall()
            return PerformerRow(
                r[0], r[1], r[2], r[3], bool(r[4]), r[5], tuple(c[0] for c in cats), tuple(m[0] for m in members)
            )

        return await self._call(go)

    async def put_performer(self, row: PerformerRow) -> None:
        """Insert or replace a profile with its categories and members."""
        await self._in_tx(lambda db: self._put_performer_sync(db, row))

    # -- payments ---------------------------------------------------------------------------

    async def payment(self, user_id: str, idempotency_key: str) -> PaymentRow | None:
        """The payment recorded for this key."""
        rows = await self._rows(
            f"SELECT {PAY_COLS} FROM acc_payments WHERE user_id = ? AND idempotency_key = ?",
            (user_id, idempotency_key),
        )
        return payment_row(rows[0]) if rows else None

    async def insert_payment(self, row: PaymentRow) -> tuple[PaymentRow, bool]:
        """Insert unless the key is known; returns the stored row and whether this call stored it."""
        p = row

        def go(db: sqlite3.Connection) -> tuple[PaymentRow, bool]:
            inserted = (
                db.execute(
                    f"INSERT INTO acc_payments ({PAY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (user_id, idempotency_key) DO NOTHING",
                    (
                        p.id,
                        p.user_id,
                        p.idempotency_key,
                        p.package_code,
                        p.amount_cents,
                        p.provider,
                        p.status,
                        p.created_at,
                        p.card_last4,
                        p.card_expiry,
                        p.credited_at,
                    ),
                ).rowcount
                == 1
            )
            r = db.execute(
                f"SELECT {PAY_COLS} FROM acc_payments WHERE user_id = ? AND idempotency_key = ?",
                (p.user_id, p.idempotency_key),
            ).fetchone()
            return payment_row(r), inserted

        return await self._in_tx(go)

    async def mark_payment_credited(self, payment_id: str, at: int) -> bool:
        """The top-up reached the ledger; True for the one call that marked it."""
        cur = await self._in_tx(
            lambda db: db.execute(
                "UPDATE acc_payments SET status = 'credited', credited_at = coalesce(credited_at, ?)"
                " WHERE id = ? AND status <> 'credited'",
                (at, payment_id),
            )
        )
        return cur.rowcount == 1

    # -- privacy ------------------------------------------------------------------------------

    async def member_profile(self, user_id: str) -> MemberProfileRow | None:
        """A member's profile row."""
        rows = await self._rows(f"SELECT {PROFILE_COLS} FROM acc_member_profiles WHERE user_id = ?", (user_id,))
        return profile_row(rows[0]) if rows else None

    async def put_member_profile(self, row: MemberProfileRow) -> None:
        """Insert or replace a member's profile row."""
        r = row
        cols = PROFILE_COLS.split(", ")
        updates = ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in cols[1:])
        await self._in_tx(
            lambda db: db.execute(
                f"INSERT INTO acc_member_profiles ({PROFILE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates}",
                (
                    r.user_id,
                    r.display_name,
                    r.gender,
                    r.age_range,
                    r.country,
                    ",".join(r.languages),
                    r.about,
                    r.profile_visibility,
                    r.mask_visibility,
                    r.updated_at,
                ),
            )
        )

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row referencing the user, by table (read in one transaction: a consistent copy)."""

        def go(db: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for table, cols, where in EXPORT_TABLES:
                cur = db.execute(f"SELECT {cols} FROM {table} WHERE {where.format(p='?1')}", (user_id,))
                names = [d[0] for d in cur.description]
                out[table] = [dict(zip(names, r)) for r in cur.fetchall()]
            return out

        return await self._in_tx(go)

    async def begin_erasure(self, row: ErasureRow, blacklist_until: int | None) -> bool:
        """Record the erasure, close, revoke, blacklist: one transaction."""
        e = row

        def go(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT INTO acc_erasures (user_id, reason, requested_at, completed_at) VALUES (?, ?, ?, NULL)"
                " ON CONFLICT (user_id) DO NOTHING",
                (e.user_id, e.reason, e.requested_at),
            )
            if cur.rowcount == 0:
                return False
            db.execute(
                "UPDATE acc_users SET closed_at = coalesce(closed_at, ?) WHERE id = ?", (e.requested_at, e.user_id)
            )
            db.execute(
                "UPDATE acc_sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (e.requested_at, e.user_id),
            )
            key = db.execute("SELECT username_key FROM acc_users WHERE id = ?", (e.user_id,)).fetchone()[0]
            if not key.startswith(ERASED_KEY_PREFIX):
                db.execute(
                    "INSERT INTO acc_username_blacklist (username_key, reason, created_at, until_at)"
                    " VALUES (?, 'erased', ?, ?) ON CONFLICT (username_key) DO UPDATE SET reason = excluded.reason,"
                    " created_at = excluded.created_at, until_at = excluded.until_at",
                    (self._bl(key), e.requested_at, blacklist_until),
                )
            return True

        return await self._in_tx(go)

    async def erase_user(self, user_id: str, at: int) -> int:
        """Wipe the personal fields; keep payments under the id."""

        def go(db: sqlite3.Connection) -> int:
            n = 0
            for stmt in ERASE_STATEMENTS:
                args: tuple[Any, ...] = (user_id, at) if "{at}" in stmt else (user_id,)
                n += db.execute(stmt.format(p="?1", at="?2"), args).rowcount
            return n

        return await self._in_tx(go)

    async def open_erasures(self) -> list[ErasureRow]:
        """Erasures not completed."""
        rows = await self._rows(
            "SELECT user_id, reason, requested_at, completed_at FROM acc_erasures WHERE completed_at IS NULL"
            " ORDER BY requested_at"
        )
        return [ErasureRow(*r) for r in rows]

    async def complete_erasure(self, user_id: str, at: int) -> None:
        """Mark an erasure done."""
        await self._in_tx(
            lambda db: db.execute(
                "UPDATE acc_erasures SET completed_at = coalesce(completed_at, ?) WHERE user_id = ?", (at, user_id)
            )
        )

    async def last_purchases(self) -> dict[str, int]:
        """Member id -> last purchase (or creation) time."""
        return {r[0]: int(r[1]) for r in await self._rows(LAST_PURCHASES_SQL)}

    async def inactive_members(self, before: int) -> list[str]:
        """Open members inactive since ``before``."""
        return [r[0] for r in await self._rows(INACTIVE_SQL.format(p="?1"), (before,))]

    async def _count_or_delete(self, where: str, args: Sequence[Any], table: str, dry_run: bool) -> int:
        def go(db: sqlite3.Connection) -> int:
            if dry_run:
                return int(db.execute(f"SELECT count(*) FROM {table} WHERE {where}", args).fetchone()[0])
            return int(db.execute(f"DELETE FROM {table} WHERE {where}", args).rowcount)

        return await self._in_tx(go)

    async def purge_guest_sessions(self, before: int, *, dry_run: bool = False) -> int:
        """Delete guest sessions created before ``before``."""
        return await self._count_or_delete("kind = 'guest' AND created_at < ?", (before,), "acc_sessions", dry_run)

    async def purge_blacklist(self, now: int, *, dry_run: bool = False) -> int:
        """Delete lapsed blacklist entries."""
        return await self._count_or_delete(
            "until_at IS NOT NULL AND until_at <= ?", (now,), "acc_username_blacklist", dry_run
        )

    # -- housekeeping -------------------------------------------------------------------------

    async def execute_raw(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        return await self._rows(sql, args)
