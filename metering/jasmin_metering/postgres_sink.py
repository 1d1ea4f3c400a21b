"""PostgreSQL billing sink: ``INSERT ... ON CONFLICT (source, id) DO NOTHING``.

The whole batch is one statement over ``unnest`` arrays inside one transaction;
the keys not returned by ``RETURNING`` already existed and are compared by
content hash (same hash: a duplicate, answered as success; other hash: conflict).
"""

from __future__ import annotations

from typing import Any, Sequence

import asyncpg

from jasmin_metering.config import PostgresSinkConfig
from jasmin_metering.errors import SinkConflictError, SinkUnavailableError
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import dedupe_batch, sql_ident

# Errors after which the batch is retried: the server or the network, not our SQL.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    TimeoutError,
)


class PostgresSink:
    """Events in a PostgreSQL table, idempotent on (source, id)."""

    def __init__(self, config: PostgresSinkConfig, name: str = "postgres") -> None:
        self.name = name
        self.config = config
        self._table = sql_ident(config.table)
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            c = self.config
            settings = {"search_path": sql_ident(c.schema)} if c.schema else {}
            pool = await asyncpg.create_pool(
                c.dsn,
                min_size=c.pool_min,
                max_size=c.pool_max,
                timeout=c.connect_timeout_s,
                server_settings=settings,
            )
            assert pool is not None
            async with pool.acquire() as con:
                await con.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._table} ("
                    " source text NOT NULL, id text NOT NULL, hash text NOT NULL,"
                    " type text NOT NULL, partitionkey text NOT NULL, body jsonb NOT NULL,"
                    " stored_at timestamptz NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (source, id))"
                )
            self._pool = pool
        return self._pool

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """Insert the batch in one transaction; duplicates are no-ops."""
        batch, conflicts = dedupe_batch(events)
        if batch:
            try:
                conflicts.extend(await self._insert(batch))
            except _TRANSIENT as e:
                await self._reset()
                raise SinkUnavailableError(f"postgres sink: {e!r}") from e
        if conflicts:
            raise SinkConflictError(conflicts)

    async def _insert(self, batch: list[CloudEvent]) -> list[tuple[str, str]]:
        pool = await self._get_pool()
        cols: list[list[Any]] = [[], [], [], [], [], []]
        hashes: dict[tuple[str, str], str] = {}
        for ev in batch:
            h = ev.content_hash()
            hashes[ev.key] = h
            for i, v in enumerate((ev.source, ev.id, h, ev.type, ev.partitionkey, ev.to_json().decode())):
                cols[i].append(v)
        t = self._table
        async with pool.acquire() as con:
            async with con.transaction():
                inserted = await con.fetch(
                    f"INSERT INTO {t} (source, id, hash, type, partitionkey, body)"
                    " SELECT s, i, h, ty, p, b::jsonb FROM unnest($1::text[], $2::text[], $3::text[],"
                    " $4::text[], $5::text[], $6::text[]) AS u(s, i, h, ty, p, b)"
                    " ON CONFLICT (source, id) DO NOTHING RETURNING source, id",
                    *cols,
                )
                done = {(r["source"], r["id"]) for r in inserted}
                rest = [k for k in hashes if k not in done]
                if not rest:
                    return []
                rows = await con.fetch(
                    f"SELECT source, id, hash FROM {t} WHERE (source, id) IN"
                    " (SELECT * FROM unnest($1::text[], $2::text[]))",
                    [k[0] for k in rest],
                    [k[1] for k in rest],
                )
        return [(r["source"], r["id"]) for r in rows if hashes[(r["source"], r["id"])] != r["hash"]]

    async def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def count(self) -> int:
        """Number of stored events (for tests and health checks)."""
        pool = await self._get_pool()
        async with pool.acquire() as con:
            n = await con.fetchval(f"SELECT count(*) FROM {self._table}")
        return int(n)

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
