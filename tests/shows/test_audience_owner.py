"""Who may consume each kind of producer, in each state of a show: the table of
docs/cluster.md "Who receives each producer", checked on real shows and routers.

Each producer kind has an audience owner (jasmin_sfu/shows/audience.py); the show's own
machine moves through free chat, a private with member m1, the member chat after it and
free chat again, and after every step each producer must admit exactly the keys its row
says. On an edge the show's members are the origin's word (relay_members.py applies them
the same way: ``show.audiences(members)``, only changes)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from jasmin_sfu.config import ShowsConfig
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker
from jasmin_sfu.shows.audience import CAM2CAM_TO, AudienceOwner, owner_of
from jasmin_sfu.shows.events import EventBus
from jasmin_sfu.shows.machine import AcceptPrivate, EndPrivate, RequestPrivate, ReturnToFree
from jasmin_sfu.shows.show import Show
from tests.support import make_producer

PERFORMER, PERFORMER2, M1, M2, GUEST = "perf-s", "perf2-s", "m1-s", "m2-s", "guest-s"
ORIGIN_KEYS = (PERFORMER, PERFORMER2, M1, M2, GUEST)
RELAY_UP = "relay:origin-node"  # the relay from m1's edge up to the show's node
EDGE_KEYS = (M1, M2, GUEST, RELAY_UP)
EVERYONE = "everyone"
ORIGIN_STATES = (
    "free",
    "private with m1",
    "a second performer joins (group show)",
    "after (member chat)",
    "free again",
)
EDGE_STATES = ("free", "private with m1", "after (member chat)", "free again")

# kind -> who may consume it in each state (a key set, or EVERYONE).
ORIGIN_TABLE: dict[str, tuple[Any, ...]] = {
    "performer's camera": (EVERYONE, {PERFORMER, M1}, {PERFORMER, PERFORMER2, M1}, {PERFORMER, PERFORMER2}, EVERYONE),
    "m1's Cam2Cam published here": ({PERFORMER},) * 2 + ({PERFORMER, PERFORMER2},) * 3,
    "m1's Cam2Cam replica from its edge": ({PERFORMER},) * 2 + ({PERFORMER, PERFORMER2},) * 3,
}
EDGE_TABLE: dict[str, tuple[Any, ...]] = {
    # After the private the origin cuts the relay toward the edge (nothing arrives) and tells
    # the edge nothing more until the show is free again: the edge's word stays m1.
    "performer's camera (replica)": (EVERYONE, {M1}, {M1}, EVERYONE),
    "m1's Cam2Cam sent from here": ({RELAY_UP},) * 4,
}
EDGE_WORD: tuple[frozenset[str] | None, ...] = (None, frozenset({"m1"}), frozenset({"m1"}), None)


class Person:
    """A show participant (a signaling session as the show sees it)."""

    def __init__(self, session_id: str, role: str, member_id: str | None = None) -> None:
        self.session_id = session_id
        self.role = role
        self.member_id = member_id
        self.performer_id = session_id if role == "performer" else None

    def notify(self, event: str, data: dict[str, Any]) -> None:
        pass

    async def close_publisher(self, reason: str) -> None:
        pass

    def show_ended(self) -> None:
        pass


def _producer(pid: str, app_data: dict[str, Any], exclusive_to: frozenset[str] | None = None) -> Producer:
    p, _stats = make_producer(producer_id=pid, app_data=app_data)
    if exclusive_to is not None:  # as its maker does, before the router holds it
        p.exclusive = True
        p.audience = exclusive_to
    return p


def _who(p: Producer, keys: tuple[str, ...]) -> Any:
    if all(p.admits(k) for k in keys) and p.audience is None:
        return EVERYONE
    return {k for k in keys if p.admits(k) and p.visible_to(k)}


def _check(
    table: dict[str, tuple[Any, ...]],
    made: dict[str, Producer],
    keys: tuple[str, ...],
    states: tuple[str, ...],
    step: int,
) -> None:
    got = {kind: _who(made[kind], keys) for kind in table}
    want = {kind: row[step] for kind, row in table.items()}
    assert got == want, f"in state {states[step]!r}"


@pytest.fixture
async def worker() -> Any:
    w = Worker(MediaSettings())
    yield w
    await w.close()


async def test_each_producer_kind_reaches_whom_its_owner_says_on_the_shows_node(worker: Worker) -> None:
    """Protects the privacy table on the show's node: the performers' tracks follow the show
    (everyone in free chat, only the performers and the paying member in the private, only the
    performers after it); a member's Cam2Cam, published here or replicated from its edge,
    reaches the performers only (a second one of a group show too, once it joins), in every
    state, whatever the show's audience does."""
    t = [100.0]
    show = Show("s1", worker.create_router("r1"), EventBus(), ShowsConfig(), clock=lambda: t[0])
    show.add(Person(PERFORMER, "performer"))  # online: free chat
    for s, m in ((M1, "m1"), (M2, "m2"), (GUEST, None)):
        show.add(Person(s, "viewer", m))
    performers = frozenset({PERFORMER})
    made = {
        "performer's camera": _producer("cam", {"session_id": PERFORMER}),
        "m1's Cam2Cam published here": _producer("c2c", {"cam2cam": True, "member_id": "m1"}, performers),
        "m1's Cam2Cam replica from its edge": _producer(
            "c2c-r", {"cam2cam": True, "member_id": "m1", "relayed_from": "edge-node"}, performers
        ),
    }
    for p in made.values():
        show.router.adopt(p)
    assert [owner_of(p) for p in made.values()] == [
        AudienceOwner.SHOW,
        AudienceOwner.PERFORMERS,
        AudienceOwner.PERFORMERS,
    ]
    steps: list[Callable[[], Any]] = [
        lambda: None,
        lambda: (show.apply(RequestPrivate("m1", t[0])), show.apply(AcceptPrivate("m1", t[0]))),
        lambda: show.add(Person(PERFORMER2, "performer")),
        lambda: show.apply(EndPrivate("performer", t[0])),
        lambda: show.apply(ReturnToFree(t[0])),
    ]
    for step, go in enumerate(steps):
        t[0] += 1
        go()
        _check(ORIGIN_TABLE, made, ORIGIN_KEYS, ORIGIN_STATES, step)
    await show.close()


async def test_each_producer_kind_reaches_whom_its_owner_says_on_an_edge(worker: Worker) -> None:
    """Protects the privacy table on a member's edge node: the show's replicas reach the
    sessions there of the members the origin allows (everyone, or only m1 in its private);
    m1's own Cam2Cam there goes only up the relay to the show's node, never to anybody
    local, m1 included, in every state."""
    show = Show("s1", worker.create_router("r-edge"), EventBus(), ShowsConfig())
    show.relay_state("free", 100.0)  # an edge show: the origin's state
    for s, m in ((M1, "m1"), (M2, "m2"), (GUEST, None)):
        show.add(Person(s, "viewer", m))
    made = {
        "performer's camera (replica)": _producer("cam", {"session_id": "p", "relayed_from": "origin-node"}),
        "m1's Cam2Cam sent from here": _producer(
            "c2c", {"cam2cam": True, "member_id": "m1", CAM2CAM_TO: "origin-node"}, frozenset({RELAY_UP})
        ),
    }
    for p in made.values():
        show.router.adopt(p)
    assert owner_of(made["m1's Cam2Cam sent from here"]) is AudienceOwner.RELAY
    for step, members in enumerate(EDGE_WORD):
        # What RelayMembers.apply_edge_audience does with the origin's word.
        show.audiences(members).apply(show.router.producers.values(), changed_only=True)
        _check(EDGE_TABLE, made, EDGE_KEYS, EDGE_STATES, step)
    await show.close()
