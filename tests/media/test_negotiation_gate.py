"""The worker's negotiation gate (jasmin_sfu/media/negotiation_gate.py): join storms take turns."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import pytest

from jasmin_sfu.api.metrics import MediaCollector, make_registry, render
from jasmin_sfu.media.negotiation_gate import NegotiationGate
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker


def _busy(ms: float) -> None:
    """Hold the loop like a join's SDP work does (CPU, no await)."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def _tick_every_turn(seen: list[str]) -> Callable[[], None]:
    """A ticker standing for the media the loop forwards: from the next turn of the loop on, one
    "tick" in ``seen`` per turn; returns what stops it."""
    loop = asyncio.get_running_loop()
    ticking = True

    def tick() -> None:
        seen.append("tick")
        if ticking:
            loop.call_soon(tick)

    def stop() -> None:
        nonlocal ticking
        ticking = False

    loop.call_soon(tick)
    return stop


async def _batch(gate: NegotiationGate, n: int, yields: bool = True) -> list[str]:
    """``n`` negotiations started in one turn of the loop, and the ticker (one tick per turn of the
    loop); returns what ran, in order."""
    seen: list[str] = []

    async def negotiate(i: int) -> None:
        async with gate.turn():
            seen.append(f"start {i}")
            _busy(2)
            if yields:
                await asyncio.sleep(0)  # a negotiation's own awaits (aiortc's) stay inside its turn
            _busy(2)
            seen.append(f"end {i}")

    stop = _tick_every_turn(seen)
    await asyncio.gather(*(negotiate(i) for i in range(n)))
    stop()
    return seen


async def test_a_batch_of_negotiations_runs_one_at_a_time_with_the_loops_other_work_between() -> None:
    """Protects the watchers during a join storm: ten negotiations that arrive in one turn of the
    loop run one after another, first come first served, and the loop's other work (the media it
    forwards) runs between any two of them, not only after the whole batch."""
    gate = NegotiationGate(1)
    seen = await _batch(gate, 10)
    starts = [s for s in seen if s.startswith("start")]
    assert starts == [f"start {i}" for i in range(10)]
    for i in range(9):
        assert seen.index(f"end {i}") < seen.index(f"start {i + 1}"), seen
        between = seen[seen.index(f"end {i}") : seen.index(f"start {i + 1}")]
        assert "tick" in between, (i, seen)
    assert (gate.max_running, gate.negotiations, gate.waited) == (1, 10, 9)
    assert gate.running == 0


async def test_negotiations_that_never_wait_still_take_one_turn_of_the_loop_each() -> None:
    """Protects the same promise when a negotiation's awaits all complete at once (nothing to wait
    for inside): the place it gives back is free only in the next turn of the loop, so the batch
    does not run in the turn it arrived in, one after another."""
    gate = NegotiationGate(1)
    seen = await _batch(gate, 6, yields=False)
    for i in range(5):
        between = seen[seen.index(f"end {i}") : seen.index(f"start {i + 1}")]
        assert "tick" in between, (i, seen)
    assert gate.max_running == 1


async def test_work_called_in_turn_runs_later_in_order_one_per_turn() -> None:
    """Protects the keyframe replays of a storm: replays asked for in one turn of the loop (many
    DTLS handshakes completed in it) run in later turns, in order, the loop's other work between."""
    gate = NegotiationGate(1)
    seen: list[str] = []
    stop = _tick_every_turn(seen)
    await asyncio.sleep(0)
    for i in range(5):
        gate.call_in_turn(lambda i=i: seen.append(f"replay {i}"))  # type: ignore[misc]
    assert not any(s.startswith("replay") for s in seen)  # none ran in the asking turn
    while gate.negotiations < 5 or gate.running:
        await asyncio.sleep(0)
    stop()
    replays = [s for s in seen if s.startswith("replay")]
    assert replays == [f"replay {i}" for i in range(5)]
    for i in range(4):
        assert "tick" in seen[seen.index(f"replay {i}") : seen.index(f"replay {i + 1}")], seen


async def test_at_once_lets_that_many_run_together() -> None:
    """Protects ``media.negotiations_at_once``: with 3, three negotiations overlap, never a fourth."""
    gate = NegotiationGate(3)
    await _batch(gate, 9)
    assert gate.max_running == 3
    assert (gate.negotiations, gate.waited) == (9, 6)


async def test_a_failed_or_cancelled_negotiation_gives_its_place_back() -> None:
    """Protects against a stuck worker: a negotiation that raises, a join cancelled while it waits
    (a viewer who hangs up), and one cancelled right after being handed its turn leave no place
    taken: the next join still gets its turn."""
    gate = NegotiationGate(1)
    release = asyncio.Event()

    async def fail() -> None:
        async with gate.turn():
            raise ValueError("bad sdp")

    with pytest.raises(ValueError):
        await fail()
    assert gate.running == 0

    async def hold() -> None:
        async with gate.turn():
            await release.wait()

    async def hold_then_cancel_the_next() -> None:
        async with gate.turn():
            await release.wait()
        handed.cancel()  # in the same step as the hand-over: before `handed` could use its turn

    holder = asyncio.ensure_future(hold_then_cancel_the_next())
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(hold())
    handed = asyncio.ensure_future(hold())
    after = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    assert gate.waited == 3
    waiting.cancel()
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(after, 5)  # liveness: `after` gets the place `handed` never used
    assert handed.cancelled() and waiting.cancelled() and holder.done()
    assert gate.running == 0
    async with gate.turn():  # a place is free at once
        assert gate.running == 1


def test_at_once_must_be_positive() -> None:
    """Protects the gate from a value that would let no negotiation through."""
    with pytest.raises(ValueError):
        NegotiationGate(0)


async def test_work_that_finishes_a_join_goes_before_new_joins() -> None:
    """Protects TTFF under a storm: answers and keyframe replays (joins already under way) get the
    next turn before subscribes that arrived earlier, so joins finish instead of every one waiting
    for the last new join's negotiation (with first come first served, the first joiners' replays
    waited behind the whole storm's subscribes and timed out)."""
    gate = NegotiationGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def negotiate(name: str, finishing: bool = False) -> None:
        async with gate.turn(finishing=finishing):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.ensure_future(negotiate("first"))
    await asyncio.sleep(0)
    new = [asyncio.ensure_future(negotiate(f"subscribe {i}")) for i in range(3)]
    await asyncio.sleep(0)
    answer = asyncio.ensure_future(negotiate("answer", finishing=True))
    await asyncio.sleep(0)
    gate.call_in_turn(lambda: order.append("replay"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, answer, *new)
    while gate.running or gate.negotiations < 6:
        await asyncio.sleep(0)
    assert order == ["first", "answer", "replay", "subscribe 0", "subscribe 1", "subscribe 2"]


async def test_metrics_export_the_gates_counts_and_its_queue() -> None:
    """Protects the operator's view of a join storm on /metrics: the worker's gate's turns, the
    turns that waited, and how many run and wait at the moment of the scrape, from the real
    collector."""
    w = Worker(MediaSettings(negotiations_at_once=1))
    release = asyncio.Event()

    async def hold() -> None:
        async with w.gate.turn():
            await release.wait()

    tasks = [asyncio.ensure_future(hold()) for _ in range(3)]
    await asyncio.sleep(0)
    text = render(make_registry(MediaCollector(w, lambda: 0))).decode()
    assert "jasmin_negotiations_running 1.0" in text
    assert "jasmin_negotiations_waiting 2.0" in text
    assert "jasmin_negotiations_waited_total 2.0" in text
    release.set()
    await asyncio.gather(*tasks)
    text = render(make_registry(MediaCollector(w, lambda: 0))).decode()
    assert "jasmin_negotiations_total 3.0" in text
    assert "jasmin_negotiations_running 0.0" in text and "jasmin_negotiations_waiting 0.0" in text
