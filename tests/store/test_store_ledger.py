"""Store-level guarantees on SQLite and the real PostgreSQL: migrations, constraints below the
service layer, and atomic balance checks under real concurrency (separate connections)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jasmin_sfu.services.ledger import HOUSE_REVENUE, WORLD_CREDIT, Ledger, Result, Transfer, TransferFlags
from jasmin_sfu.store.ledger_repo import LedgerStore
from jasmin_sfu.store import migrations
from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from tests.realparts import PG_DSN

PENDING = int(TransferFlags.PENDING)


async def funded(ledger: Ledger, member: str, units: int) -> str:
    w = await ledger.open_member(member)
    await ledger.submit([Transfer(f"fund:{member}", WORLD_CREDIT, w, units, code="topup")])
    return w


async def assert_replays(ledger: Ledger) -> None:
    rep = await ledger.replay()
    assert rep.ok, rep.mismatches


async def test_migrations_are_versioned(store: LedgerStore) -> None:
    assert await store.schema_version() == 2


async def test_journal_is_append_only_and_constraints_hold_below_the_service(
    store: LedgerStore, ledger: Ledger
) -> None:
    """The database itself refuses UPDATE/DELETE of transfers and a negative wallet."""
    from jasmin_sfu.store.errors import IntegrityStoreError

    w = await funded(ledger, "m1", 100)
    raw = store.execute_raw  # type: ignore[attr-defined]
    p = "$1" if isinstance(store, PostgresLedgerStore) else "?"
    with pytest.raises(IntegrityStoreError):
        await raw(f"UPDATE transfers SET amount = 1 WHERE id = {p}", ["fund:m1"])
    with pytest.raises(IntegrityStoreError):
        await raw(f"DELETE FROM transfers WHERE id = {p}", ["fund:m1"])
    with pytest.raises(IntegrityStoreError):
        await raw(f"UPDATE accounts SET debits_posted = 101 WHERE id = {p}", [w])
    await assert_replays(ledger)


async def test_concurrent_pendings_never_overdraw(ledger: Ledger) -> None:
    """Many simultaneous reservations on one wallet: exactly floor(balance / amount) succeed."""
    w = await funded(ledger, "m1", 1000)
    amount = 70
    res = await asyncio.gather(
        *[
            ledger.create_transfers([Transfer(f"c{i}", w, HOUSE_REVENUE, amount, flags=PENDING, timeout_s=30)])
            for i in range(50)
        ]
    )
    ok = [r for (r,) in res if r is Result.OK]
    assert len(ok) == 1000 // amount
    assert all(r in (Result.OK, Result.EXCEEDS_CREDITS) for (r,) in res)
    b = await ledger.balance(w)
    assert b.debits_pending == len(ok) * amount and b.available >= 0
    await assert_replays(ledger)


async def test_migration_refuses_newer_schema(store: LedgerStore) -> None:
    from jasmin_sfu.store.errors import MigrationError
    from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

    if isinstance(store, PostgresLedgerStore):
        await store.execute_raw("INSERT INTO schema_version (version) VALUES (99)")
        schema = (await store.execute_raw("SELECT current_schema()"))[0][0]
        with pytest.raises(MigrationError):
            await PostgresLedgerStore.open(PG_DSN, schema=schema)
    else:
        assert isinstance(store, SqliteLedgerStore)
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "l.sqlite3")
            s = await SqliteLedgerStore.open(path)
            await s.execute_raw("INSERT INTO schema_version VALUES (99, 'x')")
            await s.close()
            with pytest.raises(MigrationError):
                await SqliteLedgerStore.open(path)


async def test_processes_opening_one_new_sqlite_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Protects workers sharing a ledger file: several stores opening a new file together
    each see the migration applied exactly once, none fails on 'table already exists'."""
    path = str(tmp_path / "shared-ledger.sqlite3")
    stores = await asyncio.gather(*(SqliteLedgerStore.open(path) for _ in range(6)))
    try:
        assert {await s.schema_version() for s in stores} == {migrations.LATEST}
    finally:
        for s in stores:
            await s.close()
