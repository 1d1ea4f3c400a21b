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
import os
import sys
import time
from array import array
from dataclasses import asdict
from typing import Any

from bench import scenario
from bench.measure import Step, core_times, judge, own_cpu_seconds, pct, udp_drops
from bench.options import Options, tool_parser
from bench.peers import wait_for
from bench.publisher import SyntheticPublisher, Workload
from bench.report import machine, print_table, summarize
from bench.targets import Target, make_target
from bench.viewers import LightViewer, RawPoller, Recorder


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
        if probes:
            # The probes measure a viewer joining a loaded, steady show: the
            # bulk's handshakes (a flash crowd; its TTFF is ttff_ms_p50_all)
            # must be over first, or the first probe queues behind them.
            self.p.show(f"{self.t.name}: N={n} waiting for the bulk's first keyframes before probing")
            await wait_for(lambda: all(v.first_key_ns for v in self.viewers), timeout=30, interval=0.05)
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
            await wait_for(lambda: v.first_key_ns > 0, timeout=10, interval=0.01)  # noqa: B023 - awaited here
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
            if o.sfu_cpu is not None
            else -1.0,
            tool_core_other_pct=round(max(0.0, 100.0 * (tcore1[0] - tcore0[0]) / tcore_total - tool_cpu_pct), 1)
            if o.tool_cpu is not None
            else -1.0,
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
        self.poller = RawPoller(self.rec, o.sample_every, rtcp_every_s=o.rtcp_every)
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
                self.p.show(
                    f"{self.t.name}: N={n} {step.verdict} loss {step.loss_pct}% p99 {step.p99_ms} ms "
                    f"sfu {step.sfu_cpu_pct}% tool {step.tool_cpu_pct}%"
                )
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every target in turn; returns the JSON record (also written when --json)."""
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    steps = sorted({int(x) for x in args.viewers.split(",") if x.strip()})
    wl = Workload(pacing_factor=args.pacing)
    opts = Options(
        steps=steps,
        seconds=args.seconds,
        settle=args.settle,
        probes=args.probes,
        probe_gap=args.probe_gap,
        concurrency=args.concurrency,
        max_loss_pct=args.max_loss,
        max_p99_ms=args.max_p99,
        tool_cpu_limit=args.tool_cpu_limit,
        sfu_cpu=None if args.sfu_cpu < 0 else args.sfu_cpu,
        tool_cpu=None if args.bench_cpu < 0 else args.bench_cpu,
        stop_on_fail=not args.no_stop,
        retries=args.retries,
        refine=args.refine,
        sample_every=args.sample_every,
        rtcp_every=args.rtcp_every,
        workload=wl,
    )
    delta, key = wl.frame_sizes()
    record: dict[str, Any] = {
        "tool": "bench.load",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "targets": targets,
        "workload": {
            **asdict(wl),
            "delta_frame_bytes": delta,
            "keyframe_bytes": key,
            "description": "1 publisher: VP8-shaped 720p-like 1.5 Mbit/s 30 fps + Opus-shaped 50 packets/s, "
            "sent into SRTP without encoding; N light viewers (real ICE/DTLS/SRTP, no decode)",
        },
        "criteria": {
            "max_loss_pct": opts.max_loss_pct,
            "max_p99_ms": opts.max_p99_ms,
            "tool_cpu_limit_pct": opts.tool_cpu_limit,
        },
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
            "seconds_per_step": opts.seconds,
            "settle_s": opts.settle,
            "probes_per_step": opts.probes,
            "join_concurrency": opts.concurrency,
            "viewer_rtcp_every_s": opts.rtcp_every,
        },
        "pinning": {
            "sfu_cpu": opts.sfu_cpu,
            "tool_cpu": args.bench_cpu if args.bench_cpu >= 0 else None,
            "how": "taskset -c <sfu_cpu> for the SFU process; sched_setaffinity for this tool",
            "scheduling": scenario.scheduling(),
        },
        "netns": None,
    }
    from bench import netns

    ns = netns.inside()
    if ns:
        record["netns"] = netns.describe(ns)
    progress = Progress(total=len(steps) * len(targets), enabled=not args.quiet)
    for name in targets:
        progress.show(f"{name}: starting")
        target = await asyncio.to_thread(make_target, name, opts.sfu_cpu)
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
    for name in targets:
        if name.startswith("jasmin-w") and "jasmin" in record and name in record:
            # One show over N workers against one worker, same run: what the relays cost per packet.
            a, b = record[name].get("cpu_us_per_packet_out"), record["jasmin"].get("cpu_us_per_packet_out")
            record[f"ratio_cpu_us_per_packet_out_{name}"] = round(a / b, 3) if a and b else None
    if args.json:
        from bench.plot import plot

        png = scenario.write(record, args.json, None if args.no_plot else plot, indent=2)
        if png:
            record["png"] = png
    return record


def parser() -> argparse.ArgumentParser:
    ap = tool_parser("python -m bench.load", __doc__)
    ap.add_argument(
        "--targets",
        default="jasmin",
        help="comma-separated: jasmin, janus, jasmin-wN (a supervisor of N workers; default: jasmin)",
    )
    ap.add_argument(
        "--viewers",
        default="10,25,50,75,100,125,150,175,200,250,300,400,500,600,700",
        help="viewer counts to ramp through; stops at the first failing step",
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per step")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between the last join and the window")
    ap.add_argument("--probes", type=int, default=3, help="viewers per step that join one at a time (TTFF)")
    ap.add_argument("--probe-gap", type=float, default=1.2, help="seconds before each probe joins")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent joins for the bulk of a step")
    ap.add_argument("--max-loss", type=float, default=1.0, help="loss limit, percent")
    ap.add_argument("--max-p99", type=float, default=50.0, help="p99 added latency limit, ms")
    ap.add_argument(
        "--tool-cpu-limit",
        type=float,
        default=90.0,
        help="this tool's CPU (percent of its core) at which it is considered saturated",
    )
    ap.add_argument(
        "--sample-every",
        type=int,
        default=4,
        help="decrypt and time 1 packet in K (by sequence number) for latency; loss counts every packet",
    )
    ap.add_argument(
        "--rtcp-every",
        type=float,
        default=0.0,
        help="viewers send RR + REMB this often, seconds, like real receivers (issue 16's method; "
        "0: none, as in the committed results)",
    )
    ap.add_argument("--pacing", type=float, default=2.5, help="publisher pacing factor (0: frame bursts)")
    ap.add_argument("--refine", type=int, default=1, help="extra steps bisecting between the last good and first bad N")
    ap.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-measure a failing step this many times before accepting the failure (the last measurement decides)",
    )
    ap.add_argument("--no-stop", action="store_true", help="measure every step even after a failure")
    ap.add_argument(
        "--sfu-cpu",
        "--daemon-cpu",
        dest="sfu_cpu",
        type=int,
        default=0,
        help="pin the SFU to this CPU (taskset); -1: no pinning",
    )
    ap.add_argument("--bench-cpu", type=int, default=1, help="pin this tool to this CPU; -1: no pinning")
    ap.add_argument(
        "--sched",
        choices=("rr", "nice", "none"),
        default="rr",
        help="scheduling of this tool and the SFUs it starts (inherited): rr = SCHED_RR priority 10, "
        "nice = nice -20 (both need root; fall back to none), none = leave as is",
    )
    ap.add_argument(
        "--netns",
        choices=("auto", "on", "off"),
        default="auto",
        help="run inside a private network namespace (auto: when janus is a target)",
    )
    ap.add_argument("--json", help="write the JSON record here (and a PNG plot next to it)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


async def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    scenario.settle_tool(args.bench_cpu if 0 <= args.bench_cpu < (os.cpu_count() or 1) else None, args.sched)
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
