"""The synthetic publisher: VP8-shaped 1.5 Mbit/s video and Opus-shaped audio, send time in a payload trailer.

Part of the load tool (``python -m bench.load``; bench/README.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiortc import RTCSessionDescription

from bench.peers import new_pc, wait_for
from jasmin_codecs.rtcp import Fir, Pli, parse_rtcp
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media.sdp_info import sections

MAGIC = b"JSB1"
TRAILER = struct.Struct("!4sqB3x")  # magic, send time (CLOCK_REALTIME ns), flags
TRAILER_LEN = TRAILER.size
FLAG_KEYFRAME = 1


@dataclass(frozen=True)
class Workload:
    video_bps: int = 1_500_000
    fps: int = 30
    keyframe_every_s: float = 3.0
    keyframe_size_factor: float = 4.0  # keyframe bytes / delta-frame bytes
    mtu_payload: int = 1100
    audio_pps: int = 50
    audio_payload: int = 120
    # libwebrtc's pacer: 2.5x the media rate, processed every 5 ms with at most
    # one interval of budget (IntervalBudget without build-up); 0 = send each frame as one burst
    pacing_factor: float = 2.5

    def frame_sizes(self) -> tuple[int, int]:
        """(delta, key) frame bytes so the average over a keyframe interval is video_bps."""
        frames = self.fps * self.keyframe_every_s
        per_interval = self.video_bps / 8 * self.keyframe_every_s
        delta = per_interval / (frames - 1 + self.keyframe_size_factor)
        return int(delta), int(delta * self.keyframe_size_factor)


def candidate_port(sdp: str) -> int | None:
    m = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", sdp, re.IGNORECASE)
    return int(m.group(1)) if m else None


class SyntheticPublisher:
    """Sends VP8- and Opus-shaped RTP through real SRTP without encoding."""

    def __init__(self, wl: Workload) -> None:
        self.wl = wl
        self.sent = {"video": 0, "audio": 0}
        self.sent_bytes = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self._force_key = True
        self._tasks: list[asyncio.Task[None]] = []
        self.sfu_port: int | None = None

    async def start(self, exchange: Callable[[str], Awaitable[str]]) -> None:
        self.pc = new_pc()
        tv = self.pc.addTransceiver(adapter.SilentTrack("video"), direction="sendonly")
        ta = self.pc.addTransceiver(adapter.SilentTrack("audio"), direction="sendonly")
        vp8 = [
            c for c in adapter.RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")
        ]
        tv.setCodecPreferences(vp8)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await exchange(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        secs = sections(answer)
        video = next(s for s in secs if s.kind == "video")
        audio = next(s for s in secs if s.kind == "audio")
        self.video_pt = int(video.media_codec.payloadType or 0)  # type: ignore[union-attr]
        self.audio_pt = int(audio.media_codec.payloadType or 0)  # type: ignore[union-attr]
        self.sfu_port = candidate_port(answer)
        self.video_ssrc = adapter.sender_ssrc(tv.sender)
        self.audio_ssrc = adapter.sender_ssrc(ta.sender)
        dtls = tv.sender.transport
        adapter.install_taps(dtls, lambda data, ms: True, self._on_rtcp)
        self.sink = adapter.SrtpSink(dtls)
        if not await wait_for(lambda: self.sink.ready, timeout=20):
            raise RuntimeError("publisher DTLS did not connect")
        self._tasks = [asyncio.ensure_future(self._video()), asyncio.ensure_future(self._audio())]

    def _on_rtcp(self, data: bytes) -> None:
        try:
            for p in parse_rtcp(data):
                if isinstance(p, (Pli, Fir)):
                    self.keyframe_requests += 1
                    self._force_key = True
        except ValueError:
            pass

    def _frame(self, seq: int, ts: int, picture_id: int, key: bool) -> tuple[list[tuple[bytes, int]], int]:
        """The packets of one frame, without their trailers: [(prefix, flags)], next seq."""
        delta, keysize = self.wl.frame_sizes()
        size = keysize if key else delta
        mtu = self.wl.mtu_payload - TRAILER_LEN
        npk = max(1, -(-size // mtu))
        per = size // npk
        pid = struct.pack("!H", 0x8000 | (picture_id & 0x7FFF))
        out = []
        for i in range(npk):
            # Chrome-style descriptor: X=1, S on the first packet, PID 0; I=1 with a 15-bit picture id.
            desc = bytes([0x90 if i == 0 else 0x80, 0x80]) + pid
            if i == 0:
                # VP8 payload header: P=0 keyframe (+ start code, 1280x720) or P=1 interframe.
                body = b"\x10\x02\x00\x9d\x01\x2a\x00\x05\xd0\x02" if key else b"\x11\x02\x00"
            else:
                body = b""
            fill = max(0, per - len(desc) - len(body))
            hdr = struct.pack("!BBHII", 0x80, (0x80 if i == npk - 1 else 0) | self.video_pt, seq, ts, self.video_ssrc)
            out.append((hdr + desc + body + self._filler[:fill], FLAG_KEYFRAME if key and i == 0 else 0))
            seq = (seq + 1) & 0xFFFF
        return out, seq

    def _send(self, prefix: bytes, flags: int) -> None:
        pkt = prefix + TRAILER.pack(MAGIC, time.time_ns(), flags)
        if self.sink.send(pkt):
            self.sent_bytes += len(pkt)

    async def _video(self) -> None:
        self._filler = os.urandom(self.wl.mtu_payload)
        seq = random.randint(0, 0xFFFF)
        ts = random.randint(0, 0xFFFFFFFF)
        picture_id = random.randint(0, 0x7FFF)
        loop = asyncio.get_running_loop()
        start = last = loop.time()
        last_key = -1e9
        n = 0
        queue: deque[tuple[bytes, int]] = deque()
        rate = self.wl.pacing_factor * self.wl.video_bps / 8  # bytes/s
        budget = 0.0
        while True:
            now = loop.time()
            while now >= start + n / self.wl.fps:
                key = self._force_key or now - last_key >= self.wl.keyframe_every_s
                if key:
                    self._force_key = False
                    last_key = now
                    self.keyframes += 1
                pkts, seq = self._frame(seq, ts, picture_id, key)
                queue.extend(pkts)
                ts = (ts + 90000 // self.wl.fps) & 0xFFFFFFFF
                picture_id = (picture_id + 1) & 0x7FFF
                n += 1
            if rate > 0:
                budget = min(budget + (now - last) * rate, rate * 0.005)  # like libwebrtc: 5 ms of budget, no build-up
            last = now
            while queue and (rate <= 0 or budget > 0):
                prefix, flags = queue.popleft()
                self._send(prefix, flags)
                self.sent["video"] += 1
                budget -= len(prefix) + TRAILER_LEN
            next_frame = start + n / self.wl.fps
            wake = min(next_frame, now + 0.005) if queue else next_frame
            await asyncio.sleep(max(0.0, wake - loop.time()))

    async def _audio(self) -> None:
        seq = random.randint(0, 0xFFFF)
        ts = random.randint(0, 0xFFFFFFFF)
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        body = b"\xfc" + os.urandom(max(0, self.wl.audio_payload - 1 - TRAILER_LEN))
        step = 48000 // self.wl.audio_pps
        while True:
            hdr = struct.pack("!BBHII", 0x80, self.audio_pt, seq, ts, self.audio_ssrc)
            self._send(hdr + body, 0)
            self.sent["audio"] += 1
            seq = (seq + 1) & 0xFFFF
            ts = (ts + step) & 0xFFFFFFFF
            n += 1
            await asyncio.sleep(max(0.0, start + n / self.wl.audio_pps - loop.time()))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()
