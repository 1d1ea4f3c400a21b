"""A simulcast publisher over a real aiortc leg (ICE, DTLS, SRTP on 127.0.0.1), and the
refusals of bad simulcast offers (issue 12).

aiortc cannot send simulcast, so the publisher is an aiortc peer whose offer is rewritten
as Chromium writes one (no a=ssrc, the RID and repaired-RID extmaps, a=rid and
a=simulcast), and whose RTP is crafted: three VP8 streams on SSRCs the node was never
told, each naming its RID in the header extension, sent through the peer's real SRTP
session. The viewer is a real aiortc peer; its decrypted RTP is tapped before aiortc.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from bench.peers import PatternTrack, new_pc, wait_for
from jasmin_codecs.rtp import build_extensions, build_rtp, parse_rtp
from jasmin_codecs.simulcast import REPAIRED_RID_URI, RID_URI
from jasmin_codecs.vp8 import parse_vp8_descriptor
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media.errors import SdpError
from jasmin_sfu.media.sdp_info import MID_URI, sections
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker

FIXTURE = Path(__file__).resolve().parent.parent / "codecs" / "sdp" / "chromium_156_simulcast_video.sdp"
SESSION = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
SIZES = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
SSRCS = {"f": 0x0F0F0001, "q": 0x0F0F0002, "h": 0x0F0F0003}
RID_ID, RRID_ID = 10, 11


def chromium_offer(**replace: str) -> str:
    """The stored Chromium 156 simulcast offer, lines replaced by prefix (value '' drops the line)."""
    lines = FIXTURE.read_text().splitlines()
    out = []
    for line in lines:
        key = next((k for k in replace if line.startswith(k)), None)
        if key is None:
            out.append(line)
        elif replace[key]:
            out.extend(replace[key].split("\n"))
    return SESSION + "\r\n".join(out) + "\r\n"


def test_the_chromium_offer_reads_as_three_layers() -> None:
    """Protects reading a real browser's simulcast offer: three RIDs in its order, and its RID extmap id."""
    (video,) = sections(chromium_offer())
    assert video.simulcast is not None and video.simulcast.rids == ("h", "m", "l")
    assert video.extensions[RID_URI] == 10 and video.extensions[REPAIRED_RID_URI] == 11


@pytest.mark.parametrize(
    "replace,words",
    [
        ({"a=simulcast:": "a=simulcast:send h;;l"}, "a=simulcast"),
        ({"a=simulcast:": "a=simulcast:send h;m;x"}, "'x' has no a=rid"),
        ({"a=rid:m": "a=rid:m sideways"}, "a=rid:m"),
        ({"a=rid:l": "a=rid:l send\na=rid:x send", "a=simulcast:": "a=simulcast:send h;m;l;x"}, "at most 3"),
        ({"a=rid:h": "a=rid:h-1 send", "a=simulcast:": "a=simulcast:send h-1;m;l"}, "'-' and '_'"),
        ({"a=rid:h": "a=rid:abcdefghijklmnopq send", "a=simulcast:": "a=simulcast:send abcdefghijklmnopq;m;l"}, "1-16"),
    ],
)
def test_bad_simulcast_offers_are_sdp_errors_naming_the_problem(replace: dict[str, str], words: str) -> None:
    """Protects the bad_sdp refusals: a malformed a=simulcast or a=rid, more than 3 layers, a RID
    with '-' or '_' or longer than 16 characters (Chromium refuses those) are SdpError (the
    signaling answer bad_sdp) with a message naming the problem, never a crash."""
    with pytest.raises(SdpError, match=re.escape(words)):
        sections(chromium_offer(**replace))


def simulcast_offer(sdp: str, rids: tuple[str, ...] = ("f", "q", "h"), rid_extmap: bool = True) -> str:
    """An aiortc offer rewritten as a browser's simulcast offer (video section only)."""
    out = []
    video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            video = line.startswith("m=video")
        if video and (line.startswith("a=ssrc") or line.startswith("a=msid")):
            continue
        out.append(line)
        if video and line.startswith("a=mid:"):
            if rid_extmap:
                out.append(f"a=extmap:{RID_ID} {RID_URI}")
            out.append(f"a=extmap:{RRID_ID} {REPAIRED_RID_URI}")
            out.extend(f"a=rid:{r} send" for r in rids)
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(out)


@pytest.fixture
async def worker() -> Any:
    w = Worker(MediaSettings())
    yield w
    await w.close()


async def test_an_operator_can_refuse_simulcast_and_an_offer_needs_the_rid_extmap() -> None:
    """Protects media.simulcast = false (a simulcast offer is bad_sdp "simulcast is disabled")
    and the refusal of a simulcast offer whose layers could not be told apart (no RID extmap)."""
    for settings, kwargs, words in (
        (MediaSettings(simulcast=False), {}, "simulcast is disabled"),
        (MediaSettings(), {"rid_extmap": False}, "rtp-stream-id"),
    ):
        w = Worker(settings)
        try:
            router = w.create_router("show-sim-refused")
            client = new_pc()
            client.addTransceiver(PatternTrack(), direction="sendonly")
            await client.setLocalDescription(await client.createOffer())
            transport = router.create_transport("recv")
            with pytest.raises(SdpError, match=words):
                await router.publish(transport, simulcast_offer(client.localDescription.sdp, **kwargs))
            await client.close()
        finally:
            await w.close()


class SimulcastSender:
    """Crafted VP8 simulcast RTP through an aiortc peer's real SRTP session."""

    def __init__(self, sink: Any, pt: int, mid_id: int) -> None:
        self.sink = sink
        self.pt = pt
        self.mid_id = mid_id
        self.seq = {"f": 1000, "q": 2000, "h": 3000}
        self.ts = {"f": 5, "q": 900_000, "h": 4_000_000_000}
        self.pid = {"f": 100, "q": 7000, "h": 30000}
        self.frame_no = 0

    def frame(self, keys: str = "", with_rid: bool = True) -> None:
        for rid in ("f", "q", "h"):
            key = rid in keys
            pid = self.pid[rid]
            desc = bytes([0x90, 0x80, 0x80 | (pid >> 8), pid & 0xFF])
            body = (b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", *SIZES[rid])) if key else b"\x11\x02\x00"
            exts = [(self.mid_id, b"0"), (RID_ID, rid.encode())] if with_rid else []
            profile, ext_body = build_extensions(exts)
            section = struct.pack("!HH", profile, len(ext_body) // 4) + ext_body if ext_body else b""
            data = build_rtp(
                marker=True,
                payload_type=self.pt,
                sequence=self.seq[rid],
                timestamp=self.ts[rid],
                ssrc=SSRCS[rid],
                payload=desc + body + bytes([self.frame_no & 0xFF]) + rid.encode(),
                ext_section=section,
            )
            self.sink.send(data)
            self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
            self.ts[rid] = (self.ts[rid] + 3000) & 0xFFFFFFFF
            self.pid[rid] = (pid + 1) & 0x7FFF
        self.frame_no += 1

    def stray(self) -> None:
        """A packet of an SSRC no layer has, with no RID: dropped and counted."""
        self.sink.send(
            build_rtp(
                marker=True,
                payload_type=self.pt,
                sequence=1,
                timestamp=1,
                ssrc=0x0BADBAD0,
                payload=b"\x90\x80\x80\x01\x11\x02\x00",
                ext_section=b"",
            )
        )


async def test_layers_are_learnt_from_rids_and_a_viewer_switches_with_one_continuous_stream(worker: Any) -> None:
    """Protects simulcast ingest end to end over real DTLS/SRTP: the answer accepts the layers
    (a=simulcast:recv, a=rid recv, the RID extmap), each layer's SSRC is learnt from its RID
    on the first packets (later packets without RID still reach it), an unknown SSRC is dropped
    and counted, layers rank by picture size, a viewer starts on the top layer, and after
    set_target_layer(0) it gets the low layer from its keyframe on, with sequence numbers and
    VP8 picture ids continuing across the switch."""
    router = worker.create_router("show-sim")
    client = new_pc()
    tv = client.addTransceiver(PatternTrack(), direction="sendonly")
    vp8 = [c for c in adapter.RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
    tv.setCodecPreferences(vp8)
    await client.setLocalDescription(await client.createOffer())
    offer = simulcast_offer(client.localDescription.sdp)
    transport = router.create_transport("recv")
    answer, (producer,) = await router.publish(transport, offer)
    assert "a=simulcast:recv f;q;h" in answer
    assert "a=rid:f recv" in answer and f"a=extmap:{RID_ID} {RID_URI}" in answer
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    assert producer.simulcast and [layer.rid for layer in producer.all_layers] == ["f", "q", "h"]
    (sec,) = sections(answer)
    sink = adapter.SrtpSink(tv.sender.transport)
    assert await wait_for(lambda: sink.ready, timeout=20)
    sender = SimulcastSender(sink, int(sec.media_codec.payloadType or 0), sec.extensions[MID_URI])  # type: ignore[union-attr]

    sender.frame(keys="fqh")
    assert await wait_for(lambda: all(i.ssrc is not None for i in producer.layers), timeout=10)
    assert {i.rid: i.ssrc for i in producer.layers} == SSRCS
    assert [i.rid for i in producer.layers] == ["q", "h", "f"]  # by height
    stats = worker.stats
    drops = stats.drops["unknown_ssrc"]
    sender.stray()
    assert await wait_for(lambda: stats.drops["unknown_ssrc"] > drops, timeout=10)

    viewer = new_pc()
    vt = router.create_transport("send", {"audience_key": "v1"})
    offer2, _ = await router.consume(vt, [producer.id])
    await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer2, type="offer"))
    await viewer.setLocalDescription(await viewer.createAnswer())
    (consumer,) = await router.accept_answer(vt, viewer.localDescription.sdp)
    got: list[bytes] = []
    adapter.install_taps(
        viewer.getTransceivers()[0].receiver.transport, lambda d, ms: got.append(d) or True, lambda d: None
    )
    assert await wait_for(lambda: consumer.sink.ready, timeout=20)
    for _ in range(3):
        sender.frame(keys="fqh", with_rid=False)
    assert await wait_for(lambda: len(got) >= 3, timeout=10)
    assert consumer.current_layer is not None and consumer.current_layer.spatial == 2
    consumer.set_target_layer(0)
    sender.frame(with_rid=False)
    sender.frame(keys="q", with_rid=False)
    sender.frame(with_rid=False)
    assert await wait_for(lambda: got and got[-1].endswith(b"q") and len(got) >= 6, timeout=10)
    media = [d for d in got if parse_rtp(d).payload_end > parse_rtp(d).payload_offset]
    rids = [d[-1:] for d in media]
    assert b"f" in rids and rids[-2:] == [b"q", b"q"]
    hdrs = [parse_rtp(d) for d in media]
    assert len({h.ssrc for h in hdrs}) == 1
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in zip(hdrs, hdrs[1:]))
    pids = [parse_vp8_descriptor(d[h.payload_offset :]).picture_id for d, h in zip(media, hdrs)]
    assert all((b - a) & 0x7FFF >= 1 for a, b in zip(pids, pids[1:]))  # type: ignore[operator]
    switch = rids.index(b"q")
    assert (pids[switch] - pids[switch - 1]) & 0x7FFF == 1  # type: ignore[operator]
    assert stats.layer_switches >= 1
    await viewer.close()
    await client.close()
