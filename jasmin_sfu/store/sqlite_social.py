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

import asyncio
import os
import pathlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, TypeVar

from jasmin_sfu.store import social_migrations as migrations
from jasmin_sfu.store.errors import DuplicateKeyError, IntegrityStoreError, MigrationError, RetryableStoreError
from jasmin_sfu.store.social_sql import SqlSocialStore

T = TypeVar("T")


class _SqliteConn:
    def __init__(self, store: "SqliteSocialStore") -> None:
        self._store = store

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self._store._call(lambda db: db.execute(sql, args).fetchall())

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._store._call(lambda db: int(db.execute(sql, args).rowcount))

    async def lock(self, key: str) -> None:
        """``BEGIN IMMEDIATE`` already holds the only write lock."""


class SqliteSocialStore(SqlSocialStore):
    """Social rows in one SQLite file (or ``:memory:``), reading accounts from ``accounts_path``."""

    def __init__(self, path: str, accounts_path: str | None = None, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.accounts_path = accounts_path
        self._synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-social")
        self._db: sqlite3.Connection | None = None
        self._accdb: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str, accounts_path: str | None = None, *, synchronous: str = "FULL"
    ) -> "SqliteSocialStore":
        """Open (creating the file when missing) and migrate to the latest social schema."""
        store = cls(path, accounts_path, synchronous=synchronous)
        try:
            await store._call(store._open_sync)
        except BaseException:
            await store.close()
            raise
        return store

    def _open_sync(self, _db: Any) -> None:
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        self._db = db
        vt = migrations.VERSION_TABLE
        db.execute(f"CREATE TABLE IF NOT EXISTS {vt} (version INTEGER PRIMARY KEY, applied_at TEXT)")
        current = db.execute(f"SELECT coalesce(max(version), 0) FROM {vt}").fetchone()[0]
        if current > migrations.LATEST:
            raise MigrationError(f"social schema {current} is newer than this code ({migrations.LATEST})")
        for version, sql in migrations.SQLITE:
            if version <= current:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in (s.strip() for s in sql.split(";")):
                    if stmt:
                        db.execute(stmt)
                db.execute(f"INSERT INTO {vt} VALUES (?, datetime('now'))", (version,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if self.accounts_path is not None:
            uri = pathlib.Path(os.path.abspath(self.accounts_path)).as_uri() + "?mode=ro"
            self._accdb = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the worker thread, mapping SQLite errors to store errors."""
        loop = asyncio.get_running_loop()

        def call() -> T:
            try:
                return fn(self._db)  # type: ignore[arg-type]
            except sqlite3.IntegrityError as e:
                if "UNIQUE" in str(e) or "PRIMARY KEY" in str(e):
                    raise DuplicateKeyError(str(e)) from e
                raise IntegrityStoreError(str(e)) from e
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise RetryableStoreError(str(e)) from e
                raise

        return await loop.run_in_executor(self._pool, call)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_SqliteConn]:
        """One ``BEGIN IMMEDIATE`` transaction, rolled back on any exception."""
        async with self._lock:
            await self._call(lambda db: db.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteConn(self)
            except BaseException:
                await self._call(lambda db: db.execute("ROLLBACK"))
                raise
            await self._call(lambda db: db.execute("COMMIT"))

    async def _acc(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        acc = self._accdb
        if acc is None:
            return []
        return await self._call(lambda _db: acc.execute(sql, args).fetchall())

    # -- housekeeping -------------------------------------------------------------------------

    async def schema_version(self) -> int:
        """The applied social migration version."""
        rows = await self._call(lambda db: db.execute(f"SELECT max(version) FROM {migrations.VERSION_TABLE}").fetchall())
        return int(rows[0][0])

    async def execute_raw(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        async with self._lock:
            return await self._call(lambda db: db.execute(sql, args).fetchall())

    async def close(self) -> None:
        """Close the connections and stop the worker thread."""
        dbs = [d for d in (self._db, self._accdb) if d is not None]
        self._db = self._accdb = None

        def close_all() -> None:
            for d in dbs:
                d.close()

        if dbs:
            await asyncio.get_running_loop().run_in_executor(self._pool, close_all)
        self._pool.shutdown(wait=True)
