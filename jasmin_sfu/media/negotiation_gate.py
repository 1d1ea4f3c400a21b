"""The worker's SDP negotiations, a few at a time, each in its own turn of the event loop.

A join's offer/answer work (aiortc's transceivers, ``createOffer``, ``setLocalDescription``
with ICE gathering, ``setRemoteDescription``, our SDP reading) is a few milliseconds of
CPU on the loop that forwards media. In a join storm the requests come in batches: ten
``subscribe`` frames read in one turn of the loop ran back to back in that turn, and the
viewers already watching waited for all ten (bench/README.md, "Join storm"). Through the
gate at most ``at_once`` negotiations run at a time; a waiting one starts only in a later
turn of the loop, after the loop has polled its sockets and forwarded what arrived, so a
watcher's packet waits for one join's work, not a batch's. The joins' own order is kept
(first come, first served) and their total work is the same: only who waits changes.

The gate is held only across work that completes without the network (gathering binds
local sockets; connecting runs in aiortc's own task, outside), so a slow peer cannot hold
it. ``media.negotiations_at_once`` sets ``at_once`` (docs/media.md, "Join storms").
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


class NegotiationGate:
    """Lets at most ``at_once`` negotiations run at a time, first come first served."""

    def __init__(self, at_once: int = 1) -> None:
        if at_once < 1:
            raise ValueError("at_once must be >= 1")
        self.at_once = at_once
        self._free = at_once
        self._waiters: list[asyncio.Future[None]] = []
        self.running = 0
        self.max_running = 0  # the most that ever ran at once (tests read it)
        self.negotiations = 0  # every turn given
        self.waited = 0  # turns that had to wait for another negotiation to end

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Run the body as one negotiation: now when a place is free and nobody waits, else in order."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
        else:
            self.waited += 1
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut  # the place is handed over by the one leaving: see _leave
            except BaseException:
                if fut in self._waiters:
                    self._waiters.remove(fut)
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
        """Hand the place to the first waiter still waiting (its task runs in a later turn of the loop)."""
        while self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
