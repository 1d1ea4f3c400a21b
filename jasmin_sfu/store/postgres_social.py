"""PostgreSQL implementation of ``SocialStore`` (production; several nodes share it).

Each method is one READ COMMITTED transaction on a pooled connection. Counts
that must not race (24/96 favourites, presets) take an advisory transaction
lock per member; the mailing quota and the TopMembership anchor are conditional
upserts, decided by the row lock PostgreSQL takes on conflict. Migrations run
under their own advisory lock and version table (``social_schema_version``),
apart from the ledger's and the accounts', so all three may share a schema; the
accounts' ``acc_`` tables are then read from the same schema.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, AsyncIterator

import asyncpg

from jasmin_sfu.store import social_migrations as migrations
from jasmin_sfu.store.errors import DuplicateKeyError, IntegrityStoreError, MigrationError, RetryableStoreError
from jasmin_sfu.store.social_sql import SqlSocialStore

# Advisory lock key held while migrating ("jsoc" in ASCII; accounts use "jacc", the ledger "jasm").
_MIGRATION_LOCK = 0x6A736F63


@lru_cache(maxsize=512)
def _dollars(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (the shared SQL never has a ``?`` in a literal)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


def _count(status: str) -> int:
    """Rows changed, from a command tag like ``UPDATE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class _PgConn:
    def __init__(self, con: asyncpg.Connection) -> None:
        self._con = con

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._con.fetch(_dollars(sql), *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        return _count(await self._con.execute(_dollars(sql), *args))

    async def lock(self, key: str) -> None:
        await self._con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)


class PostgresSocialStore(SqlSocialStore):
    """Social rows in PostgreSQL, through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(
        cls, dsn: str, *, schema: str = "", min_size: int = 1, max_size: int = 10
    ) -> "PostgresSocialStore":
        """Connect, then migrate to the latest social schema (under an advisory lock)."""
        settings = {"search_path": schema} if schema else {}
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, server_settings=settings)
        assert pool is not None
        store = cls(pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self) -> None:
        vt = migrations.VERSION_TABLE
        async with self._pool.acquire() as con:
            await con.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                await con.execute(
                    f"CREATE TABLE IF NOT EXISTS {vt} (version INTEGER PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                current = int(await con.fetchval(f"SELECT coalesce(max(version), 0) FROM {vt}"))
                if current > migrations.LATEST:
                    raise MigrationError(f"social schema {current} is newer than this code ({migrations.LATEST})")
                for version, sql in migrations.POSTGRES:
                    if version <= current:
                        continue
                    async with con.transaction():
                        await con.execute(sql)
                        await con.execute(f"INSERT INTO {vt} (version) VALUES ($1)", version)
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_PgConn]:
        """One transaction; PostgreSQL errors mapped to store errors."""
        try:
            async with self._pool.acquire() as con:
                async with con.transaction():
                    yield _PgConn(con)
        except asyncpg.exceptions.UniqueViolationError as e:
            raise DuplicateKeyError(repr(e)) from e
        except (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError) as e:
            raise RetryableStoreError(repr(e)) from e
        except asyncpg.exceptions.IntegrityConstraintViolationError as e:
            raise IntegrityStoreError(repr(e)) from e

    async def _acc(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._pool.acquire() as con:
            return [tuple(r) for r in await con.fetch(_dollars(sql), *args)]

    async def schema_version(self) -> int:
        """The applied social migration version."""
        async with self._pool.acquire() as con:
            return int(await con.fetchval(f"SELECT max(version) FROM {migrations.VERSION_TABLE}"))

    async def execute_raw(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        async with self._tx() as c:
            return await c.fetch(sql, *args)

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()
