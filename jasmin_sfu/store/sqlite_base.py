"""What every SQLite store shares: opening the file, versioned migrations, and running calls.

Threading: one connection per store, driven by one dedicated worker thread. A
commit with ``synchronous=FULL`` fsyncs the WAL (0.1-10 ms on real disks),
which must never stall the media event loop, so every statement runs in the
thread; one thread, because SQLite admits one writer at a time anyway.
Transactions are ``BEGIN IMMEDIATE``: the write lock is taken at the start, so
a read inside the transaction cannot change before the write it guards.

Migrations (``migrate``) may race: every worker process of a node opens the
same files at start-up. The version is read once without a lock (an
up-to-date database costs no write lock); each missing version is then applied
inside ``BEGIN IMMEDIATE`` after reading the version again under that lock, so
a sibling that got there first is seen and the migration is not run twice. A
failing migration rolls back whole, version row included.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, ClassVar, Mapping, Self, Sequence, TypeVar

from jasmin_sfu.store.errors import (
    DuplicateKeyError,
    IntegrityStoreError,
    MigrationError,
    RetryableStoreError,
    StoreError,
)
from jasmin_sfu.store.sqlite_wal import enable_wal

T = TypeVar("T")


@dataclass(frozen=True)
class Track:
    """One store's migration track: its version table and its ordered ``(version, sql)`` steps.

    ``hooks``: for a version whose data cannot be migrated in SQL alone (a keyed hash), a
    function run after that version's SQL, with the connection, inside the same transaction.
    """

    name: str  # for errors: "accounts schema", "database schema"
    version_table: str
    steps: Sequence[tuple[int, str]]
    hooks: Mapping[int, Callable[[sqlite3.Connection], None]] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(v for v, _ in self.steps)


def connect(path: str, *, synchronous: str = "FULL", foreign_keys: bool = False) -> sqlite3.Connection:
    """Open (creating the file and its folder when missing) in WAL mode, autocommit, 30 s busy timeout."""
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        enable_wal(db)
        db.execute(f"PRAGMA synchronous={synchronous}")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        db.close()
        raise
    return db


def split_statements(script: str) -> list[str]:
    """Split a migration into statements; a trigger body's inner ';' stays with its trigger."""
    out: list[str] = []
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    return out


def _version(db: sqlite3.Connection, track: Track) -> int:
    current = int(db.execute(f"SELECT coalesce(max(version), 0) FROM {track.version_table}").fetchone()[0])
    if current > track.latest:
        raise MigrationError(f"{track.name} {current} is newer than this code ({track.latest})")
    return current


def migrate(db: sqlite3.Connection, track: Track) -> list[int]:
    """Apply every step above the stored version, each in its own transaction; the versions applied here."""
    vt = track.version_table
    db.execute(f"CREATE TABLE IF NOT EXISTS {vt} (version INTEGER PRIMARY KEY, applied_at TEXT)")
    current = _version(db, track)
    applied: list[int] = []
    for version, sql in sorted(track.steps):
        if version <= current:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process (a sibling worker) may have migrated while we
            # waited for the write lock: read the version again under the lock.
            current = _version(db, track)
            if version <= current:
                db.execute("COMMIT")
                continue
            for stmt in split_statements(sql):
                db.execute(stmt)
            if version in track.hooks:
                track.hooks[version](db)
            db.execute(f"INSERT INTO {vt} VALUES (?, datetime('now'))", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        current = version
        applied.append(version)
    return applied


def map_error(e: sqlite3.Error, unique_error: type[StoreError]) -> StoreError | None:
    """The store error for a SQLite error (None: not ours to translate)."""
    msg = str(e)
    if isinstance(e, sqlite3.IntegrityError):
        if "UNIQUE" in msg or "PRIMARY KEY" in msg:
            return unique_error(msg)
        return IntegrityStoreError(msg)
    if isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
        return RetryableStoreError(msg)
    return None


class SqliteStore:
    """Base of the SQLite stores: the connection, its worker thread, migrations and transactions.

    A subclass names its ``track``; sets ``foreign_keys`` when its schema relies
    on them; and sets ``unique_error`` to what a UNIQUE violation means to its
    callers (the ledger retries, so ``RetryableStoreError``; elsewhere the
    caller's conflict, ``DuplicateKeyError``).
    """

    track: ClassVar[Track]
    foreign_keys: ClassVar[bool] = False
    unique_error: ClassVar[type[StoreError]] = DuplicateKeyError
    thread_name: ClassVar[str] = "sqlite-store"

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: str, *, synchronous: str = "FULL") -> Self:
        """Open (creating the file when missing) and migrate to the latest schema."""
        return await cls(path, synchronous=synchronous)._start()

    async def _start(self) -> Self:
        try:
            await self._call(lambda _db: self._open_sync())
        except BaseException:
            await self.close()
            raise
        return self

    def _open_sync(self) -> None:
        """In the worker thread: connect and migrate (a subclass may open more after)."""
        self._db = connect(self.path, synchronous=self._synchronous, foreign_keys=self.foreign_keys)
        migrate(self._db, self.track)

    def _close_sync(self) -> None:
        """In the worker thread: close the connection(s)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the worker thread, mapping SQLite errors to store errors."""

        def call() -> T:
            try:
                return fn(self._db)  # type: ignore[arg-type]
            except sqlite3.Error as e:
                mapped = map_error(e, self.unique_error)
                if mapped is None:
                    raise
                raise mapped from e

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One statement's rows (no transaction of its own)."""
        return await self._call(lambda db: db.execute(sql, args).fetchall())

    async def _in_tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` whole in the thread in one ``BEGIN IMMEDIATE`` transaction (rolled back on any exception)."""

        def go(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

        async with self._lock:
            return await self._call(go)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` around awaited statements, ``ROLLBACK`` on any exception.

        The asyncio lock keeps every other transaction of this store out until
        it ends (one connection means one transaction at a time).
        """
        async with self._lock:
            await self._call(lambda db: db.execute("BEGIN IMMEDIATE"))
            try:
                yield
            except BaseException:
                # Shielded: a cancelled caller must not leave the connection inside a transaction.
                await asyncio.shield(self._call(lambda db: db.execute("ROLLBACK")))
                raise
            await self._call(lambda db: db.execute("COMMIT"))

    async def schema_version(self) -> int:
        """The applied migration version of this store's track."""
        rows = await self._rows(f"SELECT max(version) FROM {self.track.version_table}")
        return int(rows[0][0])

    async def close(self) -> None:
        """Close the connection(s) and stop the worker thread (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._close_sync)
        finally:
            self._pool.shutdown(wait=True)
