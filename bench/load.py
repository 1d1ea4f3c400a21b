"""First load tool: one synthetic publisher, N counting viewers, the daemon as a real process.

    python -m bench.load --viewers 1,10,50 --seconds 10

The publisher is an aiortc peer whose senders never encode: it sends
synthetic VP8-shaped packets (720p-like, ~1.5 Mbit/s, a keyframe every 3 s
and on PLI) and Opus-sized packets at 50/s straight into SRTP. Viewers do
real ICE, DTLS and SRTP and count RTP headers without decoding. For each N it
prints the packets per second the daemon forwarded, the viewers' loss, and
the daemon's CPU (from /proc, so it counts only the daemon process).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiortc import RTCSessionDescription

from bench.peers import PacketCounter, new_pc, subscribe, wait_for
from jasmin_codecs.rtcp import Fir, Pli, parse_rtcp
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_signaling.client import SignalingClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the daemon under test ---------------------------------------------------


class DaemonUnderTest:
    def __init__(self, cpu: int | None) -> None:
        cmd = [sys.executable, "-m", "jasmin_sfu", "serve"]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        env = {**os.environ, "JASMIN_SERVER_PORT": "0", "JASMIN_LOG_LEVEL": "warning",
               "JASMIN_SERVER_MAX_REQUESTS_PER_S": "1000"}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.search(r"listening: demo page http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        else:
            raise RuntimeError("daemon did not start")
        import threading

        threading.Thread(target=lambda: [None for _ in self.proc.stdout or []], daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the synthetic publisher ---------------------------------------------------


class SyntheticPublisher:
    """Sends VP8-shaped and Opus-shaped RTP through real SRTP without encoding."""

    VIDEO_BPS = 1_500_000
    FPS = 30
    MTU_PAYLOAD = 1100
    KEYFRAME_EVERY_S = 3.0

    def __init__(self) -> None:
        self.sent = {"video": 0, "audio": 0}
        self.keyframes = 0
        self.plis = 0
        self._force_key = True
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, url: str, show_id: str) -> None:
        self.client = await SignalingClient.connect(url)
        await self.client.request("join", show_id=show_id, role="performer")
        self.pc = new_pc()
        tv = self.pc.addTransceiver(adapter.SilentTrack("video"), direction="sendonly")
        ta = self.pc.addTransceiver(adapter.SilentTrack("audio"), direction="sendonly")
        vp8 = [c for c in adapter.RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
        tv.setCodecPreferences(vp8)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        res = await self.client.request("publish", sdp=self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="answer"))
        from jasmin_sfu.media.sdp_info import sections

        answer = sections(res["sdp"])
        self.video_pt = answer[0].media_codec.payloadType  # type: ignore[union-attr]
        self.audio_pt = answer[1].media_codec.payloadType  # type: ignore[union-attr]
        self.video_ssrc = adapter.sender_ssrc(tv.sender)
        self.audio_ssrc = adapter.sender_ssrc(ta.sender)
        dtls = tv.sender.transport
        adapter.install_taps(dtls, lambda data, ms: True, self._on_rtcp)
        self.sink = adapter.SrtpSink(dtls)
        ok = await wait_for(lambda: self.sink.ready, timeout=20)
        if not ok:
            raise RuntimeError("publisher DTLS did not connect")
        self._tasks = [asyncio.ensure_future(self._video()), asyncio.ensure_future(self._audio())]

    def _on_rtcp(self, data: bytes) -> None:
        try:
            for p in parse_rtcp(data):
                if isinstance(p, (Pli, Fir)):
                    self.plis += 1
                    self._force_key = True
        except ValueError:
            pass

    async def _video(self) -> None:
        seq = random.randint(0, 0xFFFF)
        ts = random.randint(0, 0xFFFFFFFF)
        last_key = 0.0
        frame_bytes = self.VIDEO_BPS // 8 // self.FPS
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        filler = os.urandom(self.MTU_PAYLOAD)
        while True:
            now = loop.time()
            key = self._force_key or now - last_key >= self.KEYFRAME_EVERY_S
            if key:
                self._force_key = False
                last_key = now
                self.keyframes += 1
            size = frame_bytes * (4 if key else 1)
            npk = max(1, -(-size // self.MTU_PAYLOAD))
            for i in range(npk):
                desc = b"\x10" if i == 0 else b"\x00"
                body = (b"\x00" if key else b"\x01") if i == 0 else b""
                payload = desc + body + filler[: self.MTU_PAYLOAD - len(body)]
                hdr = struct.pack("!BBHII", 0x80, (0x80 if i == npk - 1 else 0) | self.video_pt, seq, ts, self.video_ssrc)
                self.sink.send(hdr + payload)
                seq = (seq + 1) & 0xFFFF
                self.sent["video"] += 1
            ts = (ts + 90000 // self.FPS) & 0xFFFFFFFF
            n += 1
            await asyncio.sleep(max(0.0, start + n / self.FPS - loop.time()))

    async def _audio(self) -> None:
        seq = random.randint(0, 0xFFFF)
        ts = random.randint(0, 0xFFFFFFFF)
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        payload = b"\xfc" + os.urandom(100)
        while True:
            hdr = struct.pack("!BBHII", 0x80, self.audio_pt, seq, ts, self.audio_ssrc)
            self.sink.send(hdr + payload)
            self.sent["audio"] += 1
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 960) & 0xFFFFFFFF
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()
        await self.client.close()


# -- measurement ---------------------------------------------------------------


@dataclass
class Row:
    viewers: int
    seconds: float
    pps_in: float
    pps_out: float
    loss_pct: float
    daemon_cpu_pct: float
    cpu_us_per_packet_out: float
    rss_mb: float
    ttfk_ms_p50: float


def loss_of(counter: PacketCounter, start: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(received, expected) per the viewer's own sequence numbers since ``start``."""
    received = expected = 0
    for ssrc, seqs in counter.seqs.items():
        if ssrc not in start or not seqs:
            continue
        base_count, base_max = start[ssrc]
        # Unwrap relative to base_max.
        top = max(((s - base_max) & 0xFFFF) for s in seqs if ((s - base_max) & 0xFFFF) < 0x8000)
        expected += top
        received += len([s for s in seqs if 0 < ((s - base_max) & 0xFFFF) <= top])
    return received, expected


async def measure(url: str, daemon: DaemonUnderTest, n: int, seconds: float, show: str) -> Row:
    pub = SyntheticPublisher()
    await pub.start(url, show)
    viewers = []
    t_join = time.monotonic()
    for i in range(n):
        viewers.append(await subscribe(url, show, decode=False, count=True))
    counters = [v.counter for v in viewers if v.counter is not None]
    await wait_for(lambda: all(len(c.packets) >= 2 for c in counters), timeout=30)
    ttfk = sorted((min(c.first_at.values()) - t_join) * 1000 for c in counters if c.first_at)
    await asyncio.sleep(1.0)  # settle
    for c in counters:
        c.keep_seqs = True
        c.seqs.clear()
    await asyncio.sleep(0.2)
    start = {id(c): {s: (len(q), max(q)) for s, q in c.seqs.items() if q} for c in counters}
    cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
    sent0 = sum(pub.sent.values())
    recv0 = sum(c.total for c in counters)
    await asyncio.sleep(seconds)
    cpu1, t1 = daemon.cpu_seconds(), time.monotonic()
    sent1 = sum(pub.sent.values())
    recv1 = sum(c.total for c in counters)
    rec = exp = 0
    for c in counters:
        r, e = loss_of(c, start[id(c)])
        rec += r
        exp += e
    dt = t1 - t0
    out = (recv1 - recv0) / dt
    row = Row(
        viewers=n,
        seconds=round(dt, 2),
        pps_in=round((sent1 - sent0) / dt, 1),
        pps_out=round(out, 1),
        loss_pct=round(100.0 * (1 - rec / exp), 3) if exp else 0.0,
        daemon_cpu_pct=round(100.0 * (cpu1 - cpu0) / dt, 1),
        cpu_us_per_packet_out=round(1e6 * (cpu1 - cpu0) / max(1, recv1 - recv0), 2),
        rss_mb=round(daemon.rss_mb(), 1),
        ttfk_ms_p50=round(ttfk[len(ttfk) // 2], 1) if ttfk else -1,
    )
    for v in viewers:
        await v.close()
    await pub.close()
    return row


def print_table(rows: list[Row]) -> None:
    cols = list(asdict(rows[0]).keys())
    widths = [max(len(c), *(len(str(getattr(r, c))) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(getattr(r, c)).rjust(w) for c, w in zip(cols, widths)))


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", default="1,10,50", help="comma-separated viewer counts")
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per step")
    ap.add_argument("--daemon-cpu", type=int, default=0, help="pin the daemon to this CPU (taskset); -1: no pinning")
    ap.add_argument("--bench-cpu", type=int, default=1, help="pin this process to this CPU; -1: no pinning")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.viewers.split(",") if x.strip()]
    if args.bench_cpu >= 0 and hasattr(os, "sched_setaffinity") and args.bench_cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {args.bench_cpu})
    daemon = DaemonUnderTest(None if args.daemon_cpu < 0 else args.daemon_cpu)
    rows = []
    try:
        for i, n in enumerate(counts):
            print(f"[{i + 1}/{len(counts)}] {n} viewers, {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
            rows.append(await measure(daemon.url, daemon, n, args.seconds, f"load-{i}"))
    finally:
        daemon.stop()
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    import uvloop

    sys.exit(uvloop.run(main()))
