"""The CPU of viewers' RTCP sender reports: this checkout against a baseline, alternated in one run.

Before issue 16's change each viewer's two aiortc senders ran their own RTCP task
(``RTCRtpSender._run_rtcp``: a wake-up, packet objects and an async send per sender per
second); now the worker's one timer sends them (``jasmin_sfu/media/sender_report_timer.py``).
Both daemons serve the same idle-ish show (a light publisher: 100 kbit/s of video at 10 fps
plus 50 audio packets/s) to N light viewers that send RR + REMB every second; what differs
between them is the SR path (and whatever else differs between the two checkouts: name the
baseline's commit). Rounds alternate baseline and this checkout, so the machine's other load
falls on both alike; each window records the machine's load average beside the daemon's CPU.

    git archive <base-commit> | tar -x -C /tmp/base && (cd /tmp/base && python setup.py build_ext --inplace)
    python -m bench.sender_reports --baseline /tmp/base --viewers 200 --rounds 3 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from bench.measure import own_cpu_seconds
from bench.peers import wait_for
from bench.publisher import SyntheticPublisher, Workload
from bench.targets import REPO, JasminTarget
from bench.viewers import LightViewer, RawPoller, Recorder

PY_SPY = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
IDLE_ISH = Workload(video_bps=100_000, fps=10, keyframe_every_s=3.0, audio_pps=50)


def _commit(repo: str) -> str:
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "not a git checkout"
    except OSError:
        return "unknown"


# Frames of the SR work in a py-spy stack: aiortc's loop per sender (baseline), the worker's timer (this).
SR_FRAME = re.compile(r"_run_rtcp \([^)]*rtcrtpsender\.py|\(\S*sender_report_timer\.py")


def sr_share(raw: str) -> dict[str, Any]:
    """The share of the daemon's sampled (non-idle) stacks inside SR work, from py-spy's raw output."""
    total = sr = loop_only = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        if SR_FRAME.search(stack):
            sr += int(n)
        elif stack.rsplit(";", 1)[-1].startswith("Runner.run ("):
            loop_only += int(n)  # inside uvloop's own C loop (mostly its epoll wait): no Python frame to name
    return {
        "samples": total,
        "sr_samples": sr,
        "sr_share_pct": round(100.0 * sr / max(1, total), 2),
        "loop_only_samples": loop_only,
        "sr_share_of_python_pct": round(100.0 * sr / max(1, total - loop_only), 2),
    }


async def one_window(
    name: str,
    repo: str,
    viewers: int,
    seconds: float,
    cpu: int | None,
    concurrency: int = 8,
    profile: str | None = None,
    quiet_window: bool = False,
) -> dict[str, Any]:
    """Start ``repo``'s daemon, fill its show, measure its CPU over ``seconds``, stop it.
    With ``profile`` (a file name), py-spy samples the daemon over the window instead
    (its sampling costs the daemon CPU too: the share is the figure then, not the CPU).
    ``quiet_window``: the publisher stops sending before the window, so the daemon forwards
    nothing while it goes on reporting on every (still started) stream: the window's CPU is
    then mostly the SRs, the viewers' RR + REMB and ICE consent, without the forwarding's noise."""
    target = await asyncio.to_thread(JasminTarget, cpu, repo=repo)
    rec = Recorder()
    poller = RawPoller(rec, sample_every=64, rtcp_every_s=1.0)
    pub = SyntheticPublisher(IDLE_ISH)
    joined: list[LightViewer] = []
    errors = 0
    try:
        await pub.start(target.publish)
        sem = asyncio.Semaphore(concurrency)

        async def join(i: int) -> None:
            nonlocal errors
            v = LightViewer(i, rec, poller)
            async with sem:
                try:
                    await target.subscribe(v)
                    joined.append(v)
                except Exception:
                    errors += 1
                    await target.unsubscribe(v)

        await asyncio.gather(*(join(i) for i in range(viewers)))
        await wait_for(lambda: all(v.first_key_ns for v in joined), timeout=60, interval=0.1)
        await asyncio.sleep(3.0)  # the joins' handshakes and keyframes are over
        if quiet_window:
            for task in pub._tasks:
                task.cancel()
            await asyncio.sleep(2.0)
        load0 = os.getloadavg()[0]
        spy = None
        if profile:
            spy = await asyncio.create_subprocess_exec(
                PY_SPY, "record", "-p", str(target.daemon.proc.pid), "-r", "200", "-d", str(int(seconds)),
                "-f", "raw", "-o", profile, "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        cpu0, tool0, t0 = target.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, tool1, t1 = target.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        load1 = os.getloadavg()[0]
        dt = t1 - t0
        sfu_ms_per_s = 1000.0 * (cpu1 - cpu0) / dt
        extra: dict[str, Any] = {}
        if spy is not None and profile:
            await spy.wait()
            with open(profile) as f:
                extra = {"profile": profile, **sr_share(f.read())}
        return {
            **extra,
            "variant": name,
            "viewers": len(joined),
            "join_errors": errors,
            "window_s": round(dt, 1),
            "sfu_cpu_ms_per_s": round(sfu_ms_per_s, 1),
            "sfu_cpu_us_per_viewer_s": round(1000.0 * sfu_ms_per_s / max(1, len(joined)), 1),
            "tool_cpu_pct": round(100.0 * (tool1 - tool0) / dt, 1),
            "loadavg_1m": [round(load0, 2), round(load1, 2)],
        }
    finally:
        await pub.close()
        await asyncio.gather(*(target.unsubscribe(v) for v in joined), return_exceptions=True)
        poller.close()
        await target.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = [("baseline", os.path.abspath(args.baseline)), ("this", REPO)]
    cpu = None if args.sfu_cpu < 0 else args.sfu_cpu
    if args.bench_cpu >= 0:
        os.sched_setaffinity(0, {args.bench_cpu})
    windows = []
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for name, repo in order:
            w = await one_window(
                name, repo, args.viewers, args.seconds, cpu, args.concurrency, quiet_window=args.quiet_window
            )
            w["round"] = r
            windows.append(w)
            print(json.dumps(w), flush=True)
    for _ in range(args.profile_rounds if args.profile else 0):
        for name, repo in variants:
            out = os.path.join(args.profile, f"sender-reports-{name}-{len(windows)}.raw")
            w = await one_window(name, repo, args.viewers, args.seconds, cpu, args.concurrency, profile=out)
            w["round"] = "py-spy"
            windows.append(w)
            print(json.dumps(w), flush=True)
    summary = {}
    for name, _ in variants:
        ws = [w["sfu_cpu_ms_per_s"] for w in windows if w["variant"] == name and w["round"] != "py-spy"]
        spy = [w["sr_share_pct"] for w in windows if w["variant"] == name and w["round"] == "py-spy"]
        summary[name] = {"sfu_cpu_ms_per_s": ws, "mean": round(sum(ws) / max(1, len(ws)), 1), "sr_share_pct": spy}
    return {
        "tool": "bench.sender_reports",
        "baseline": {"path": variants[0][1], "commit": _commit(variants[0][1])},
        "this": {"path": REPO, "commit": _commit(REPO)},
        "workload": "1 publisher (100 kbit/s VP8-shaped at 10 fps + 50 Opus-shaped packets/s), "
        f"{args.viewers} light viewers (RR + REMB every second), daemon pinned to CPU {cpu}"
        + (", the publisher silent during each window" if args.quiet_window else ""),
        "windows": windows,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="a checkout of the baseline commit, C extension built in place")
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="windows per variant, alternating")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent joins")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--sfu-cpu", type=int, default=0, help="pin the daemon to this CPU; -1: no pinning")
    ap.add_argument("--bench-cpu", type=int, default=1, help="pin this tool to this CPU; -1: no pinning")
    ap.add_argument("--json", help="write the record here")
    ap.add_argument("--quiet-window", action="store_true", help="the publisher stops sending before each window")
    ap.add_argument("--profile", help="a directory: more windows per variant under py-spy (pip install py-spy)")
    ap.add_argument("--profile-rounds", type=int, default=1, help="py-spy windows per variant, alternating")
    args = ap.parse_args(argv)
    record = asyncio.run(run(args))
    print(json.dumps(record["summary"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
