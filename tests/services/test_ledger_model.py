"""Hypothesis state machine: the ledger (on SQLite and on PostgreSQL) against a tiny in-memory model.

Jepsen's *transfer* and *idempotence* workloads in miniature: top-ups, holds
(alone and many at once on one wallet), partial posts, voids, linked tips,
clock jumps that expire holds, duplicate submissions (one after another and many
at once) and conflicting reuse of ids. After every step: debits equal credits, no
wallet below zero, replay reproduces every balance, and the model agrees with the
ledger. On PostgreSQL the concurrent rules run over separate pooled connections:
real concurrency, row locks and unique-key races (issue 18 #12).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Coroutine, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jasmin_sfu.services.ledger import (
    HOUSE_REVENUE,
    WORLD_CREDIT,
    Ledger,
    Result,
    Transfer,
    TransferFlags,
    earnings_account,
    linked,
    wallet_account,
)
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from tests.realparts import FakeClock

T = TypeVar("T")
MEMBERS = ("a", "b", "c")
PENDING = int(TransferFlags.PENDING)


@dataclass
class Hold:
    wallet: str
    amount: int
    expires_at: float
    resolved: bool = False


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.loop, self.store = self.open_store()
        self.ledger = Ledger(self.store, self.clock)
        self.run(self.ledger.bootstrap())
        self.run(self.ledger.open_performer("p"))
        for m in MEMBERS:
            self.run(self.ledger.open_member(m))
        self.posted = {wallet_account(m): 0 for m in MEMBERS}  # model: credits - debits posted
        self.holds: dict[str, Hold] = {}
        self.submitted: list[list[Transfer]] = []  # batches as submitted (a chain stays whole)
        self.n = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def open_store(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        """A fresh, empty ledger store and the loop it lives on (one per example)."""
        loop = asyncio.new_event_loop()
        return loop, loop.run_until_complete(SqliteLedgerStore.open(":memory:"))

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def available(self, wallet: str) -> int:
        live = sum(
            h.amount
            for h in self.holds.values()
            if h.wallet == wallet and not h.resolved and h.expires_at > self.clock.now
        )
        return self.posted[wallet] - live

    def submit(self, t: Transfer) -> Result:
        (r,) = self.run(self.ledger.create_transfers([t]))
        if r is Result.OK:
            self.submitted.append([t])
        return r

    @rule(m=st.sampled_from(MEMBERS), amount=st.integers(1, 500))
    def top_up(self, m: str, amount: int) -> None:
        w = wallet_account(m)
        assert self.submit(Transfer(self._id("top"), WORLD_CREDIT, w, amount)) is Result.OK
        self.posted[w] += amount

    @rule(m=st.sampled_from(MEMBERS), amount=st.integers(1, 300), timeout=st.integers(1, 60))
    def hold(self, m: str, amount: int, timeout: int) -> None:
        w = wallet_account(m)
        expect_ok = self.available(w) >= amount
        tid = self._id("hold")
        r = self.submit(Transfer(tid, w, HOUSE_REVENUE, amount, flags=PENDING, timeout_s=timeout))
        assert r is (Result.OK if expect_ok else Result.EXCEEDS_CREDITS)
        if expect_ok:
            self.holds[tid] = Hold(w, amount, self.clock.now + timeout)

    @rule(m=st.sampled_from(MEMBERS), amount=st.integers(1, 100), k=st.integers(2, 12))
    def concurrent_holds(self, m: str, amount: int, k: int) -> None:
        w = wallet_account(m)
        expected = min(k, max(0, self.available(w)) // amount)
        ts = [Transfer(self._id("ch"), w, HOUSE_REVENUE, amount, flags=PENDING, timeout_s=30) for _ in range(k)]

        async def go() -> list[list[Result]]:
            return await asyncio.gather(*[self.ledger.create_transfers([t]) for t in ts])

        res = self.run(go())
        oks = [t for t, (r,) in zip(ts, res) if r is Result.OK]
        assert len(oks) == expected
        for t in oks:
            self.submitted.append([t])
            self.holds[t.id] = Hold(w, amount, self.clock.now + 30)

    @rule(m=st.sampled_from(MEMBERS), amount=st.integers(1, 500), k=st.integers(2, 8))
    def concurrent_duplicates(self, m: str, amount: int, k: int) -> None:
        """One top-up submitted by k callers at once (a retry racing the original): one OK, the
        rest EXISTS, credited once (Jepsen's idempotence workload, TigerBeetle's "exists")."""
        w = wallet_account(m)
        t = Transfer(self._id("dup"), WORLD_CREDIT, w, amount)

        async def go() -> list[list[Result]]:
            return await asyncio.gather(*[self.ledger.create_transfers([t]) for _ in range(k)])

        res = sorted(r.value for (r,) in self.run(go()))
        assert res == sorted([Result.OK.value] + [Result.EXISTS.value] * (k - 1)), res
        self.submitted.append([t])
        self.posted[w] += amount

    @precondition(lambda self: any(not h.resolved for h in self.holds.values()))
    @rule(data=st.data())
    def post_or_void(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(k for k, h in self.holds.items() if not h.resolved)))
        h = self.holds[pid]
        void = data.draw(st.booleans())
        amount = 0 if void else data.draw(st.integers(1, h.amount))
        flags = int(TransferFlags.VOID_PENDING if void else TransferFlags.POST_PENDING)
        r = self.submit(Transfer(self._id("res"), amount=amount, flags=flags, pending_id=pid))
        if h.expires_at <= self.clock.now:
            assert r is Result.PENDING_TRANSFER_EXPIRED
        else:
            assert r is Result.OK
            if not void:
                self.posted[h.wallet] -= amount
        h.resolved = True

    @rule(m=st.sampled_from(MEMBERS), amount=st.integers(2, 400))
    def tip(self, m: str, amount: int) -> None:
        w = wallet_account(m)
        expect_ok = self.available(w) >= amount
        half = amount // 2
        legs = linked(
            [
                Transfer(self._id("tp"), w, earnings_account("p"), half),
                Transfer(self._id("th"), w, HOUSE_REVENUE, amount - half),
            ]
        )
        res = self.run(self.ledger.create_transfers(legs))
        if expect_ok:
            assert res == [Result.OK, Result.OK]
            self.submitted.append(legs)
            self.posted[w] -= amount
        else:
            assert Result.EXCEEDS_CREDITS in res and all(not r.ok for r in res)

    @rule(seconds=st.sampled_from([0.5, 5, 30, 61]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.submitted))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """The same batch again (ids and bodies): EXISTS for each, nothing changes."""
        batch = data.draw(st.sampled_from(self.submitted))
        assert self.run(self.ledger.create_transfers(batch)) == [Result.EXISTS] * len(batch)

    @precondition(lambda self: any(len(b) == 1 for b in self.submitted))
    @rule(data=st.data())
    def conflicting_reuse(self, data: st.DataObject) -> None:
        """The same id, another body: a conflict, nothing changes."""
        t = data.draw(st.sampled_from([b[0] for b in self.submitted if len(b) == 1]))
        other = Transfer(
            t.id,
            t.debit_account_id,
            t.credit_account_id,
            t.amount + 1,
            flags=t.flags,
            pending_id=t.pending_id,
            timeout_s=t.timeout_s,
        )
        (r,) = self.run(self.ledger.create_transfers([other]))
        assert r is Result.EXISTS_WITH_DIFFERENT_FIELDS

    @invariant()
    def books_balance_and_model_agrees(self) -> None:
        rep = self.run(self.ledger.replay())
        assert rep.ok, rep.mismatches
        for m in MEMBERS:
            w = wallet_account(m)
            b = self.run(self.ledger.balance(w))  # expires due holds first, like the model
            assert b.available >= 0
            assert b.credits_posted - b.debits_posted == self.posted[w]
            assert b.available == self.available(w)


LedgerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=20, deadline=None)
TestLedgerModel = LedgerMachine.TestCase


@pytest.mark.slow
def test_ledger_model_on_postgres() -> None:
    """Protects the ledger's rules on PostgreSQL, the multi-node store: the same state machine,
    200 examples, its concurrent holds and duplicate submissions on separate connections of a
    pool (row locks, unique-key races and their retries). One schema for the run, emptied
    before each example (TRUNCATE: the append-only triggers guard rows, not the test)."""
    from hypothesis.stateful import run_state_machine_as_test

    from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
    from tests.realparts import PG_DSN, PG_PORT, require, unique_name

    require("PostgreSQL", PG_PORT)
    import asyncpg

    loop = asyncio.new_event_loop()
    schema = unique_name("jasmin_model")

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(PG_DSN)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    loop.run_until_complete(admin(f"CREATE SCHEMA {schema}"))
    store = loop.run_until_complete(PostgresLedgerStore.open(PG_DSN, schema=schema, max_size=16))

    class PgLedgerMachine(LedgerMachine):
        def open_store(self) -> tuple[asyncio.AbstractEventLoop, Any]:
            loop.run_until_complete(
                store.execute_raw("TRUNCATE transfers, pending_open, cc_requests, cc_sessions, accounts")
            )
            return loop, store

        def teardown(self) -> None:
            pass  # the store lives for the whole run

    try:
        run_state_machine_as_test(
            PgLedgerMachine, settings=settings(max_examples=200, stateful_step_count=20, deadline=None)
        )
    finally:
        loop.run_until_complete(store.close())
        loop.run_until_complete(admin(f"DROP SCHEMA {schema} CASCADE"))
        loop.close()
