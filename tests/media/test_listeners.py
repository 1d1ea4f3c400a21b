"""Children tell their parents through listener protocols (issue 12, the media seams).

Each test builds the real object tree (Worker -> Router -> WebRtcTransport ->
Producer/Consumer) from a real aiortc peer's offer and answer over loopback
(no media flows: only SDP and candidate gathering on 127.0.0.1), closes one
child by its own ``close()`` and requires every parent to have forgotten it,
once. Before the listeners, only closes driven from the parent reached the
parent's dicts, so a child closed on its own was left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiortc import RTCSessionDescription

from bench.peers import PatternTrack, ToneTrack, new_pc
from jasmin_sfu.media.consumer import Consumer, ConsumerListener
from jasmin_sfu.media.errors import InvalidStateError
from jasmin_sfu.media.producer import Producer, ProducerListener
from jasmin_sfu.media.router import Router, RouterListener
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.transport import TransportListener, WebRtcTransport
from jasmin_sfu.media.worker import Worker


async def published(worker: Worker) -> tuple[Router, WebRtcTransport, list[Producer], Any]:
    """A router with a publisher transport and its audio and video producers."""
    router = worker.create_router("show-listeners")
    client = new_pc()
    client.addTransceiver(PatternTrack(), direction="sendonly")
    client.addTransceiver(ToneTrack(), direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    transport = router.create_transport("recv")
    answer, producers = await router.publish(transport, client.localDescription.sdp)
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return router, transport, producers, client


async def consumed(router: Router) -> tuple[WebRtcTransport, list[Consumer], Any]:
    """A viewer transport whose consumers the router holds (offer, real answer, accept)."""
    viewer = new_pc()
    transport = router.create_transport("send", {"audience_key": "v1"})
    offer, _ = await router.consume(transport)
    await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await viewer.setLocalDescription(await viewer.createAnswer())
    consumers = await router.accept_answer(transport, viewer.localDescription.sdp)
    return transport, consumers, viewer


@pytest.fixture
async def worker() -> Any:
    w = Worker(MediaSettings())
    yield w
    await w.close()


def test_the_parents_implement_the_listener_protocols() -> None:
    """Protects the seam's types: each parent structurally is what its children call (mypy checks
    the calls; this names the pairs so a renamed method fails here too)."""
    pairs: list[tuple[type, type]] = [
        (Worker, RouterListener),
        (Router, TransportListener),
        (WebRtcTransport, ProducerListener),
        (WebRtcTransport, ConsumerListener),
        (Producer, ConsumerListener),
    ]
    for parent, protocol in pairs:
        wanted = [n for n in vars(protocol) if n.startswith("on_")]
        assert wanted and all(callable(getattr(parent, n, None)) for n in wanted), (parent, protocol)


async def test_a_producer_closed_by_itself_is_forgotten_by_its_transport_and_router(worker: Worker) -> None:
    """Protects ProducerListener and TransportListener.on_transport_producer_closed: the transport
    drops the producer and its SSRC routes, the router drops it and its observers hear "removed"
    exactly once, and the producer's consumers close with it."""
    router, transport, producers, client = await published(worker)
    viewer_t, consumers, viewer = await consumed(router)
    removed: list[str] = []
    router.observe(lambda what, p: removed.append(what + ":" + p.id) if what == "removed" else None)
    video = next(p for p in producers if p.kind == "video")
    try:
        video.close()
        video.close()
        assert video.id not in transport.producers and video.id not in router.producers
        assert video.ssrc not in transport._by_ssrc and video.rtx_ssrc not in transport._by_ssrc
        assert removed == ["removed:" + video.id]
        mine = [c for c in consumers if c.producer is video]
        assert mine and all(c.closed for c in mine)
        assert all(c.id not in router.consumers and c.id not in viewer_t.consumers for c in mine)
        assert len(router.producers) == 1 and len(router.consumers) == len(consumers) - len(mine)
    finally:
        await client.close()
        await viewer.close()


async def test_a_consumer_closed_by_itself_is_forgotten_by_its_producer_transport_and_router(
    worker: Worker,
) -> None:
    """Protects ConsumerListener (producer and transport) and on_transport_consumer_closed: a
    consumer that closes leaves the producer's fan-out, the viewer transport and the router."""
    router, _, producers, client = await published(worker)
    viewer_t, consumers, viewer = await consumed(router)
    try:
        c = consumers[0]
        c.close()
        assert c.id not in c.producer.consumers and c not in c.producer._py
        assert c.id not in viewer_t.consumers and c.ssrc not in viewer_t._consumer_by_ssrc
        assert c.id not in router.consumers
        assert all(o.id in router.consumers for o in consumers[1:])
        with pytest.raises(InvalidStateError):
            c.pause()
    finally:
        await client.close()
        await viewer.close()


async def test_a_transport_closed_by_itself_is_forgotten_by_its_router(worker: Worker) -> None:
    """Protects TransportListener.on_transport_closed: the router drops the transport and, through
    the producers' listeners, every producer it carried; using it afterwards raises."""
    router, transport, producers, client = await published(worker)
    try:
        await transport.close()
        assert transport.id not in router.transports
        assert router.producers == {} and all(p.closed for p in producers)
        with pytest.raises(InvalidStateError):
            await transport.publish("v=0\r\n")
    finally:
        await client.close()


async def test_a_router_closed_by_itself_is_forgotten_by_its_worker(worker: Worker) -> None:
    """Protects RouterListener: a router that closes (a show ending) leaves the worker's dict, its
    children are closed once, and the router refuses use after close."""
    router, transport, producers, client = await published(worker)
    try:
        await router.close()
        assert "show-listeners" not in worker.routers
        assert transport.closed and all(p.closed for p in producers)
        assert router.transports == {} and router.producers == {} and router.consumers == {}
        assert worker.counts() == {"routers": 0, "transports": 0, "producers": 0, "consumers": 0}
        with pytest.raises(InvalidStateError):
            router.create_transport("recv")
    finally:
        await client.close()
