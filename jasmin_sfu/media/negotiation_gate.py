"""The worker's SDP negotiations, a few at a time, each in its own turn of the event loop.

A join's offer/answer work (aiortc's transceivers, ``createOffer``, ``setLocalDescription``
with ICE gathering, ``setRemoteDescription``, our SDP reading) is a few milliseconds of
CPU on the loop that forwards media. In a join storm the requests come in batches: ten
``subscribe`` frames read in one turn of the loop ran back to back in that turn, and the
viewers already watching waited for all ten (bench/README.md, "Join storm"). Through the
gate at most ``at_once`` negotiations run at a time; a waiting one starts only in a later
turn of the loop, after the loop has polled its sockets and forwarded what arrived, so a
watcher's packet waits for at most ``at_once`` joins' work, not a whole batch's. The joins' own order is kept
(first come, first served, except that work completing a join already under way, an
`answer` or a keyframe replay, goes before new joins) and their total work is the same:
only who waits changes.

A place given back is free again only in the next turn of the loop: a negotiation whose
awaits all complete at once (no real wait inside) would otherwise give it back and let the
next one start in the same turn. The gate is held only across work that completes without
the network (gathering binds local sockets; connecting runs in aiortc's own task,
outside), so a slow peer cannot hold it. ``media.negotiations_at_once`` sets ``at_once``
(docs/media.md, "Join storms").

:meth:`NegotiationGate.call_in_turn` runs a synchronous piece of join work the same way:
a new viewer's keyframe replay (tens of packets rewritten and sent) when its DTLS
handshake completes, which in a storm completed for several joins in one turn.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

log = logging.getLogger(__name__)


class NegotiationGate:
    """Lets at most ``at_once`` negotiations run at a time: finishing work first, then first come first served."""

    def __init__(self, at_once: int = 1) -> None:
        if at_once < 1:
            raise ValueError("at_once must be >= 1")
        self.at_once = at_once
        self._free = at_once
        self._waiters: list[asyncio.Future[None]] = []
        # Work that completes a join already under way (an answer, a keyframe replay) goes
        # before new joins: under a storm, joins finish instead of all waiting for the last.
        self._finishing: list[asyncio.Future[None]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self.running = 0
        self.max_running = 0  # the most that ever ran at once (tests read it)
        self.negotiations = 0  # every turn given
        self.waited = 0  # turns that had to wait for another negotiation to end

    @property
    def waiting(self) -> int:
        """Negotiations and join work waiting for a place now (``/metrics``)."""
        return sum(1 for q in (self._finishing, self._waiters) for fut in q if not fut.done())

    @asynccontextmanager
    async def turn(self, finishing: bool = False) -> AsyncIterator[None]:
        """Run the body as one negotiation: now when a place is free and nobody waits, else in
        order; ``finishing`` (work that completes a join under way) before every new one."""
        if self._free > 0 and not self._waiters and not self._finishing:
            self._free -= 1
        else:
            self.waited += 1
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self._finishing if finishing else self._waiters
            queue.append(fut)
            try:
                await fut  # the place is handed over by the one leaving: see _leave
            except BaseException:
                if fut in queue:
                    queue.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._leave()  # handed a place, then cancelled before using it: pass it on
                raise
        self.negotiations += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            yield
        finally:
            self.running -= 1
            self._leave()

    def _leave(self) -> None:
        """Hand the place to the first waiter still waiting (its task runs in a later turn of
        the loop); with none, the place is free from the next turn of the loop on."""
        if self._hand_over():
            return
        try:
            asyncio.get_running_loop().call_soon(self._cooled)
        except RuntimeError:  # no running loop (closing): free at once
            self._free += 1

    def _cooled(self) -> None:
        if not self._hand_over():
            self._free += 1

    def _hand_over(self) -> bool:
        for queue in (self._finishing, self._waiters):
            while queue:
                fut = queue.pop(0)
                if not fut.done():
                    fut.set_result(None)
                    return True
        return False

    def call_in_turn(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (synchronous, quick) as finishing work: in a later turn of the loop, in order.

        ``fn`` must not raise; if it does, the exception is logged and the gate goes on."""
        task = asyncio.get_running_loop().create_task(self._call(fn))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _call(self, fn: Callable[[], None]) -> None:
        async with self.turn(finishing=True):
            try:
                fn()
            except Exception:  # pragma: no cover - callers pass functions that do not raise
                log.exception("join work run in turn failed")
