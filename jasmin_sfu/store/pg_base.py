"""What every PostgreSQL store shares: the pool, versioned migrations under an advisory lock, transactions.

Every node of a site opens the same schema, so migrations race. The version is
read once without a lock (an up-to-date schema opens without waiting); each
missing version then runs in its own transaction that first takes the track's
advisory lock (``pg_advisory_xact_lock``) and reads the version again: a node
that waited for the lock sees what the first one applied and skips it. The lock is
transaction-scoped, so it is released by COMMIT, ROLLBACK or a dropped
connection, and never left held on a pooled connection. A session-level
``pg_advisory_lock`` on the same key (what earlier releases took while
migrating) conflicts with it, so old and new nodes starting together still
take turns. A failing migration rolls back whole, version row included
(PostgreSQL DDL is transactional).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Mapping, Self, Sequence

import asyncpg

from jasmin_sfu.store.errors import (
    DuplicateKeyError,
    IntegrityStoreError,
    MigrationError,
    RetryableStoreError,
    StoreError,
)


@dataclass(frozen=True)
class PgTrack:
    """One store's migration track: version table, ordered ``(version, sql)`` steps, advisory lock key."""

    name: str  # for errors: "accounts schema", "database schema"
    version_table: str
    steps: Sequence[tuple[int, str]]
    lock_key: int  # four ASCII letters, e.g. 0x6A616363 "jacc"
    # As ``sqlite_base.Track.hooks``: run after that version's SQL, in its transaction.
    hooks: Mapping[int, Callable[[asyncpg.Connection], Awaitable[None]]] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(v for v, _ in self.steps)


async def create_pool(dsn: str, *, schema: str = "", min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool whose connections use ``schema`` (when given) as their search path."""
    settings = {"search_path": schema} if schema else {}
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, server_settings=settings)
    assert pool is not None
    return pool


async def _version(con: asyncpg.Connection, track: PgTrack) -> int:
    current = int(await con.fetchval(f"SELECT coalesce(max(version), 0) FROM {track.version_table}"))
    if current > track.latest:
        raise MigrationError(f"{track.name} {current} is newer than this code ({track.latest})")
    return current


async def migrate(con: asyncpg.Connection, track: PgTrack) -> list[int]:
    """Apply every step above the stored version, each in its own locked transaction; the versions applied here."""
    lock = "SELECT pg_advisory_xact_lock($1)"
    if await con.fetchval("SELECT to_regclass($1)", track.version_table) is None:
        async with con.transaction():
            # Under the lock: two concurrent CREATE TABLE IF NOT EXISTS can both fail (on pg_type).
            await con.execute(lock, track.lock_key)
            await con.execute(
                f"CREATE TABLE IF NOT EXISTS {track.version_table} (version INTEGER PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
    # Read without the lock: an up-to-date schema opens without waiting for anyone.
    current = await _version(con, track)
    applied: list[int] = []
    for version, sql in sorted(track.steps):
        if version <= current:
            continue
        async with con.transaction():
            await con.execute(lock, track.lock_key)
            # Another node may have migrated while we waited for the lock: read again under it.
            current = await _version(con, track)
            if version <= current:
                continue
            await con.execute(sql)
            if version in track.hooks:
                await track.hooks[version](con)
            await con.execute(f"INSERT INTO {track.version_table} (version) VALUES ($1)", version)
        current = version
        applied.append(version)
    return applied


def rows_affected(status: str) -> int:
    """Rows changed, from a command tag like ``UPDATE 3`` or ``INSERT 0 1`` (0 when it has no count)."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresStore:
    """Base of the PostgreSQL stores: an asyncpg pool, migrated at open, and mapped transactions.

    A subclass names its ``track`` and sets ``unique_error`` to what a UNIQUE
    violation means to its callers (the ledger retries, so
    ``RetryableStoreError``; elsewhere the caller's conflict, ``DuplicateKeyError``).
    """

    track: ClassVar[PgTrack]
    unique_error: ClassVar[type[StoreError]] = DuplicateKeyError

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, schema: str = "", min_size: int = 1, max_size: int = 10) -> Self:
        """Connect, then migrate to the latest schema (under the track's advisory lock)."""
        pool = await create_pool(dsn, schema=schema, min_size=min_size, max_size=max_size)
        try:
            async with pool.acquire() as con:
                await migrate(con, cls.track)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One READ COMMITTED transaction on a pooled connection; PostgreSQL errors mapped to store errors."""
        try:
            async with self._pool.acquire() as con:
                async with con.transaction():
                    yield con
        except asyncpg.exceptions.UniqueViolationError as e:
            raise self.unique_error(repr(e)) from e
        except (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError) as e:
            raise RetryableStoreError(repr(e)) from e
        except asyncpg.exceptions.IntegrityConstraintViolationError as e:
            raise IntegrityStoreError(repr(e)) from e

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        """One statement's rows, outside any transaction of ours."""
        async with self._pool.acquire() as con:
            return list(await con.fetch(sql, *args))

    async def schema_version(self) -> int:
        """The applied migration version of this store's track."""
        async with self._pool.acquire() as con:
            return int(await con.fetchval(f"SELECT max(version) FROM {self.track.version_table}"))

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()
