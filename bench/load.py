"""Load tool: one synthetic publisher, a ramp of light viewers, jasmin-sfu and Janus.

    python -m bench.load                                  # jasmin-sfu only, ramp until it breaks
    python -m bench.load --targets jasmin,janus \\
        --json bench/results/$(date +%F)-vs-janus.json    # the comparison (root, Janus installed)
    python -m bench.load --viewers 1,10,50 --seconds 10   # fixed steps (make bench)

What it does, per target SFU (the SFU runs as its own process pinned to one
core with taskset, this tool on the other core):

* **Publisher.** One aiortc peer whose senders never encode. It sends
  VP8-shaped RTP like 720p at 1.5 Mbit/s (30 fps, a keyframe every 3 s and
  on PLI/FIR, Chrome-style descriptors with a picture id, paced like
  libwebrtc's pacer at 2.5x the media rate) and Opus-shaped RTP at 50
  packets/s, straight into SRTP.
* **Send time.** Every packet's payload ends in a 16-byte trailer: magic
  ``JSB1``, the send time in CLOCK_REALTIME nanoseconds taken right before
  SRTP protect, and a flags byte (bit 0: this packet starts a keyframe). Both
  SFUs forward payloads untouched, so the viewer reads the publisher's exact
  send time at full resolution. (abs-send-time is not used: it has 3.8 us
  resolution, wraps every 64 s, and an SFU may rewrite it.)
* **Light viewers.** Each does real ICE, DTLS and SRTP through aiortc. Once
  DTLS is up, its UDP socket is taken away from aiortc (see
  :class:`RawPoller`): one epoll over all viewer sockets, drained every few
  ms. Every packet's RTP header (in clear under SRTP) is read for loss; one
  packet in ``--sample-every`` (by sequence number), and every packet until
  the viewer's first keyframe, is SRTP-unprotected in place by libsrtp and
  timed with the kernel's receive timestamp (SIOCGSTAMPNS: stamped when the
  SFU's ``sendto`` hands the datagram to loopback, so this tool's own
  scheduling delay is not counted). Nothing is decoded. STUN, DTLS and RTCP
  still go to aiortc, so consent freshness keeps working.
* **Per step** (N viewers): loss from the viewers' own sequence numbers,
  added latency (kernel receive time minus send time; all on one machine,
  one clock) p50/p99/max, the SFU's CPU (from /proc, its whole process) and
  RSS, this tool's own CPU, and drops in the kernel socket buffers of this
  tool (the tool's fault) and of the SFU's publisher-facing socket (the
  SFU's), and what else ran on the two cores (other processes, steal).
  Time to first keyframe (TTFF) is measured on probe viewers that join one
  at a time, 1.2 s apart, after the bulk of each step: from the ``join``
  (jasmin) / ``attach`` (Janus) request to the kernel receive time of the
  first packet starting a keyframe.
* **Ramp.** N grows until loss > 1 % or p99 added latency > 50 ms (a failing
  step is measured once more; the second window decides, and a refining
  step bisects towards the last N that held). If this
  tool's CPU reaches ``--tool-cpu-limit`` first (it is Python too), the ramp
  stops and viewers_per_core is *extrapolated* from a linear fit of the
  SFU's CPU against N over the steps that held; the JSON says which.

Output: a table on stdout, a JSON record (``--json``) and a PNG plot next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from aiortc import RTCSessionDescription

from bench.peers import new_pc, wait_for
from jasmin_codecs.rtcp import Fir, Pli, parse_rtcp
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media.sdp_info import sections
from jasmin_signaling.client import SignalingClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")

MAGIC = b"JSB1"
TRAILER = struct.Struct("!4sqB3x")  # magic, send time (CLOCK_REALTIME ns), flags
TRAILER_LEN = TRAILER.size
FLAG_KEYFRAME = 1
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_TIMESPEC = struct.Struct("@qq")


# =============================================================================
# The SFUs under test


class Target(Protocol):
    name: str

    def cpu_seconds(self) -> float: ...
    def rss_mb(self) -> float: ...
    def describe(self) -> dict[str, Any]: ...
    async def publish(self, offer_sdp: str) -> str: ...
    async def subscribe(self, viewer: "LightViewer") -> None: ...
    async def unsubscribe(self, viewer: "LightViewer") -> None: ...
    async def close(self) -> None: ...


def _proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class DaemonUnderTest:
    """jasmin-sfu as a real process (``python -m jasmin_sfu serve``), pinned to ``cpu``."""

    def __init__(self, cpu: int | None) -> None:
        cmd = [sys.executable, "-m", "jasmin_sfu", "serve"]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.env = {"JASMIN_SERVER_PORT": "0", "JASMIN_SERVER_HOST": "127.0.0.1", "JASMIN_LOG_LEVEL": "warning", "JASMIN_BILLING_ENABLED": "false",
                    "JASMIN_SERVER_MAX_REQUESTS_PER_S": "1000", "JASMIN_MEDIA_LISTEN_IPS": "127.0.0.1",
                    # The load tool joins without tokens: no accounts, client-given ids trusted.
                    "JASMIN_ACCOUNTS_ENABLED": "false", "JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true"}
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.tail: deque[str] = deque(maxlen=50)
        for line in self.proc.stdout:
            self.tail.append(line)
            m = re.search(r"listening: demo page http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        else:
            raise RuntimeError("daemon did not start: " + "".join(self.tail))
        import threading

        def drain() -> None:
            for line in self.proc.stdout or []:
                self.tail.append(line)

        threading.Thread(target=drain, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu_seconds(self) -> float:
        return _proc_cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        return _proc_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class JasminTarget:
    name = "jasmin"

    def __init__(self, cpu: int | None, show: str = "bench") -> None:
        self.daemon = DaemonUnderTest(cpu)
        self.show = show
        self.pub_client: SignalingClient | None = None

    def cpu_seconds(self) -> float:
        return self.daemon.cpu_seconds()

    def rss_mb(self) -> float:
        return self.daemon.rss_mb()

    def describe(self) -> dict[str, Any]:
        from jasmin_sfu import __version__

        return {"software": f"jasmin-sfu {__version__} (python -m jasmin_sfu serve, uvloop)",
                "config": {"env": self.daemon.env, "other": "built-in defaults (jasmin_sfu/config.py)"}}

    async def publish(self, offer_sdp: str) -> str:
        self.pub_client = await SignalingClient.connect(self.daemon.url)
        await self.pub_client.request("join", show_id=self.show, role="performer")
        res = await self.pub_client.request("publish", sdp=offer_sdp)
        return str(res["sdp"])

    async def subscribe(self, v: "LightViewer") -> None:
        client = await SignalingClient.connect(self.daemon.url)
        v.ctx["client"] = client
        v.t_join_ns = time.time_ns()
        await client.request("join", show_id=self.show, role="viewer")
        res = await client.request("subscribe")
        answer = await v.answer(str(res["sdp"]))
        await client.request("answer", transport_id=res["transport_id"], sdp=answer)

    async def unsubscribe(self, v: "LightViewer") -> None:
        await v.close()
        client = v.ctx.pop("client", None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        if self.pub_client is not None:
            await self.pub_client.close()
        self.daemon.stop()


def make_target(name: str, cpu: int | None) -> Target:
    if name == "jasmin":
        return JasminTarget(cpu)
    if name == "janus":
        from bench.janus import JanusTarget

        return JanusTarget(cpu)
    raise SystemExit(f"unknown target {name!r} (jasmin, janus)")


# =============================================================================
# The synthetic publisher


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
        vp8 = [c for c in adapter.RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
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


# =============================================================================
# Light viewers and the shared receive path


class Recorder:
    """Shared by all viewers of one target: latency samples and counters."""

    def __init__(self) -> None:
        self.recording = False
        self.latency_ns = array("q")
        self.no_trailer = 0
        self.srtp_errors = 0


class LightViewer:
    """Real ICE/DTLS/SRTP through aiortc; RTP read without decoding."""

    def __init__(self, idx: int, rec: Recorder, poller: "RawPoller") -> None:
        self.idx = idx
        self.rec = rec
        self.poller = poller
        self.ctx: dict[str, Any] = {}
        self.t_join_ns = 0
        self.t_offer_ns = 0
        self.t_dtls_ns = 0
        self.first_key_ns = 0
        self.first_packet_ns = 0
        self.streams: dict[bytes, list[int]] = {}  # ssrc -> [received, extended highest seq]
        self.fd = -1
        self.port = 0
        self.raw = False
        self.pc: Any = None

    @property
    def ttff_ms(self) -> float | None:
        if not self.first_key_ns or not self.t_join_ns:
            return None
        return (self.first_key_ns - self.t_join_ns) / 1e6

    async def answer(self, offer_sdp: str) -> str:
        """Apply the SFU's offer, tap RTP, return our answer (all candidates in it)."""
        self.t_offer_ns = time.time_ns()
        self.pc = pc = new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        dtls = next(t.receiver.transport for t in pc.getTransceivers() if t.receiver.transport is not None)
        self._dtls = dtls

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:  # before the raw takeover
            self.on_rtp(data, time.time_ns())

        dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
        dtls.on("statechange", self._on_dtls_state)
        return str(pc.localDescription.sdp)

    def phases(self) -> dict[str, float] | None:
        """Where a probe's TTFF went: ms from the join request to each milestone."""
        if not (self.t_join_ns and self.first_key_ns):
            return None

        def ms(t: int) -> float:
            return round((t - self.t_join_ns) / 1e6, 1) if t else -1.0

        return {"offer": ms(self.t_offer_ns), "dtls_connected": ms(self.t_dtls_ns),
                "first_packet": ms(self.first_packet_ns), "first_keyframe": ms(self.first_key_ns)}

    def _on_dtls_state(self) -> None:
        if self._dtls.state == "connected" and not self.t_dtls_ns:
            self.t_dtls_ns = time.time_ns()
        if self._dtls.state == "connected" and not self.raw:
            try:
                self.poller.take_over(self)
            except Exception as exc:  # keep aiortc's path; counted
                self.ctx["raw_error"] = repr(exc)

    def on_rtp(self, plain: bytes, rx_ns: int) -> None:
        """One plain RTP packet (aiortc's path, before the raw takeover)."""
        self.on_parts(plain[8:12], (plain[2] << 8) | plain[3], plain[-TRAILER_LEN:], rx_ns)

    def on_parts(self, ssrc: bytes, seq: int, trailer: bytes, rx_ns: int) -> None:
        """Sequence accounting, latency sample, keyframe start."""
        st = self.streams.get(ssrc)
        if st is None:
            self.streams[ssrc] = [1, seq]
            if not self.first_packet_ns:
                self.first_packet_ns = rx_ns
        else:
            st[0] += 1
            d = (seq - st[1]) & 0xFFFF
            if d < 0x8000:
                st[1] += d
        if trailer[:4] != MAGIC:
            self.rec.no_trailer += 1
            return
        if self.rec.recording:
            self.rec.latency_ns.append(rx_ns - int.from_bytes(trailer[4:12], "big", signed=True))
        if trailer[12] & FLAG_KEYFRAME and not self.first_key_ns:
            self.first_key_ns = rx_ns

    def snapshot(self) -> dict[bytes, tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self.streams.items()}

    async def close(self) -> None:
        self.poller.release(self)
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 10)
            except Exception:
                pass


SIOCGSTAMPNS = 0x8907  # receive time of the last datagram read from the socket (struct timespec)


class RawPoller:
    """One epoll over every viewer socket, drained in one asyncio callback.

    Per packet, asyncio would wake one callback per ready socket, and
    pylibsrtp copies every packet twice; with hundreds of viewers at ~235
    packets/s each that overhead would make this tool the bottleneck long
    before the SFU. Here:

    * one read per ready socket per poll round (``recv_into`` straight into
      the viewer's libsrtp buffer; no EAGAIN exceptions, no address tuples);
    * sequence numbers and SSRCs come from the RTP header, which SRTP leaves
      in clear, for *every* packet (loss);
    * a packet is unprotected in place by libsrtp, and its kernel receive
      time read (ioctl SIOCGSTAMPNS), only when it is sampled for latency
      (sequence number divisible by ``sample_every``) or while the viewer has
      not seen its first keyframe yet (TTFF).
    """

    INTERVAL_S = 0.002  # drain every 2 ms: the kernel timestamps, so waiting costs no accuracy
    BUDGET_S = 0.001  # at most this long per drain before yielding to the event loop

    def __init__(self, rec: Recorder, sample_every: int = 4) -> None:
        from pylibsrtp._binding import ffi, lib

        self.rec = rec
        self.sample_every = max(1, sample_every)
        self._unprotect = lib.srtp_unprotect
        self._len_p = ffi.new("int *")
        self.ep = select.epoll()
        self.by_fd: dict[int, tuple[Any, ...]] = {}
        self.wakeups = 0
        self.packets = 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | asyncio.Handle = self._loop.call_later(self.INTERVAL_S, self._tick)

    def _tick(self) -> None:
        """Drain on a timer, not on readiness: one wake-up per few ms however
        many sockets are ready (readiness would wake this process for nearly
        every datagram and cost ~20 us of event-loop overhead each). A drain
        stops after BUDGET_S and resumes on the next loop iteration, so the
        publisher's pacing timers are never held up by more than that."""
        more = True
        try:
            more = self._poll()
        finally:
            if more:
                self._timer = self._loop.call_soon(self._tick)
            else:
                self._timer = self._loop.call_later(self.INTERVAL_S, self._tick)

    def take_over(self, v: LightViewer) -> None:
        import fcntl

        dtls = v._dtls
        pair = dtls.transport._connection._nominated.get(1)
        session = dtls._rx_srtp
        if pair is None or session is None:
            return
        transport = pair.protocol.transport
        sock: socket.socket = transport._sock  # type: ignore[attr-defined]
        fd = sock.fileno()
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:  # the first SIOCGSTAMPNS turns receive timestamps on for this socket
            fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16))
        except OSError:
            pass
        self._loop._remove_reader(fd)  # type: ignore[attr-defined]  # aiortc no longer reads this socket
        mv = memoryview(session._buffer)
        self.by_fd[fd] = (sock.recv_into, mv, session._srtp[0], session._cdata, pair.protocol, pair.remote_addr, v)
        self.ep.register(fd, select.EPOLLIN)
        v.fd = fd
        v.port = sock.getsockname()[1]
        v.raw = True

    def release(self, v: LightViewer) -> None:
        if v.fd >= 0 and self.by_fd.pop(v.fd, None) is not None:
            try:
                self.ep.unregister(v.fd)
            except OSError:
                pass
        v.fd = -1

    def _poll(self) -> bool:
        """Read what is ready; True when it stopped on its time budget with more to read."""
        import fcntl

        self.wakeups += 1
        by_fd = self.by_fd
        ep_poll = self.ep.poll
        ioctl = fcntl.ioctl
        unpack_ts = _TIMESPEC.unpack
        unprotect = self._unprotect
        len_p = self._len_p
        rec = self.rec
        recording = rec.recording
        lat_append = rec.latency_ns.append
        k = self.sample_every
        zero16 = bytes(16)
        n = 0
        clock = time.perf_counter
        deadline = clock() + self.BUDGET_S
        more = False
        while True:
            if clock() > deadline:
                more = True
                break
            events = ep_poll(0, 256)
            if not events:
                break
            for fd, _mask in events:
                entry = by_fd.get(fd)
                if entry is None:
                    continue
                recv_into, mv, srtp, cdata, proto, addr, v = entry
                try:
                    size = recv_into(mv)
                except OSError:
                    continue
                if size < 12:
                    continue
                if not 127 < mv[0] < 192 or 191 < mv[1] < 224:  # STUN, DTLS, RTCP: to aiortc as before
                    try:
                        proto.datagram_received(mv[:size].tobytes(), addr)
                    except Exception:
                        pass
                    continue
                n += 1
                seq = (mv[2] << 8) | mv[3]
                ssrc = mv[8:12].tobytes()
                st = v.streams.get(ssrc)
                if st is None:
                    v.streams[ssrc] = [1, seq]
                else:
                    st[0] += 1
                    d = (seq - st[1]) & 0xFFFF
                    if d < 0x8000:
                        st[1] += d
                first = not v.first_key_ns
                if not (first or (recording and seq % k == 0)):
                    continue
                sec, nsec = unpack_ts(ioctl(fd, SIOCGSTAMPNS, zero16))
                rx_ns = sec * 1_000_000_000 + nsec
                len_p[0] = size
                if unprotect(srtp, cdata, len_p):
                    rec.srtp_errors += 1
                    continue
                size = len_p[0]
                if mv[size - TRAILER_LEN:size - TRAILER_LEN + 4] != MAGIC:
                    rec.no_trailer += 1
                    continue
                if recording and seq % k == 0:
                    lat_append(rx_ns - int.from_bytes(mv[size - 12:size - 4], "big", signed=True))
                if first:
                    if not v.first_packet_ns:
                        v.first_packet_ns = rx_ns
                    if mv[size - 4] & FLAG_KEYFRAME:
                        v.first_key_ns = rx_ns
        self.packets += n
        return more

    def close(self) -> None:
        self._timer.cancel()
        self.ep.close()


# =============================================================================
# Measurement


def udp_drops(ports: set[int]) -> int:
    """Kernel receive-buffer drops summed over UDP sockets bound to ``ports``."""
    total = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                parts = line.split()
                port = int(parts[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    total += int(parts[-1])
    except (OSError, ValueError, IndexError):
        pass
    return total


def core_times(cpu: int | None) -> tuple[float, float, float, float]:
    """(busy, softirq, steal, total) jiffies of one CPU from /proc/stat (zeros when unknown)."""
    if cpu is None:
        return 0.0, 0.0, 0.0, 0.0
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    v = [int(x) for x in line.split()[1:]]
                    idle = v[3] + v[4]
                    total = sum(v[:8])
                    return float(total - idle), float(v[6]), float(v[7]), float(total)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0, 0.0, 0.0, 0.0


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float] | array, q: float) -> float:
    if not len(values):
        return -1.0
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


@dataclass
class Step:
    viewers: int
    seconds: float
    pps_in: float
    video_kbps_in: float
    pps_out: float
    loss_pct: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sfu_cpu_pct: float
    sfu_core_busy_pct: float
    sfu_core_softirq_pct: float
    sfu_core_steal_pct: float
    sfu_core_other_pct: float
    tool_core_other_pct: float
    cpu_us_per_packet_out: float
    rss_mb: float
    tool_cpu_pct: float
    tool_drop_pct: float
    sfu_in_drops: int
    not_started: int
    ttff_ms_probe: list[float] = field(default_factory=list)
    ttff_phases_probe: list[dict[str, float]] = field(default_factory=list)
    ttff_ms_p50_all: float = -1.0
    refined: bool = False  # measured after removing viewers (RSS then still holds the larger N's peak)
    verdict: str = ""


def judge(s: Step, max_loss: float, max_p99: float, tool_limit: float) -> str:
    failed = s.loss_pct > max_loss or s.p99_ms > max_p99 or s.not_started > 0
    tool_busy = s.tool_cpu_pct >= tool_limit
    tool_lossy = s.tool_drop_pct > max(0.2, 0.5 * s.loss_pct)
    if not failed:
        return "tool_saturated" if tool_busy else "ok"
    if tool_busy or (s.loss_pct > max_loss and tool_lossy and s.p99_ms <= max_p99):
        return "tool_limit"
    return "sfu_limit"


class Progress:
    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.done = 0
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last = ""

    def show(self, msg: str) -> None:
        if not self.enabled:
            return
        width = 28
        filled = int(width * min(self.done, self.total) / self.total)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {msg}"
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
            sys.stderr.flush()
        elif line != self._last:
            print(line, file=sys.stderr, flush=True)
        self._last = line

    def finish(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


@dataclass
class Options:
    steps: list[int]
    seconds: float = 5.0
    settle: float = 2.0
    probes: int = 3
    probe_gap: float = 1.2
    concurrency: int = 16
    max_loss_pct: float = 1.0
    max_p99_ms: float = 50.0
    tool_cpu_limit: float = 90.0
    sfu_cpu: int | None = 0
    tool_cpu: int | None = 1
    stop_on_fail: bool = True
    retries: int = 1
    refine: int = 1
    sample_every: int = 4
    workload: Workload = field(default_factory=Workload)


class Runner:
    def __init__(self, target: Target, opts: Options, progress: Progress) -> None:
        self.t = target
        self.o = opts
        self.p = progress
        self.rec = Recorder()
        self.viewers: list[LightViewer] = []
        self.steps: list[Step] = []
        self._idx = 0
        self.errors: list[str] = []

    async def _add_one(self, sem: asyncio.Semaphore | None) -> LightViewer:
        v = LightViewer(self._idx, self.rec, self.poller)
        self._idx += 1
        self.viewers.append(v)
        if sem is None:
            await self.t.subscribe(v)
        else:
            async with sem:
                await self.t.subscribe(v)
        return v

    async def _grow(self, n: int) -> tuple[list[float], list[dict[str, float]]]:
        """Add viewers up to ``n``: the bulk concurrently, then probes one by one."""
        need = n - len(self.viewers)
        probes = min(self.o.probes, need)
        bulk = need - probes
        sem = asyncio.Semaphore(self.o.concurrency)
        if bulk > 0:
            tasks = [asyncio.ensure_future(self._add_one(sem)) for _ in range(bulk)]
            done = 0
            for fut in asyncio.as_completed(tasks):
                try:
                    await fut
                except Exception as exc:
                    self.errors.append(f"join: {exc!r}")
                done += 1
                if done % 8 == 0 or done == bulk:
                    self.p.show(f"{self.t.name}: {len(self.viewers) - bulk + done}/{n} viewers joining")
        ttffs: list[float] = []
        phases: list[dict[str, float]] = []
        for i in range(probes):
            self.p.show(f"{self.t.name}: probe viewer {i + 1}/{probes} (TTFF) at N={n}")
            # Each probe joins a steady show: every keyframe-request throttle
            # (jasmin 300 ms, Janus 1 s) has expired since the previous join.
            await asyncio.sleep(self.o.probe_gap)
            try:
                v = await self._add_one(None)
            except Exception as exc:
                self.errors.append(f"probe join: {exc!r}")
                continue
            await wait_for(lambda: v.first_key_ns > 0, timeout=10, interval=0.01)
            if v.ttff_ms is not None:
                ttffs.append(round(v.ttff_ms, 1))
                ph = v.phases()
                if ph:
                    phases.append(ph)
        return ttffs, phases

    async def _shrink(self, n: int) -> None:
        drop = self.viewers[n:]
        del self.viewers[n:]
        await asyncio.gather(*(self.t.unsubscribe(v) for v in drop), return_exceptions=True)

    async def measure(self, n: int, ttffs: list[float]) -> Step:
        o = self.o
        self.p.show(f"{self.t.name}: N={n} waiting for every viewer's first keyframe")
        await wait_for(lambda: all(v.first_key_ns for v in self.viewers), timeout=15, interval=0.05)
        await asyncio.sleep(o.settle)
        pub = self.pub
        ports = {v.port for v in self.viewers if v.port}
        sfu_ports = {pub.sfu_port} if pub.sfu_port else set()
        snaps = [v.snapshot() for v in self.viewers]
        drops0, sfu_drops0 = udp_drops(ports), udp_drops(sfu_ports)
        sent0, bytes0 = sum(pub.sent.values()), pub.sent_bytes
        recv0 = self.poller.packets
        self.rec.latency_ns = array("q")
        core0, tcore0 = core_times(o.sfu_cpu), core_times(o.tool_cpu)
        cpu0, tool0, t0 = self.t.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        self.rec.recording = True
        end = t0 + o.seconds
        while time.monotonic() < end:
            self.p.show(f"{self.t.name}: N={n} measuring {end - time.monotonic():4.1f} s")
            await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
        self.rec.recording = False
        cpu1, tool1, t1 = self.t.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        dt = t1 - t0
        core1, tcore1 = core_times(o.sfu_cpu), core_times(o.tool_cpu)
        core_total = max(1.0, core1[3] - core0[3])
        tcore_total = max(1.0, tcore1[3] - tcore0[3])
        sfu_cpu_pct = 100.0 * (cpu1 - cpu0) / dt
        tool_cpu_pct = 100.0 * (tool1 - tool0) / dt
        core_busy = 100.0 * (core1[0] - core0[0]) / core_total
        sent1, bytes1 = sum(pub.sent.values()), pub.sent_bytes
        recv1 = self.poller.packets
        drops1, sfu_drops1 = udp_drops(ports), udp_drops(sfu_ports)
        expected = received = 0
        for v, snap in zip(self.viewers, snaps):
            for ssrc, (cnt1, top1) in v.snapshot().items():
                cnt0, top0 = snap.get(ssrc, (0, top1))
                expected += top1 - top0
                received += cnt1 - cnt0
        lat = self.rec.latency_ns
        not_started = sum(1 for v in self.viewers if not v.first_key_ns)
        ttff_all = [v.ttff_ms for v in self.viewers if v.ttff_ms is not None]
        out = recv1 - recv0
        step = Step(
            viewers=n,
            seconds=round(dt, 2),
            pps_in=round((sent1 - sent0) / dt, 1),
            video_kbps_in=round((bytes1 - bytes0) * 8 / dt / 1000, 1),
            pps_out=round(out / dt, 1),
            loss_pct=round(max(0.0, 100.0 * (1 - received / expected)), 3) if expected else 100.0,
            p50_ms=round(pct(lat, 50) / 1e6, 3),
            p99_ms=round(pct(lat, 99) / 1e6, 3),
            max_ms=round((max(lat) if len(lat) else -1) / 1e6, 3),
            sfu_cpu_pct=round(sfu_cpu_pct, 1),
            sfu_core_busy_pct=round(core_busy, 1),
            sfu_core_softirq_pct=round(100.0 * (core1[1] - core0[1]) / core_total, 1),
            sfu_core_steal_pct=round(100.0 * (core1[2] - core0[2]) / core_total, 1),
            sfu_core_other_pct=round(max(0.0, core_busy - sfu_cpu_pct - 100.0 * (core1[1] - core0[1]) / core_total), 1)
            if o.sfu_cpu is not None else -1.0,
            tool_core_other_pct=round(max(0.0, 100.0 * (tcore1[0] - tcore0[0]) / tcore_total - tool_cpu_pct), 1)
            if o.tool_cpu is not None else -1.0,
            cpu_us_per_packet_out=round(1e6 * (cpu1 - cpu0) / max(1, out), 2),
            rss_mb=round(self.t.rss_mb(), 1),
            tool_cpu_pct=round(tool_cpu_pct, 1),
            tool_drop_pct=round(100.0 * (drops1 - drops0) / expected, 3) if expected else 0.0,
            sfu_in_drops=sfu_drops1 - sfu_drops0,
            not_started=not_started,
            ttff_ms_probe=ttffs,
            ttff_ms_p50_all=round(pct(ttff_all, 50), 1),
        )
        step.verdict = judge(step, o.max_loss_pct, o.max_p99_ms, o.tool_cpu_limit)
        return step

    async def run(self) -> dict[str, Any]:
        o = self.o
        self.poller = RawPoller(self.rec, o.sample_every)
        self.p.show(f"{self.t.name}: publisher")
        self.pub = SyntheticPublisher(o.workload)
        try:
            await self.pub.start(self.t.publish)
            # Idle baseline: publisher only.
            await asyncio.sleep(1.0)
            cpu0, t0 = self.t.cpu_seconds(), time.monotonic()
            await asyncio.sleep(2.0)
            idle_cpu = 100.0 * (self.t.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            base_rss = self.t.rss_mb()
            last_ok: int | None = None
            first_bad: int | None = None
            for n in o.steps:
                if n <= len(self.viewers):
                    continue
                ttffs, phases = await self._grow(n)
                step = await self.measure(n, ttffs)
                step.ttff_phases_probe = phases
                for _ in range(o.retries):
                    if step.verdict not in ("sfu_limit", "tool_limit"):
                        break
                    # One more window at the same N: a shared or virtual machine has
                    # moments (steal, other work) that are nobody's limit.
                    step.verdict += " (retried)"
                    self.steps.append(step)
                    self.p.show(f"{self.t.name}: N={n} failed, measuring again")
                    step = await self.measure(n, [])
                    step.ttff_ms_probe, step.ttff_phases_probe = ttffs, phases
                self.steps.append(step)
                self.p.done += 1
                self.p.show(f"{self.t.name}: N={n} {step.verdict} loss {step.loss_pct}% p99 {step.p99_ms} ms "
                            f"sfu {step.sfu_cpu_pct}% tool {step.tool_cpu_pct}%")
                if step.verdict == "ok":
                    last_ok = n
                    continue
                if step.verdict == "tool_saturated":
                    last_ok = n
                if step.verdict in ("sfu_limit", "tool_limit"):
                    first_bad = n
                if o.stop_on_fail:
                    break
            # Refine between the last step that held and the first that did not, by removing viewers.
            for _ in range(o.refine):
                if last_ok is None or first_bad is None or self.steps[-1].verdict != "sfu_limit":
                    break
                mid = (last_ok + first_bad) // 2
                if mid - last_ok < max(5, last_ok // 20):
                    break
                self.p.show(f"{self.t.name}: refining at N={mid}")
                await self._shrink(mid)
                step = await self.measure(mid, [])
                step.refined = True
                self.steps.append(step)
                if step.verdict in ("ok", "tool_saturated"):
                    last_ok = mid
                else:
                    first_bad = mid
            return summarize(self.t, self.steps, idle_cpu, base_rss, o, self.errors, self.rec)
        finally:
            self.p.show(f"{self.t.name}: closing {len(self.viewers)} viewers")
            await self._shrink(0)
            await self.pub.close()
            self.poller.close()


def summarize(t: Target, steps: list[Step], idle_cpu: float, base_rss: float, o: Options,
              errors: list[str], rec: Recorder) -> dict[str, Any]:
    held = [s for s in steps if s.verdict in ("ok", "tool_saturated")]
    failed = [s for s in steps if s.verdict in ("sfu_limit", "tool_limit")]
    best = max(held, key=lambda s: s.viewers) if held else None
    first_fail = min(failed, key=lambda s: s.viewers) if failed else None
    sfu_limited = first_fail is not None and first_fail.verdict == "sfu_limit" and (
        best is None or first_fail.viewers > best.viewers)
    # Linear fit of SFU CPU (% of a core) against N over the steps that held.
    pts = [(0.0, idle_cpu)] + [(float(s.viewers), s.sfu_cpu_pct) for s in held]
    fixed, slope = _fit(pts)
    extrapolated = int((100.0 - fixed) / slope) if slope > 0 else None
    if best is None:
        vpc: float | None = 0
        method = "no step held"
    elif sfu_limited:
        vpc = best.viewers
        method = (f"measured: highest N that held (loss <= {o.max_loss_pct}%, p99 <= {o.max_p99_ms} ms); "
                  f"N={first_fail.viewers} failed with the SFU as the bottleneck")  # type: ignore[union-attr]
    else:
        vpc = extrapolated
        why = ("the load tool saturated first" if (first_fail and first_fail.verdict == "tool_limit")
               or best.verdict == "tool_saturated" else "the ramp ended before the SFU failed")
        method = (f"extrapolated from cpu_per_viewer at N={best.viewers}: {why}; linear fit of SFU CPU vs N "
                  f"over the steps that held (fixed {fixed:.1f}% + {slope:.3f}% per viewer), solved for 100% of one core "
                  "(an upper bound: where the SFU was the limit, the p99 criterion broke at 75-90% CPU)")
    # Memory from the largest N reached while ramping up (RSS does not shrink when viewers leave).
    grown = [s for s in steps if not s.refined]
    top = max(grown, key=lambda s: s.viewers) if grown else None
    all_probes = [x for s in held for x in s.ttff_ms_probe]
    phase_rows = [ph for s in held for ph in s.ttff_phases_probe]
    phases_p50 = {k: round(pct([ph[k] for ph in phase_rows if ph[k] >= 0], 50), 1)
                  for k in ("offer", "dtls_connected", "first_packet", "first_keyframe")} if phase_rows else None
    summary: dict[str, Any] = {
        "viewers_per_core": vpc,
        "method": method,
        "highest_clean_n": best.viewers if best else 0,
        "first_failing_n": first_fail.viewers if first_fail else None,
        "limited_by": "sfu" if sfu_limited else ("load tool" if first_fail or (best and best.verdict == "tool_saturated") else "none (ramp ended)"),
        "ttff_ms_p50": round(pct(all_probes, 50), 1) if all_probes else None,
        "ttff_ms_p95": round(pct(all_probes, 95), 1) if all_probes else None,
        "ttff_samples": len(all_probes),
        "ttff_phases_ms_p50": phases_p50,
        "cpu_per_viewer": round(best.sfu_cpu_pct / best.viewers, 4) if best else None,
        "cpu_per_viewer_unit": "percent of one core per viewer, at highest_clean_n (includes the publisher ingest, amortised)",
        "cpu_per_viewer_marginal": round(slope, 4),
        "cpu_fixed_pct": round(fixed, 2),
        "viewers_per_core_extrapolated": extrapolated,
        "cpu_us_per_packet_out": best.cpu_us_per_packet_out if best else None,
        "mem_mb_per_viewer": round((top.rss_mb - base_rss) / top.viewers, 3) if top else None,
        "mem_mb_per_viewer_note": f"(RSS at N={top.viewers if top else 0} - RSS with the publisher only) / N",
        "rss_mb_publisher_only": round(base_rss, 1),
        "idle_cpu_pct_publisher_only": round(idle_cpu, 2),
        "loss_pct_at_n": best.loss_pct if best else None,
        "p99_ms_at_n": best.p99_ms if best else None,
        "tool_cpu_pct_max": max((s.tool_cpu_pct for s in steps), default=None),
        "packets_without_trailer": rec.no_trailer,
        "srtp_errors": rec.srtp_errors,
        "errors": errors[:20],
        "steps": [asdict(s) for s in steps],
    }
    summary.update(t.describe())
    return summary


def _fit(pts: list[tuple[float, float]]) -> tuple[float, float]:
    if len(pts) < 2:
        return (pts[0][1] if pts else 0.0), 0.0
    import numpy as np

    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    slope, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(slope)


# =============================================================================
# Report


def print_table(record: dict[str, Any], out: Any = sys.stdout) -> None:
    cols = ["viewers", "pps_in", "pps_out", "loss_pct", "p50_ms", "p99_ms", "sfu_cpu_pct", "sfu_core_other_pct",
            "tool_core_other_pct",
            "cpu_us_per_packet_out", "rss_mb", "tool_cpu_pct", "tool_drop_pct", "ttff_ms_p50_all", "verdict"]
    for name in record["targets"]:
        t = record[name]
        print(f"\n== {name}: {t.get('software', '')}", file=out)
        rows = [[str(s[c]) for c in cols] for s in t["steps"]]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
        print("  ".join(c.rjust(w) for c, w in zip(cols, widths)), file=out)
        for r in rows:
            print("  ".join(v.rjust(w) for v, w in zip(r, widths)), file=out)
    print("\n== summary (video 1.5 Mbit/s + Opus; loss <= %s%%, p99 <= %s ms)" % (
        record["criteria"]["max_loss_pct"], record["criteria"]["max_p99_ms"]), file=out)
    keys = ["viewers_per_core", "highest_clean_n", "limited_by", "ttff_ms_p50", "ttff_ms_p95", "cpu_per_viewer",
            "cpu_us_per_packet_out", "mem_mb_per_viewer", "tool_cpu_pct_max"]
    w = max(len(k) for k in keys)
    print(" ".join(["".ljust(w)] + [n.rjust(12) for n in record["targets"]]), file=out)
    for k in keys:
        print(" ".join([k.ljust(w)] + [str(record[n].get(k)).rjust(12) for n in record["targets"]]), file=out)
    for n in record["targets"]:
        print(f"{n}: {record[n]['method']}", file=out)
    if "ratio_viewers_per_core" in record:
        print(f"ratio_viewers_per_core (jasmin / janus): {record['ratio_viewers_per_core']}", file=out)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import aiortc

    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "aiortc": aiortc.__version__, "host": platform.node()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every target in turn; returns the JSON record (also written when --json)."""
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    steps = sorted({int(x) for x in args.viewers.split(",") if x.strip()})
    wl = Workload(pacing_factor=args.pacing)
    opts = Options(steps=steps, seconds=args.seconds, settle=args.settle, probes=args.probes,
                   probe_gap=args.probe_gap,
                   concurrency=args.concurrency, max_loss_pct=args.max_loss, max_p99_ms=args.max_p99,
                   tool_cpu_limit=args.tool_cpu_limit, sfu_cpu=None if args.sfu_cpu < 0 else args.sfu_cpu,
                   tool_cpu=None if args.bench_cpu < 0 else args.bench_cpu,
                   stop_on_fail=not args.no_stop, retries=args.retries, refine=args.refine, sample_every=args.sample_every,
                   workload=wl)
    delta, key = wl.frame_sizes()
    record: dict[str, Any] = {
        "tool": "bench.load",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "targets": targets,
        "workload": {**asdict(wl), "delta_frame_bytes": delta, "keyframe_bytes": key,
                     "description": "1 publisher: VP8-shaped 720p-like 1.5 Mbit/s 30 fps + Opus-shaped 50 packets/s, "
                                    "sent into SRTP without encoding; N light viewers (real ICE/DTLS/SRTP, no decode)"},
        "criteria": {"max_loss_pct": opts.max_loss_pct, "max_p99_ms": opts.max_p99_ms,
                     "tool_cpu_limit_pct": opts.tool_cpu_limit},
        "measurement": {
            "send_time": "16-byte trailer at the end of every RTP payload (video filler and Opus bytes, forwarded "
                         "untouched): magic JSB1, CLOCK_REALTIME ns taken just before SRTP protect, flags",
            "receive_time": "kernel receive timestamp of the datagram at the viewer socket (ioctl SIOCGSTAMPNS, "
                            "CLOCK_REALTIME; stamped when the SFU's sendto hands it to loopback)",
            "latency": "receive_time - send_time over the window, all viewers, audio and video; sampled: packets "
                       "whose sequence number is divisible by latency_sample_every",
            "latency_sample_every": opts.sample_every,
            "loss": "1 - received/expected from each viewer's sequence numbers over the window",
            "ttff": "probe viewers joining one at a time, 1.2 s apart, after each step's bulk: join (jasmin) / "
                    "attach (janus) request to the first packet starting a keyframe; summary over steps that held",
            "cpu": "utime+stime of the SFU process (all threads) from /proc over the window",
            "tool_drop_pct": "datagrams dropped by full receive buffers of this tool's sockets (/proc/net/udp)",
            "sfu_in_drops": "datagrams dropped by the SFU's publisher-facing socket (/proc/net/udp)",
            "seconds_per_step": opts.seconds, "settle_s": opts.settle, "probes_per_step": opts.probes,
            "join_concurrency": opts.concurrency,
        },
        "pinning": {"sfu_cpu": opts.sfu_cpu, "tool_cpu": args.bench_cpu if args.bench_cpu >= 0 else None,
                    "how": "taskset -c <sfu_cpu> for the SFU process; sched_setaffinity for this tool",
                    "scheduling": scheduling()},
        "netns": None,
    }
    from bench import netns

    ns = netns.inside()
    if ns:
        record["netns"] = netns.describe(ns)
    progress = Progress(total=len(steps) * len(targets), enabled=not args.quiet)
    for name in targets:
        progress.show(f"{name}: starting")
        target = make_target(name, opts.sfu_cpu)
        try:
            runner = Runner(target, opts, progress)
            record[name] = await runner.run()
        finally:
            await target.close()
        # Steps a target skipped still count as done for the bar.
        progress.done = (targets.index(name) + 1) * len(steps)
    progress.finish()
    if "jasmin" in record and "janus" in record:
        a, b = record["jasmin"]["viewers_per_core"], record["janus"]["viewers_per_core"]
        record["ratio_viewers_per_core"] = round(a / b, 3) if a and b else None
        record["ratio_definition"] = "jasmin.viewers_per_core / janus.viewers_per_core"
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
        if not args.no_plot:
            from bench.plot import plot

            png = os.path.splitext(args.json)[0] + ".png"
            plot(record, png)
            record["png"] = png
    return record


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="jasmin", help="comma-separated: jasmin, janus (default: jasmin)")
    ap.add_argument("--viewers", default="10,25,50,75,100,125,150,175,200,250,300,400,500",
                    help="viewer counts to ramp through; stops at the first failing step")
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per step")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between the last join and the window")
    ap.add_argument("--probes", type=int, default=3, help="viewers per step that join one at a time (TTFF)")
    ap.add_argument("--probe-gap", type=float, default=1.2, help="seconds before each probe joins")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent joins for the bulk of a step")
    ap.add_argument("--max-loss", type=float, default=1.0, help="loss limit, percent")
    ap.add_argument("--max-p99", type=float, default=50.0, help="p99 added latency limit, ms")
    ap.add_argument("--tool-cpu-limit", type=float, default=90.0,
                    help="this tool's CPU (percent of its core) at which it is considered saturated")
    ap.add_argument("--sample-every", type=int, default=4,
                    help="decrypt and time 1 packet in K (by sequence number) for latency; loss counts every packet")
    ap.add_argument("--pacing", type=float, default=2.5, help="publisher pacing factor (0: frame bursts)")
    ap.add_argument("--refine", type=int, default=1, help="extra steps bisecting between the last good and first bad N")
    ap.add_argument("--retries", type=int, default=1, help="re-measure a failing step this many times before "
                    "accepting the failure (the last measurement decides)")
    ap.add_argument("--no-stop", action="store_true", help="measure every step even after a failure")
    ap.add_argument("--sfu-cpu", "--daemon-cpu", dest="sfu_cpu", type=int, default=0,
                    help="pin the SFU to this CPU (taskset); -1: no pinning")
    ap.add_argument("--bench-cpu", type=int, default=1, help="pin this tool to this CPU; -1: no pinning")
    ap.add_argument("--sched", choices=("rr", "nice", "none"), default="rr",
                    help="scheduling of this tool and the SFUs it starts (inherited): rr = SCHED_RR priority 10, "
                         "nice = nice -20 (both need root; fall back to none), none = leave as is")
    ap.add_argument("--netns", choices=("auto", "on", "off"), default="auto",
                    help="run inside a private network namespace (auto: when janus is a target)")
    ap.add_argument("--json", help="write the JSON record here (and a PNG plot next to it)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def set_scheduling(how: str) -> str:
    """Protect the measurement from other work on a shared machine.

    Set on this process before any SFU starts, so the SFU processes (and every
    Janus thread) inherit it. With SCHED_RR a waking SFU or load tool preempts
    ordinary processes at once; the kernel's RT throttling still leaves 5% of
    each core to everything else.
    """
    try:
        if how == "rr":
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        elif how == "nice":
            os.setpriority(os.PRIO_PROCESS, 0, -20)
    except (OSError, AttributeError):
        return "none"
    return how


def scheduling() -> str:
    policy = os.sched_getscheduler(0)
    if policy == os.SCHED_RR:
        return f"SCHED_RR priority {os.sched_getparam(0).sched_priority} (inherited by the SFU processes)"
    return f"SCHED_OTHER nice {os.getpriority(os.PRIO_PROCESS, 0)} (inherited by the SFU processes)"


async def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.bench_cpu >= 0 and hasattr(os, "sched_setaffinity") and args.bench_cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {args.bench_cpu})
    set_scheduling(args.sched)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    record = await run(args)
    print_table(record)
    if args.json:
        print(f"\nwrote {args.json}" + (f" and {record['png']}" if record.get("png") else ""))
    return 0


def cli(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    from bench import netns

    want = args.netns == "on" or (args.netns == "auto" and "janus" in args.targets)
    if want and not netns.inside():
        why = netns.available()
        if why:
            raise SystemExit(f"the Janus comparison runs in its own network namespace, which {why}")
        if "janus" in args.targets:
            from bench.janus import installed

            why = installed()
            if why:
                raise SystemExit(why)
        return netns.run_inside(["-m", "bench.load", *argv])
    # The stock asyncio loop, not uvloop: the raw receive path takes sockets
    # away from aiortc with loop._remove_reader, which uvloop's UDP transports
    # do not allow.
    return asyncio.run(main(argv))


if __name__ == "__main__":
    sys.exit(cli())
