"""PostgreSQL implementation of ``AccountsStore`` (production; several nodes share it).

Each method is one READ COMMITTED transaction on a pooled connection. The
UNIQUE constraints decide races: two registrations of one name, two purchases
with one idempotency key. Migrations (``jasmin_sfu.store.pg_base``) run under
their own advisory lock and version table, apart from the ledger's, so the two
stores may share a schema.
"""

from __future__ import annotations

from typing import Any, Self, Sequence

import asyncpg

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
from jasmin_sfu.store.errors import DuplicateKeyError, IntegrityStoreError
from jasmin_sfu.store.pg_base import PgTrack, PostgresStore, rows_affected
from jasmin_sfu.store.sqlite_accounts import (
    PAY_COLS,
    PROFILE_COLS,
    SESSION_COLS,
    USER_COLS,
    payment_row,
    profile_row,
    session_row,
    user_row,
)


class PostgresAccountsStore(PostgresStore):
    """Accounts in PostgreSQL, through an asyncpg pool."""

    # Advisory lock key held while migrating ("jacc" in ASCII; the ledger uses "jasm").
    track = PgTrack(
        "accounts schema", migrations.VERSION_TABLE, migrations.POSTGRES, 0x6A616363, migrations.POSTGRES_HOOKS
    )
    _blacklist_secret = ""

    @classmethod
    async def open(cls, dsn: str, *, schema: str = "", min_size: int = 1, max_size: int = 10) -> Self:
        """Connect, migrate, and read the blacklist's secret (made by migration 3)."""
        store = await super().open(dsn, schema=schema, min_size=min_size, max_size=max_size)
        try:
            async with store._pool.acquire() as con:
                store._blacklist_secret = await con.fetchval(
                    "SELECT value FROM acc_secrets WHERE name = $1", migrations.BLACKLIST_SECRET
                )
        except BaseException:
            await store.close()
            raise
        return store

    def _bl(self, username_key: str) -> str:
        """The blacklist's key for a name: its keyed hash (docs/privacy.md)."""
        return migrations.blacklist_hash(self._blacklist_secret, username_key)

    # -- users -------------------------------------------------------------------

    async def create_user(self, user: UserRow, performer: PerformerRow | None = None) -> None:
        """Insert a user (and profile) unless the name is taken or blacklisted."""
        u = user
        async with self._transaction() as con:
            blocked = await con.fetchval(
                "SELECT 1 FROM acc_username_blacklist WHERE username_key = $1 AND (until_at IS NULL OR until_at > $2)",
                self._bl(u.username_key),
                u.created_at,
            )
            if blocked is not None:
                raise DuplicateKeyError(f"username {u.username!r} is blacklisted")
            await con.execute(
                f"INSERT INTO acc_users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                u.id,
                u.username,
                u.username_key,
                u.role,
                u.password_hash,
                u.created_at,
                u.adult_confirmed_at,
                u.last_login_at,
                u.closed_at,
            )
            if performer is not None:
                await self._put_performer(con, performer)

    async def user_by_id(self, user_id: str) -> UserRow | None:
        """A user by id."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(f"SELECT {USER_COLS} FROM acc_users WHERE id = $1", user_id)
        return user_row(r) if r is not None else None

    async def user_by_username(self, username_key: str) -> UserRow | None:
        """A user by case-folded username."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(f"SELECT {USER_COLS} FROM acc_users WHERE username_key = $1", username_key)
        return user_row(r) if r is not None else None

    async def set_adult_confirmed(self, user_id: str, at: int) -> None:
        """Record the user's 18+ confirmation."""
        async with self._transaction() as con:
            await con.execute("UPDATE acc_users SET adult_confirmed_at = $1 WHERE id = $2", at, user_id)

    async def record_login(self, user_id: str, at: int, password_hash: str | None = None) -> None:
        """Note a login (and a rehash)."""
        async with self._transaction() as con:
            await con.execute(
                "UPDATE acc_users SET last_login_at = $1, password_hash = coalesce($2, password_hash) WHERE id = $3",
                at,
                password_hash,
                user_id,
            )

    # -- blacklist ---------------------------------------------------------------------

    async def blacklist_username(self, row: BlacklistRow) -> None:
        """Insert or replace a blacklist entry."""
        async with self._transaction() as con:
            await con.execute(
                "INSERT INTO acc_username_blacklist (username_key, reason, created_at, until_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (username_key) DO UPDATE SET reason = excluded.reason,"
                " created_at = excluded.created_at, until_at = excluded.until_at",
                self._bl(row.username_key),
                row.reason,
                row.created_at,
                row.until_at,
            )

    async def blacklisted(self, username_key: str, now: int) -> BlacklistRow | None:
        """The entry in force at ``now``."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(
                "SELECT username_key, reason, created_at, until_at FROM acc_username_blacklist"
                " WHERE username_key = $1 AND (until_at IS NULL OR until_at > $2)",
                self._bl(username_key),
                now,
            )
        return BlacklistRow(*tuple(r)) if r is not None else None

    # -- sessions ---------------------------------------------------------------------

    async def create_session(self, row: SessionRow) -> None:
        """Insert a session."""
        s = row
        async with self._transaction() as con:
            await con.execute(
                f"INSERT INTO acc_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                s.id,
                s.token_hash,
                s.kind,
                s.user_id,
                s.created_at,
                s.expires_at,
                s.adult_confirmed_at,
                s.revoked_at,
            )

    async def session_by_token_hash(self, token_hash: str) -> SessionRow | None:
        """A session by its token's hash."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(f"SELECT {SESSION_COLS} FROM acc_sessions WHERE token_hash = $1", token_hash)
        return session_row(r) if r is not None else None

    async def confirm_session_adult(self, session_id: str, at: int) -> None:
        """Record a guest session's 18+ confirmation."""
        async with self._transaction() as con:
            await con.execute("UPDATE acc_sessions SET adult_confirmed_at = $1 WHERE id = $2", at, session_id)

    async def revoke_session(self, session_id: str, at: int) -> bool:
        """Revoke one session."""
        async with self._transaction() as con:
            status = await con.execute(
                "UPDATE acc_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", at, session_id
            )
        return bool(status.endswith(" 1"))

    async def revoke_user_sessions(self, user_id: str, at: int) -> int:
        """Revoke every live session of a user."""
        async with self._transaction() as con:
            status = await con.execute(
                "UPDATE acc_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL", at, user_id
            )
        return int(status.rsplit(" ", 1)[1])

    async def purge_sessions(self, now: int) -> int:
        """Delete expired and revoked sessions."""
        async with self._transaction() as con:
            status = await con.execute("DELETE FROM acc_sessions WHERE expires_at <= $1 OR revoked_at IS NOT NULL", now)
        return int(status.rsplit(" ", 1)[1])

    # -- performers -------------------------------------------------------------------------

    @staticmethod
    async def _put_performer(con: asyncpg.Connection, p: PerformerRow) -> None:
        await con.execute(
            "INSERT INTO acc_performers (user_id, display_name, bio, price_per_minute, is_group, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET"
            " display_name = excluded.display_name, bio = excluded.bio,"
            " price_per_minute = excluded.price_per_minute, is_group = excluded.is_group,"
            " updated_at = excluded.updated_at",
            p.user_id,
            p.display_name,
            p.bio,
            p.price_per_minute,
            int(p.is_group),
            p.updated_at,
        )
        await con.execute("DELETE FROM acc_performer_categories WHERE performer_id = $1", p.user_id)
        if p.categories:
            await con.executemany(
                "INSERT INTO acc_performer_categories (performer_id, category) VALUES ($1, $2)",
                [(p.user_id, c) for c in p.categories],
            )
        await con.execute("DELETE FROM acc_group_members WHERE group_id = $1", p.user_id)
        if p.group_members:
            await con.executemany(
                "INSERT INTO acc_group_members (group_id, performer_id) VALUES ($1, $2)",
                [(p.user_id, m) for m in p.group_members],
            )

    async def performer(self, user_id: str) -> PerformerRow | None:
        """A performer's profile."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(
                "SELECT user_id, display_name, bio, price_per_minute, is_group, updated_at FROM acc_performers"
                " WHERE user_id = $1",
                user_id,
            )
            if r is None:
                return None
            cats = await con.fetch(
                "SELECT category FROM acc_performer_categories WHERE performer_id = $1 ORDER BY category", user_id
            )
            members = await con.fetch(
                "SELECT performer_id FROM acc_group_members WHERE group_id = $1 ORDER BY performer_id", user_id
            )
        return PerformerRow(
            r[0], r[1], r[2], r[3], bool(r[4]), r[5], tuple(c[0] for c in cats), tuple(m[0] for m in members)
        )

    async def put_performer(self, row: PerformerRow) -> None:
        """Insert or replace a profile with its categories and members."""
        async with self._transaction() as con:
            await self._put_performer(con, row)

    # -- payments ---------------------------------------------------------------------------

    async def payment(self, user_id: str, idempotency_key: str) -> PaymentRow | None:
        """The payment recorded for this key."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(
                f"SELECT {PAY_COLS} FROM acc_payments WHERE user_id = $1 AND idempotency_key = $2",
                user_id,
                idempotency_key,
            )
        return payment_row(r) if r is not None else None

    async def insert_payment(self, row: PaymentRow) -> tuple[PaymentRow, bool]:
        """Insert unless the key is known; returns the stored row and whether this call stored it."""
        p = row
        async with self._transaction() as con:
            status = await con.execute(
                f"INSERT INTO acc_payments ({PAY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT (user_id, idempotency_key) DO NOTHING",
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
            )
            r = await con.fetchrow(
                f"SELECT {PAY_COLS} FROM acc_payments WHERE user_id = $1 AND idempotency_key = $2",
                p.user_id,
                p.idempotency_key,
            )
        return payment_row(r), str(status).endswith(" 1")

    async def mark_payment_credited(self, payment_id: str, at: int) -> bool:
        """The top-up reached the ledger; True for the one call that marked it."""
        async with self._transaction() as con:
            status = await con.execute(
                "UPDATE acc_payments SET status = 'credited', credited_at = coalesce(credited_at, $1)"
                " WHERE id = $2 AND status <> 'credited'",
                at,
                payment_id,
            )
        return str(status).endswith(" 1")

    # -- privacy ------------------------------------------------------------------------------

    async def member_profile(self, user_id: str) -> MemberProfileRow | None:
        """A member's profile row."""
        async with self._pool.acquire() as con:
            r = await con.fetchrow(f"SELECT {PROFILE_COLS} FROM acc_member_profiles WHERE user_id = $1", user_id)
        return profile_row(r) if r is not None else None

    async def put_member_profile(self, row: MemberProfileRow) -> None:
        """Insert or replace a member's profile row."""
        r = row
        cols = [c.strip() for c in PROFILE_COLS.split(",")]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        async with self._transaction() as con:
            await con.execute(
                f"INSERT INTO acc_member_profiles ({PROFILE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates}",
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
            )

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row referencing the user, by table (one REPEATABLE READ snapshot)."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._pool.acquire() as con:
            async with con.transaction(isolation="repeatable_read", readonly=True):
                for table, cols, where in EXPORT_TABLES:
                    rows = await con.fetch(f"SELECT {cols} FROM {table} WHERE {where.format(p='$1')}", user_id)
                    out[table] = [dict(r.items()) for r in rows]
        return out

    async def begin_erasure(self, row: ErasureRow, blacklist_until: int | None) -> bool:
        """Record the erasure, close, revoke, blacklist: one transaction."""
        e = row
        async with self._transaction() as con:
            status = await con.execute(
                "INSERT INTO acc_erasures (user_id, reason, requested_at, completed_at) VALUES ($1, $2, $3, NULL)"
                " ON CONFLICT (user_id) DO NOTHING",
                e.user_id,
                e.reason,
                e.requested_at,
            )
            if rows_affected(status) == 0:
                return False
            await con.execute(
                "UPDATE acc_users SET closed_at = coalesce(closed_at, $1) WHERE id = $2", e.requested_at, e.user_id
            )
            await con.execute(
                "UPDATE acc_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                e.requested_at,
                e.user_id,
            )
            key = await con.fetchval("SELECT username_key FROM acc_users WHERE id = $1", e.user_id)
            if not str(key).startswith(ERASED_KEY_PREFIX):
                await con.execute(
                    "INSERT INTO acc_username_blacklist (username_key, reason, created_at, until_at)"
                    " VALUES ($1, 'erased', $2, $3) ON CONFLICT (username_key) DO UPDATE SET"
                    " reason = excluded.reason, created_at = excluded.created_at, until_at = excluded.until_at",
                    self._bl(str(key)),
                    e.requested_at,
                    blacklist_until,
                )
        return True

    async def erase_user(self, user_id: str, at: int) -> int:
        """Wipe the personal fields; keep payments under the id."""
        n = 0
        async with self._transaction() as con:
            for stmt in ERASE_STATEMENTS:
                if "{at}" in stmt:
                    status = await con.execute(stmt.format(p="$1", at="$2::bigint"), user_id, at)
                else:
                    status = await con.execute(stmt.format(p="$1"), user_id)
                n += rows_affected(status)
        return n

    async def open_erasures(self) -> list[ErasureRow]:
        """Erasures not completed."""
        async with self._pool.acquire() as con:
            rows = await con.fetch(
                "SELECT user_id, reason, requested_at, completed_at FROM acc_erasures WHERE completed_at IS NULL"
                " ORDER BY requested_at"
            )
        return [ErasureRow(*tuple(r)) for r in rows]

    async def complete_erasure(self, user_id: str, at: int) -> None:
        """Mark an erasure done."""
        async with self._transaction() as con:
            await con.execute(
                "UPDATE acc_erasures SET completed_at = coalesce(completed_at, $1) WHERE user_id = $2", at, user_id
            )

    async def last_purchases(self) -> dict[str, int]:
        """Member id -> last purchase (or creation) time."""
        async with self._pool.acquire() as con:
            rows = await con.fetch(LAST_PURCHASES_SQL)
        return {r[0]: int(r[1]) for r in rows}

    async def inactive_members(self, before: int) -> list[str]:
        """Open members inactive since ``before``."""
        async with self._pool.acquire() as con:
            rows = await con.fetch(INACTIVE_SQL.format(p="$1::bigint"), before)
        return [r[0] for r in rows]

    async def _count_or_delete(self, table: str, where: str, arg: int, dry_run: bool) -> int:
        async with self._transaction() as con:
            if dry_run:
                return int(await con.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", arg))
            return rows_affected(await con.execute(f"DELETE FROM {table} WHERE {where}", arg))

    async def purge_guest_sessions(self, before: int, *, dry_run: bool = False) -> int:
        """Delete guest sessions created before ``before``."""
        return await self._count_or_delete("acc_sessions", "kind = 'guest' AND created_at < $1", before, dry_run)

    async def purge_blacklist(self, now: int, *, dry_run: bool = False) -> int:
        """Delete lapsed blacklist entries."""
        return await self._count_or_delete(
            "acc_username_blacklist", "until_at IS NOT NULL AND until_at <= $1", now, dry_run
        )

    # -- housekeeping -------------------------------------------------------------------------

    async def execute_raw(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        try:
            async with self._pool.acquire() as con:
                return list(await con.fetch(sql, *args))
        except asyncpg.exceptions.UniqueViolationError as e:
            raise DuplicateKeyError(repr(e)) from e
        except asyncpg.exceptions.IntegrityConstraintViolationError as e:
            raise IntegrityStoreError(repr(e)) from e
