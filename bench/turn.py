"""TURN viewers against UDP viewers: the node's CPU per forwarded packet and TTFF, as ratios.

``python -m bench.turn [--viewers 20] [--seconds 10] [--probes 5] [--json FILE]`` (root;
Debian's coturn: ``make coturn``). Like ``bench.load`` the tool re-executes itself
inside a private loopback-only namespace (bench/netns.py), runs the daemon there
pinned to CPU 0 and itself on CPU 1, and starts a real coturn there
(bench/coturn.py, use-auth-secret, loopback peers allowed: the node is on
127.0.0.1). One synthetic publisher (bench/publisher.py); then, per mode:

* ``udp``: viewers with their usual host candidates on 127.0.0.1;
* ``turn-udp``, ``turn-tcp``, ``turn-tls``: viewers with no host candidate at
  all and one TURN server (the node's credentials, jasmin_sfu/api/ice_servers.py),
  so every packet goes node -> coturn's relay port -> coturn -> viewer.

``--probes`` viewers join one at a time (TTFF: join request to first keyframe
packet), the rest at once; after a settle time the window measures the node's
CPU seconds (and coturn's) against ``jasmin_rtp_packets_out``. Every viewer
receives through aiortc's own path (no raw-socket takeover: a TURN viewer has
no UDP socket of its own), the same for all modes. The node does the same work
for a TURN viewer (it sends plain UDP to coturn's relay address), so its ratio
should stay near 1; the relay's cost is coturn's column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

import bench.viewers as viewers_module
from bench import coturn, netns
from bench.peers import loopback_only
from bench.publisher import SyntheticPublisher, Workload
from bench.targets import JasminTarget, _proc_cpu_seconds
from bench.viewers import LightViewer, Recorder
from jasmin_sfu.api.ice_servers import IceServers

SECRET = "bench-turn-secret-0123456789"
HOST = "127.0.0.1"
MODES = {
    "udp": None,
    "turn-udp": f"turn:{HOST}:{coturn.TURN_PORT}?transport=udp",
    "turn-tcp": f"turn:{HOST}:{coturn.TURN_PORT}?transport=tcp",
    "turn-tls": f"turns:{HOST}:{coturn.TURNS_PORT}?transport=tcp",
}


class AiortcPath:
    """The poller LightViewer hands itself to once DTLS is up: here, nobody (aiortc keeps reading)."""

    def take_over(self, v: LightViewer) -> None:
        pass

    def release(self, v: LightViewer) -> None:
        pass


def use_mode(url: str | None) -> None:
    """Make LightViewer's peer connections UDP (host candidates) or relay-only through ``url``."""
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection

    from jasmin_sfu.media import aiortc_adapter

    def new_pc() -> RTCPeerConnection:
        loopback_only()
        if url is None:
            return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        aiortc_adapter.restrict_host_addresses([])  # no host candidate: the relay or nothing
        (server,) = IceServers((url,), SECRET, 3600).issue()
        ice = RTCIceServer(urls=url, username=server["username"], credential=server["credential"])
        return RTCPeerConnection(RTCConfiguration(iceServers=[ice], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))

    viewers_module.new_pc = new_pc


async def packets_out(port: int) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"http://{HOST}:{port}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("jasmin_rtp_packets_out"):
                return int(float(line.split()[-1]))
    raise RuntimeError("no jasmin_rtp_packets_out in /metrics")


async def join(target: JasminTarget, v: LightViewer, timeout_s: float) -> None:
    await asyncio.wait_for(target.subscribe(v), timeout_s)


async def first_keyframe(v: LightViewer, timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while not v.first_key_ns and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return v.ttff_ms


async def run_mode(mode: str, target: JasminTarget, turn_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    use_mode(MODES[mode])
    rec = Recorder()
    poller = AiortcPath()
    viewers: list[LightViewer] = []
    ttffs: list[float] = []
    try:
        for i in range(args.probes):
            v = LightViewer(i, rec, poller)  # type: ignore[arg-type]
            viewers.append(v)
            await join(target, v, 30)
            t = await first_keyframe(v, 30)
            if t is not None:
                ttffs.append(t)
        rest = [
            LightViewer(args.probes + i, rec, poller)  # type: ignore[arg-type]
            for i in range(args.viewers - args.probes)
        ]
        viewers.extend(rest)
        await asyncio.gather(*(join(target, v, 60) for v in rest))
        await asyncio.sleep(args.settle)
        received0 = sum(n for v in viewers for n, _ in v.snapshot().values())
        cpu0, turn0, pkts0 = target.cpu_seconds(), _proc_cpu_seconds(turn_pid), await packets_out(target.daemon.port)
        t0 = time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu1, turn1, pkts1 = target.cpu_seconds(), _proc_cpu_seconds(turn_pid), await packets_out(target.daemon.port)
        t1 = time.monotonic()
        received1 = sum(n for v in viewers for n, _ in v.snapshot().values())
        forwarded = pkts1 - pkts0
        return {
            "mode": mode,
            "viewers": len(viewers),
            "window_s": round(t1 - t0, 2),
            "forwarded_packets": forwarded,
            "received_packets": received1 - received0,
            "node_cpu_s": round(cpu1 - cpu0, 3),
            "coturn_cpu_s": round(turn1 - turn0, 3),
            "node_us_per_packet": round((cpu1 - cpu0) / forwarded * 1e6, 2) if forwarded else None,
            "coturn_us_per_packet": round((turn1 - turn0) / forwarded * 1e6, 2) if forwarded else None,
            "ttff_ms": [round(t, 1) for t in ttffs],
            "ttff_median_ms": round(statistics.median(ttffs), 1) if ttffs else None,
            "no_keyframe": args.probes - len(ttffs),
        }
    finally:
        for v in viewers:
            await target.unsubscribe(v)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-turn-"))
    ns = netns.inside()
    assert ns is not None
    server = coturn.Coturn(ns, work, SECRET, HOST, HOST, extra=("allow-loopback-peers",), cpu=args.bench_cpu)
    os.environ["SSL_CERT_FILE"] = str(work / "turn-cert.pem")  # aioice's TLS client trusts the test certificate
    target = await asyncio.to_thread(JasminTarget, args.sfu_cpu)
    pub = SyntheticPublisher(Workload())
    results: list[dict[str, Any]] = []
    try:
        loopback_only()
        await pub.start(target.publish)
        # Warm-up: the first viewer of a fresh show waits for the publisher's first keyframe;
        # no mode should pay for that.
        await run_mode(
            "udp",
            target,
            server.proc.pid,
            argparse.Namespace(**{**vars(args), "viewers": 1, "probes": 1, "seconds": 0.5}),
        )
        for mode in args.modes.split(","):
            print(f"{mode}: {args.viewers} viewers ...", file=sys.stderr, flush=True)
            results.append(await run_mode(mode, target, server.proc.pid, args))
    finally:
        await pub.close()
        await target.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = next((r for r in results if r["mode"] == "udp"), None)
    for r in results:
        if base and r["node_us_per_packet"] and base["node_us_per_packet"]:
            r["node_cpu_ratio_vs_udp"] = round(r["node_us_per_packet"] / base["node_us_per_packet"], 2)
        if base and r["ttff_median_ms"] and base["ttff_median_ms"]:
            r["ttff_ratio_vs_udp"] = round(r["ttff_median_ms"] / base["ttff_median_ms"], 2)
    return {
        "tool": "python -m bench.turn " + " ".join(sys.argv[1:]),
        "namespace": netns.describe(ns),
        "coturn": "Debian coturn (turnserver), use-auth-secret, pinned to the tool's CPU",
        "results": results,
    }


def table(record: dict[str, Any]) -> str:
    cols = [
        "mode",
        "viewers",
        "forwarded_packets",
        "received_packets",
        "node_us_per_packet",
        "node_cpu_ratio_vs_udp",
        "coturn_us_per_packet",
        "ttff_median_ms",
        "ttff_ratio_vs_udp",
    ]
    rows = [cols] + [[str(r.get(c, "")) for c in cols] for r in record["results"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.turn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--modes", default="udp,turn-udp,turn-tcp,turn-tls")
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--probes", type=int, default=5, help="viewers that join one at a time (TTFF)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per mode")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--sfu-cpu", type=int, default=0)
    ap.add_argument("--bench-cpu", type=int, default=1, help="this tool and coturn")
    ap.add_argument("--json", help="write the JSON record here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.probes > args.viewers or set(args.modes.split(",")) - set(MODES):
        raise SystemExit(f"--probes <= --viewers; --modes from {', '.join(MODES)}")
    if netns.inside() is None:
        reason = netns.available() or (None if shutil.which("turnserver") else "needs turnserver: make coturn")
        if reason:
            raise SystemExit(f"bench.turn {reason}")
        return netns.run_inside(["-m", "bench.turn", *(sys.argv[1:] if argv is None else argv)])
    os.sched_setaffinity(0, {args.bench_cpu})
    record = asyncio.run(run(args))
    print(table(record))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
