"""RTCP behaviour over loopback: NACKs from the cache, keyframe requests, SR and RR."""

from __future__ import annotations

from typing import Any

from bench.peers import publish, ssrc_of, subscribe, wait_for
from jasmin_codecs.rtcp import Pli


def count_plis(pub: Any) -> list[int]:
    """Count keyframe requests reaching the publisher's video sender."""
    sender = next(t.sender for t in pub.pc.getTransceivers() if t.kind == "video")
    counter = [0]
    original = sender._send_keyframe

    def counting() -> None:
        counter[0] += 1
        original()

    sender._send_keyframe = counting
    return counter


async def test_packets_lost_on_a_viewer_leg_are_retransmitted_from_the_cache(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects NACK handling: the viewer's NACKs are answered from the producer's cache,
    with the viewer's own sequence numbers, without asking the publisher."""
    pub = await publish(daemon.url, "show-nack")
    viewer = await subscribe(daemon.url, "show-nack", count=True, pass_through=True)
    counter = viewer.counter
    assert counter is not None
    counter.keep_seqs = True
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 5, timeout=20)
    video = ssrc_of(viewer.pc, "video")
    counter.drop_next[video] = 4
    assert await wait_for(lambda: len(counter.dropped) == 4, timeout=10)
    dropped = {seq for _, seq in counter.dropped}
    assert await wait_for(lambda: dropped <= counter.seqs[video], timeout=10), (dropped, sorted(counter.seqs[video])[-20:])
    stats = daemon.daemon.worker.stats
    assert stats.nacks_received >= 1
    assert stats.nack_packets_served >= 4
    assert stats.nack_packets_missed == 0
    frames = viewer.frames["video"]
    assert await wait_for(lambda: viewer.frames["video"] > frames + 5, timeout=10)
    await viewer.close()
    await pub.close()


async def test_a_joining_viewer_triggers_a_keyframe_request(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects time to first frame: subscribing sends a PLI upstream at once."""
    pub = await publish(daemon.url, "show-pli")
    plis = count_plis(pub)
    first = await subscribe(daemon.url, "show-pli")
    assert await wait_for(lambda: first.frames.get("video", 0) >= 3, timeout=20)
    assert await wait_for(lambda: plis[0] >= 1, timeout=5)
    before = plis[0]
    second = await subscribe(daemon.url, "show-pli")
    assert await wait_for(lambda: plis[0] > before, timeout=10)
    assert await wait_for(lambda: second.frames.get("video", 0) >= 3, timeout=20)
    await first.close()
    await second.close()
    await pub.close()


async def test_keyframe_requests_are_throttled_per_producer(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the publisher from PLI floods: a burst of 10 viewer PLIs inside one
    throttle window reaches the publisher as one request now and one deferred."""
    d = await make_daemon(keyframe_request_interval_ms=1500)
    pub = await publish(d.url, "show-throttle")
    viewer = await subscribe(d.url, "show-throttle")
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 3, timeout=20)
    plis = count_plis(pub)
    stats = d.daemon.worker.stats
    # Let any join-time request window pass, then burst.
    await wait_for(lambda: False, timeout=1.6)
    base_sent = stats.keyframe_requests_sent
    dtls = viewer.pc.getTransceivers()[0].receiver.transport
    media_ssrc = ssrc_of(viewer.pc, "video")
    for _ in range(10):
        await dtls._send_rtp(Pli(sender_ssrc=1234, media_ssrc=media_ssrc).to_bytes())
    assert await wait_for(lambda: stats.plis_received >= 10, timeout=5)
    assert await wait_for(lambda: stats.keyframe_requests_sent == base_sent + 2, timeout=5)
    # Nothing more arrives once the deferred request went out.
    await wait_for(lambda: False, timeout=2.0)
    assert stats.keyframe_requests_sent == base_sent + 2
    assert stats.keyframe_requests_coalesced >= 8
    assert plis[0] == 2
    await viewer.close()
    await pub.close()


async def test_sender_reports_reach_viewers_and_receiver_reports_reach_the_publisher(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects RTCP toward both ends: viewers get SRs describing forwarded media (lip sync,
    RTT) and the publisher gets RRs (loss) plus a REMB, from the SFU's own SSRC."""
    pub = await publish(daemon.url, "show-reports")
    viewer = await subscribe(daemon.url, "show-reports")

    async def stat(pc: Any, kind: str) -> list[Any]:
        report = await pc.getStats()
        return [s for s in report.values() if s.type == kind]

    async def viewer_has_sr() -> bool:
        return any(s.packetsSent > 0 for s in await stat(viewer.pc, "remote-outbound-rtp"))

    async def publisher_has_rr() -> bool:
        return any(s.packetsReceived > 0 for s in await stat(pub.pc, "remote-inbound-rtp"))

    for check in (viewer_has_sr, publisher_has_rr):
        ok = False
        for _ in range(100):
            if await check():
                ok = True
                break
            await wait_for(lambda: False, timeout=0.1)
        assert ok, check.__name__
    await viewer.close()
    await pub.close()
