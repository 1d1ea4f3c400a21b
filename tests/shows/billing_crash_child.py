"""Child process of the billing kill-point table (tests/shows/test_billing_recovery.py).

It runs the real billing stack (``open_billing``: ledger, credit control, outbox,
relay, sinks) for one private with a fast virtual clock, no media, and SIGKILLs
itself at the named kill point. The hooks live here, in test code only: the
daemon has no kill switch. The parent restarts the stack on the same data and
checks what recovery did.

Usage: python -m tests.shows.billing_crash_child '<json spec>'
spec: {"data_dir", "ledger_dsn", "node_id", "point", "sinks": {...}, "seconds"}
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any, Callable

from jasmin_metering.config import FileSinkConfig, NatsSinkConfig, PostgresSinkConfig, RedisStreamSinkConfig
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import BillingSink
from jasmin_sfu.config import BillingConfig
from jasmin_sfu.shows.billing import BillingStack, open_billing

SHOW, MEMBER, PERFORMER = "show-k", "m1", "p1"
PRICE = 600  # hundredths of a credit per minute: 600 units per second
GRANT_S = 4
# Kill points, in the order a private reaches them.
POINTS = (
    "after_grant",  # authorised, the private not started yet
    "after_append",  # usage events of seconds 1..5 in the outbox, the ledger told less
    "renewal_in_txn",  # inside the ledger transaction of a renewal (update), before its commit
    "renewal_committed",  # a renewal committed, its answer not yet applied by billing
    "closing_event",  # the closing event is in the outbox, terminate not yet called
    "terminate_in_txn",  # inside the terminate transaction, before its commit
)


def die(point: str) -> None:
    """Report the point on stdout, then SIGKILL this process (no cleanup of any kind)."""
    print(f"KILL {point}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def billing_config(spec: dict[str, Any]) -> BillingConfig:
    return BillingConfig(
        data_dir=spec["data_dir"],
        ledger_dsn=spec.get("ledger_dsn", ""),
        node_id=spec["node_id"],
        grant_seconds=GRANT_S,
        vip_check_interval_s=0,
    )


def build_sinks(spec: dict[str, Any]) -> dict[str, BillingSink]:
    """The sinks a spec names (the parent reopens the same ones)."""
    from jasmin_metering.file_sink import FileSink

    s = spec.get("sinks", {})
    out: dict[str, BillingSink] = {
        "file": FileSink(
            FileSinkConfig(path=os.path.join(spec["data_dir"], "billing-events.jsonl"), fsync_interval_ms=2)
        )
    }
    if "postgres" in s:
        from jasmin_metering.postgres_sink import PostgresSink

        out["postgres"] = PostgresSink(PostgresSinkConfig(dsn=s["postgres"]["dsn"], schema=s["postgres"]["schema"]))
    if "redis" in s:
        from jasmin_metering.redis_sink import RedisStreamSink

        out["redis"] = RedisStreamSink(RedisStreamSinkConfig(**s["redis"]))
    if "nats" in s:
        from jasmin_metering.nats_sink import NatsSink

        n = s["nats"]
        out["nats"] = NatsSink(
            NatsSinkConfig(
                servers=tuple(n["servers"]),
                stream=n["stream"],
                subject=n["subject"],
                duplicate_window_s=n["duplicate_window_s"],
            )
        )
    return out


class VirtualClock:
    """Starts a minute in the past and moves only when told, so the run takes no real seconds."""

    def __init__(self) -> None:
        self.now = time.time() - 60.0

    def __call__(self) -> float:
        return self.now


def install_hooks(stack: BillingStack, point: str) -> None:
    """Wrap the stack's methods so that reaching ``point`` kills the process."""
    billing, cc, outbox = stack.billing, stack.cc, stack.outbox
    append: Callable[..., int] = outbox.append

    def hooked_append(events: list[CloudEvent]) -> int:
        n = append(events)
        if point == "after_append" and any(not e.is_closing and e.seq >= 5 for e in events):
            die(point)
        if point == "closing_event" and any(e.is_closing for e in events):
            die(point)
        return n

    outbox.append = hooked_append  # type: ignore[method-assign]
    billing.outbox = outbox
    grant = cc._grant
    settle = cc._settle

    async def hooked_grant(lt: Any, s: Any, n: int, overrun: int = 0) -> Any:
        if point == "renewal_in_txn" and n >= 2:
            die(point)
        return await grant(lt, s, n, overrun)

    terminating = {"now": False}

    async def hooked_settle(lt: Any, s: Any, n: int, used: int) -> int:
        out = await settle(lt, s, n, used)
        if point == "terminate_in_txn" and terminating["now"]:
            die(point)
        return out

    update, terminate = cc.update, cc.terminate

    async def hooked_update(session_id: str, n: int, used: int) -> Any:
        g = await update(session_id, n, used)
        if point == "renewal_committed" and n >= 2:
            die(point)
        return g

    async def hooked_terminate(session_id: str, n: int, used: int) -> Any:
        terminating["now"] = True
        return await terminate(session_id, n, used)

    cc._grant = hooked_grant  # type: ignore[method-assign]
    cc._settle = hooked_settle  # type: ignore[method-assign]
    cc.update = hooked_update  # type: ignore[method-assign]
    cc.terminate = hooked_terminate  # type: ignore[method-assign]


async def settle_tasks(stack: BillingStack) -> None:
    while stack.billing._tasks:
        await asyncio.gather(*list(stack.billing._tasks), return_exceptions=True)


async def main(spec: dict[str, Any]) -> None:
    clock = VirtualClock()
    stack = await open_billing(billing_config(spec), clock, sinks=build_sinks(spec))
    point = spec["point"]
    install_hooks(stack, point)
    await stack.ledger.open_member(MEMBER)
    await stack.cc.top_up("seed", MEMBER, "p2999")  # 30 credits: 300 s at this price
    private = await stack.billing.authorize(SHOW, MEMBER, PERFORMER, PRICE)
    if point == "after_grant":
        die(point)
    stack.billing.start_metering(private, clock())
    for _ in range(int(spec.get("seconds", 10) / 0.25)):
        clock.now += 0.25
        stack.billing.tick(clock())
        await settle_tasks(stack)
    stack.billing.stop_metering(private, clock(), "ended")
    await settle_tasks(stack)
    print("DONE without reaching the kill point", flush=True)
    await stack.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
