"""The pure per-second meter: session events and the current time in, usage records out.

Billing rule (the "last partial second" rule): a second is billed only once it is
**complete**. Billed seconds of a session = floor(total unpaused time). Time spent
paused is never billed, and a second that was in progress when a pause began is
carried over: it completes after resuming, so pausing can neither steal nor add a
fraction. At stop, the partial second in progress (< 1 s) is free and reported as
``SessionClosed.unbilled_us``. Seconds beyond the granted ceiling are not billed
either; they are counted in ``over_grant_us`` so the caller sees it streamed
unpaid time (it must not: the shows layer cuts at the ceiling).

Time is passed in by the caller (epoch seconds, float) and kept internally as
integer microseconds so thousands of additions never drift. A clock that goes
backwards is clamped (treated as "no time passed"): a meter must never bill
negative time nor raise in the media loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jasmin_metering.errors import MeterStateError, SessionClosedError

US = 1_000_000  # microseconds per second
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")


def to_us(t: float) -> int:
    """Epoch seconds to integer microseconds (rounded, not truncated)."""
    return round(t * US)


@dataclass(frozen=True)
class SessionSpec:
    """What is billed: one paid session (a private, a sneak peek, ...)."""

    kind: str
    session_id: str
    member_id: str
    performer_id: str
    wallet_id: str
    # Smallest credit units per second (see docs/money.md: 1 credit = 6000 units,
    # so the per-minute price in hundredths of a credit is exactly this number).
    rate_per_second: int

    def __post_init__(self) -> None:
        if not _KIND.match(self.kind):
            raise ValueError(f"kind must match {_KIND.pattern}: {self.kind!r}")
        if not self.session_id or ":" in self.session_id:
            # ':' separates session and seq in the event id.
            raise ValueError(f"session_id must be non-empty and contain no ':': {self.session_id!r}")
        if self.rate_per_second < 0:
            raise ValueError("rate_per_second must be >= 0")


@dataclass(frozen=True)
class GrantTag:
    """The credit-control grant in force when a second completed (copied into events)."""

    reservation_id: str
    request_number: int
    final: bool


@dataclass(frozen=True)
class UsageRecord:
    """One billed second of one session."""

    spec: SessionSpec
    seq: int
    interval_start_us: int
    interval_end_us: int
    amount: int
    grant: GrantTag | None
    units: int = 1


@dataclass(frozen=True)
class SessionClosed:
    """The end of a session: last seq and totals, for the closing event."""

    spec: SessionSpec
    last_seq: int
    billed_seconds: int
    total_amount: int
    reason: str
    started_at_us: int
    ended_at_us: int
    unbilled_us: int
    over_grant_us: int


@dataclass
class _Session:
    spec: SessionSpec
    started_us: int
    next_seq: int
    grant: GrantTag | None
    ceiling: int | None  # billed-second ceiling (absolute count), None = unbounded
    active_us: int = 0  # unpaused time accumulated before the current run
    run_started_us: int | None = None  # None while paused
    billed: int = 0
    amount: int = 0
    last_boundary_us: int = 0  # wall time the previous billed second ended
    last_now_us: int = 0
    over_grant_us: int = 0


@dataclass(frozen=True)
class SessionView:
    """A read-only snapshot of one metered session."""

    spec: SessionSpec
    billed_seconds: int
    total_amount: int
    next_seq: int
    paused: bool
    ceiling: int | None
    # Seconds left before the ceiling (None when unbounded); 0 = exhausted.
    remaining_seconds: int | None
    active_us: int


@dataclass
class Meter:
    """Meters many sessions; every call takes the current time explicitly.

    Not thread-safe and does no I/O: the caller persists the records (outbox).
    """

    _sessions: dict[str, _Session] = field(default_factory=dict)
    _closed: set[str] = field(default_factory=set)

    def start(
        self,
        spec: SessionSpec,
        now: float,
        *,
        first_seq: int = 1,
        ceiling_seconds: int | None = None,
        grant: GrantTag | None = None,
    ) -> None:
        """Start billing ``spec`` at ``now``.

        ``first_seq`` > 1 resumes a session on a failover node after the last
        persisted seq (CloudEvents: producers of one source keep ids unique).
        """
        sid = spec.session_id
        if sid in self._sessions:
            raise MeterStateError(f"session {sid} already metered")
        if sid in self._closed:
            raise SessionClosedError(f"session {sid} was stopped")
        if first_seq < 1:
            raise ValueError("first_seq starts at 1")
        t = to_us(now)
        self._sessions[sid] = _Session(
            spec=spec,
            started_us=t,
            next_seq=first_seq,
            grant=grant,
            ceiling=ceiling_seconds,
            run_started_us=t,
            last_boundary_us=t,
            last_now_us=t,
        )

    def set_grant(self, session_id: str, *, ceiling_seconds: int | None, grant: GrantTag | None) -> None:
        """Move the billed-second ceiling (absolute count since start) after a grant answer."""
        s = self._get(session_id)
        s.ceiling = ceiling_seconds
        s.grant = grant

    def pause(self, session_id: str, now: float) -> list[UsageRecord]:
        """Pause: bill the seconds completed so far, keep the partial one for later."""
        s = self._get(session_id)
        out = self._advance(s, to_us(now))
        if s.run_started_us is not None:
            s.active_us += s.last_now_us - s.run_started_us
            s.run_started_us = None
        return out

    def resume(self, session_id: str, now: float) -> None:
        """Resume a paused session; a no-op when it is running."""
        s = self._get(session_id)
        t = max(to_us(now), s.last_now_us)
        s.last_now_us = t
        if s.run_started_us is None:
            s.run_started_us = t

    def advance(self, now: float) -> list[UsageRecord]:
        """Bill every session's seconds completed up to ``now`` (call it about once a second)."""
        t = to_us(now)
        out: list[UsageRecord] = []
        for s in self._sessions.values():
            out.extend(self._advance(s, t))
        return out

    def advance_session(self, session_id: str, now: float) -> list[UsageRecord]:
        """Bill one session's seconds completed up to ``now``."""
        return self._advance(self._get(session_id), to_us(now))

    def stop(self, session_id: str, now: float, reason: str) -> tuple[list[UsageRecord], SessionClosed]:
        """Stop billing: the completed seconds, then the closing totals.

        After this the session id is refused for good: a disconnect stops
        billing at once (the CGRateS #2220 bug was a call shut down and billed on).
        """
        s = self._get(session_id)
        t = to_us(now)
        out = self._advance(s, t)
        active = s.active_us + ((s.last_now_us - s.run_started_us) if s.run_started_us is not None else 0)
        unbilled = active - s.billed * US - s.over_grant_us
        del self._sessions[session_id]
        self._closed.add(session_id)
        closed = SessionClosed(
            spec=s.spec,
            last_seq=s.next_seq - 1,
            billed_seconds=s.billed,
            total_amount=s.amount,
            reason=reason,
            started_at_us=s.started_us,
            ended_at_us=s.last_now_us,
            unbilled_us=max(0, unbilled),
            over_grant_us=s.over_grant_us,
        )
        return out, closed

    def view(self, session_id: str) -> SessionView:
        """A snapshot of one session (billed seconds, remaining grant, paused)."""
        s = self._get(session_id)
        active = s.active_us + ((s.last_now_us - s.run_started_us) if s.run_started_us is not None else 0)
        return SessionView(
            spec=s.spec,
            billed_seconds=s.billed,
            total_amount=s.amount,
            next_seq=s.next_seq,
            paused=s.run_started_us is None,
            ceiling=s.ceiling,
            remaining_seconds=None if s.ceiling is None else max(0, s.ceiling - s.billed),
            active_us=active,
        )

    def sessions(self) -> list[str]:
        """Ids of the sessions being metered."""
        return list(self._sessions)

    def _get(self, session_id: str) -> _Session:
        s = self._sessions.get(session_id)
        if s is None:
            if session_id in self._closed:
                raise SessionClosedError(f"session {session_id} was stopped")
            raise MeterStateError(f"session {session_id} is not metered")
        return s

    def _advance(self, s: _Session, t: int) -> list[UsageRecord]:
        t = max(t, s.last_now_us)  # clamp a clock that went backwards
        s.last_now_us = t
        if s.run_started_us is None:
            return []
        active = s.active_us + (t - s.run_started_us)
        complete = active // US
        out: list[UsageRecord] = []
        while s.billed < complete:
            if s.ceiling is not None and s.billed >= s.ceiling:
                break
            k = s.billed + 1
            # Wall time at which active time reached k seconds in this run.
            end = s.run_started_us + (k * US - s.active_us)
            rec = UsageRecord(
                spec=s.spec,
                seq=s.next_seq,
                interval_start_us=s.last_boundary_us,
                interval_end_us=end,
                amount=s.spec.rate_per_second,
                grant=s.grant,
            )
            out.append(rec)
            s.billed = k
            s.amount += rec.amount
            s.next_seq += 1
            s.last_boundary_us = end
        # Time past the ceiling; a later, larger grant bills it and this drops to 0.
        if s.ceiling is not None and s.billed >= s.ceiling:
            s.over_grant_us = max(0, active - s.ceiling * US)
        else:
            s.over_grant_us = 0
        return out
