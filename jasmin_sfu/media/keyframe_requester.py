"""Throttled keyframe requests toward one publisher.

Many viewers joining at once must not flood the publisher with PLIs (every
keyframe costs it 2-3x a delta frame; mediasoup's scalability page warns of
exactly that). At most one request goes out per ``interval``; requests inside
the window are coalesced into one deferred request at its end, so a viewer's
request is delayed, never lost (mediasoup#192 lost them to flood protection).
Time is injected; the caller schedules the deferred send.
"""

from __future__ import annotations

from typing import Callable


class KeyframeRequester:
    __slots__ = ("_interval", "_clock", "_send", "_schedule", "_last", "_pending", "sent", "coalesced")

    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float],
        send: Callable[[], None],
        schedule: Callable[[float, Callable[[], None]], object],
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._send = send
        self._schedule = schedule
        self._last: float | None = None
        self._pending = False
        self.sent = 0
        self.coalesced = 0

    def request(self) -> bool:
        """Ask for a keyframe; True if a request was sent right now."""
        now = self._clock()
        if self._last is None or now - self._last >= self._interval:
            self._fire(now)
            return True
        if not self._pending:
            self._pending = True
            self._schedule(self._interval - (now - self._last), self._deferred)
        else:
            self.coalesced += 1
        return False

    def _deferred(self) -> None:
        if self._pending:
            self._pending = False
            self._fire(self._clock())

    def _fire(self, now: float) -> None:
        self._last = now
        self.sent += 1
        self._send()

    def cancel(self) -> None:
        self._pending = False
