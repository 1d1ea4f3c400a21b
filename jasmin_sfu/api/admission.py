"""Admission control: a worker past its capacity refuses new joins at once.

Without it a full worker accepts every `join` and the joins it cannot serve
time out (the viewer waits for a DTLS handshake or a keyframe that the loop
has no time for), while the viewers already watching lose packets. With it,
a `join` past any of three limits gets `overloaded` at once, with the reason
and a `retry_after_ms` hint (docs/signaling.md), and costs the worker nothing
more:

* ``max_viewers_per_worker``: viewer connections joined to shows here;
* ``max_joins_in_flight``: joins admitted whose first frame has not reached
  the viewer yet (no video packet sent to any of its consumers: ICE, DTLS
  and the first keyframe still to come). A join counts from its `join`
  until its media starts, it leaves, or ``join_timeout_s`` passes (a viewer
  that joined and never subscribed stops counting then);
* ``max_cpu_share``: this process's CPU time over wall time in the last
  window of at least ``cpu_window_s`` (``time.process_time`` against
  ``time.monotonic``), sampled when a join asks, so no timer runs for it.

0 turns a limit off. Who is never refused, and why (docs/signaling.md,
"Admission"): a performer joining a show already live here (its viewers
are here already), and the member of the show's running private (the
paying member reconnecting to the show it pays for). `private.request`,
`private.accept`, `publish` (Cam2Cam) and `subscribe` are not joins and are
never checked; a member who joins a show in order to ask for a private
makes a join like any viewer's and may be refused.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from jasmin_signaling.errors import SignalingError

from jasmin_sfu.config import AdmissionConfig

# Refusal reasons, as on the wire (`reason` in the error) and in /metrics.
REASONS = ("viewers", "joins_in_flight", "cpu")


class CpuSampler(Protocol):
    def share(self) -> float:
        """This process's CPU share of one core over the recent window (0.0 .. ~1.0 per thread)."""
        ...


class ProcessCpu:
    """CPU time of this process over wall time, over a window of at least ``window_s``.

    Sampled lazily: the first call only takes a sample (0.0: the process's
    start-up, imports and stores, is not load); a call within ``window_s`` of
    the last sample returns the share measured then; a later call measures
    over the whole time since (a worker idle for a minute then hit by a storm
    first sees the idle minute, and the storm's own load from ``window_s`` on).
    """

    def __init__(
        self,
        window_s: float = 1.0,
        cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._cpu = cpu
        self._wall = wall
        self._at: tuple[float, float] | None = None
        self._share = 0.0

    def share(self) -> float:
        wall, cpu = self._wall(), self._cpu()
        if self._at is None:
            self._at = (wall, cpu)
            return self._share
        wall0, cpu0 = self._at
        if wall - wall0 >= self.window_s:
            self._share = max(0.0, (cpu - cpu0) / (wall - wall0))
            self._at = (wall, cpu)
        return self._share


class Ticket:
    """One admitted viewer join: counted until it leaves, in flight until ``started()`` says so."""

    __slots__ = ("started", "deadline", "landed")

    def __init__(self, started: Callable[[], bool], deadline: float) -> None:
        self.started = started
        self.deadline = deadline
        self.landed = False


class Admission:
    """The worker's admission state: joined viewers, joins in flight, refusals.

    Only viewer joins hold a ticket (a performer's join adds a publisher, not a
    viewer); every join not exempt is checked.
    """

    def __init__(
        self,
        limits: AdmissionConfig,
        cpu: CpuSampler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        # Tests inject a sampler; the daemon measures its own process.
        self.cpu: CpuSampler = cpu if cpu is not None else ProcessCpu()
        self.clock = clock
        self._tickets: dict[object, Ticket] = {}
        self.refused: dict[str, int] = {r: 0 for r in REASONS}

    # -- counts ----------------------------------------------------------------

    @property
    def viewers(self) -> int:
        return len(self._tickets)

    def joins_in_flight(self) -> int:
        """Admitted joins whose media has not started yet (and not past ``join_timeout_s``)."""
        now = self.clock()
        n = 0
        for t in self._tickets.values():
            if t.landed:
                continue
            if now >= t.deadline or t.started():
                t.landed = True
                continue
            n += 1
        return n

    def overload(self) -> str | None:
        """The first limit this worker is past (a reason), or None: room for a join."""
        lim = self.limits
        if lim.max_viewers_per_worker and self.viewers >= lim.max_viewers_per_worker:
            return "viewers"
        if lim.max_joins_in_flight and self.joins_in_flight() >= lim.max_joins_in_flight:
            return "joins_in_flight"
        if lim.max_cpu_share and self.cpu.share() >= lim.max_cpu_share:
            return "cpu"
        return None

    # -- the join path -----------------------------------------------------------

    def check(self, exempt: bool = False) -> None:
        """Raise ``overloaded`` (a :class:`SignalingError` with ``reason``, ``retry_after_ms``) if a new join must be refused now (``exempt``: never)."""
        if exempt:
            return
        reason = self.overload()
        if reason is None:
            return
        self.refused[reason] += 1
        lim = self.limits
        what = {
            "viewers": f"this worker holds its maximum of {lim.max_viewers_per_worker} viewers",
            "joins_in_flight": f"{lim.max_joins_in_flight} joins are already starting on this worker",
            "cpu": f"this worker's CPU is past {lim.max_cpu_share:.0%}",
        }[reason]
        raise SignalingError(
            "overloaded", f"{what}; try again later (or another node)", reason=reason, retry_after_ms=lim.retry_after_ms
        )

    def admit(self, key: object, started: Callable[[], bool]) -> None:
        """Viewer ``key`` joined: count it, and as in flight until ``started()``."""
        self._tickets[key] = Ticket(started, self.clock() + self.limits.join_timeout_s)

    def release(self, key: object) -> None:
        """``key`` left its show (or the show ended)."""
        self._tickets.pop(key, None)
