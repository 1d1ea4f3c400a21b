"""Crash recovery of a private, by kill point, on SQLite and PostgreSQL (issue 11 #19, issue 18 #9).

A child process (tests/shows/billing_crash_child.py) runs the real billing stack for
one private and SIGKILLs itself at a named point; the stack is then reopened on the
same data, which runs recovery. Whatever the point, afterwards:

* the member is charged exactly (last usage seq in the sinks) x rate, nothing is held,
  performer and house got the charge, and the journal replays;
* the sinks hold usage seqs 1..N once each and exactly one closing event, at seq N+1,
  whose totals are N seconds and N x rate (reason ``crash`` when the crash came before
  the live node wrote its own closing event);
* a second restart writes nothing more.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from jasmin_metering.events import CloudEvent
from jasmin_sfu.services.ledger import HOUSE_REVENUE, earnings_account, per_second_rate, wallet_account
from jasmin_sfu.shows.billing import CRASH_REASON, open_billing
from tests.conftest import REPO
from tests.metering.conftest import nats_ctx, nats_stream_keys, pg_ctx, pg_keys, redis_ctx, redis_stream_keys
from tests.realparts import PG_DSN, pg_schema
from tests.shows.billing_crash_child import MEMBER, PERFORMER, POINTS, PRICE, billing_config, build_sinks

RATE = per_second_rate(PRICE)
# The fewest usage seconds the child has billed when it reaches each point (10 s private).
MIN_SECONDS = {
    "after_grant": 0,
    "after_append": 5,
    "renewal_in_txn": 4,
    "renewal_committed": 4,
    "closing_event": 10,
    "terminate_in_txn": 10,
}
# Points after which the live node had written its own closing event.
LIVE_CLOSED = {"closing_event", "terminate_in_txn"}


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    async with pg_schema() as schema:
        yield f"{PG_DSN}?search_path={schema}"


def run_child(spec: dict[str, Any]) -> str:
    """Run the child to its kill point; it must die by SIGKILL there."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.shows.billing_crash_child", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, (
        f"child was not killed at {spec['point']}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
    )
    assert f"KILL {spec['point']}" in proc.stdout
    return proc.stdout


def file_events(data_dir: str) -> list[CloudEvent]:
    path = Path(data_dir, "billing-events.jsonl")
    return [CloudEvent.from_json(line) for line in path.read_text().splitlines()] if path.exists() else []


async def restart(spec: dict[str, Any]) -> dict[str, Any]:
    """Reopen the stack on the same data (recovery runs), drain the relay, read the ledger, close."""
    stack = await open_billing(billing_config(spec), time.time, sinks=build_sinks(spec))
    try:
        await asyncio.wait_for(stack.relay.wait_idle(), 60)
        sessions = [s for s in await stack.cc.open_sessions(prefix="") if s.wallet_id == wallet_account(MEMBER)]
        assert sessions == [], "recovery left a credit-control session open"
        wallet = await stack.ledger.balance(wallet_account(MEMBER))
        paid = (await stack.ledger.balance(earnings_account(PERFORMER))).credits_posted
        house = (await stack.ledger.balance(HOUSE_REVENUE)).credits_posted
        report = await stack.ledger.replay()
        return {"wallet": wallet, "paid": paid, "house": house, "replay": report}
    finally:
        await stack.close()


def check_session_events(events: list[CloudEvent], point: str) -> int:
    """One session: usage 1..N once each, exactly one closing event at N+1; returns N."""
    assert len({e.source for e in events}) <= 1
    keys = Counter(e.key for e in events)
    assert all(n == 1 for n in keys.values()), "an event reached the sink twice"
    usage = sorted(e.seq for e in events if not e.is_closing)
    closing = [e for e in events if e.is_closing]
    n = len(usage)
    assert usage == list(range(1, n + 1)), "usage seqs are contiguous from 1"
    assert len(closing) == 1, f"{len(closing)} closing events after a crash at {point}"
    c = closing[0].data
    assert (closing[0].seq, c["last_seq"], c["billed_seconds"], c["total_amount"]) == (n + 1, n, n, n * RATE)
    assert c["reason"] == ("ended" if point in LIVE_CLOSED else CRASH_REASON)
    assert n >= MIN_SECONDS[point], f"the child billed {n} s before {point}"
    return n


@pytest.mark.parametrize("point", POINTS)
async def test_kill_point_recovery_charges_last_seq_times_rate_and_closes_once(
    point: str, ledger_dsn: str, tmp_path: Path
) -> None:
    """Protects crash safety of a private at every kill point (SQLite and PostgreSQL ledger):
    charge = last usage seq x rate, nothing left held, exactly one closing event that a
    consumer can count on, and a second restart changes nothing."""
    spec = {"data_dir": str(tmp_path), "ledger_dsn": ledger_dsn, "node_id": "k1", "point": point, "seconds": 10}
    run_child(spec)
    first = await restart(spec)
    n = check_session_events(file_events(str(tmp_path)), point)
    wallet = first["wallet"]
    assert wallet.debits_posted == n * RATE, (point, wallet.debits_posted / RATE, n)
    assert wallet.debits_pending == 0
    assert first["paid"] + first["house"] == n * RATE
    assert first["replay"].ok, first["replay"].mismatches

    again = await restart(spec)
    assert check_session_events(file_events(str(tmp_path)), point) == n
    assert again["wallet"].debits_posted == n * RATE


async def test_sigkill_with_postgres_redis_and_nats_sinks(tmp_path: Path) -> None:
    """Protects the same guarantees through the real network sinks: after a SIGKILL between
    an outbox append and the ledger commit, PostgreSQL, Redis and NATS each hold every
    usage second once and exactly one closing event, and the charge is last seq x rate."""
    async with AsyncExitStack() as ctx:
        pg = await ctx.enter_async_context(pg_ctx())
        rd = await ctx.enter_async_context(redis_ctx())
        nt = await ctx.enter_async_context(nats_ctx())
        schema = await ctx.enter_async_context(pg_schema())
        spec = {
            "data_dir": str(tmp_path),
            "ledger_dsn": f"{PG_DSN}?search_path={schema}",
            "node_id": "k2",
            "point": "after_append",
            "seconds": 10,
            "sinks": {
                "postgres": {"dsn": pg.dsn, "schema": pg.schema},
                "redis": {"url": rd.url, "stream": rd.stream, "seen_prefix": rd.seen_prefix, "dedupe_ttl_s": 600},
                "nats": {
                    "servers": list(nt.servers),
                    "stream": nt.stream,
                    "subject": nt.subject,
                    "duplicate_window_s": nt.duplicate_window_s,
                },
            },
        }
        run_child(spec)
        result = await restart(spec)
        events = {e.key: e for e in file_events(str(tmp_path))}
        n = check_session_events(list(events.values()), "after_append")
        assert result["wallet"].debits_posted == n * RATE and result["wallet"].debits_pending == 0
        for name, keys in (
            ("postgres", await pg_keys(pg)),
            ("redis", await redis_stream_keys(rd)),
            ("nats", await nats_stream_keys(nt)),
        ):
            assert all(c == 1 for c in keys.values()), f"{name} holds an event twice"
            assert set(keys) == set(events), f"{name} differs from the file sink"


async def test_recovery_after_a_sweep_expired_the_crashed_nodes_hold(ledger_dsn: str, tmp_path: Path) -> None:
    """Protects recovery when the dead node's hold expired first (a sweep by another node on a
    shared ledger marks the session ``expired``): the restart still closes it, once, and
    charges exactly the seconds in its outbox."""
    from jasmin_sfu.services.credit_control import CreditControl
    from jasmin_sfu.services.ledger import Ledger
    from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
    from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

    spec = {
        "data_dir": str(tmp_path),
        "ledger_dsn": ledger_dsn,
        "node_id": "k3",
        "point": "after_append",
        "seconds": 10,
    }
    run_child(spec)
    store: Any = (
        await PostgresLedgerStore.open(ledger_dsn)
        if ledger_dsn
        else await SqliteLedgerStore.open(os.path.join(str(tmp_path), "ledger.sqlite3"))
    )
    try:
        swept = await CreditControl(Ledger(store, lambda: time.time() + 3600)).expire_stale()
    finally:
        await store.close()
    assert len(swept) == 1, "the crashed node's hold should have expired"
    result = await restart(spec)
    n = check_session_events(file_events(str(tmp_path)), "after_append")
    assert result["wallet"].debits_posted == n * RATE and result["wallet"].debits_pending == 0
    assert result["replay"].ok
