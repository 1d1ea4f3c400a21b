"""One show: the state machine, its router, the people in it, and who gets media.

This is where media and people meet. The pure :class:`ShowMachine` decides;
this controller carries its commands out in order: the media audience first
(synchronously, in the same event-loop step as the decision), then signaling
events, then show events for billing. Exclusivity is therefore enforced in the
media core before anyone, even the member, is told a private began.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Protocol

from jasmin_signaling.events import ShowEnded, ShowState, event_body

from jasmin_sfu.config import ShowsConfig
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.router import Router
from jasmin_sfu.tasks import spawn_tracked

from .audience import Audiences, AudienceOwner, owner_of
from .events import EventBus, ShowEvent
from .machine import (
    CloseCam2Cam,
    Emit,
    Event,
    GoOffline,
    GoOnline,
    Rejected,
    SetAudience,
    ShowMachine,
    State,
    StateChanged,
    Tick,
)

log = logging.getLogger(__name__)


class Participant(Protocol):
    """A signaling session inside a show, as the show sees it."""

    session_id: str
    role: str  # "performer" | "viewer"
    member_id: str | None  # None for guests and performers
    performer_id: str | None

    def notify(self, event: str, data: dict[str, Any]) -> None: ...

    async def close_publisher(self, reason: str) -> None: ...

    def show_ended(self) -> None: ...


class PrivateListener(Protocol):
    """Who the show tells, in the step it happens, that a private started or ended.

    The show's paid-private flow (shows/privates.py) listens: ends come from many
    places (the member, the performer, a disconnect, billing, the show going offline)
    and all pass through :meth:`Show.apply`.
    """

    def private_started(self, member_id: str, at: float) -> None: ...

    def private_ended(self, member_id: str, at: float, reason: str) -> None: ...


class AudienceListener(Protocol):
    """Who widens and follows a show's audience beyond this node's sessions: the relays'
    members served by an edge (jasmin_sfu/api/relay_members.py, docs/cluster.md "Privacy").

    ``extra_keys`` names the audience keys (a relay's ``relay:<node>``) to admit besides the
    members' sessions here, for the members ``members``; ``audience_set`` is told, in the
    same step, each audience the show applied (None: everyone)."""

    def extra_keys(self, show: "Show", members: frozenset[str]) -> frozenset[str]: ...

    def audience_set(self, show: "Show", members: frozenset[str] | None) -> None: ...


class Show:
    def __init__(
        self,
        show_id: str,
        router: Router,
        bus: EventBus,
        settings: ShowsConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.id = show_id
        self.router = router
        self.bus = bus
        self.clock = clock
        self.machine = ShowMachine(sneak_peek_s=settings.sneak_peek_s, auto_accept=settings.auto_accept)
        self.participants: dict[str, Participant] = {}
        # Hundredths of a credit per minute; None = the billing default.
        self.price_per_minute: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        # The paid-private flow of this show (shows/privates.py sets itself here).
        self.private_listener: PrivateListener | None = None
        # Background work (closing a publisher after a private): held here until done.
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        # An edge show (relayed from its origin node, docs/cluster.md): the origin's state, which
        # its viewers here are shown; None on the show's own node.
        self.relayed_state: str | None = None
        # Members of this show watching through an edge node (None: nobody does).
        self.audience_listener: AudienceListener | None = None
        router.observe(self._on_producer)

    # -- people ---------------------------------------------------------------

    @property
    def performers(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role == "performer"]

    @property
    def performer_ids(self) -> tuple[str, ...]:
        return tuple(sorted({p.performer_id or p.session_id for p in self.performers}))

    def sessions_of(self, member_id: str) -> list[Participant]:
        return [p for p in self.participants.values() if p.member_id == member_id]

    def add(self, who: Participant) -> None:
        self.participants[who.session_id] = who
        if who.role == "performer" and self.machine.state == State.OFFLINE:
            self.apply(GoOnline(self.clock()))
        elif who.role == "performer" or who.member_id in (self.machine.audience() or ()):
            # A group show: the new performer is part of every audience; a member
            # already in it (a reloaded page during their private or peek) gets in
            # with this session too.
            self._apply_audience(self.machine.audience())

    def public_state(self, who: Participant) -> str:
        """The state as ``who`` may see it: member chat looks like a private to guests."""
        state = self.machine.state.value if self.relayed_state is None else self.relayed_state
        if state == State.MEMBER_CHAT.value and who.role == "viewer" and who.member_id is None:
            return State.PRIVATE.value
        return state

    def describe_for(self, who: Participant) -> dict[str, Any]:
        out: dict[str, Any] = {
            "show_id": self.id,
            "state": self.public_state(who),
            "producers": [p.describe() for p in self.router.visible_producers(who.session_id)],
        }
        if who.role == "performer":
            # A reloaded page or a second performer of a group show needs these.
            out["auto_accept"] = self.machine.auto_accept
            out["price_per_minute"] = self.price_per_minute
            out["private_member"] = self.machine.private_member
            out["requests"] = sorted(self.machine.requests)
        return out

    # -- events ---------------------------------------------------------------

    def apply(self, ev: Event) -> list[Any]:
        """Run one event through the machine and carry out its commands.

        Raises :class:`Rejected` with nothing changed when the event is refused.
        """
        if self.closed:
            raise Rejected("invalid_state", "the show has ended")
        commands = self.machine.handle(ev)
        for cmd in commands:
            if isinstance(cmd, SetAudience):
                self._apply_audience(cmd.members)
        for cmd in commands:
            if isinstance(cmd, StateChanged):
                self._broadcast_state(cmd.at)
            elif isinstance(cmd, Emit):
                self._tell_private_listener(cmd)
                self._emit(cmd)
            elif isinstance(cmd, CloseCam2Cam):
                for who in self.sessions_of(cmd.member_id):
                    self._spawn(who.close_publisher("private_ended"))
        self._schedule_tick()
        return commands

    def relay_state(self, state: str, at: float) -> None:
        """An edge show: the origin's state changed; tell this node's viewers (``show.state``).
        Nothing runs here on it (no machine, no bus): the show, its privates and its events
        are the origin's."""
        if self.closed or state == self.relayed_state:
            return
        self.relayed_state = state
        for who in list(self.participants.values()):
            who.notify("show.state", ShowState(show_id=self.id, state=self.public_state(who), at=at).to_wire())

    def _audience_keys(self, members: frozenset[str] | None) -> frozenset[str] | None:
        if members is None:
            return None
        keys = {p.session_id for p in self.performers}
        for p in self.participants.values():
            if p.member_id is not None and p.member_id in members:
                keys.add(p.session_id)
        if self.audience_listener is not None:
            keys |= self.audience_listener.extra_keys(self, members)
        return frozenset(keys)

    def performer_producers(self) -> list[Producer]:
        """The show's own tracks (owner SHOW): what a relay offers to an edge."""
        return [p for p in self.router.producers.values() if owner_of(p) is AudienceOwner.SHOW]

    def audiences(self, members: frozenset[str] | None) -> Audiences:
        """Each audience owner's keys here for the show's ``members`` (None: everyone)."""
        return Audiences(self._audience_keys(members), frozenset(p.session_id for p in self.performers))

    def _apply_audience(self, members: frozenset[str] | None) -> None:
        # One rule for every producer: its owner's keys (shows/audience.py, docs/cluster.md
        # "Who receives each producer").
        self.audiences(members).apply(self.router.producers.values())
        if self.audience_listener is not None:
            self.audience_listener.audience_set(self, members)

    def refresh_audience(self) -> None:
        """Apply the machine's audience again (an :class:`AudienceListener`'s keys changed)."""
        if not self.closed:
            self._apply_audience(self.machine.audience())

    def _on_producer(self, what: str, producer: Producer) -> None:
        if what == "added":
            self.audiences(self.machine.audience()).apply([producer])

    def _broadcast_state(self, at: float) -> None:
        state = self.machine.state.value
        for who in list(self.participants.values()):
            who.notify("show.state", ShowState(show_id=self.id, state=self.public_state(who), at=at).to_wire())
        self.bus.publish(ShowEvent("show.state_changed", self.id, at, performer_ids=self.performer_ids, state=state))

    def _emit(self, cmd: Emit) -> None:
        extra: dict[str, Any] = {}
        if cmd.reason is not None:
            extra["reason"] = cmd.reason
        if cmd.until is not None:
            extra["until"] = cmd.until
        private = event_body(cmd.name, show_id=self.id, member_id=cmd.member_id, at=cmd.at, **extra)
        # Only the performers and the member concerned ever learn who it is.
        for who in self.performers:
            who.notify(cmd.name, private)
        if cmd.member_id is not None:
            for who in self.sessions_of(cmd.member_id):
                who.notify(cmd.name, private)
        self.bus.publish(
            ShowEvent(
                cmd.name,
                self.id,
                cmd.at,
                member_id=cmd.member_id,
                performer_ids=self.performer_ids,
                state=self.machine.state.value,
                reason=cmd.reason,
                until=cmd.until,
            )
        )

    def _tell_private_listener(self, cmd: Emit) -> None:
        listener = self.private_listener
        if listener is None or cmd.member_id is None:
            return
        try:
            if cmd.name == "private.started":
                listener.private_started(cmd.member_id, cmd.at)
            elif cmd.name == "private.ended":
                listener.private_ended(cmd.member_id, cmd.at, cmd.reason or "ended")
        except Exception:  # media must not depend on billing being healthy (as on the event bus)
            log.exception("private listener failed", extra={"show_id": self.id, "event": cmd.name})

    def _schedule_tick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, deadline - self.clock()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.apply(Tick(self.clock()))
        except Rejected:  # pragma: no cover - a tick is always accepted
            log.exception("tick rejected", extra={"show_id": self.id})

    def _spawn(self, coro: Any) -> None:
        spawn_tracked(self._tasks, coro, f"show {self.id}: {coro.__qualname__}", log)

    # -- teardown ---------------------------------------------------------------

    def remove(self, who: Participant) -> bool:
        """Forget ``who``; True when the show has no performer left (it must close).

        Leaving an ended show is not an error: ``close`` already took everyone
        offline (a SIGTERM drain closes shows before the sockets' close
        handlers run), so there is nothing left to apply and nothing to close.
        """
        self.participants.pop(who.session_id, None)
        if self.closed:
            return False
        if who.role == "performer":
            if not self.performers:
                self.apply(GoOffline(self.clock()))
                return True
            self._apply_audience(self.machine.audience())
        return False

    async def close(self) -> None:
        if self.closed:
            return
        if self.machine.state != State.OFFLINE:
            self.apply(GoOffline(self.clock()))
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for who in list(self.participants.values()):
            if who.role == "viewer":
                who.notify("show.ended", ShowEnded(show_id=self.id).to_wire())
                who.show_ended()
        self.participants.clear()
        await self.router.close()
        self.bus.publish(ShowEvent("show.offline", self.id, self.clock(), performer_ids=self.performer_ids))
