"""PostgreSQL implementation of ``SocialStore`` (production; several nodes share it).

Each method is one READ COMMITTED transaction on a pooled connection. Counts
that must not race (24/96 favourites, presets) take an advisory transaction
lock per member; the mailing quota and the TopMembership anchor are conditional
upserts, decided by the row lock PostgreSQL takes on conflict. Migrations
(``jasmin_sfu.store.pg_base``) run under their own advisory lock and version
table (``social_schema_version``), apart from the ledger's and the accounts', so
all three may share a schema; the accounts' ``acc_`` tables are then read from
the same schema.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, AsyncIterator

import asyncpg

from jasmin_sfu.store import social_migrations as migrations
from jasmin_sfu.store.pg_base import PgTrack, PostgresStore, rows_affected
from jasmin_sfu.store.social_sql import SqlSocialStore


@lru_cache(maxsize=512)
def _dollars(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (the shared SQL never has a ``?`` in a literal)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


class _PgConn:
    def __init__(self, con: asyncpg.Connection) -> None:
        self._con = con

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._con.fetch(_dollars(sql), *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        return rows_affected(await self._con.execute(_dollars(sql), *args))

    async def lock(self, key: str) -> None:
        await self._con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)


class PostgresSocialStore(PostgresStore, SqlSocialStore):
    """Social rows in PostgreSQL, through an asyncpg pool."""

    # Advisory lock key held while migrating ("jsoc" in ASCII; accounts use "jacc", the ledger "jasm").
    track = PgTrack("social schema", migrations.VERSION_TABLE, migrations.POSTGRES, 0x6A736F63)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_PgConn]:
        """One transaction; PostgreSQL errors mapped to store errors."""
        async with self._transaction() as con:
            yield _PgConn(con)

    async def _acc(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._fetch(_dollars(sql), *args)]

    async def execute_raw(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        async with self._tx() as c:
            return await c.fetch(sql, *args)
