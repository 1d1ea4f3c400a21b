"""aiortc peers that speak signaling v1: publishers, decoding viewers, counting viewers.

Used by the tests and the load tool. Every peer gathers ICE candidates on
127.0.0.1 only and uses no STUN server, so traffic never leaves loopback.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCBundlePolicy,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from av import AudioFrame, VideoFrame

from jasmin_sfu.media import aiortc_adapter
from jasmin_signaling.client import SignalingClient

LOOPBACK = ["127.0.0.1"]


def loopback_only() -> None:
    """Make every aiortc peer in this process gather on 127.0.0.1 only."""
    aiortc_adapter.restrict_host_addresses(LOOPBACK)
    # The tool's own loop stalls while hundreds of its viewers handshake; its
    # publisher must not drop consent over late answers either.
    aiortc_adapter.tolerant_consent()


def new_pc() -> RTCPeerConnection:
    loopback_only()
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class PatternTrack(VideoStreamTrack):
    """A moving test pattern: a white bar sweeping across a grey gradient.

    Frame ``n`` has the bar at x = 8n mod width, so a viewer can check what it
    decoded against :meth:`expected`.
    """

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        x = np.linspace(0, 255, width, dtype=np.uint8)
        self._base = np.tile(x, (height, 1))
        self.frames = 0

    def expected(self, n: int) -> np.ndarray:
        """The grey image of frame ``n``."""
        img = self._base.copy()
        bar = (n * 8) % self.width
        img[:, bar : bar + 16] = 255
        return img

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = self.expected(self.frames)
        rgb = np.stack([img, img, img], axis=2)
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone in 20 ms frames at 48 kHz; ``noise`` adds seeded noise so
    that no two encoded packets are alike (tests match packets by payload)."""

    def __init__(self, noise: bool = False) -> None:
        super().__init__()
        self._t = 0
        self._start: float | None = None
        self._rng = np.random.default_rng(7) if noise else None

    async def recv(self) -> AudioFrame:
        samples = 960
        if self._start is None:
            self._start = time.time()
        wait = self._start + self._t / 48000 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(samples) + self._t) / 48000
        wave = np.sin(2 * math.pi * 440 * t) * 8000
        if self._rng is not None:
            wave = wave + self._rng.normal(0, 3000, samples)
        data = wave.astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._t
        frame.time_base = fractions.Fraction(1, 48000)
        self._t += samples
        return frame


@dataclass
class Publisher:
    client: SignalingClient
    pc: RTCPeerConnection
    producers: list[dict[str, Any]]
    tracks: list[MediaStreamTrack]

    async def close(self) -> None:
        await self.pc.close()
        await self.client.close()


async def publish(
    url: str,
    show_id: str,
    tracks: list[MediaStreamTrack] | None = None,
    binary: bool = False,
    client: SignalingClient | None = None,
    **join: Any,
) -> Publisher:
    """Join ``show_id`` as performer and publish ``tracks`` (pattern + tone by default).

    With ``client`` given, that already-joined connection publishes instead
    (a member's Cam2Cam)."""
    if client is None:
        client = await SignalingClient.connect(url, binary=binary)
        await client.request("join", show_id=show_id, role="performer", **join)
    pc = new_pc()
    tracks = tracks if tracks is not None else [PatternTrack(), ToneTrack()]
    for tr in tracks:
        pc.addTransceiver(tr, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    res = await client.request("publish", sdp=pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="answer"))
    return Publisher(client, pc, res["producers"], tracks)


@dataclass
class Viewer:
    client: SignalingClient
    pc: RTCPeerConnection
    transport_id: str
    consumers: list[dict[str, Any]]
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)
    counter: "PacketCounter | None" = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()
        await self.client.close()


from jasmin_codecs.rtp import is_rtcp  # noqa: E402


def payload_digest(rtp: bytes) -> bytes:
    """A digest of an RTP packet's payload, which an SFU forwards unchanged."""
    from jasmin_codecs.rtp import parse_rtp

    h = parse_rtp(rtp)
    return hashlib.blake2b(rtp[h.payload_offset : h.payload_end], digest_size=12).digest()


class SendLog:
    """Records, for every RTP packet a peer sends, its payload digest and send time."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}
        self.kinds: dict[bytes, int] = {}

    def attach(self, pc: RTCPeerConnection) -> "SendLog":
        seen: set[int] = set()
        for t in pc.getTransceivers():
            dtls = t.sender.transport
            if dtls is None or id(dtls) in seen:
                continue
            seen.add(id(dtls))
            original = dtls._send_rtp

            async def send(data: bytes, _original: Any = original) -> None:
                if len(data) >= 12 and not is_rtcp(data):
                    digest = payload_digest(data)
                    self.sent.setdefault(digest, time.time())
                    self.kinds[digest] = int.from_bytes(data[8:12], "big")
                await _original(data)

            dtls._send_rtp = send
        return self

    def sent_at(self, digest: bytes) -> float | None:
        return self.sent.get(digest)


class PacketCounter:
    """Counts RTP per SSRC at the viewer's SRTP layer, without decoding."""

    def __init__(self) -> None:
        self.packets: dict[int, int] = {}
        self.bytes = 0
        self.first_at: dict[int, float] = {}
        self.seqs: dict[int, set[int]] = {}
        self.keep_seqs = False
        # (ssrc, payload digest, wall-clock arrival) per packet when keep_payloads is set.
        self.keep_payloads = False
        self.payloads: list[tuple[int, bytes, float]] = []
        # ssrc -> number of packets to drop before SRTP (simulated network loss)
        self.drop_next: dict[int, int] = {}
        self.dropped: list[tuple[int, int]] = []  # (ssrc, seq) dropped on purpose
        # Every SRTP datagram as it arrived, before decryption, when keep_wire is set:
        # what the SFU sent, including repeats the SRTP replay window rejects.
        self.keep_wire = False
        self.wire: list[bytes] = []

    def on_rtp(self, data: bytes, arrival_ms: int) -> bool:
        """Count one packet and consume it (aiortc never sees it)."""
        self.observe(data, arrival_ms)
        return True

    def observe(self, data: bytes, arrival_ms: int) -> bool:
        """Count one packet; never consumes it."""
        ssrc = int.from_bytes(data[8:12], "big")
        self.packets[ssrc] = self.packets.get(ssrc, 0) + 1
        self.bytes += len(data)
        if ssrc not in self.first_at:
            self.first_at[ssrc] = time.monotonic()
        if self.keep_seqs:
            self.seqs.setdefault(ssrc, set()).add(struct.unpack_from("!H", data, 2)[0])
        if self.keep_payloads:
            self.payloads.append((ssrc, payload_digest(data), time.time()))
        return False

    @property
    def total(self) -> int:
        return sum(self.packets.values())


async def _consume_frames(viewer: Viewer, track: MediaStreamTrack) -> None:
    try:
        while True:
            await track.recv()
            viewer.frames[track.kind] = viewer.frames.get(track.kind, 0) + 1
    except Exception:
        pass


async def subscribe(
    url: str,
    show_id: str,
    *,
    decode: bool = True,
    count: bool = False,
    binary: bool = False,
    client: SignalingClient | None = None,
    pass_through: bool = False,
    producer_ids: list[str] | None = None,
    keep_wire: bool = False,
    srtp_profiles: list[str] | None = None,
    **join: Any,
) -> Viewer:
    """Join as viewer and subscribe to every producer of the show.

    ``decode``: read the tracks so aiortc decodes them (frames are counted).
    ``count``: tap RTP before aiortc's receiver; ``pass_through`` then also lets
    aiortc see the packets (so NACKs/PLIs are generated) after counting;
    ``keep_wire`` (with ``count``) keeps every SRTP datagram before decryption.
    ``srtp_profiles``: the SRTP profiles this viewer offers, in order (names of
    ``aiortc_adapter.SRTP_PROFILES_BY_NAME``; None: aiortc's own list).
    """
    if client is None:
        client = await SignalingClient.connect(url, binary=binary)
        await client.request("join", show_id=show_id, role="viewer", **join)
    res = await client.request("subscribe", **({"producer_ids": producer_ids} if producer_ids else {}))
    pc = new_pc()
    viewer = Viewer(client, pc, res["transport_id"], res["consumers"])

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        viewer.tracks.append(track)
        if decode:
            viewer._tasks.append(asyncio.ensure_future(_consume_frames(viewer, track)))

    await pc.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="offer"))
    if srtp_profiles is not None:
        aiortc_adapter.prefer_srtp_profiles(pc, srtp_profiles)
    await pc.setLocalDescription(await pc.createAnswer())
    if count:
        viewer.counter = count_packets(pc, pass_through, keep_wire)
    await client.request("answer", transport_id=res["transport_id"], sdp=pc.localDescription.sdp)
    return viewer


def count_packets(pc: RTCPeerConnection, pass_through: bool, keep_wire: bool = False) -> PacketCounter:
    """Tap every receiving transport of ``pc`` (its local description set) with a new counter;
    ``pass_through``: aiortc still sees the packets after counting; ``keep_wire``: the counter
    keeps every SRTP datagram before decryption."""
    counter = PacketCounter()
    counter.keep_wire = keep_wire
    seen: set[int] = set()
    for t in pc.getTransceivers():
        dtls = t.receiver.transport
        if dtls is None or id(dtls) in seen:
            continue
        seen.add(id(dtls))
        _install_rtp_only(dtls, counter.observe if pass_through else counter.on_rtp)
        make_lossy(dtls, counter)
    return counter


class _LossyUnprotect:
    """Wraps a viewer's SRTP receive session to drop chosen packets *before*
    decryption, as a lossy network would (dropping after decryption would mark
    them as received in the SRTP replay window, so a retransmission would be
    rejected as a replay)."""

    def __init__(self, inner: Any, counter: PacketCounter) -> None:
        self._inner = inner
        self._counter = counter

    def unprotect(self, data: bytes) -> bytes:
        if self._counter.keep_wire:
            self._counter.wire.append(data)
        ssrc = int.from_bytes(data[8:12], "big")
        drop = self._counter.drop_next
        if drop.get(ssrc):
            drop[ssrc] -= 1
            self._counter.dropped.append((ssrc, struct.unpack_from("!H", data, 2)[0]))
            import pylibsrtp

            raise pylibsrtp.Error("dropped by the test's lossy link")
        return self._inner.unprotect(data)  # type: ignore[no-any-return]

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._inner.unprotect_rtcp(data)  # type: ignore[no-any-return]


def make_lossy(dtls: Any, counter: PacketCounter) -> None:
    """Let ``counter.drop_next`` drop packets on this leg before SRTP."""

    def wrap() -> None:
        if dtls.state == "connected" and not isinstance(dtls._rx_srtp, _LossyUnprotect):
            dtls._rx_srtp = _LossyUnprotect(dtls._rx_srtp, counter)

    dtls.on("statechange", wrap)
    wrap()


def ssrc_of(pc: RTCPeerConnection, kind: str, remote: bool = True) -> int:
    """The SSRC signalled for the first ``kind`` m-section of a description."""
    from jasmin_sfu.media.sdp_info import sections

    desc = pc.remoteDescription if remote else pc.localDescription
    for s in sections(desc.sdp):
        if s.kind == kind and s.ssrc is not None:
            return s.ssrc
    raise LookupError(f"no {kind} ssrc")


def _install_rtp_only(dtls: Any, tap: Any) -> None:
    """Tap RTP only, leaving aiortc's RTCP handling in place (client side)."""
    original = dtls._handle_rtp_data

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        if tap(data, arrival_time_ms):
            return
        await original(data, arrival_time_ms=arrival_time_ms)

    dtls._handle_rtp_data = handle


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())
