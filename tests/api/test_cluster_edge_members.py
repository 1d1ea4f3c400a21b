"""A member watching and buying a private through an edge node (docs/cluster.md, "Members on an
edge"; jasmin_sfu/api/relay_members.py).

Two daemons run in this process on 127.0.0.1 with a ``[cluster]`` section on the real Redis (a key
prefix of the test's own): ``a`` holds the show (its origin, with billing on a SQLite ledger in
the test's directory), ``b`` serves the member and a guest as an edge. The performer, the guests and
the member are aiortc peers; payloads are counted against the performer's send log, as in the
single-node exclusivity test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from bench.peers import PatternTrack, SendLog, ToneTrack, publish, subscribe, wait_for
from jasmin_signaling.client import RemoteError
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import BillingConfig
from jasmin_sfu.media.pipe_transport import PipeTransport
from jasmin_sfu.services.ledger import per_second_rate, wallet_account
from tests.api.conftest import MakeNode
from tests.conftest import test_config as loopback_config
from tests.support import Viewer, after, performer, watch

PRICE = 6000  # hundredths of a credit per minute: 1 credit a second
RATE = per_second_rate(PRICE)


def ws(d: Daemon) -> str:
    return f"ws://127.0.0.1:{d.port}/ws"


def billing_events(data_dir: Path, member_id: str) -> list[dict[str, Any]]:
    path = data_dir / "billing-events.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if e.get("data", {}).get("member_id") == member_id]


async def private_through_an_edge(
    make_node: MakeNode, prefix: str, tmp_path: Path, edge_delay_s: float = 0.0, ttl_s: float = 2.0
) -> EdgePrivate:
    """Origin a (billing on, m1 holds 30 credits), edge b; the show "anna" published on a with a
    guest on each node and m1 on b, every viewer decoding; then m1's private, accepted on a.
    ``edge_delay_s``: b takes that long to take each delivery of the origin's member events (a
    slow control channel), while the relay's UDP is as fast as ever. ``ttl_s``: both nodes'
    cluster TTL (how long the origin waits before it finds a silent edge gone)."""
    billing = BillingConfig(data_dir=str(tmp_path), node_id="bill-a")
    a = await make_node("a", prefix, loopback_config(billing=billing), ttl_s=ttl_s)
    b = await make_node("b", prefix, ttl_s=ttl_s)
    assert b.relays is not None and b.relays.members is not None
    if edge_delay_s:
        handle = b.relays.members.handle_events

        async def slow(request: Any) -> Any:
            await asyncio.sleep(edge_delay_s)
            return await handle(request)

        b.relays.members.handle_events = slow  # type: ignore[method-assign]
    assert a.billing is not None
    await a.billing.ledger.open_member("m1")
    await a.billing.cc.top_up("pay-1", "m1", "p2999")
    pub = await performer(ws(a), "anna")
    await pub.client.request("show.settings", price_per_minute=PRICE)
    guest_a, guest_b = await watch(ws(a), "anna"), await watch(ws(b), "anna")
    member = await watch(ws(b), "anna", member_id="m1")
    peers = [pub, guest_a, guest_b, member]
    assert guest_b.client.moved_to is None and member.client.moved_to is None  # b serves both, as an edge
    assert b.relays is not None and b.relays.is_edge("anna")
    viewers = [guest_a, guest_b, member]
    assert await wait_for(
        lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in viewers), 30
    )

    asked = await member.client.request("private.request")  # on b, served by a's private flow
    assert asked == {"state": "free", "private_member": False}
    assert set(a.shows.shows["anna"].machine.requests) == {"m1"}
    assert (await member.client.next_event("private.requested"))["data"]["member_id"] == "m1"
    await pub.client.next_event("private.requested")
    accepted = await pub.client.request("private.accept", member_id="m1")
    return EdgePrivate(a, b, pub, [guest_a, guest_b], member, peers, accepted["accepted_at"])


@dataclasses.dataclass
class EdgePrivate:
    """What `private_through_an_edge` made: the origin a, the edge b, the performer (on a), the
    guests (on a, on b), the member (on b), every peer opened (the test adds its own) and the
    private's `accepted_at`."""

    a: Daemon
    b: Daemon
    pub: Any
    guests: list[Viewer]
    member: Viewer
    peers: list[Any]
    accepted_at: float


StartPrivate = Callable[..., Awaitable[EdgePrivate]]


@pytest.fixture
async def edge_private(prefix: str, make_node: MakeNode, tmp_path: Path) -> AsyncIterator[StartPrivate]:
    """``await edge_private(edge_delay_s=..., ttl_s=...)`` runs `private_through_an_edge` (its billing
    in ``tmp_path``); after the test its peers are closed, before the daemons stop."""
    runs: list[EdgePrivate] = []

    async def start(edge_delay_s: float = 0.0, ttl_s: float = 2.0) -> EdgePrivate:
        runs.append(await private_through_an_edge(make_node, prefix, tmp_path, edge_delay_s, ttl_s))
        return runs[-1]

    yield start
    for run in runs:
        for p in run.peers:
            await p.close()


async def test_a_member_on_an_edge_buys_a_private_that_only_it_receives_billed_once_at_the_origin(
    edge_private: StartPrivate, tmp_path: Path
) -> None:
    """Protects a private bought through an edge (issue 15): the member's `join` on edge b is served
    there, its `private.request` reaches the origin's flow and the accept's events reach it on b; from
    `accepted_at` the free viewers on a and on b receive zero payloads sent after it (b blocks its
    guest before the origin feeds its relay again), the member on b receives video and audio; its
    `private.end` on b ends the
    private at the origin, whose one meter closed it once: the ledger's debit is the billed seconds
    times the rate; a sneak peek asked on b in member chat again reaches m1 only; back to free chat,
    b's guest decodes again. The edge takes its events half a second late (a slow control channel): the
    origin feeds b's relay again only once b confirmed it blocked its guest, so the UDP media
    cannot overtake the block. Red when the edge skips its audience block, and when the origin
    does not wait for b's confirmation (the guest on b gets the private's first packets)."""
    run = await edge_private(edge_delay_s=0.5)
    a, pub, member, guests = run.a, run.pub, run.member, run.guests
    t_accept = run.accepted_at
    started = await member.client.next_event("private.started")
    assert started["data"]["member_id"] == "m1" and started["data"]["at"] == t_accept

    def member_after() -> list[tuple[int, float]]:
        return after(member, pub.log, t_accept)

    assert await wait_for(lambda: len({s for s, _ in member_after()}) == 2 and len(member_after()) >= 150, 30)
    assert sum(1 for t in pub.log.sent.values() if t > t_accept) >= 150  # not vacuous
    for v in guests:
        assert after(v, pub.log, t_accept) == [], "a free viewer received media sent after the accept"

    # Three seconds of private by the performer's clock (its send log), then the member ends it.
    assert await wait_for(lambda: any(t > t_accept + 3 for t in pub.log.sent.values()), 30)
    ended = await member.client.request("private.end")
    ev = await pub.client.next_event("private.ended")
    assert ev["data"]["reason"] == "member_left" and ev["data"]["at"] == ended["ended_at"]
    assert (await member.client.next_event("private.ended"))["data"]["reason"] == "member_left"
    await check_billed_once(a, tmp_path, ended["ended_at"] - t_accept)

    # Member chat now: a sneak peek asked on b is the origin's, and b is again limited to m1.
    peek = await member.client.request("sneak_peek")
    assert peek["until"] > peek["started_at"] >= ended["ended_at"]
    assert (await member.client.next_event("sneak_peek.started"))["data"]["until"] == peek["until"]
    assert await wait_for(lambda: len(after(member, pub.log, peek["started_at"])) >= 50, 30)
    for v in guests:
        assert after(v, pub.log, t_accept) == [], "a free viewer received the private or the peek"
    # Back to free chat: b's audience opens again and its guest decodes (the relay restarts).
    await pub.client.request("show.free")
    seen = guests[1].frames.get("video", 0)
    assert await wait_for(lambda: guests[1].frames.get("video", 0) >= seen + 5, 30)


async def check_billed_once(a: Daemon, data_dir: Path, lasted: float) -> None:
    """One closing billing event for m1, its seconds at most the private's length, and the ledger's
    debit exactly those seconds times the rate (nothing pending)."""
    assert await wait_for(lambda: any("closed" in e["type"] for e in billing_events(data_dir, "m1")), 20)
    [closed] = [e for e in billing_events(data_dir, "m1") if "closed" in e["type"]]
    billed = closed["data"]["billed_seconds"]
    assert 2 <= billed <= lasted + 1, (billed, lasted)
    assert closed["data"]["total_amount"] == billed * RATE
    assert a.billing is not None
    ledger = a.billing.ledger

    async def settled() -> bool:
        wallet = await ledger.balance(wallet_account("m1"))
        return bool(wallet.debits_pending == 0 and wallet.debits_posted == billed * RATE)

    for _ in range(100):
        if await settled():
            break
        await asyncio.sleep(0.1)
    wallet = await ledger.balance(wallet_account("m1"))
    assert wallet.debits_posted == billed * RATE and wallet.debits_pending == 0, wallet
    assert [e for e in billing_events(data_dir, "m1") if "closed" in e["type"]] == [closed]


async def test_the_members_websocket_closing_on_the_edge_ends_its_private_at_the_origin(
    edge_private: StartPrivate, tmp_path: Path
) -> None:
    """Protects the end of a private whose member leaves through an edge: the member's websocket on b
    closing mid-private is the member leaving, told to the origin, which ends the private as for a
    local member's disconnect (reason `disconnect`), returns b to free chat for its guest, and bills
    the private once (one closing event, the ledger's debit its seconds times the rate)."""
    run = await edge_private()
    a, pub, member, guests = run.a, run.pub, run.member, run.guests
    t_accept = run.accepted_at
    assert await wait_for(lambda: len(after(member, pub.log, t_accept)) >= 100, 30)
    assert await wait_for(lambda: any(t > t_accept + 3 for t in pub.log.sent.values()), 30)
    run.peers.remove(member)
    await member.close()
    ev = await pub.client.next_event("private.ended")
    assert ev["data"]["reason"] == "disconnect" and ev["data"]["member_id"] == "m1"
    assert a.shows.shows["anna"].machine.private_member is None
    await check_billed_once(a, tmp_path, ev["data"]["at"] - t_accept)
    assert not any(link.members for link in a.relays.members.links.values())  # type: ignore[union-attr]
    # Back to free chat: the guest on b decodes again (the relay restarts, b's audience is open).
    await pub.client.request("show.free")
    seen = guests[1].frames.get("video", 0)
    assert await wait_for(lambda: guests[1].frames.get("video", 0) >= seen + 5, 30)


async def test_an_edge_stopping_gracefully_ends_its_members_private_at_the_origin_at_once(
    edge_private: StartPrivate, tmp_path: Path
) -> None:
    """Protects the end of a private whose member's edge is stopped gracefully (SIGTERM's drain,
    `Daemon.stop`; docs/cluster.md "Failure behaviour"): before the edge cancels its tasks it tells
    the origin that its member left, so the origin ends the private at once as for a local
    member's disconnect (reason `disconnect`) and bills it once, its seconds times the rate. Both
    nodes run with a 300 s TTL: the private has ended by the time b's stop returns, long before the
    origin could find b silent. The origin is made "far": b's leave call leaves b only once b's
    stop has closed its shows (its last step before the relays' tasks), as a call to a remote
    origin still connecting then would. Red when the stop cancels the member's leave call (the
    origin keeps the private, and its meter, running until its TTL)."""
    run = await edge_private(ttl_s=300.0)
    a, b, pub, member = run.a, run.b, run.pub, run.member
    t_accept = run.accepted_at
    assert a.relays is not None and a.relays.members is not None
    assert b.relays is not None and b.relays.members is not None
    shows_closed = asyncio.Event()
    post, close = b.relays.members._post, b.shows.close

    async def far(url: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        if payload.get("verb") == "leave":
            await shows_closed.wait()
        return await post(url, path, payload)

    async def closing(show_id: str, show: Any = None) -> None:
        await close(show_id, show)
        if not b.shows.shows:
            shows_closed.set()

    b.relays.members._post = far  # type: ignore[method-assign]
    b.shows.close = closing  # type: ignore[method-assign]
    assert await wait_for(lambda: len(after(member, pub.log, t_accept)) >= 100, 30)
    assert await wait_for(lambda: any(t > t_accept + 3 for t in pub.log.sent.values()), 30)
    assert a.shows.shows["anna"].machine.private_member == "m1"
    await b.stop()  # what SIGTERM runs
    # Told before b's stop returned: no waiting on a's side for the TTL (300 s).
    assert a.shows.shows["anna"].machine.private_member is None
    assert not any(link.members for link in a.relays.members.links.values())
    ev = await pub.client.next_event("private.ended")
    assert ev["data"]["reason"] == "disconnect" and ev["data"]["member_id"] == "m1"
    await check_billed_once(a, tmp_path, ev["data"]["at"] - t_accept)


async def test_a_new_copy_of_the_show_on_the_members_edge_gets_nothing_of_the_running_private(
    edge_private: StartPrivate,
) -> None:
    """Protects privacy when the member's edge makes a new copy of the show mid-private (its old one
    ended: the relay was lost, or the show was dropped there): the new copy is open to all, so the
    origin must forget that the old copy confirmed the member-only audience and cut the relay toward
    that edge in the step it answers the edge's open, before any replica exists there. The member
    also watches on the origin, so the private goes on; the origin takes a second to hear that the
    member's session on the edge left. A guest joining the edge's new copy receives zero payloads
    sent after the accept. Red when the origin ignores the new copy (`fresh`)."""
    run = await edge_private()
    a, b, pub, member = run.a, run.b, run.pub, run.member
    t_accept = run.accepted_at
    assert a.relays is not None and a.relays.members is not None and b.relays is not None
    also_on_a = await watch(ws(a), "anna", member_id="m1")
    run.peers.append(also_on_a)
    handle = a.relays.members.handle_member

    async def slow(request: Any) -> Any:
        await asyncio.sleep(1.0)
        return await handle(request)

    assert await wait_for(lambda: len(after(member, pub.log, t_accept)) >= 50, 30)
    a.relays.members.handle_member = slow  # type: ignore[method-assign]
    await b.relays.forget("anna")  # the edge's copy ends; the member's session there with it
    late = await watch(ws(b), "anna")
    run.peers.append(late)
    assert late.client.moved_to is None and b.relays.is_edge("anna")
    assert a.shows.shows["anna"].machine.private_member == "m1"  # the member on a keeps it
    assert await wait_for(lambda: any(t > t_accept + 3 for t in pub.log.sent.values()), 30)
    assert after(late, pub.log, t_accept) == [], "a guest of the new copy received the private"
    assert a.shows.shows["anna"].machine.private_member == "m1"


async def test_a_privates_datagram_landing_after_the_edge_opened_again_reaches_no_guest(
    edge_private: StartPrivate,
) -> None:
    """Protects privacy at a private's end on the member's edge (docs/cluster.md, "Privacy"): datagrams
    of the private relayed toward b for its member, delayed by the network until b's audience is open
    again (back to free chat), never reach b's replicas, so neither b's guest nor their keyframe and
    NACK caches: each is dropped and counted (`relay_before_replica`). The delay is made, not waited
    for: a's pipe toward b holds back what it sends, then the datagrams are handed to b's pipe through
    its own receive path once b opened. Red when the origin's "open again" carries no `floors`, or the
    edge ignores them."""
    run = await edge_private()
    a, b, pub, member = run.a, run.b, run.pub, run.member
    t_accept = run.accepted_at
    assert a.relays is not None and b.relays is not None and b.relays.members is not None
    assert await wait_for(lambda: len(after(member, pub.log, t_accept)) >= 50, 30)
    towards_b = a.relays.origin_pipes["b"]
    udp = towards_b._udp
    assert udp is not None and towards_b.local is not None
    held: list[bytes] = []
    send = udp.sendto

    def holding(data: bytes, addr: Any = None) -> None:
        if not 192 <= data[1] <= 223:  # the private's RTP toward the member's edge
            held.append(data)
            return
        send(data, addr)

    udp.sendto = holding  # type: ignore[method-assign]
    assert await wait_for(lambda: len(held) >= 30, 10)
    udp.sendto = send  # type: ignore[method-assign]
    await member.client.request("private.end")
    await pub.client.request("show.free")
    assert await wait_for(lambda: "anna" not in b.relays.members.exclusive, 10)  # type: ignore[union-attr]

    from_a = b.relays.edge_pipes["a"]
    taken: list[int] = []
    for r in from_a.replicas.values():
        on_rtp = r.on_rtp

        def recording(data: bytes, arrival_ms: int, layer: Any = None, on_rtp: Any = on_rtp) -> None:
            taken.append(int.from_bytes(data[2:4], "big"))
            on_rtp(data, arrival_ms, layer)

        r.on_rtp = recording  # type: ignore[method-assign]
    dropped = b.worker.stats.drops.get("relay_before_replica", 0)
    for data in held:
        from_a._on_datagram(data, towards_b.local)  # the private's late datagrams land on the open edge
    assert taken == [], f"{len(taken)} of {len(held)} datagrams of the private reached b's replicas"
    assert b.worker.stats.drops.get("relay_before_replica", 0) == dropped + len(held)
    # The free stream goes on: b's guest decodes again.
    seen = run.guests[1].frames.get("video", 0)
    assert await wait_for(lambda: run.guests[1].frames.get("video", 0) >= seen + 5, 30)


async def test_a_members_cam2cam_sent_on_an_edge_reaches_only_the_performer_on_the_origin(
    edge_private: StartPrivate,
) -> None:
    """Protects Cam2Cam through an edge (issue 15): the member in its private on edge b publishes
    its camera there; the performer on origin a is told of it (`cam2cam.started`, `producer.added`
    with the member's id) and decodes it; the guests on a and on b are never told of it, are
    refused a subscribe by its ids, and receive zero payloads of it; b's producers have no consumer
    there (only the relay up to a), a's replicas only the performer's. The performer's
    `private.end` closes both ends: the replicas on a and the member's producers on b. Red when
    the replica on a is not exclusive (a's guest may subscribe to it), when b's own audience
    overrides its producers' (the relay up to a is cut: the performer decodes nothing), and when
    the private's end does not reach b (its producers stay)."""
    run = await edge_private()
    a, b, pub, member, guests = run.a, run.b, run.pub, run.member, run.guests
    await member.client.next_event("private.started")
    cam = await publish(ws(b), "anna", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    run.peers.append(cam)
    cam_log = SendLog().attach(cam.pc)
    cam_ids = [p["producer_id"] for p in cam.producers]
    assert len(cam_ids) == 2
    seen: set[str] = set()
    while not set(cam_ids) <= seen:
        added = (await pub.client.next_event("producer.added"))["data"]["producer"]
        if added["producer_id"] in cam_ids:
            assert added["app_data"]["cam2cam"] is True and added["app_data"]["member_id"] == "m1"
            seen.add(added["producer_id"])
    assert (await pub.client.next_event("cam2cam.started"))["data"]["member_id"] == "m1"
    perf_view = await subscribe(ws(a), "anna", client=pub.client, producer_ids=cam_ids)
    run.peers.append(perf_view)
    assert await wait_for(lambda: perf_view.frames.get("video", 0) >= 5, 30)
    assert await wait_for(lambda: len(cam_log.sent) >= 100, 30)  # not vacuous

    origin_router = a.shows.shows["anna"].router
    edge_router = b.shows.shows["anna"].router
    for pid in cam_ids:
        [only] = origin_router.producers[pid].consumers.values()
        assert only.audience_key == str(pub.client.welcome["session_id"])
        assert edge_router.producers[pid].consumers == {}
    for g in guests:
        for pid in cam_ids:
            with pytest.raises(RemoteError) as e:
                await g.client.request("subscribe", producer_ids=[pid])
            assert e.value.code == "unknown_producer"
        while not g.client.events.empty():
            ev = g.client.events.get_nowait()
            assert ev["event"] != "producer.added", ev
    for v in (*guests, member):
        assert v.counter is not None
        assert not any(cam_log.sent_at(d) for _s, d, _t in v.counter.payloads), "a viewer got the member's camera"

    # The private ends at the origin: both ends of the Cam2Cam close.
    await pub.client.request("private.end")
    assert (await member.client.next_event("cam2cam.ended"))["data"]["member_id"] == "m1"
    assert await wait_for(lambda: not any(pid in origin_router.producers for pid in cam_ids), 10)
    assert await wait_for(lambda: not any(pid in edge_router.producers for pid in cam_ids), 10)
    assert a.shows.shows["anna"].machine.cam2cam is False


async def test_the_members_unpublish_on_the_edge_and_a_silent_pipe_stop_its_cam2cam_at_the_origin(
    edge_private: StartPrivate,
) -> None:
    """Protects the ends of a Cam2Cam sent through an edge other than the private's: the member's
    `unpublish` on b stops it at the origin (`cam2cam.ended` reason `stopped` to the performer, the
    replicas gone from a's router); sent again, the pipe from b closing on a (what its silence
    timeout does) stops it too, on both nodes, while the private goes on; the show's node unreachable, the member's
    `publish` on b is `cam2cam_unavailable` and leaves no producer there. Red when a replica
    closing does not stop the Cam2Cam at the origin."""
    run = await edge_private()
    a, pub, member = run.a, run.pub, run.member
    assert a.relays is not None
    show = a.shows.shows["anna"]
    await member.client.next_event("private.started")
    cam = await publish(ws(run.b), "anna", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    run.peers.append(cam)
    ids = [p["producer_id"] for p in cam.producers]
    await pub.client.next_event("cam2cam.started")
    assert all(pid in show.router.producers for pid in ids)
    await member.client.request("unpublish")
    assert (await pub.client.next_event("cam2cam.ended"))["data"]["reason"] == "stopped"
    assert await wait_for(lambda: not any(pid in show.router.producers for pid in ids), 10)
    assert show.machine.cam2cam is False

    again = await publish(ws(run.b), "anna", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    run.peers.append(again)
    ids = [p["producer_id"] for p in again.producers]
    await pub.client.next_event("cam2cam.started")
    a.relays.edge_pipes["b"].close()  # the pipe from the member's edge went silent
    assert (await pub.client.next_event("cam2cam.ended"))["data"]["reason"] == "stopped"
    assert not any(pid in show.router.producers for pid in ids)
    assert show.machine.cam2cam is False and show.machine.private_member == "m1"
    edge_show = run.b.shows.shows["anna"]
    assert await wait_for(lambda: not any(pid in edge_show.router.producers for pid in ids), 10)  # b stops

    # The show's node cannot be reached (its HTTP origin now a closed port): `cam2cam_unavailable`,
    # and nothing of the attempt is left on the edge.
    b = run.b
    assert b.relays is not None and b.relays.members is not None
    sessions = b.relays.members.sessions
    [sid] = list(sessions)
    sessions[sid] = dataclasses.replace(sessions[sid], url="http://127.0.0.1:9")
    with pytest.raises(RemoteError) as e:
        await publish(ws(b), "anna", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    assert e.value.code == "cam2cam_unavailable"
    assert not any(p.app_data.get("cam2cam") for p in edge_show.router.producers.values())


def released(pipe: PipeTransport) -> bool:
    """The pipe is closed and its UDP port free again (a socket binds it)."""
    assert pipe.local is not None
    if not pipe.closed:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(pipe.local)
        except OSError:
            return False
    return True


async def test_a_cam2cam_through_an_edge_closes_its_two_pipes_when_it_stops(edge_private: StartPrivate) -> None:
    """Protects the sockets of a Cam2Cam sent through an edge: its two pipes (b's up toward a, a's
    from b) are opened for it and closed when it stops, so an edge's Cam2Cams do not each leave two
    UDP sockets bound until the daemons stop. The member's `unpublish` on b: both pipes close and
    release their ports, each node's count of pipes is back to what it was before the Cam2Cam (the
    show's own relay a -> b stays); sent again, on new pipes, the performer decodes it; the
    private's end: both close again. Red when an idle Cam2Cam pipe stays open."""
    run = await edge_private()
    a, b, pub, member = run.a, run.b, run.pub, run.member
    assert a.relays is not None and b.relays is not None
    ra, rb = a.relays, b.relays

    def pipes() -> tuple[int, int]:
        return len(ra.origin_pipes) + len(ra.edge_pipes), len(rb.origin_pipes) + len(rb.edge_pipes)

    before = pipes()
    show_relay = ra.origin_pipes["b"]
    await member.client.next_event("private.started")
    cam = await publish(ws(b), "anna", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    run.peers.append(cam)
    await pub.client.next_event("cam2cam.started")
    up, down = rb.origin_pipes["a"], ra.edge_pipes["b"]
    assert pipes() == (before[0] + 1, before[1] + 1)
    await member.client.request("unpublish")
    assert (await pub.client.next_event("cam2cam.ended"))["data"]["reason"] == "stopped"
    assert await wait_for(lambda: released(up) and released(down), 20), (up.closed, down.closed)
    assert pipes() == before and not show_relay.closed

    again = await publish(ws(b), "anna", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    run.peers.append(again)
    ids = [p["producer_id"] for p in again.producers]
    await pub.client.next_event("cam2cam.started")
    up, down = rb.origin_pipes["a"], ra.edge_pipes["b"]
    assert not up.closed and not down.closed
    perf_view = await subscribe(ws(a), "anna", client=pub.client, producer_ids=ids)
    run.peers.append(perf_view)
    assert await wait_for(lambda: perf_view.frames.get("video", 0) >= 5, 30)
    await pub.client.request("private.end")
    assert (await member.client.next_event("cam2cam.ended"))["data"]["member_id"] == "m1"
    assert await wait_for(lambda: released(up) and released(down), 20), (up.closed, down.closed)
    assert pipes() == before and not show_relay.closed
