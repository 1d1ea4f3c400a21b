"""The shared store plumbing (``sqlite_base``, ``pg_base``): migrations that race, fail, or have nothing to do.

Every worker process of a node opens the same SQLite files at start-up, and every
node opens the same PostgreSQL schema: two migrators starting at once must apply
each migration exactly once. A failing migration must leave the version (and the
schema) as it was. Reopening a migrated database applies nothing.

Each migration of the test tracks writes a row into ``applied_log``, a side
effect that counts how often it really ran (``CREATE TABLE IF NOT EXISTS``, so a
second run would count instead of failing).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

import asyncpg
import pytest

from jasmin_sfu.store import accounts_migrations, chat_migrations, migrations, pg_base, social_migrations, sqlite_base
from jasmin_sfu.store.errors import MigrationError
from jasmin_sfu.store.pg_base import PgTrack
from jasmin_sfu.store.postgres_accounts import PostgresAccountsStore
from jasmin_sfu.store.postgres_chat import PostgresChatStore
from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
from jasmin_sfu.store.postgres_social import PostgresSocialStore
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_base import Track, connect, migrate, split_statements
from jasmin_sfu.store.sqlite_chat import SqliteChatStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from jasmin_sfu.store.sqlite_social import SqliteSocialStore
from tests.realparts import PG_DSN, pg_schema

# -- SQLite -------------------------------------------------------------------------------------

# Step 1 is slow on purpose (a few tens of ms), so racing migrators overlap.
SQLITE_STEPS = [
    (
        1,
        "CREATE TABLE IF NOT EXISTS applied_log (version INTEGER NOT NULL);"
        " INSERT INTO applied_log VALUES (1);"
        " CREATE TABLE IF NOT EXISTS filler (n INTEGER);"
        " INSERT INTO filler WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 50000)"
        " SELECT n FROM c",
    ),
    (2, "INSERT INTO applied_log VALUES (2); CREATE TABLE IF NOT EXISTS two (x INTEGER)"),
    (
        3,
        "INSERT INTO applied_log VALUES (3);"
        " CREATE TRIGGER IF NOT EXISTS two_guard BEFORE DELETE ON two BEGIN SELECT RAISE(ABORT, 'no; never'); END",
    ),
]
SQLITE_TRACK = Track("test schema", "test_schema_version", SQLITE_STEPS)


def _log_counts(db: sqlite3.Connection) -> dict[int, int]:
    return dict(db.execute("SELECT version, count(*) FROM applied_log GROUP BY version").fetchall())


def _versions(db: sqlite3.Connection, table: str = "test_schema_version") -> list[int]:
    return [r[0] for r in db.execute(f"SELECT version FROM {table} ORDER BY version")]


def _migrate_file(path: str, track: Track = SQLITE_TRACK) -> list[int]:
    db = connect(path)
    try:
        return migrate(db, track)
    finally:
        db.close()


def _migrate_in_threads(path: str, n: int, while_started: Callable[[], object] | None = None) -> list[list[int]]:
    """``n`` threads, each with its own connection, released together to migrate ``path``."""
    barrier = threading.Barrier(n)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(_migrate_file(path))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    if while_started is not None:
        while_started()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == n
    return results


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    """Protects trigger migrations (the ledger's append-only triggers): the ';' inside
    BEGIN ... END and inside a string literal does not end the statement."""
    stmts = split_statements(SQLITE_STEPS[2][1])
    assert len(stmts) == 2 and stmts[1].endswith("END;") and "'no; never'" in stmts[1]
    stmts = split_statements("CREATE TABLE a (x);\n\nCREATE INDEX ai ON a (x)\n")
    assert [s.rstrip(";").strip() for s in stmts] == ["CREATE TABLE a (x)", "CREATE INDEX ai ON a (x)"]


def test_sqlite_stale_migrators_rechecks_under_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects against a migration applied twice when two processes start together: both
    read version 0 while a third connection holds the write lock, then queue on
    BEGIN IMMEDIATE; the second must see the first one's versions and apply nothing."""
    path = str(tmp_path / "race.sqlite3")
    reads: dict[str, list[int]] = {}
    real_version = sqlite_base._version

    def spy(db: sqlite3.Connection, track: Track) -> int:
        v = real_version(db, track)
        reads.setdefault(threading.current_thread().name, []).append(v)
        return v

    monkeypatch.setattr(sqlite_base, "_version", spy)
    holder = connect(path)
    holder.execute("CREATE TABLE test_schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock: both migrators read 0, then wait

    def release() -> None:
        # Both did their unlocked read (version 0) under the held lock; now let them queue on it.
        deadline = time.monotonic() + 30
        while sum(len(v) for v in reads.values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        holder.execute("COMMIT")

    results = _migrate_in_threads(path, 2, while_started=release)
    assert sorted(v for r in results for v in r) == [1, 2, 3]  # each applied by exactly one
    assert [r[0] for r in reads.values()] == [0, 0]  # both started from a stale version 0
    assert _log_counts(holder) == {1: 1, 2: 1, 3: 1}
    assert _versions(holder) == [1, 2, 3]
    holder.close()


def test_sqlite_threads_racing_from_the_start(tmp_path: Path) -> None:
    """Protects the same rule with no lock held up front: four threads (four connections)
    start migrating a fresh file together, version table creation included."""
    path = str(tmp_path / "threads.sqlite3")
    results = _migrate_in_threads(path, 4)
    assert sorted(v for r in results for v in r) == [1, 2, 3]
    db = connect(path)
    assert _log_counts(db) == {1: 1, 2: 1, 3: 1} and _versions(db) == [1, 2, 3]
    db.close()


def _process_migrate(path: str, start: float, out: "multiprocessing.Queue[object]") -> None:
    while time.time() < start:  # line up with the sibling processes
        time.sleep(0.001)
    try:
        out.put(_migrate_file(path))
    except BaseException as e:  # noqa: BLE001 - sent to the parent
        out.put(repr(e))


def _process_open_stores(path: str, start: float, out: "multiprocessing.Queue[object]") -> None:
    async def go() -> None:
        stores = [
            await SqliteLedgerStore.open(path),
            await SqliteAccountsStore.open(path),
            await SqliteChatStore.open(path),
            await SqliteSocialStore.open(path),
        ]
        for s in stores:
            await s.close()

    while time.time() < start:
        time.sleep(0.001)
    try:
        asyncio.run(go())
        out.put("ok")
    except BaseException as e:  # noqa: BLE001 - sent to the parent
        out.put(repr(e))


def _run_processes(target: Callable[..., None], path: str, n: int) -> list[object]:
    ctx = multiprocessing.get_context("spawn")
    out: "multiprocessing.Queue[object]" = ctx.Queue()
    start = time.time() + 2.0  # spawn takes a while: all start at once after it
    procs = [ctx.Process(target=target, args=(path, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return got


def test_sqlite_processes_racing_apply_each_migration_once(tmp_path: Path) -> None:
    """Protects the multi-worker start-up: three processes migrate one fresh file at the
    same instant; each migration runs once."""
    path = str(tmp_path / "procs.sqlite3")
    got = _run_processes(_process_migrate, path, 3)
    results = [r for r in got if isinstance(r, list)]
    assert len(results) == 3, got  # the others are the errors, as text
    assert sorted(v for r in results for v in r) == [1, 2, 3]
    db = connect(path)
    assert _log_counts(db) == {1: 1, 2: 1, 3: 1}
    db.close()


def test_sqlite_real_stores_opened_by_racing_processes(tmp_path: Path) -> None:
    """Protects the real tracks sharing one file: three processes open the ledger, accounts,
    chat and social stores together; every version row is there once, at the latest version."""
    path = str(tmp_path / "shared.sqlite3")
    assert _run_processes(_process_open_stores, path, 3) == ["ok"] * 3
    db = sqlite3.connect(path)
    for table, latest in [
        ("schema_version", migrations.LATEST),
        (accounts_migrations.VERSION_TABLE, accounts_migrations.LATEST),
        (chat_migrations.VERSION_TABLE, chat_migrations.LATEST),
        (social_migrations.VERSION_TABLE, social_migrations.LATEST),
    ]:
        assert _versions(db, table) == list(range(1, latest + 1)), table
    db.close()


def test_sqlite_failing_migration_rolls_back(tmp_path: Path) -> None:
    """Protects the schema from a half-applied migration: a failing step leaves no table of
    its own behind and the version where it was; the next start applies it once fixed."""
    path = str(tmp_path / "fail.sqlite3")
    broken = Track(
        "test schema",
        "test_schema_version",
        [
            SQLITE_STEPS[0],
            (2, "INSERT INTO applied_log VALUES (2); CREATE TABLE two (x INTEGER); INSERT INTO missing VALUES (1)"),
        ],
    )
    with pytest.raises(sqlite3.OperationalError, match="missing"):
        _migrate_file(path, broken)
    db = connect(path)
    assert _versions(db) == [1]
    assert _log_counts(db) == {1: 1}
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'two'").fetchone()[0] == 0
    assert not db.in_transaction
    assert migrate(db, SQLITE_TRACK) == [2, 3]
    assert _log_counts(db) == {1: 1, 2: 1, 3: 1}
    db.close()


def test_sqlite_reopening_applies_nothing(tmp_path: Path) -> None:
    """Protects existing databases: a migrated file is opened without running any step
    again (and without taking the write lock: a reader holding it does not block)."""
    path = str(tmp_path / "again.sqlite3")
    assert _migrate_file(path) == [1, 2, 3]
    holder = connect(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert _migrate_file(path) == []
    finally:
        holder.execute("ROLLBACK")
    assert _log_counts(holder) == {1: 1, 2: 1, 3: 1}
    holder.close()


def test_sqlite_newer_database_is_refused(tmp_path: Path) -> None:
    """Protects a database from older code: a version above the track's latest is refused."""
    path = str(tmp_path / "newer.sqlite3")
    _migrate_file(path)
    db = connect(path)
    db.execute("INSERT INTO test_schema_version VALUES (9, 'x')")
    db.close()
    with pytest.raises(MigrationError, match="test schema 9 is newer than this code"):
        _migrate_file(path)


async def test_sqlite_store_reopen_keeps_versions(tmp_path: Path) -> None:
    """Protects the accounts store's existing files: reopening keeps every version row
    (with its original time) and the schema at the latest."""
    path = str(tmp_path / "accounts.sqlite3")
    s = await SqliteAccountsStore.open(path)
    first = await s._rows(f"SELECT version, applied_at FROM {accounts_migrations.VERSION_TABLE} ORDER BY version")
    await s.close()
    await s.close()  # closing twice is harmless
    again = await SqliteAccountsStore.open(path)
    try:
        assert await again.schema_version() == accounts_migrations.LATEST
        rows = await again._rows(
            f"SELECT version, applied_at FROM {accounts_migrations.VERSION_TABLE} ORDER BY version"
        )
        assert rows == first and [r[0] for r in rows] == list(range(1, accounts_migrations.LATEST + 1))
    finally:
        await again.close()


# -- PostgreSQL ---------------------------------------------------------------------------------

PG_STEPS = [
    (
        1,
        "CREATE TABLE IF NOT EXISTS applied_log (version INTEGER NOT NULL);"
        " INSERT INTO applied_log VALUES (1); SELECT pg_sleep(0.05)",
    ),
    (2, "INSERT INTO applied_log VALUES (2); CREATE TABLE IF NOT EXISTS two (x INTEGER)"),
    (
        3,
        "INSERT INTO applied_log VALUES (3);"
        " CREATE OR REPLACE FUNCTION two_guard() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'no; never'; END $$",
    ),
]


def _pg_track(steps: list[tuple[int, str]] = PG_STEPS) -> PgTrack:
    # Advisory locks are database-wide: a key of its own keeps parallel runs apart.
    return PgTrack("test schema", "test_schema_version", steps, random.randrange(1, 2**31))


async def _pg_con(schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})


async def _pg_log(con: asyncpg.Connection) -> dict[int, int]:
    return {r[0]: r[1] for r in await con.fetch("SELECT version, count(*) FROM applied_log GROUP BY version")}


async def _pg_versions(con: asyncpg.Connection, table: str = "test_schema_version") -> list[int]:
    return [r[0] for r in await con.fetch(f"SELECT version FROM {table} ORDER BY version")]


async def test_pg_stale_migrators_recheck_under_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects against a migration applied twice when two nodes start together: both read
    version 0 while a third session holds the advisory lock, then queue on it; the
    second must see the first one's versions and apply nothing."""
    track = _pg_track()
    reads: dict[int, list[int]] = {}
    real_version = pg_base._version

    async def spy(con: asyncpg.Connection, t: PgTrack) -> int:
        v = await real_version(con, t)
        reads.setdefault(id(con), []).append(v)
        return v

    monkeypatch.setattr(pg_base, "_version", spy)
    async with pg_schema() as schema:
        holder, a, b = await _pg_con(schema), await _pg_con(schema), await _pg_con(schema)
        try:
            await holder.execute(
                "CREATE TABLE test_schema_version (version INTEGER PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await holder.execute("SELECT pg_advisory_lock($1)", track.lock_key)
            runs = [asyncio.create_task(pg_base.migrate(c, track)) for c in (a, b)]

            async def queued_on_the_lock() -> bool:
                return (
                    len(reads) == 2
                    and await holder.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                        " AND pid = ANY($1::int[])",
                        [a.get_server_pid(), b.get_server_pid()],
                    )
                    == 2
                )

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not await queued_on_the_lock() and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert await queued_on_the_lock()  # both past their unlocked read, waiting for the lock
            assert not any(r.done() for r in runs)
            await holder.execute("SELECT pg_advisory_unlock($1)", track.lock_key)
            results = await asyncio.wait_for(asyncio.gather(*runs), 30)
            assert sorted(v for r in results for v in r) == [1, 2, 3]  # each applied by exactly one
            assert [r[0] for r in reads.values()] == [0, 0]  # both started from a stale version 0
            assert await _pg_log(holder) == {1: 1, 2: 1, 3: 1}
            assert await _pg_versions(holder) == [1, 2, 3]
        finally:
            for c in (holder, a, b):
                await c.close()


async def test_pg_connections_racing_from_the_start() -> None:
    """Protects the same rule on a fresh schema, version table creation included: four
    connections migrate at once."""
    track = _pg_track()
    async with pg_schema() as schema:
        cons = [await _pg_con(schema) for _ in range(4)]
        try:
            results = await asyncio.wait_for(asyncio.gather(*(pg_base.migrate(c, track) for c in cons)), 60)
            assert sorted(v for r in results for v in r) == [1, 2, 3]
            assert await _pg_log(cons[0]) == {1: 1, 2: 1, 3: 1}
            assert await _pg_versions(cons[0]) == [1, 2, 3]
        finally:
            for c in cons:
                await c.close()


async def test_pg_failing_migration_rolls_back() -> None:
    """Protects the schema from a half-applied migration: a failing step leaves no table of
    its own behind and the version where it was; the next start applies it once fixed."""
    track = _pg_track()
    broken = PgTrack(
        track.name,
        track.version_table,
        [
            PG_STEPS[0],
            (2, "INSERT INTO applied_log VALUES (2); CREATE TABLE two (x INTEGER); SELECT 1 / 0"),
        ],
        track.lock_key,
    )
    async with pg_schema() as schema:
        con = await _pg_con(schema)
        try:
            with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
                await pg_base.migrate(con, broken)
            assert await _pg_versions(con) == [1]
            assert await _pg_log(con) == {1: 1}
            assert await con.fetchval("SELECT to_regclass('two')") is None
            assert not con.is_in_transaction()
            assert await pg_base.migrate(con, track) == [2, 3]
            assert await _pg_log(con) == {1: 1, 2: 1, 3: 1}
        finally:
            await con.close()


async def test_pg_reopening_applies_nothing() -> None:
    """Protects existing schemas: a migrated schema is opened without running any step again,
    and without the advisory lock (a session holding it does not delay the open)."""
    track = _pg_track()
    async with pg_schema() as schema:
        con, holder = await _pg_con(schema), await _pg_con(schema)
        try:
            assert await pg_base.migrate(con, track) == [1, 2, 3]
            await holder.execute("SELECT pg_advisory_lock($1)", track.lock_key)
            assert await asyncio.wait_for(pg_base.migrate(con, track), 5) == []
            assert await _pg_log(con) == {1: 1, 2: 1, 3: 1}
        finally:
            await holder.close()
            await con.close()


async def test_pg_newer_schema_is_refused() -> None:
    """Protects a schema from older code: a version above the track's latest is refused."""
    track = _pg_track()
    async with pg_schema() as schema:
        con = await _pg_con(schema)
        try:
            await pg_base.migrate(con, track)
            await con.execute("INSERT INTO test_schema_version (version) VALUES (9)")
            with pytest.raises(MigrationError, match="test schema 9 is newer than this code"):
                await pg_base.migrate(con, track)
        finally:
            await con.close()


async def test_pg_real_stores_opened_together() -> None:
    """Protects the real tracks sharing one schema: two nodes' worth of ledger, accounts,
    chat and social stores open at once; every version row is there once, at the latest."""
    async with pg_schema() as schema:
        opens = [
            cls.open(PG_DSN, schema=schema, max_size=2)
            for cls in (PostgresLedgerStore, PostgresAccountsStore, PostgresChatStore, PostgresSocialStore)
            for _ in range(2)
        ]
        stores = await asyncio.wait_for(asyncio.gather(*opens), 60)
        try:
            con = await _pg_con(schema)
            try:
                for table, latest in [
                    ("schema_version", migrations.LATEST),
                    (accounts_migrations.VERSION_TABLE, accounts_migrations.LATEST),
                    (chat_migrations.VERSION_TABLE, chat_migrations.LATEST),
                    (social_migrations.VERSION_TABLE, social_migrations.LATEST),
                ]:
                    assert await _pg_versions(con, table) == list(range(1, latest + 1)), table
            finally:
                await con.close()
        finally:
            for s in stores:
                await s.close()
