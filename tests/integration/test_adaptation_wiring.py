"""The router runs each simulcast viewer's adaptation (issue 12): over real aiortc legs
(ICE, DTLS, SRTP on 127.0.0.1), a crafted three-layer VP8 simulcast publisher (as in
tests/media/test_simulcast_ingest.py) and a real aiortc viewer whose REMB is sent by
the viewer itself, through its own SRTCP session.

The policy's holds are shortened (the selector's timing has its own tests in
tests/media/test_layer_selector.py); what is protected here is the wiring: the
router creates the adaptation, ticks it from its RTCP loop, the consumer follows
the selector rather than the producer's default, and the adaptation goes with its
consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from jasmin_codecs.rtcp import Remb
from jasmin_codecs.rtp import build_extensions, build_rtp, parse_rtp

from bench.peers import PatternTrack, new_pc, wait_for
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media.adaptation_policy import AdaptationPolicy
from jasmin_sfu.media.sdp_info import MID_URI, sections
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker
from tests.media.test_simulcast_ingest import RID_ID, SIZES, SSRCS, simulcast_offer

# Payload bytes per frame of each layer: about 40, 130 and 270 kbit/s at 30 frames/s,
# so a 120 kbit/s REMB (80 kbit/s of video budget) fits only "q".
BODY = {"q": 120, "h": 500, "f": 1100}
LOW_REMB, HIGH_REMB = 120_000, 2_000_000


def fast_worker() -> Worker:
    """A worker with a 200 ms RTCP tick and a quick adaptation policy (probe_stall_s is no [media] key)."""
    fast = AdaptationPolicy(
        up_hold_s=0.6, min_dwell_s=0.4, probe_interval_s=1.0, probe_duration_s=2.0, probe_stall_s=1.0, backoff_max_s=2.0
    )
    fast.validate()
    return Worker(MediaSettings(rtcp_interval_ms=200, layer_adaptation=True), adaptation=fast)


class Publisher:
    """Crafted VP8 simulcast frames at 30/s, a keyframe of every layer each 10 frames."""

    def __init__(self, sink: Any, pt: int, mid_id: int) -> None:
        self.sink, self.pt, self.mid_id = sink, pt, mid_id
        self.seq = {"f": 1000, "q": 2000, "h": 3000}
        self.ts = {"f": 5, "q": 900_000, "h": 4_000_000_000}
        self.pid = {"f": 100, "q": 7000, "h": 30000}
        self.n = 0

    def frame(self) -> None:
        key = self.n % 10 == 0
        for rid in ("f", "q", "h"):
            pid = self.pid[rid]
            desc = bytes([0x90, 0x80, 0x80 | (pid >> 8), pid & 0xFF])
            head = (b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", *SIZES[rid])) if key else b"\x11\x02\x00"
            profile, ext_body = build_extensions([(self.mid_id, b"0"), (RID_ID, rid.encode())])
            section = struct.pack("!HH", profile, len(ext_body) // 4) + ext_body
            body = head + bytes(BODY[rid]) + rid.encode()
            self.sink.send(
                build_rtp(
                    marker=True,
                    payload_type=self.pt,
                    sequence=self.seq[rid],
                    timestamp=self.ts[rid],
                    ssrc=SSRCS[rid],
                    payload=desc + body,
                    ext_section=section,
                )
            )
            self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
            self.ts[rid] = (self.ts[rid] + 3000) & 0xFFFFFFFF
            self.pid[rid] = (pid + 1) & 0x7FFF
        self.n += 1

    async def run(self) -> None:
        while True:
            self.frame()
            await asyncio.sleep(1 / 30)


@pytest.fixture
async def worker() -> Any:
    w = fast_worker()
    yield w
    await w.close()


async def test_a_viewer_whose_remb_falls_gets_a_lower_layer_and_climbs_back(worker: Any) -> None:
    """Protects the router's wiring of ViewerAdaptation: a simulcast video viewer gets an
        adaptation (and stops following the producer's default layer); the RTCP loop ticks it,
        so when the viewer's own REMB falls to 120 kbit/s it is moved to the lowest layer
        (its RTP carries the "q" stream), and when its REMB rises to 2 Mbit/s it climbs back
        to the top layer ("f"), in one SSRC; the transport's layer listeners hear each change
    once; closing the consumer removes and closes its
        adaptation. Red if the router does not create, tick or drop the adaptation."""
    router = worker.create_router("show-adapt")
    client = new_pc()
    tv = client.addTransceiver(PatternTrack(), direction="sendonly")
    vp8 = [c for c in adapter.RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
    tv.setCodecPreferences(vp8)
    await client.setLocalDescription(await client.createOffer())
    transport = router.create_transport("recv")
    answer, (producer,) = await router.publish(transport, simulcast_offer(client.localDescription.sdp))
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    (sec,) = sections(answer)
    sink = adapter.SrtpSink(tv.sender.transport)
    assert await wait_for(lambda: sink.ready, timeout=20)
    pub = Publisher(sink, int(sec.media_codec.payloadType or 0), sec.extensions[MID_URI])  # type: ignore[union-attr]
    tasks = [asyncio.get_running_loop().create_task(pub.run())]

    viewer = new_pc()
    try:
        assert await wait_for(lambda: all(i.ssrc is not None for i in producer.layers), timeout=10)
        vt = router.create_transport("send", {"audience_key": "v1"})
        told: list[int | None] = []
        vt.on_layer.append(lambda c, layer: told.append(None if layer is None else layer.spatial))
        offer, _ = await router.consume(vt, [producer.id])
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await viewer.setLocalDescription(await viewer.createAnswer())
        (consumer,) = await router.accept_answer(vt, viewer.localDescription.sdp)
        adaptation = router.adaptations[consumer.id]
        assert adaptation.consumer is consumer and not consumer.follow_default

        got: list[bytes] = []
        vdtls = viewer.getTransceivers()[0].receiver.transport
        adapter.install_taps(vdtls, lambda d, ms: got.append(d) or True, lambda d: None)
        media = lambda: [d for d in got if parse_rtp(d).payload_end > parse_rtp(d).payload_offset]
        assert await wait_for(lambda: consumer.sink.ready, timeout=20)
        # Before its first REMB the viewer is estimated at 600 kbit/s: the top layer fits.
        assert await wait_for(lambda: bool(media()) and media()[-1].endswith(b"f"), timeout=10)
        assert await wait_for(lambda: worker.stats.layer_decisions["start"] >= 1, timeout=10)
        assert adaptation.selector.target is not None and adaptation.selector.target[0] == 2

        remb = [LOW_REMB]
        vsink = adapter.SrtpSink(vdtls)
        assert await wait_for(lambda: vsink.ready, timeout=10)

        async def send_remb() -> None:
            while True:
                vsink.send_rtcp(Remb(sender_ssrc=0x1234, bitrate=remb[0], ssrcs=(consumer.ssrc,)).to_bytes())
                await asyncio.sleep(0.1)

        tasks.append(asyncio.get_running_loop().create_task(send_remb()))
        assert await wait_for(lambda: consumer.remb and consumer.remb <= LOW_REMB, timeout=10)
        assert await wait_for(lambda: media()[-1].endswith(b"q"), timeout=20)
        assert consumer.current_layer is not None and consumer.current_layer.spatial == 0
        assert adaptation.estimate_bps <= LOW_REMB

        remb[0] = HIGH_REMB
        assert await wait_for(lambda: media()[-1].endswith(b"f"), timeout=30)
        assert consumer.current_layer is not None and consumer.current_layer.spatial == 2
        hdrs = [parse_rtp(d) for d in got]
        assert len({h.ssrc for h in hdrs}) == 1
        # The transport's listeners (the viewer's session: consumer.layer) heard top, low, top.
        assert await wait_for(lambda: told[-1:] == [2], timeout=5)
        assert told[0] == 2 and 0 in told and told.index(0) < len(told) - 1
        assert all(a != b for a, b in itertools.pairwise(told))  # only changes are told
        assert worker.stats.layer_decisions["down"] >= 1 and worker.stats.layer_decisions["up"] >= 1

        consumer.close()
        assert consumer.id not in router.adaptations and consumer.id not in router.consumers
        assert adaptation.closed and not adaptation.probing
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await viewer.close()
        await client.close()


async def test_a_single_layer_viewer_keeps_audio_first_and_router_close_drops_adaptations(worker: Any) -> None:
    """Protects the split of duties: a plain (single-layer) publisher's viewers get no
    adaptation and keep following the producer (audio first's check_link stays their
    pause); closing the router closes every adaptation and cancels the pacing task."""
    router = worker.create_router("show-adapt-plain")
    client = new_pc()
    client.addTransceiver(PatternTrack(), direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    transport = router.create_transport("recv")
    answer, (producer,) = await router.publish(transport, client.localDescription.sdp)
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    viewer = new_pc()
    try:
        vt = router.create_transport("send", {"audience_key": "v1"})
        offer, _ = await router.consume(vt, [producer.id])
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await viewer.setLocalDescription(await viewer.createAnswer())
        (consumer,) = await router.accept_answer(vt, viewer.localDescription.sdp)
        assert not producer.simulcast and consumer.follow_default
        assert router.adaptations == {}
        pace = router._pace_task
        assert pace is not None and not pace.done()
        await router.close()
        await asyncio.sleep(0)
        assert pace.cancelled() or pace.done()
    finally:
        await viewer.close()
        await client.close()


async def test_without_layer_adaptation_a_simulcast_viewer_follows_the_default_layer() -> None:
    """Protects the switch media.layer_adaptation = false: a simulcast video viewer gets no
    adaptation and keeps following the producer's highest active layer within its cap, as
    before the wiring."""
    w = Worker(MediaSettings(layer_adaptation=False))
    client, viewer = new_pc(), new_pc()
    try:
        router = w.create_router("show-adapt-off")
        client.addTransceiver(PatternTrack(), direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        transport = router.create_transport("recv")
        answer, (producer,) = await router.publish(transport, simulcast_offer(client.localDescription.sdp))
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        vt = router.create_transport("send", {"audience_key": "v1"})
        offer, _ = await router.consume(vt, [producer.id])
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await viewer.setLocalDescription(await viewer.createAnswer())
        (consumer,) = await router.accept_answer(vt, viewer.localDescription.sdp)
        assert producer.simulcast and consumer.follow_default
        assert router.adaptations == {}
    finally:
        await viewer.close()
        await client.close()
        await w.close()
