"""The show state machine (docs/product.md), pure: events in, commands out, time passed in.

States: ``offline -> free -> private -> member_chat -> free | offline``, with
sneak peeks (a member watches for ``sneak_peek_s`` seconds) from member_chat
and Cam2Cam inside a private. The machine knows member ids, never sockets:
the show controller turns its commands into media pauses, signaling events
and billing events.

Invariants (checked by property tests):
  * the performer's audience is everyone in ``free``, exactly the private's
    member in ``private``, exactly the current peekers in ``member_chat``,
    and nobody in ``offline``;
  * Cam2Cam is on only inside a private;
  * every ``private.started`` is followed by exactly one ``private.ended``
    (and likewise for sneak peeks) before the machine is offline;
  * a peek never outlives its deadline once time has been passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(str, enum.Enum):
    OFFLINE = "offline"
    FREE = "free"
    PRIVATE = "private"
    MEMBER_CHAT = "member_chat"


# -- events -----------------------------------------------------------------


@dataclass(frozen=True)
class GoOnline:
    at: float


@dataclass(frozen=True)
class GoOffline:
    at: float


@dataclass(frozen=True)
class RequestPrivate:
    member_id: str
    at: float


@dataclass(frozen=True)
class AcceptPrivate:
    member_id: str
    at: float


@dataclass(frozen=True)
class DeclinePrivate:
    member_id: str
    at: float


@dataclass(frozen=True)
class WithdrawRequest:
    member_id: str
    at: float


@dataclass(frozen=True)
class EndPrivate:
    by: str  # "member" | "performer" | "billing" | "disconnect" | "moderation"
    at: float
    member_id: str | None = None  # when the member ends it, who they are


@dataclass(frozen=True)
class StartCam2Cam:
    member_id: str
    at: float


@dataclass(frozen=True)
class StopCam2Cam:
    member_id: str
    at: float


@dataclass(frozen=True)
class SneakPeek:
    member_id: str
    at: float


@dataclass(frozen=True)
class ReturnToFree:
    at: float


@dataclass(frozen=True)
class SetAutoAccept:
    enabled: bool
    at: float


@dataclass(frozen=True)
class Tick:
    at: float


Event = (
    GoOnline
    | GoOffline
    | RequestPrivate
    | AcceptPrivate
    | DeclinePrivate
    | WithdrawRequest
    | EndPrivate
    | StartCam2Cam
    | StopCam2Cam
    | SneakPeek
    | ReturnToFree
    | SetAutoAccept
    | Tick
)


# -- commands ---------------------------------------------------------------

ALL = None  # audience value meaning "everyone in the room"


@dataclass(frozen=True)
class SetAudience:
    """Who receives the performer's media: ``None`` = everyone, else member ids."""

    members: frozenset[str] | None


@dataclass(frozen=True)
class StateChanged:
    state: State
    at: float


@dataclass(frozen=True)
class Emit:
    """A show event for other parts (billing, notifications, logs)."""

    name: str  # private.requested, private.started, private.ended, private.declined,
    # sneak_peek.started, sneak_peek.ended, cam2cam.started, cam2cam.ended
    member_id: str | None
    at: float
    reason: str | None = None
    until: float | None = None


@dataclass(frozen=True)
class CloseCam2Cam:
    member_id: str


Command = SetAudience | StateChanged | Emit | CloseCam2Cam


class Rejected(Exception):
    """The event is not allowed now; nothing changed. ``code`` is a signaling code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# -- the machine --------------------------------------------------------------


@dataclass
class ShowMachine:
    sneak_peek_s: float = 20.0
    auto_accept: bool = False
    state: State = State.OFFLINE
    private_member: str | None = None
    private_started_at: float | None = None
    cam2cam: bool = False
    requests: dict[str, float] = field(default_factory=dict)  # member -> requested at
    peeks: dict[str, float] = field(default_factory=dict)  # member -> until

    # -- queries -------------------------------------------------------------

    def audience(self) -> frozenset[str] | None:
        if self.state == State.FREE:
            return ALL
        if self.state == State.PRIVATE:
            assert self.private_member is not None
            return frozenset({self.private_member})
        if self.state == State.MEMBER_CHAT:
            return frozenset(self.peeks)
        return frozenset()

    def next_deadline(self) -> float | None:
        """When the controller must pass a :class:`Tick` (the earliest peek end)."""
        return min(self.peeks.values()) if self.peeks else None

    # -- rules (pure: they read the state, change nothing, and raise what handle would) --

    def check_request(self, member_id: str) -> None:
        """Raise the :class:`Rejected` that ``RequestPrivate(member_id)`` would get now.

        The one home of the request rule: :meth:`handle` applies it, and the
        private's flow (shows/privates.py) asks it before it opens a grant.
        """
        if self.state == State.PRIVATE:
            raise Rejected("private_busy", "the performer is in a private")
        if self.state not in (State.FREE, State.MEMBER_CHAT):
            raise Rejected("invalid_state", f"the show is {self.state.value}")
        if member_id in self.requests:
            raise Rejected("already_requested", "a request from this member is pending")

    def check_accept(self, member_id: str) -> None:
        """Raise the :class:`Rejected` that ``AcceptPrivate(member_id)`` would get now."""
        if self.state == State.PRIVATE:
            raise Rejected("private_busy", "a private is already running")
        if self.state not in (State.FREE, State.MEMBER_CHAT):
            raise Rejected("invalid_state", f"the show is {self.state.value}")
        if member_id not in self.requests:
            raise Rejected("invalid_state", "this member has no pending request")

    def can_cam2cam(self, member_id: str) -> bool:
        """Whether ``StartCam2Cam(member_id)`` is allowed now: the member of a running private."""
        return self.state == State.PRIVATE and member_id == self.private_member

    # -- transitions ---------------------------------------------------------

    def handle(self, ev: Event) -> list[Command]:
        """Apply one event; returns the commands to carry out, in order.

        Raises :class:`Rejected` (and changes nothing) for events not allowed now.
        """
        out: list[Command] = []
        before = self.audience()
        state_before = self.state
        if isinstance(ev, Tick):
            self._expire(ev.at, out)
        elif isinstance(ev, GoOnline):
            if self.state != State.OFFLINE:
                raise Rejected("invalid_state", f"the show is already {self.state.value}")
            self.state = State.FREE
        elif isinstance(ev, GoOffline):
            self._expire(ev.at, out)
            self._end_private("performer_offline", ev.at, out)
            self._end_all_peeks(ev.at, "show_offline", out)
            self._decline_all(ev.at, out)
            self.state = State.OFFLINE
        elif isinstance(ev, SetAutoAccept):
            self.auto_accept = ev.enabled
        elif isinstance(ev, RequestPrivate):
            self._request(ev, out)
        elif isinstance(ev, WithdrawRequest):
            if self.requests.pop(ev.member_id, None) is None:
                raise Rejected("invalid_state", "no pending request from this member")
            out.append(Emit("private.withdrawn", ev.member_id, ev.at))
        elif isinstance(ev, AcceptPrivate):
            self.check_accept(ev.member_id)  # before expiring peeks: a refusal changes nothing
            self._expire(ev.at, out)
            self._accept(ev.member_id, ev.at, out)
        elif isinstance(ev, DeclinePrivate):
            if self.requests.pop(ev.member_id, None) is None:
                raise Rejected("invalid_state", "no pending request from this member")
            out.append(Emit("private.declined", ev.member_id, ev.at, reason="declined"))
        elif isinstance(ev, EndPrivate):
            if self.state != State.PRIVATE:
                raise Rejected("invalid_state", "no private is running")
            if ev.by == "member" and ev.member_id != self.private_member:
                raise Rejected("forbidden", "only the private's member or the performer may end it")
            reason = {"member": "member_left", "performer": "performer_ended"}.get(ev.by, ev.by)
            self._end_private(reason, ev.at, out)
            self.state = State.MEMBER_CHAT
        elif isinstance(ev, StartCam2Cam):
            if not self.can_cam2cam(ev.member_id):
                raise Rejected("forbidden", "Cam2Cam is only for the member of a running private")
            if not self.cam2cam:
                self.cam2cam = True
                out.append(Emit("cam2cam.started", ev.member_id, ev.at))
        elif isinstance(ev, StopCam2Cam):
            if self.cam2cam and ev.member_id == self.private_member:
                self.cam2cam = False
                out.append(Emit("cam2cam.ended", ev.member_id, ev.at, reason="stopped"))
        elif isinstance(ev, SneakPeek):
            self._expire(ev.at, out)
            if self.state != State.MEMBER_CHAT:
                raise Rejected("invalid_state", "a sneak peek is possible only while the performer is in member chat")
            if ev.member_id in self.peeks:
                raise Rejected("invalid_state", "already peeking")
            until = ev.at + self.sneak_peek_s
            self.peeks[ev.member_id] = until
            out.append(Emit("sneak_peek.started", ev.member_id, ev.at, until=until))
        elif isinstance(ev, ReturnToFree):
            if self.state not in (State.MEMBER_CHAT, State.FREE):
                raise Rejected("invalid_state", f"cannot return to free chat from {self.state.value}")
            self._end_all_peeks(ev.at, "returned_to_free", out)
            self.state = State.FREE
        else:  # pragma: no cover - exhaustive
            raise Rejected("bad_request", f"unknown event {ev!r}")
        after = self.audience()
        # Media first: the audience changes before anyone is told anything.
        if after != before:
            out.insert(0, SetAudience(after))
        if self.state != state_before:
            out.append(StateChanged(self.state, ev.at))
        return out

    def _request(self, ev: RequestPrivate, out: list[Command]) -> None:
        self.check_request(ev.member_id)
        self.requests[ev.member_id] = ev.at
        out.append(Emit("private.requested", ev.member_id, ev.at))
        if self.auto_accept:
            self._accept(ev.member_id, ev.at, out)

    def _accept(self, member_id: str, at: float, out: list[Command]) -> None:
        self.check_accept(member_id)
        del self.requests[member_id]
        self._end_all_peeks(at, "private_started", out)
        self._decline_all(at, out)
        self.state = State.PRIVATE
        self.private_member = member_id
        self.private_started_at = at
        out.append(Emit("private.started", member_id, at))

    def _decline_all(self, at: float, out: list[Command]) -> None:
        for m in sorted(self.requests):
            out.append(Emit("private.declined", m, at, reason="performer_busy"))
        self.requests.clear()

    def _end_private(self, reason: str, at: float, out: list[Command]) -> None:
        if self.state != State.PRIVATE:
            return
        member = self.private_member
        assert member is not None
        if self.cam2cam:
            self.cam2cam = False
            out.append(Emit("cam2cam.ended", member, at, reason=reason))
        out.append(CloseCam2Cam(member))
        out.append(Emit("private.ended", member, at, reason=reason))
        self.private_member = None
        self.private_started_at = None
        self.state = State.MEMBER_CHAT

    def _expire(self, now: float, out: list[Command]) -> None:
        for m, until in sorted(self.peeks.items()):
            if until <= now:
                del self.peeks[m]
                out.append(Emit("sneak_peek.ended", m, until, reason="time_up"))

    def _end_all_peeks(self, at: float, reason: str, out: list[Command]) -> None:
        for m in sorted(self.peeks):
            out.append(Emit("sneak_peek.ended", m, at, reason=reason))
        self.peeks.clear()
