"""Relays (issue 15): a producer on one router forwarded over an SRTP pipe to a
replica producer on another router, in one process over 127.0.0.1.

Real parts: an aiortc publisher on router A, an aiortc viewer on router B,
two :class:`PipeTransport` ends on UDP sockets of 127.0.0.1 with their own
keys. The viewer decodes frames that crossed A -> pipe -> B.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiortc import RTCSessionDescription

from bench.peers import PatternTrack, ToneTrack, new_pc, wait_for
from jasmin_codecs.rtcp import Pli, Remb, parse_rtcp
from jasmin_sfu.media.errors import InvalidStateError
from jasmin_sfu.media.pipe_transport import PipeTransport, describe, new_key
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.router import Router
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker
from tests.media.test_simulcast_switching import SSRCS
from tests.media.test_simulcast_switching import Publisher as SimulcastPublisher
from tests.media.test_simulcast_switching import make as make_simulcast
from tests.media.test_simulcast_switching import viewer as simulcast_viewer
from tests.support import make_consumer, make_producer


@pytest.fixture
async def worker() -> Any:
    w = Worker(MediaSettings())
    yield w
    await w.close()


async def published(router: Router) -> tuple[list[Producer], Any]:
    client = new_pc()
    client.addTransceiver(PatternTrack(), direction="sendonly")
    client.addTransceiver(ToneTrack(), direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    transport = router.create_transport("recv")
    answer, producers = await router.publish(transport, client.localDescription.sdp)
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return producers, client


async def watching(router: Router) -> tuple[Any, list[Any], dict[str, int], list[asyncio.Task[None]]]:
    """An aiortc viewer of every producer of ``router``, counting decoded frames by kind."""
    viewer = new_pc()
    frames: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []

    async def count(track: Any) -> None:
        try:
            while True:
                await track.recv()
                frames[track.kind] = frames.get(track.kind, 0) + 1
        except Exception:
            pass

    viewer.on("track", lambda track: tasks.append(asyncio.ensure_future(count(track))))
    transport = router.create_transport("send", {"audience_key": "v1"})
    offer, _ = await router.consume(transport)
    await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await viewer.setLocalDescription(await viewer.createAnswer())
    consumers = await router.accept_answer(transport, viewer.localDescription.sdp)
    return viewer, consumers, frames, tasks


async def pipe_pair(worker: Worker, silence_timeout_s: float = 10.0) -> tuple[PipeTransport, PipeTransport]:
    """An origin end and an edge end, bound on 127.0.0.1 and connected to each other."""
    s = worker.settings
    origin = PipeTransport(
        peer_node="b",
        role="origin",
        settings=s,
        stats=worker.stats,
        clock=worker.clock,
        silence_timeout_s=silence_timeout_s,
    )
    edge = PipeTransport(peer_node="a", role="edge", settings=s, stats=worker.stats, clock=worker.clock)
    oh, op = await origin.bind("127.0.0.1")
    eh, ep = await edge.bind("127.0.0.1")
    origin.connect(eh, ep, edge.local_key)
    edge.connect(oh, op, origin.local_key)
    return origin, edge


@dataclasses.dataclass
class Relay:
    """Router ``a``'s published show (its producers, the aiortc publisher ``pub``), a pipe pair and
    router ``b`` for the replicas; the viewers opened through :meth:`watch` are kept to be closed."""

    a: Router
    b: Router
    producers: list[Producer]
    pub: Any
    origin: PipeTransport
    edge: PipeTransport
    viewers: list[Any] = dataclasses.field(default_factory=list)
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    async def watch(self, router: Router) -> tuple[Any, list[Any], dict[str, int]]:
        """:func:`watching` ``router``: the viewer, its consumers and its decoded frames by kind."""
        viewer, consumers, frames, tasks = await watching(router)
        self.viewers.append(viewer)
        self.tasks += tasks
        return viewer, consumers, frames


StartRelay = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def relay(worker: Worker) -> AsyncIterator[StartRelay]:
    """``await relay(silence_timeout_s=...)``: routers show-a (published) and show-b, and a pipe pair
    (:func:`pipe_pair`); after the test its viewers, pipes and publisher are closed."""
    started: list[Relay] = []

    async def start(silence_timeout_s: float = 10.0) -> Relay:
        a = worker.create_router("show-a")
        b = worker.create_router("show-b")
        producers, pub = await published(a)
        origin, edge = await pipe_pair(worker, silence_timeout_s)
        started.append(Relay(a, b, producers, pub, origin, edge))
        return started[-1]

    yield start
    for r in started:
        for t in r.tasks:
            t.cancel()
        for v in r.viewers:
            await v.close()
        r.origin.close()
        r.edge.close()
        await r.pub.close()


def count_plis(pub: Any) -> list[int]:
    sender = next(t.sender for t in pub.getTransceivers() if t.kind == "video")
    counter = [0]
    original = sender._send_keyframe

    def counting() -> None:
        counter[0] += 1
        original()

    sender._send_keyframe = counting
    return counter


async def test_media_crosses_the_pipe_only_while_the_edge_has_viewers_and_a_pli_reaches_the_publisher(
    worker: Worker, relay: StartRelay
) -> None:
    """Protects the relay's media path: an aiortc viewer of router B decodes video and audio
    published on router A through the pipe's replica producers; nothing is sent on the pipe
    before B has a viewer, nor after its last viewer left; a keyframe request of B's viewer
    reaches A's publisher."""
    rel = await relay()
    b, producers, pub, origin, edge = rel.b, rel.producers, rel.pub, rel.origin, rel.edge
    replicas = [edge.add_replica(b, origin.offer(p)) for p in producers]
    assert {r.id for r in replicas} == set(b.producers) == {p.id for p in producers}
    assert {r.kind for r in replicas} == {"audio", "video"}
    await asyncio.sleep(0.5)
    assert origin.packets_out == 0, "nothing is relayed while the edge has no viewer"

    plis = count_plis(pub)
    viewer, consumers, frames = await rel.watch(b)
    ok = await wait_for(lambda: frames.get("video", 0) >= 10 and frames.get("audio", 0) >= 10, timeout=30)
    assert ok, (frames, origin.describe(), edge.describe(), dict(worker.stats.drops))
    assert origin.packets_out > 0 and edge.packets_in > 0
    assert all(p.relays for p in producers)

    # A viewer's PLI on B goes up the pipe to A's producer and on to the publisher.
    video_c = next(c for c in consumers if c.kind == "video")
    await asyncio.sleep(worker.settings.keyframe_request_interval_s + 0.1)
    before = plis[0]
    video_c.on_keyframe_request()
    assert await wait_for(lambda: plis[0] > before, timeout=10)

    # The last viewer leaves: the origin stops feeding the pipe.
    for t in rel.tasks:
        t.cancel()
    await viewer.close()
    for c in consumers:
        c.close()
    assert await wait_for(lambda: not any(p.relays for p in producers), timeout=10)
    sent = origin.packets_out
    await asyncio.sleep(0.5)
    assert origin.packets_out == sent


async def test_a_forged_packet_from_another_address_is_dropped_and_counted(worker: Worker) -> None:
    """Protects the pipe's address check: a datagram from any address but the connected peer's
    never reaches a replica; it is dropped and counted (relay_unknown_address)."""
    origin, edge = await pipe_pair(worker)
    try:
        assert edge.local is not None
        forged = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            forged.bind(("127.0.0.1", 0))
            rtp = bytes([0x80, 96, 0, 1]) + bytes(8) + b"x" * 100
            for _ in range(3):
                forged.sendto(rtp, edge.local)
        finally:
            forged.close()
        assert await wait_for(lambda: edge.dropped_unknown_address == 3, timeout=5)
        assert worker.stats.drops["relay_unknown_address"] == 3
        assert edge.packets_in == 0
    finally:
        origin.close()
        edge.close()


async def test_a_packet_under_another_key_is_dropped_and_counted(worker: Worker) -> None:
    """Protects the pipe's SRTP: an end connected with a wrong key for its peer unprotects
    nothing the peer sends (relay_srtp), so a replica never takes media it cannot authenticate."""
    origin, edge = await pipe_pair(worker)
    try:
        assert origin.local is not None
        edge.connect(origin.local[0], origin.local[1], new_key())  # not the origin's key
        origin._send_rtcp(b"\x80\xc9\x00\x01\x00\x00\x00\x01")  # an empty RR
        assert await wait_for(lambda: edge.dropped_srtp >= 1, timeout=5)
        assert edge.packets_in == 0
    finally:
        origin.close()
        edge.close()


async def test_roles_are_kept_apart(worker: Worker) -> None:
    """Protects the pipe's API: an edge offers nothing and an origin holds no replica, with a clear error."""
    s = worker.settings
    edge = PipeTransport(peer_node="a", role="edge", settings=s, stats=worker.stats, clock=worker.clock)
    origin = PipeTransport(peer_node="b", role="origin", settings=s, stats=worker.stats, clock=worker.clock)
    router = worker.create_router("show-roles")
    with pytest.raises(InvalidStateError):
        origin.add_replica(router, {"producer_id": "x" * 32})
    with pytest.raises(ValueError):
        PipeTransport(peer_node="a", role="proxy", settings=s, stats=worker.stats, clock=worker.clock)
    with pytest.raises(ValueError):
        edge.connect("127.0.0.1", 9, b"short")
    edge.close()
    origin.close()


async def test_an_edge_nack_never_gets_a_packet_from_while_its_relay_was_cut(worker: Worker, relay: StartRelay) -> None:
    """Protects a private across nodes after it ends: while the origin's audience excluded the relay
    (a private), the origin's cache kept the member's packets; once the relay is admitted again, an
    edge NACK for one of them is refused (counted), while a NACK for a packet of the relay's current
    stream is served from the cache."""
    rel = await relay()
    b, producers, origin, edge = rel.b, rel.producers, rel.origin, rel.edge
    replicas = {p.id: edge.add_replica(b, origin.offer(p)) for p in producers}
    _, _, frames = await rel.watch(b)
    assert await wait_for(lambda: frames.get("video", 0) >= 5, timeout=30), frames
    video = next(p for p in producers if p.kind == "video")
    replica = replicas[video.id]
    stats = worker.stats

    for p in producers:
        p.set_audience(frozenset({"the-member"}))  # the private: every relay cut
    cut_at = video.extended_max_seq
    assert await wait_for(lambda: video.extended_max_seq > cut_at + 10, timeout=10)
    for p in producers:
        p.set_audience(None)  # back to free chat: the relay restarts
    resumed_at = video.extended_max_seq
    assert await wait_for(lambda: video.extended_max_seq > resumed_at + 10, timeout=10)

    private_seq = (cut_at + 5) & 0xFFFF
    assert video.cache is not None and video.cache.get(private_seq) is not None
    refused = stats.nack_packets_refused
    replica.nack_upstream([private_seq])
    assert await wait_for(lambda: stats.nack_packets_refused == refused + 1, timeout=5)

    recent = (video.extended_max_seq - 2) & 0xFFFF
    served = stats.nack_packets_served
    replica.nack_upstream([recent])
    assert await wait_for(lambda: stats.nack_packets_served > served, timeout=5)


async def test_a_new_replica_takes_no_datagram_sent_toward_the_edge_before_it(
    worker: Worker, relay: StartRelay
) -> None:
    """Protects a private when an edge makes a new copy of a show (docs/cluster.md, "Privacy"): datagrams
    the origin sent toward the edge's old copy (a private's, for its member there) and that the network
    delays until the new copy's replicas exist and have a viewer never reach those replicas (so
    neither their viewers, nor their keyframe and NACK caches): each is dropped and counted
    (`relay_before_replica`), while the new copy's own stream flows. The delay is made, not waited
    for: the origin pipe's sends are held back, then handed to the edge pipe's own receive path.
    Red when the edge's new replica takes packets older than the `next_seq` of its description."""
    rel = await relay()
    old_copy, producers, origin, edge = rel.b, rel.producers, rel.origin, rel.edge
    udp = origin._udp
    assert udp is not None and origin.local is not None
    held: list[bytes] = []
    holding = [False]
    send = udp.sendto

    def sendto(data: bytes, addr: Any = None) -> None:
        if holding[0] and not 192 <= data[1] <= 223:  # RTP, not the pipe's RTCP
            held.append(data)
            return
        send(data, addr)

    udp.sendto = sendto  # type: ignore[method-assign]
    old = [edge.add_replica(old_copy, origin.offer(p)) for p in producers]
    _, _, frames = await rel.watch(old_copy)
    assert await wait_for(lambda: frames.get("video", 0) >= 5, timeout=30), frames
    holding[0] = True  # from here the network "delays" what the origin sends toward the edge
    assert await wait_for(lambda: len(held) >= 30, timeout=10)
    holding[0] = False
    for r in old:
        r.close()  # the edge's old copy ends
    assert await wait_for(lambda: not any(p.relays for p in producers), timeout=10)

    new_copy = worker.create_router("show-b2")
    new = [edge.add_replica(new_copy, origin.offer(p)) for p in producers]
    taken: list[tuple[int, int]] = []
    for r in new:
        on_rtp = r.on_rtp

        def recording(data: bytes, arrival_ms: int, layer: Any = None, on_rtp: Any = on_rtp) -> None:
            taken.append((int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big")))
            on_rtp(data, arrival_ms, layer)

        r.on_rtp = recording  # type: ignore[method-assign]
    _, _, frames2 = await rel.watch(new_copy)
    assert await wait_for(lambda: frames2.get("video", 0) >= 5, timeout=30), frames2

    dropped = worker.stats.drops.get("relay_before_replica", 0)
    before = len(taken)
    for data in held:
        edge._on_datagram(data, origin.local)  # the late datagrams land, through the pipe's own path
    stale = [t for t in taken[before:]]
    assert stale == [], f"{len(stale)} of {len(held)} datagrams sent before the new copy reached it"
    assert worker.stats.drops.get("relay_before_replica", 0) == dropped + len(held)


async def test_an_origin_stops_feeding_an_edge_that_went_silent(relay: StartRelay) -> None:
    """Protects the origin from relaying forever to a dead edge: once it has heard nothing from the
    edge for its silence timeout (the edge says what it wants every RTCP interval), every relay toward
    it stops and no more media is sent on the pipe."""
    rel = await relay(silence_timeout_s=1.5)
    b, producers, origin, edge = rel.b, rel.producers, rel.origin, rel.edge
    for p in producers:
        edge.add_replica(b, origin.offer(p))
    _, _, frames = await rel.watch(b)
    assert await wait_for(lambda: frames.get("video", 0) >= 3, timeout=30), frames
    edge.close()  # the edge dies without a word
    assert await wait_for(lambda: not origin.relaying and not any(p.relays for p in producers), timeout=10)
    sent = origin.packets_out
    await asyncio.sleep(0.5)
    assert origin.packets_out == sent


class _CountingRelay:
    """A RelaySink that only holds its estimate."""

    def __init__(self) -> None:
        self.audience_key = "relay:edge"
        self.remb = 0

    def relay_rtp(self, data: bytes, layer: Any) -> None:
        pass

    def relay_sr(self, layer: Any, ntp: int, rtp_ts: int) -> None:
        pass

    def restart(self) -> None:
        pass


def test_a_relay_counts_in_the_origins_remb_as_one_viewer_only_with_an_estimate_and_only_while_admitted() -> None:
    """Protects the REMB rule toward the performer (docs/media.md) with relays: an edge's estimate
    counts like a local viewer's; an edge with no estimate (0) counts as none, so the ceiling is not
    forced by default; a relay cut by a private's audience no longer counts."""
    p, _ = make_producer()
    relay = _CountingRelay()
    p.add_relay(relay)
    remb = p.remb(100_000, 2_000_000)
    assert remb is not None and remb.bitrate == 2_000_000  # nobody sent an estimate: the ceiling, as alone
    relay.remb = 600_000
    remb = p.remb(100_000, 2_000_000)
    assert remb is not None and remb.bitrate == 600_000
    p.set_audience(frozenset({"member"}))
    remb = p.remb(100_000, 2_000_000)
    assert remb is not None and remb.bitrate == 2_000_000


async def test_an_edge_sends_up_its_viewers_best_estimate_and_zero_without_one(worker: Worker) -> None:
    """Protects the edge's side of the REMB: the RTCP it sends up carries the best estimate of its
    viewers that count, and 0 (none) while none sent one, never the ceiling by default."""
    origin_p, _ = make_producer()
    edge = PipeTransport(peer_node="a", role="edge", settings=worker.settings, stats=worker.stats, clock=worker.clock)
    try:
        replica = edge.add_replica(worker.create_router("show-remb"), describe(origin_p))
        c, _ = make_consumer(replica, worker.stats)
        replica.add_consumer(c)

        def sent_remb() -> int:
            (remb,) = [x for x in parse_rtcp(edge._feedback(replica, 0.0)) if isinstance(x, Remb)]
            assert remb.ssrcs == (origin_p.ssrc,)
            return remb.bitrate

        assert sent_remb() == 0
        c.remb = 700_000
        assert sent_remb() == 700_000
    finally:
        edge.close()


async def test_simulcast_layers_are_relayed_by_ssrc_ranked_at_the_edge_and_a_layers_pli_goes_up(
    worker: Worker,
) -> None:
    """Protects simulcast through a relay: an origin producer with three VP8 layers (one of them
    learnt only after the edge opened the relay: its SSRC arrives by JMAP) is replicated with its
    layers; every layer's packets reach its replica layer by SSRC, the edge ranks them by the
    keyframes' picture size as the origin does, and a keyframe request for one replica layer comes
    back as a PLI for that layer's SSRC at the origin."""
    p, _, rtcp_out = make_simulcast()
    late = p.layer_by_rid("f")
    assert late is not None
    late_ssrc, late.ssrc = late.ssrc, None  # not learnt yet when the edge opens the relay
    origin, edge = await pipe_pair(worker)
    try:
        replica = edge.add_replica(worker.create_router("show-sim"), origin.offer(p))
        assert replica.simulcast and [lay.rid for lay in replica.all_layers] == ["f", "q", "h"]
        assert replica.layer_by_rid("f").ssrc is None  # type: ignore[union-attr]
        late.ssrc = late_ssrc
        c, sink = simulcast_viewer(replica, worker.stats)
        assert await wait_for(lambda: bool(p.relays), timeout=5)  # the edge asked for it (JWNT)
        pub = SimulcastPublisher(p)
        for i in range(20):
            pub.frame(keys=frozenset({"q", "h", "f"}) if i % 5 == 0 else frozenset())
            await asyncio.sleep(0.01)
        assert await wait_for(lambda: all(replica.layer_by_rid(r).packets >= 30 for r in "qhf"), 5)  # type: ignore[union-attr]
        assert replica.layer_by_rid("f").ssrc == late_ssrc  # type: ignore[union-attr]
        assert [info.rid for info in replica.layers] == ["q", "h", "f"]  # ranked by picture size
        assert sink.sent, "the edge's viewer got the relayed layer"

        rtcp_out.clear()
        h = replica.layer_by_rid("h")
        await asyncio.sleep(worker.settings.keyframe_request_interval_s + 0.1)
        replica.request_keyframe(h)

        def plis_for_h() -> list[Pli]:
            return [x for b in rtcp_out for x in parse_rtcp(b) if isinstance(x, Pli) and x.media_ssrc == SSRCS["h"]]

        assert await wait_for(lambda: bool(plis_for_h()), timeout=5)
        c.close()
    finally:
        origin.close()
        edge.close()
