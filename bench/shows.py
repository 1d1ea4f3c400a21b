"""Many shows on one SFU: the servers, timed viewer joins and one measurement window (issue 16).

Shared by ``bench.memory``, ``bench.longtail`` and ``bench.joinstorm``. Each
SFU runs as its own process, pinned with taskset like the load tool:
jasmin-sfu (``bench.targets.DaemonUnderTest``; a show is a performer's
connection that publishes) or Janus (``bench.janus``'s tuned configuration; a
show is a VideoRoom room with one publisher). The peers are the load tool's:
the synthetic publisher (``bench.publisher``) and light viewers
(``bench.viewers``).

**Join timing.** Every viewer join records when its first request left
(``t_request_ns``: jasmin-sfu's websocket connect + ``join``; Janus's
``attach``) and when its subscribe request left (``LightViewer.t_join_ns``:
jasmin-sfu's ``subscribe``; Janus's ``attach`` of the subscriber handle,
which is the start of its subscribe), so TTFF (``LightViewer.ttff_ms``) is
timed the same way on both: from the subscribe request to the kernel receive
time of the first packet that starts a keyframe.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from dataclasses import dataclass
from typing import Awaitable, Callable

from bench import janus_client as jc
from bench.janus import ROOM_OPTIONS, JanusTarget, version
from bench.measure import core_times, own_cpu_seconds, pct
from bench.targets import DaemonUnderTest
from bench.viewers import LightViewer, RawPoller
from jasmin_signaling.client import Overloaded, SignalingClient


class JasminServer:
    """jasmin-sfu as a real process; each show: a performer's connection that publishes."""

    name = "jasmin"

    def __init__(self, cpu: int | None, admission: bool = False) -> None:
        self.admission = admission
        self.d = DaemonUnderTest(cpu, admission=admission)
        self.clients: list[SignalingClient] = []

    @property
    def pid(self) -> int:
        return self.d.proc.pid

    def rss_mb(self) -> float:
        return self.d.rss_mb()

    def cpu_seconds(self) -> float:
        return self.d.cpu_seconds()

    def software(self) -> str:
        from jasmin_sfu import __version__

        adm = "admission at its defaults" if self.admission else "admission off"
        return f"jasmin-sfu {__version__} (python -m jasmin_sfu serve, built-in defaults, {adm})"

    async def show(self, show: str) -> Callable[[str], Awaitable[str]]:
        client = await SignalingClient.connect(self.d.url)
        self.clients.append(client)
        await client.request("join", show_id=show, role="performer")

        async def exchange(offer: str) -> str:
            res = await client.request("publish", sdp=offer)
            return str(res["sdp"])

        return exchange

    async def viewer(self, show: str, v: LightViewer) -> None:
        """Join ``show`` as a viewer; raises :class:`Overloaded` when admission control refuses."""
        v.ctx["t_request_ns"] = time.time_ns()
        client = await SignalingClient.connect(self.d.url)
        self.clients.append(client)
        await client.request("join", show_id=show, role="viewer")
        v.t_join_ns = time.time_ns()
        res = await client.request("subscribe")
        answer = await v.answer(str(res["sdp"]))
        await client.request("answer", transport_id=res["transport_id"], sdp=answer)

    async def close(self) -> None:
        for c in self.clients:  # every one, even when a websocket's close fails or hangs
            try:
                await asyncio.wait_for(c.close(), 5)
            except Exception:
                pass
        await asyncio.to_thread(self.d.stop)


class JanusServer(JanusTarget):
    """Janus (bench/janus.py's tuned configuration); each show: a VideoRoom room with one publisher."""

    def __init__(self, cpu: int | None) -> None:
        super().__init__(cpu)
        self.rooms: dict[str, tuple[int, int]] = {}  # show -> (room, feed)

    @property
    def pid(self) -> int:
        return self.janus.proc.pid

    def software(self) -> str:
        return f"Janus {version()} (bench/janus.py configuration, event_loops = 1)"

    async def show(self, show: str) -> Callable[[str], Awaitable[str]]:
        if self.session is None:
            self.session = await jc.JanusSession.connect(self.janus.url)
        room = 5000 + len(self.rooms)
        self.rooms[show] = (room, 0)
        await jc.create_room(self.session, room, ROOM_OPTIONS)

        async def exchange(offer: str) -> str:
            _h, feed, answer = await jc.publish(self.session, room, offer)
            self.rooms[show] = (room, feed)
            return answer

        return exchange

    async def viewer(self, show: str, v: LightViewer) -> None:
        room, feed = self.rooms[show]
        v.ctx["t_request_ns"] = v.t_join_ns = time.time_ns()
        h, offer = await jc.subscribe_offer(self.session, room, feed)
        answer = await v.answer(offer)
        await jc.subscribe_answer(self.session, h, room, answer)


Server = JasminServer | JanusServer


def make_server(name: str, cpu: int | None, admission: bool = False) -> Server:
    """The SFU ``name`` pinned to core ``cpu`` (None or negative: not pinned).

    ``admission`` (jasmin-sfu only): its admission control at the defaults; Janus has none."""
    core = cpu if cpu is not None and cpu >= 0 else None
    return JanusServer(core) if name == "janus" else JasminServer(core, admission)


def join_outcome(exc: BaseException | None) -> str:
    """How a join ended: ``ok``, ``overloaded`` (jasmin-sfu's admission control refused it) or ``error``."""
    if exc is None:
        return "ok"
    return "overloaded" if isinstance(exc, Overloaded) else "error"


def _machine_busy() -> tuple[float, float, float]:
    """(busy without softirq, softirq, total) jiffies over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return float(total - idle - v[6]), float(v[6]), float(total)


CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class WindowResult:
    """One measurement window over a set of viewers (all figures over the window)."""

    seconds: float
    sfu_cpu_pct: float  # the SFU process, all threads, % of one core
    tool_cpu_pct: float  # this tool, % of one core
    other_pct: float  # the whole machine's busy time besides the two processes and softirq, % of one core
    softirq_pct: float  # all CPUs (loopback delivery runs there), % of one core
    sfu_core_other_pct: float  # the SFU's core: busy besides the SFU and softirq (-1: not pinned)
    tool_core_other_pct: float  # this tool's core: busy besides this tool and softirq (-1: not pinned)
    steal_pct: float  # hypervisor steal on the SFU's core (-1: not pinned)
    loadavg_1m: float
    packets_in: int  # RTP sent by the publishers in the window
    packets_out: int  # RTP received by the viewers in the window (= forwarded copies that arrived)
    expected: int  # RTP the viewers should have received (from their sequence numbers)
    loss_pct: float
    p50_ms: float  # added latency (kernel receive time - send time), sampled packets
    p99_ms: float
    max_ms: float
    cpu_us_per_packet_out: float  # SFU CPU over the window / packets_out


class Window:
    """Start, then stop: SFU and tool CPU, what else ran, loss and latency of ``viewers``."""

    def __init__(
        self,
        server: Server,
        pollers: list[RawPoller],
        viewers: list[LightViewer],
        sent: Callable[[], int],
        sfu_cpu: int | None,
        tool_cpu: int | None,
    ) -> None:
        self.s, self.pollers, self.viewers, self.sent = server, pollers, viewers, sent
        self.sfu_core, self.tool_core = sfu_cpu, tool_cpu

    def start(self) -> None:
        self.snaps = [v.snapshot() for v in self.viewers]
        for p in self.pollers:
            p.rec.latency_ns = array("q")
            p.rec.recording = True
        self.recv0 = sum(p.packets for p in self.pollers)
        self.sent0 = self.sent()
        self.m0 = _machine_busy()
        self.c0, self.tc0 = core_times(self.sfu_core), core_times(self.tool_core)
        self.cpu0, self.tool0, self.t0 = self.s.cpu_seconds(), own_cpu_seconds(), time.monotonic()

    def stop(self) -> WindowResult:
        cpu1, tool1, t1 = self.s.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        for p in self.pollers:
            p.rec.recording = False
        m1 = _machine_busy()
        c1, tc1 = core_times(self.sfu_core), core_times(self.tool_core)
        dt = max(1e-6, t1 - self.t0)
        sfu = 100.0 * (cpu1 - self.cpu0) / dt
        tool = 100.0 * (tool1 - self.tool0) / dt
        per_core = 100.0 / CLK_TCK / dt  # jiffies -> % of one core
        busy = (m1[0] - self.m0[0]) * per_core
        softirq = (m1[1] - self.m0[1]) * per_core

        def core_other(a: tuple[float, ...], b: tuple[float, ...], own: float, pinned: int | None) -> float:
            if pinned is None or b[3] <= a[3]:
                return -1.0
            tot = b[3] - a[3]
            return round(max(0.0, 100.0 * (b[0] - a[0] - (b[1] - a[1])) / tot - own), 1)

        expected = received = 0
        for v, snap in zip(self.viewers, self.snaps, strict=True):
            for ssrc, (cnt1, top1) in v.snapshot().items():
                cnt0, top0 = snap.get(ssrc, (0, top1))
                expected += top1 - top0
                received += cnt1 - cnt0
        lat = array("q")
        for p in self.pollers:
            lat.extend(p.rec.latency_ns)
        out = sum(p.packets for p in self.pollers) - self.recv0
        return WindowResult(
            seconds=round(dt, 2),
            sfu_cpu_pct=round(sfu, 1),
            tool_cpu_pct=round(tool, 1),
            other_pct=round(max(0.0, busy - sfu - tool), 1),
            softirq_pct=round(softirq, 1),
            sfu_core_other_pct=core_other(self.c0, c1, sfu, self.sfu_core),
            tool_core_other_pct=core_other(self.tc0, tc1, tool, self.tool_core),
            steal_pct=round(100.0 * (c1[2] - self.c0[2]) / (c1[3] - self.c0[3]), 1) if c1[3] > self.c0[3] else -1.0,
            loadavg_1m=round(os.getloadavg()[0], 2),
            packets_in=self.sent() - self.sent0,
            packets_out=out,
            expected=expected,
            loss_pct=round(max(0.0, 100.0 * (1 - received / expected)), 3) if expected else 0.0,
            p50_ms=round(pct(lat, 50) / 1e6, 3) if lat else -1.0,
            p99_ms=round(pct(lat, 99) / 1e6, 3) if lat else -1.0,
            max_ms=round(max(lat) / 1e6, 3) if lat else -1.0,
            cpu_us_per_packet_out=round(1e6 * (cpu1 - self.cpu0) / out, 2) if out else -1.0,
        )


def disturbed(w: WindowResult, max_other_pct: float) -> bool:
    """True when other work on the machine (besides the SFU, this tool and softirq) exceeded ``max_other_pct``
    of one core in the window, or hypervisor steal on the SFU's core did."""
    return w.other_pct > max_other_pct or w.steal_pct > max_other_pct
