"""SQLite implementation of ``SocialStore`` (the embedded default): ``social.sqlite3``.

One connection driven by one worker thread, as the accounts' and the ledger's
SQLite stores: a commit fsyncs (``synchronous=FULL``, 0.1-10 ms on real disks)
and must never stall the media event loop. Each store method is one
``BEGIN IMMEDIATE`` ... ``COMMIT``; its statements run one by one in the worker
thread, and an asyncio lock keeps every other method out until it commits (one
connection means one transaction at a time), so a count and the insert it
guards are atomic.

The accounts' tables live in another file (``accounts.sqlite3``, owned by the
accounts store). They are read through a second connection opened read-only
(``mode=ro``), in the same worker thread, never inside this store's write
transaction, so this store can never block or write the accounts database.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Self

from jasmin_sfu.store import social_migrations as migrations
from jasmin_sfu.store.social_sql import SqlSocialStore
from jasmin_sfu.store.sqlite_base import SqliteStore, Track


class _SqliteConn:
    def __init__(self, store: "SqliteSocialStore") -> None:
        self._store = store

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self._store._call(lambda db: db.execute(sql, args).fetchall())

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._store._call(lambda db: int(db.execute(sql, args).rowcount))

    async def lock(self, key: str) -> None:
        """``BEGIN IMMEDIATE`` already holds the only write lock."""


class SqliteSocialStore(SqliteStore, SqlSocialStore):
    """Social rows in one SQLite file (or ``:memory:``), reading accounts from ``accounts_path``."""

    track = Track("social schema", migrations.VERSION_TABLE, migrations.SQLITE)
    thread_name = "sqlite-social"

    def __init__(self, path: str, accounts_path: str | None = None, *, synchronous: str = "FULL") -> None:
        super().__init__(path, synchronous=synchronous)
        self.accounts_path = accounts_path
        self._accdb: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str, accounts_path: str | None = None, *, synchronous: str = "FULL") -> Self:
        """Open (creating the file when missing) and migrate to the latest social schema."""
        return await cls(path, accounts_path, synchronous=synchronous)._start()

    def _open_sync(self) -> None:
        super()._open_sync()
        if self.accounts_path is not None:
            uri = pathlib.Path(os.path.abspath(self.accounts_path)).as_uri() + "?mode=ro"
            self._accdb = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)

    def _close_sync(self) -> None:
        if self._accdb is not None:
            self._accdb.close()
            self._accdb = None
        super()._close_sync()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_SqliteConn]:
        """One ``BEGIN IMMEDIATE`` transaction, rolled back on any exception."""
        async with self._transaction():
            yield _SqliteConn(self)

    async def _acc(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        acc = self._accdb
        if acc is None:
            return []
        return await self._call(lambda _db: acc.execute(sql, args).fetchall())

    # -- housekeeping -------------------------------------------------------------------------

    async def execute_raw(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        async with self._lock:
            return await self._call(lambda db: db.execute(sql, args).fetchall())
