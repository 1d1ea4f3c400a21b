"""VP8 temporal layers over real aiortc legs (ICE, DTLS, SRTP on 127.0.0.1; issue 12).

aiortc's encoder has no temporal layers, so the publisher's RTP is crafted and sent through
its peer's real SRTP session, on the SSRC of its offer (its track never yields a frame, so
aiortc sends no media of its own): an L1T3-shaped VP8 stream whose TID 0 frames are one
real VP8 encoding (each references only the TID 0 frames before it, as libwebrtc's T0
does) and whose TID 1/2 frames are frames of another encoding. A viewer capped with
max_temporal = 0 must get exactly the TID 0 frames, in a stream aiortc's own jitter buffer
and VP8 decoder turn into the pictures of that encoding, frame for frame.
"""

from __future__ import annotations

import asyncio
import fractions
import re
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.codecs import get_capabilities
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from av.codec.context import CodecContext

from bench.peers import new_pc, wait_for
from jasmin_codecs.rtp import build_rtp, parse_rtp
from jasmin_codecs.vp8 import parse_vp8_descriptor
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media.sdp_info import sections
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker

W, H = 160, 120
L1T3 = (0, 2, 1, 2)
FRAMES = 48


class SilentTrack(MediaStreamTrack):
    """A video track that never yields a frame: aiortc sends no media of its own."""

    kind = "video"

    async def recv(self) -> VideoFrame:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover


def encode(n: int, seed: int) -> list[bytes]:
    """``n`` frames of one VP8 encoding (the first a keyframe) of a moving random picture."""
    ctx = CodecContext.create("libvpx", "w")
    ctx.width, ctx.height = W, H
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.bit_rate = 300_000
    ctx.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    rng = np.random.default_rng(seed)
    base = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    out: list[bytes] = []
    for i in range(n):
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, 4 * i, axis=1)), format="rgb24")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame.reformat(format="yuv420p"))]
    assert len(out) == n
    return out


def decode(frames: list[bytes]) -> list[np.ndarray]:
    ctx = CodecContext.create("libvpx", "r")
    out = []
    for data in frames:
        for f in ctx.decode(av.Packet(data)):
            out.append(f.to_ndarray(format="yuv420p"))
    return out


class L1T3Sender:
    """Crafted VP8 RTP with temporal layers through the publisher's SRTP session."""

    def __init__(self, sink: Any, pt: int, ssrc: int) -> None:
        self.sink, self.pt, self.ssrc = sink, pt, ssrc
        self.seq, self.ts, self.pid, self.tl0 = 65500, 1000, 32700, 250
        self.n = 0

    def frame(self, data: bytes, tid: int) -> None:
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        chunks = [data[i : i + 400] for i in range(0, len(data), 400)]
        for i, chunk in enumerate(chunks):
            desc = bytes(
                [
                    0x90 if i == 0 else 0x80,
                    0xE0,
                    0x80 | self.pid >> 8,
                    self.pid & 0xFF,
                    self.tl0,
                    tid << 6 | (0x20 if tid and self.n < 4 else 0),
                ]
            )
            self.sink.send(
                build_rtp(
                    marker=i == len(chunks) - 1,
                    payload_type=self.pt,
                    sequence=self.seq,
                    timestamp=self.ts,
                    ssrc=self.ssrc,
                    payload=desc + chunk,
                    ext_section=b"",
                )
            )
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.pid = (self.pid + 1) & 0x7FFF
        self.n += 1


@pytest.fixture
async def worker() -> Any:
    w = Worker(MediaSettings())
    yield w
    await w.close()


async def test_a_viewer_capped_at_t0_gets_a_quarter_of_the_frames_and_decodes_them(worker: Any) -> None:
    """Protects temporal-layer dropping end to end: with max_temporal = 0 (what
    consumer.set_layers sets) a real aiortc viewer of an L1T3 VP8 publisher receives only
    the TID 0 frames, a quarter, with consecutive sequence numbers and picture ids, and its
    own decoder outputs exactly the pictures of the TID 0 encoding (no frame lost, none
    corrupted by a missing reference)."""
    t0 = encode(FRAMES // 4, seed=1)
    other = encode(FRAMES + 1, seed=2)[1:]  # deltas of another encoding, for TID 1 and 2
    expected = decode(t0)

    router = worker.create_router("show-l1t3")
    client = new_pc()
    tv = client.addTransceiver(SilentTrack(), direction="sendonly")
    tv.setCodecPreferences([c for c in get_capabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")])
    await client.setLocalDescription(await client.createOffer())
    offer = client.localDescription.sdp
    ssrc = int(re.search(r"a=ssrc:(\d+) ", offer).group(1))  # type: ignore[union-attr]
    transport = router.create_transport("recv")
    answer, (producer,) = await router.publish(transport, offer)
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    (sec,) = sections(answer)
    sink = adapter.SrtpSink(tv.sender.transport)
    assert await wait_for(lambda: sink.ready, timeout=20)

    viewer = new_pc()
    pictures: list[np.ndarray] = []
    tasks: list[asyncio.Task[None]] = []

    async def read(track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, VideoFrame)
            pictures.append(frame.to_ndarray(format="yuv420p"))

    viewer.on("track", lambda track: tasks.append(asyncio.ensure_future(read(track))))
    vt = router.create_transport("send", {"audience_key": "v1"})
    offer2, _ = await router.consume(vt, [producer.id])
    await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer2, type="offer"))
    await viewer.setLocalDescription(await viewer.createAnswer())
    (consumer,) = await router.accept_answer(vt, viewer.localDescription.sdp)
    got: list[bytes] = []

    def tap(data: bytes, arrival_ms: int) -> bool:
        got.append(data)
        return False  # aiortc gets it too, and decodes it

    adapter.install_taps(viewer.getTransceivers()[0].receiver.transport, tap, lambda d: None)
    assert await wait_for(lambda: consumer.sink.ready, timeout=20)
    consumer.set_layer_caps(None, 0)

    sender = L1T3Sender(sink, int(sec.media_codec.payloadType or 0), ssrc)  # type: ignore[union-attr]
    for i in range(FRAMES):
        tid = L1T3[i % 4]
        sender.frame(t0[i // 4] if tid == 0 else other[i], tid)
        await asyncio.sleep(0.005)
    sender.frame(other[0], 2)  # one more frame, so the last T0 one counts as complete
    assert await wait_for(lambda: len(pictures) >= len(expected) - 1, timeout=15)
    await asyncio.sleep(0.3)
    for t in tasks:
        t.cancel()

    media = [d for d in got if parse_rtp(d).payload_end > parse_rtp(d).payload_offset]
    hdrs = [parse_rtp(d) for d in media]
    descs = [parse_vp8_descriptor(d[h.payload_offset :]) for d, h in zip(media, hdrs)]
    assert {d.temporal_id for d in descs} == {0}
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in zip(hdrs, hdrs[1:]))
    pids = [d.picture_id for d in descs if d.start_of_partition]
    assert len(pids) == FRAMES // 4
    assert all(a is not None and b is not None and (b - a) & 0x7FFF == 1 for a, b in zip(pids, pids[1:]))
    assert producer.temporal and worker.stats.temporal_packets_dropped > 0
    assert len(pictures) in (len(expected) - 1, len(expected))
    for mine, ref in zip(pictures, expected):
        assert np.array_equal(mine, ref)
    await viewer.close()
    await client.close()
