"""The durable outbox and its relay: contiguous seqs, independent sinks, restart and crash safety."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections import Counter
from contextlib import AsyncExitStack
from typing import Sequence

import pytest

from jasmin_metering.config import OutboxConfig, RelayConfig
from jasmin_metering.errors import (
    OutboxConflictError,
    OutboxSessionClosedError,
    SequenceGapError,
    SinkConflictError,
    SinkUnavailableError,
)
from jasmin_metering.events import CloudEvent
from jasmin_metering.outbox import Outbox, OutboxRelay
from jasmin_metering.sink import BillingSink
from jasmin_metering.webhook_sink import WebhookSink
from tests.metering.conftest import KINDS, Counts, Receiver, make_events, open_sink, start_receiver, webhook_config
from tests.metering.crash_child import sinks as crash_sinks
from tests.realparts import FakeClock, closed_port

FAST = RelayConfig(batch_max=50, initial_backoff_ms=5, max_backoff_ms=50, poll_interval_ms=50)


class MemorySink:
    """A hand-written fake sink: stores by key, can be told to fail or hang."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stored: dict[tuple[str, str], str] = {}
        self.calls = 0
        self.fail = False
        self.hang = False
        self.close_fails = False
        self.closed = False

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        self.calls += 1
        if self.fail:
            raise SinkUnavailableError("down")
        for e in events:
            self.stored.setdefault(e.key, e.content_hash())
        if self.hang:
            await asyncio.Event().wait()

    async def close(self) -> None:
        if self.close_fails:
            raise ConnectionResetError("broker gone")
        self.closed = True


async def settle(relay: OutboxRelay, sink: str | None = None, timeout: float = 20.0) -> None:
    await asyncio.wait_for(relay.wait_idle(sink), timeout)


def renumber(ev: CloudEvent, seq: int) -> CloudEvent:
    """The same event moved to another seq (id and sequence follow)."""
    sid = ev.id.split(":")[0]
    return CloudEvent.from_dict({**ev.to_dict(), "id": f"{sid}:{seq:012d}", "sequence": f"{seq:012d}"})


def test_append_keeps_seqs_contiguous_and_is_idempotent(tmp_path: os.PathLike[str]) -> None:
    ob = Outbox(OutboxConfig(path=os.path.join(tmp_path, "o.sqlite3")))
    events = make_events(2, 3)  # 2 sessions x (3 usage + 1 closing), interleaved
    assert ob.append(events[:4]) == 4
    assert ob.append(events[:6]) == 2  # re-append of stored ones is a no-op
    src = events[0].source
    assert ob.last_seq(src) == (3, False)
    by_src = [e for e in events if e.source == src]
    with pytest.raises(SequenceGapError):
        ob.append([renumber(by_src[2], 5)])  # last is 3: 5 would leave a hole at 4
    forged = CloudEvent.from_dict({**events[0].to_dict(), "data": {**events[0].data, "amount": 1}})
    with pytest.raises(OutboxConflictError):
        ob.append([forged])
    assert ob.append(events) == 2
    assert ob.last_seq(src) == (4, True)
    with pytest.raises(OutboxSessionClosedError):
        ob.append([renumber(by_src[2], 5)])
    assert ob.count() == len(events)
    ob.close()


def test_a_failed_append_keeps_nothing(tmp_path: os.PathLike[str]) -> None:
    ob = Outbox(OutboxConfig(path=":memory:"))
    events = make_events(1, 4, close=False)
    with pytest.raises(SequenceGapError):
        ob.append(events[:2] + events[3:])
    assert ob.count() == 0 and ob.last_seq(events[0].source) == (0, False)


async def test_a_down_sink_delays_only_itself_and_loses_nothing(tmp_path: os.PathLike[str], clock: FakeClock) -> None:
    ob = Outbox(OutboxConfig(path=os.path.join(tmp_path, "o.sqlite3")))
    port = closed_port()
    mem = MemorySink("memory")
    hook = WebhookSink(webhook_config(port), clock, name="webhook")
    relay = OutboxRelay(ob, {"memory": mem, "webhook": hook}, FAST)
    relay.start()
    events = make_events(3, 10)
    ob.append(events[:20])
    await settle(relay, "memory")
    ob.append(events[20:])  # the writer never waits for the dead sink
    await settle(relay, "memory")
    assert len(mem.stored) == len(events)

    async def webhook_failed() -> None:
        while relay.failures["webhook"] == 0:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(webhook_failed(), 20)
    assert relay.lag("webhook") == len(events)
    assert ob.count() == len(events)  # nothing pruned while a sink lags
    rcv = Receiver(clock)
    runner, _ = await start_receiver(rcv, port)  # the receiver comes up
    try:
        await settle(relay, "webhook")
        assert set(rcv.stored) == {e.key for e in events}
    finally:
        await relay.stop()
        await runner.cleanup()
    assert ob.count() == 0  # pruned once both sinks acked
    ob.close()


async def test_a_503_answering_receiver_delays_but_loses_nothing(
    tmp_path: os.PathLike[str], receiver: tuple[Receiver, int], clock: FakeClock
) -> None:
    rcv, port = receiver
    rcv.fail_first = 7  # more than one deliver's 3 attempts: the relay's backoff kicks in too
    ob = Outbox(OutboxConfig(path=":memory:"))
    relay = OutboxRelay(ob, {"webhook": WebhookSink(webhook_config(port), clock)}, FAST)
    relay.start()
    events = make_events(2, 15)
    ob.append(events)
    await settle(relay)
    await relay.stop()
    assert rcv.answered_503 == 7 and relay.failures["webhook"] >= 2
    assert set(rcv.stored) == {e.key for e in events}


async def test_a_hanging_sink_never_blocks_the_writer_or_the_others() -> None:
    ob = Outbox(OutboxConfig(path=":memory:"))
    stuck, ok = MemorySink("stuck"), MemorySink("ok")
    stuck.hang = True
    relay = OutboxRelay(ob, {"stuck": stuck, "ok": ok}, FAST)
    relay.start()
    events = make_events(2, 30)
    for i in range(0, len(events), 5):
        ob.append(events[i : i + 5])
    await settle(relay, "ok")
    assert len(ok.stored) == len(events) and relay.lag("stuck") == len(events)
    await relay.stop()


async def test_stop_closes_every_sink_even_when_one_fails_to_close() -> None:
    """Protects shutdown: a sink whose close() raises (its broker already gone) neither
    stops the relay from closing the other sinks nor raises out of stop()."""
    ob = Outbox(OutboxConfig(path=":memory:"))
    broken, ok = MemorySink("broken"), MemorySink("ok")
    broken.close_fails = True
    relay = OutboxRelay(ob, {"broken": broken, "ok": ok}, FAST)
    relay.start()
    await relay.stop()
    assert ok.closed and not broken.closed


async def test_conflicting_events_are_set_aside_not_retried_forever() -> None:
    ob = Outbox(OutboxConfig(path=":memory:"))
    events = make_events(1, 5)
    bad_key = events[2].key

    class Picky(MemorySink):
        async def deliver(self, evs: Sequence[CloudEvent]) -> None:
            await super().deliver([e for e in evs if e.key != bad_key])
            if any(e.key == bad_key for e in evs):
                raise SinkConflictError([bad_key])

    sink = Picky("picky")
    relay = OutboxRelay(ob, {"picky": sink}, FAST)
    relay.start()
    ob.append(events)
    await settle(relay)
    await relay.stop()
    assert len(sink.stored) == len(events) - 1
    assert [p for p, _ in ob.dead_letters("picky")] == [3]


async def test_relay_dropped_without_acks_resends_and_every_real_sink_holds_each_event_once(
    tmp_path: os.PathLike[str], clock: FakeClock
) -> None:
    """Relay 1 delivers everything to the real sinks but dies before any ack; relay 2 (the
    restart) re-sends it all; every sink ends with each event exactly once."""
    ob_path = os.path.join(tmp_path, "o.sqlite3")
    events = make_events(3, 20)
    async with AsyncExitStack() as stack:
        pairs: dict[str, tuple[BillingSink, Counts]] = {}
        for kind in KINDS:
            pairs[kind] = await stack.enter_async_context(open_sink(kind, tmp_path, clock))

        class NoAck:
            def __init__(self, inner: BillingSink) -> None:
                self.inner, self.name, self.done = inner, inner.name, 0

            async def deliver(self, evs: Sequence[CloudEvent]) -> None:
                await self.inner.deliver(evs)
                self.done += len(evs)
                await asyncio.Event().wait()  # "crash" before the ack

            async def close(self) -> None:
                pass

        ob = Outbox(OutboxConfig(path=ob_path))
        wrappers = {k: NoAck(s) for k, (s, _) in pairs.items()}
        relay1 = OutboxRelay(ob, wrappers, RelayConfig(batch_max=1000, poll_interval_ms=50))
        relay1.start()
        ob.append(events)

        async def all_delivered() -> None:
            while any(w.done < len(events) for w in wrappers.values()):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_delivered(), 20)
        await relay1.stop()
        ob.close()
        for kind, (_, counts) in pairs.items():
            assert sum((await counts()).values()) == len(events), kind

        ob2 = Outbox(OutboxConfig(path=ob_path))
        assert all(ob2.cursor(k) == 0 for k in pairs)  # nothing was acked
        relay2 = OutboxRelay(ob2, {k: s for k, (s, _) in pairs.items()}, FAST)
        relay2.start()
        await settle(relay2)
        # stop() closes the sinks; the counts below reconnect on their own
        await relay2.stop()
        for kind, (_, counts) in pairs.items():
            got = await counts()
            assert got == Counter({e.key: 1 for e in events}), kind
        assert ob2.count() == 0
        ob2.close()


async def test_outbox_survives_sigkill_and_each_sink_holds_each_event_once(tmp_path: os.PathLike[str]) -> None:
    """A child process appends and relays; SIGKILL mid-delivery; a restart finishes the job."""
    ob_path = os.path.join(tmp_path, "o.sqlite3")
    sink_dir = str(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.metering.crash_child", ob_path, sink_dir, cwd=root
    )
    db_path = os.path.join(sink_dir, "sink.sqlite3")

    def stored() -> int:
        try:
            db = sqlite3.connect(db_path, timeout=5)
            try:
                return int(db.execute("SELECT count(*) FROM billing_events").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    async def some_delivered() -> None:
        while stored() < 60:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(some_delivered(), 30)
    finally:
        proc.kill()  # SIGKILL: no cleanup, no final ack
        await proc.wait()
    assert proc.returncode == -9

    ob = Outbox(OutboxConfig(path=ob_path))
    written = [r.event for r in ob.read_after(0, 100_000)]
    assert 60 <= len(written)
    # the sequence in the outbox is contiguous per session, whatever the kill interrupted
    for src in {e.source for e in written}:
        seqs = [e.seq for e in written if e.source == src]
        assert seqs == list(range(1, len(seqs) + 1))
    sinks = crash_sinks(sink_dir)
    relay = OutboxRelay(ob, sinks, FAST)
    relay.start()
    await settle(relay)
    await relay.stop()
    want = Counter(e.key for e in written)
    file_sink = sinks["file"]
    assert Counter(e.key for e in file_sink.stored()) == want
    sq = sinks["sqlite"]
    assert Counter((s, i) for s, i, _ in sq.stored()) == want
    ob.close()
