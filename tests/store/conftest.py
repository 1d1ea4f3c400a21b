"""Ledger fixtures: the same tests run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from jasmin_sfu.services.ledger import Ledger
from jasmin_sfu.store.ledger_repo import LedgerStore
from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from tests.realparts import PG_DSN, FakeClock, open_store


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[LedgerStore]:
    async with open_store(
        request.param,
        lambda: SqliteLedgerStore.open(":memory:"),
        lambda schema: PostgresLedgerStore.open(PG_DSN, schema=schema, max_size=60),
    ) as s:
        yield s


@pytest.fixture
async def ledger(store: LedgerStore, clock: FakeClock) -> Ledger:
    lg = Ledger(store, clock)
    await lg.bootstrap()
    return lg
