"""The show state machine without sockets: table tests and a property test over random events."""

from __future__ import annotations

import copy
from typing import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from jasmin_sfu.shows.machine import (
    AcceptPrivate,
    CloseCam2Cam,
    DeclinePrivate,
    Emit,
    EndPrivate,
    GoOffline,
    GoOnline,
    Rejected,
    RequestPrivate,
    ReturnToFree,
    SetAudience,
    ShowMachine,
    SneakPeek,
    StartCam2Cam,
    State,
    StateChanged,
    Tick,
    WithdrawRequest,
)


def emitted(cmds: list[object]) -> list[str]:
    return [c.name for c in cmds if isinstance(c, Emit)]


def test_the_whole_path_offline_free_private_member_chat_free_offline() -> None:
    """Protects docs/product.md's show cycle and the order of commands (media first)."""
    sm = ShowMachine()
    assert sm.handle(GoOnline(0))[0] == SetAudience(None)
    assert sm.state == State.FREE
    sm.handle(RequestPrivate("m1", 1))
    cmds = sm.handle(AcceptPrivate("m1", 2))
    assert cmds[0] == SetAudience(frozenset({"m1"})), "the audience changes before anything is announced"
    assert emitted(cmds) == ["private.started"] and isinstance(cmds[-1], StateChanged)
    cmds = sm.handle(EndPrivate("member", 60, member_id="m1"))
    assert sm.state == State.MEMBER_CHAT and cmds[0] == SetAudience(frozenset())
    assert CloseCam2Cam("m1") in cmds
    ended = [c for c in cmds if isinstance(c, Emit) and c.name == "private.ended"]
    assert ended[0].reason == "member_left" and ended[0].member_id == "m1"
    sm.handle(ReturnToFree(70))
    assert sm.state == State.FREE and sm.audience() is None
    sm.handle(GoOffline(80))
    assert sm.state == State.OFFLINE and sm.audience() == frozenset()


def test_withdrawing_a_request_tells_the_performer() -> None:
    """Protects the performer's request list from going stale."""
    sm = ShowMachine()
    sm.handle(GoOnline(0))
    sm.handle(RequestPrivate("m1", 1))
    assert emitted(sm.handle(WithdrawRequest("m1", 2))) == ["private.withdrawn"]
    assert sm.requests == {}


def test_auto_accept_starts_the_private_on_request() -> None:
    """Protects the per-performer auto-accept setting."""
    sm = ShowMachine(auto_accept=True)
    sm.handle(GoOnline(0))
    cmds = sm.handle(RequestPrivate("m1", 1))
    assert sm.state == State.PRIVATE and emitted(cmds) == ["private.requested", "private.started"]


@pytest.mark.parametrize(
    "setup,event,code",
    [
        ([], RequestPrivate("m1", 1), "invalid_state"),  # offline
        ([GoOnline(0), RequestPrivate("m1", 1), AcceptPrivate("m1", 2)], RequestPrivate("m2", 3), "private_busy"),
        ([GoOnline(0), RequestPrivate("m1", 1), AcceptPrivate("m1", 2)], AcceptPrivate("m1", 3), "private_busy"),
        ([GoOnline(0)], AcceptPrivate("m1", 1), "invalid_state"),  # nobody asked
        ([GoOnline(0), RequestPrivate("m1", 1)], RequestPrivate("m1", 2), "already_requested"),
        ([GoOnline(0)], EndPrivate("performer", 1), "invalid_state"),
        (
            [GoOnline(0), RequestPrivate("m1", 1), AcceptPrivate("m1", 2)],
            EndPrivate("member", 3, member_id="m2"),
            "forbidden",
        ),
        ([GoOnline(0)], SneakPeek("m1", 1), "invalid_state"),  # peeks only from member chat
        ([GoOnline(0), RequestPrivate("m1", 1), AcceptPrivate("m1", 2)], StartCam2Cam("m2", 3), "forbidden"),
        ([GoOnline(0)], StartCam2Cam("m1", 3), "forbidden"),
        ([GoOnline(0), RequestPrivate("m1", 1), AcceptPrivate("m1", 2)], ReturnToFree(3), "invalid_state"),
        ([GoOnline(0)], GoOnline(1), "invalid_state"),
        ([GoOnline(0)], DeclinePrivate("m1", 1), "invalid_state"),
    ],
)
def test_denials_change_nothing(setup: list[object], event: object, code: str) -> None:
    """Protects the rules: refused events raise with a code and leave the state as it was."""
    sm = ShowMachine()
    for ev in setup:
        sm.handle(ev)  # type: ignore[arg-type]
    before = (sm.state, sm.private_member, dict(sm.requests), dict(sm.peeks), sm.cam2cam, sm.audience())
    with pytest.raises(Rejected) as e:
        sm.handle(event)  # type: ignore[arg-type]
    assert e.value.code == code
    assert (sm.state, sm.private_member, dict(sm.requests), dict(sm.peeks), sm.cam2cam, sm.audience()) == before


def test_sneak_peek_lasts_exactly_its_duration() -> None:
    """Protects the 20 s sneak peek, with an injected clock."""
    sm = ShowMachine(sneak_peek_s=20)
    sm.handle(GoOnline(0))
    sm.handle(RequestPrivate("m1", 1))
    sm.handle(AcceptPrivate("m1", 2))
    sm.handle(EndPrivate("performer", 10))
    cmds = sm.handle(SneakPeek("m2", 100))
    assert cmds[0] == SetAudience(frozenset({"m2"}))
    assert sm.next_deadline() == 120
    assert sm.handle(Tick(119.999)) == []
    assert sm.audience() == frozenset({"m2"})
    cmds = sm.handle(Tick(120))
    assert cmds[0] == SetAudience(frozenset())
    ended = [c for c in cmds if isinstance(c, Emit)]
    assert ended[0].name == "sneak_peek.ended" and ended[0].at == 120 and ended[0].reason == "time_up"
    assert sm.next_deadline() is None


def test_accepting_a_private_ends_peeks_and_declines_other_requests() -> None:
    """Protects exclusivity from member chat: peekers lose media, other requesters are told."""
    sm = ShowMachine()
    sm.handle(GoOnline(0))
    sm.handle(RequestPrivate("m1", 1))
    sm.handle(AcceptPrivate("m1", 2))
    sm.handle(EndPrivate("performer", 3))
    sm.handle(SneakPeek("m2", 4))
    sm.handle(RequestPrivate("m3", 5))
    sm.handle(RequestPrivate("m4", 5))
    cmds = sm.handle(AcceptPrivate("m3", 6))
    assert cmds[0] == SetAudience(frozenset({"m3"}))
    names = [(c.name, c.member_id) for c in cmds if isinstance(c, Emit)]
    assert ("sneak_peek.ended", "m2") in names and ("private.declined", "m4") in names
    assert sm.requests == {} and sm.peeks == {}


def test_going_offline_ends_everything_cleanly() -> None:
    """Protects teardown from any state: private, cam2cam and peeks all end, with events."""
    sm = ShowMachine()
    sm.handle(GoOnline(0))
    sm.handle(RequestPrivate("m1", 1))
    sm.handle(AcceptPrivate("m1", 2))
    sm.handle(StartCam2Cam("m1", 3))
    cmds = sm.handle(GoOffline(4))
    assert emitted(cmds) == ["cam2cam.ended", "private.ended"]
    assert sm.state == State.OFFLINE and not sm.cam2cam and sm.private_member is None


def test_a_refused_accept_after_a_peek_deadline_changes_nothing() -> None:
    """Protects "a refusal changes nothing" for accepts: an accept refused after a peek's
    deadline but before its Tick must not expire the peek silently (its
    sneak_peek.ended would be lost: the member's media never paused, no event)."""
    sm = ShowMachine(sneak_peek_s=20)
    sm.handle(GoOnline(0))
    sm.handle(RequestPrivate("m1", 1))
    sm.handle(AcceptPrivate("m1", 2))
    sm.handle(EndPrivate("performer", 3))
    sm.handle(SneakPeek("m2", 4))
    before = copy.deepcopy(sm)
    with pytest.raises(Rejected) as exc:
        sm.handle(AcceptPrivate("m3", 30))  # m3 never asked; m2's peek ended at 24
    assert exc.value.code == "invalid_state"
    assert sm == before
    assert emitted(sm.handle(Tick(30))) == ["sneak_peek.ended"]


@pytest.mark.parametrize(
    "setup,member,code",
    [
        ([], "m1", "invalid_state"),
        ([GoOnline(0)], "m1", None),
        ([GoOnline(0), RequestPrivate("m1", 1)], "m1", "already_requested"),
        ([GoOnline(0), RequestPrivate("m1", 1), AcceptPrivate("m1", 2)], "m2", "private_busy"),
    ],
)
def test_check_request_names_the_refusal_handle_would_give(setup: list[object], member: str, code: str | None) -> None:
    """Protects the one home of the request rule: the flow asks check_request before it opens
    a grant, so its answer must be the machine's own (code included)."""
    sm = ShowMachine()
    for ev in setup:
        sm.handle(ev)  # type: ignore[arg-type]
    if code is None:
        sm.check_request(member)
        return
    with pytest.raises(Rejected) as exc:
        sm.check_request(member)
    assert exc.value.code == code


MEMBERS = st.sampled_from(["m1", "m2", "m3"])


class ShowRules(RuleBasedStateMachine):
    """Random event sequences; the invariants of machine.py must hold after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.sm = ShowMachine(sneak_peek_s=20)
        self.now = 0.0
        self.open_privates = 0
        self.open_peeks: set[str] = set()

    def _do(self, ev: object, rule: Callable[[], None] | None = None) -> None:
        """Apply ``ev``; with ``rule`` (the machine's pure predicate for it), check that the
        predicate refuses exactly when ``handle`` does, with the same code, and that a
        refused event changed nothing."""
        predicted: str | None = None
        before = copy.deepcopy(self.sm)
        if rule is not None:
            try:
                rule()
            except Rejected as exc:
                predicted = exc.code
            assert self.sm == before, "a rule predicate changed the machine"
        try:
            cmds = self.sm.handle(ev)  # type: ignore[arg-type]
        except Rejected as exc:
            if rule is not None:
                assert predicted == exc.code, f"the predicate said {predicted!r}, handle refused {exc.code!r}"
                assert self.sm == before, "a refused event changed the machine"
            return
        assert predicted is None, f"the predicate refused ({predicted}) what handle allowed"
        audiences = [c for c in cmds if isinstance(c, SetAudience)]
        assert len(audiences) <= 1
        if audiences:
            assert cmds[0] is audiences[0], "media changes come first"
            assert audiences[0].members == self.sm.audience()
        for c in cmds:
            if isinstance(c, Emit):
                if c.name == "private.started":
                    assert self.open_privates == 0
                    self.open_privates += 1
                elif c.name == "private.ended":
                    self.open_privates -= 1
                elif c.name == "sneak_peek.started":
                    assert c.member_id not in self.open_peeks
                    self.open_peeks.add(c.member_id or "")
                elif c.name == "sneak_peek.ended":
                    self.open_peeks.remove(c.member_id or "")

    @rule(dt=st.floats(min_value=0, max_value=30))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self._do(Tick(self.now))

    @rule()
    def online(self) -> None:
        self._do(GoOnline(self.now))

    @rule()
    def offline(self) -> None:
        self._do(GoOffline(self.now))

    @rule(m=MEMBERS)
    def request(self, m: str) -> None:
        self._do(RequestPrivate(m, self.now), lambda: self.sm.check_request(m))

    @rule(m=MEMBERS)
    def withdraw(self, m: str) -> None:
        self._do(WithdrawRequest(m, self.now))

    @rule(m=MEMBERS)
    def accept(self, m: str) -> None:
        self._do(AcceptPrivate(m, self.now), lambda: self.sm.check_accept(m))

    @rule(m=MEMBERS)
    def decline(self, m: str) -> None:
        self._do(DeclinePrivate(m, self.now))

    @rule(m=MEMBERS, by=st.sampled_from(["member", "performer", "billing", "disconnect"]))
    def end(self, m: str, by: str) -> None:
        self._do(EndPrivate(by, self.now, member_id=m))

    @rule(m=MEMBERS)
    def cam2cam(self, m: str) -> None:
        def rule() -> None:
            if not self.sm.can_cam2cam(m):
                raise Rejected("forbidden", "not the member of a running private")

        self._do(StartCam2Cam(m, self.now), rule)

    @rule(m=MEMBERS)
    def auto_accept(self, m: str) -> None:
        # With auto-accept a request is also an accept: the request rule alone decides it.
        self.sm.auto_accept = True
        try:
            self._do(RequestPrivate(m, self.now), lambda: self.sm.check_request(m))
        finally:
            self.sm.auto_accept = False

    @rule(m=MEMBERS)
    def peek(self, m: str) -> None:
        self._do(SneakPeek(m, self.now))

    @rule()
    def free(self) -> None:
        self._do(ReturnToFree(self.now))

    @invariant()
    def audience_matches_state(self) -> None:
        sm = self.sm
        aud = sm.audience()
        if sm.state == State.FREE:
            assert aud is None and not sm.peeks
        elif sm.state == State.PRIVATE:
            assert aud == frozenset({sm.private_member}) and not sm.peeks
        elif sm.state == State.MEMBER_CHAT:
            assert aud == frozenset(sm.peeks)
        else:
            assert aud == frozenset() and not sm.requests and not sm.peeks

    @invariant()
    def cam2cam_only_in_private(self) -> None:
        assert not self.sm.cam2cam or self.sm.state == State.PRIVATE

    @invariant()
    def started_privates_are_ended_once(self) -> None:
        assert self.open_privates == (1 if self.sm.state == State.PRIVATE else 0)
        assert self.open_peeks == set(self.sm.peeks)

    @invariant()
    def no_peek_outlives_its_deadline(self) -> None:
        for until in self.sm.peeks.values():
            assert until > self.now  # expired ones were removed by the Tick that passed them


TestShowRules = ShowRules.TestCase
TestShowRules.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
