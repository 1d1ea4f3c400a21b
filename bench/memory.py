"""Memory of jasmin-sfu (and Janus): base RSS, RSS per viewer and RSS per show (issue 16).

    python -m bench.memory                                   # jasmin-sfu, table on stdout
    python -m bench.memory --targets jasmin,janus --json bench/results/$(date +%F)-memory.json

Each SFU runs as its own process (``bench.targets.DaemonUnderTest``; Janus:
``bench.janus.JanusUnderTest``, its tuned configuration, inside the load
tool's network namespace), pinned with taskset like the load tool; the peers are the load tool's own: the
synthetic publisher (VP8-shaped 1.5 Mbit/s + Opus, real SRTP;
``bench.publisher``) and light viewers (real ICE/DTLS/SRTP, read by one
epoll; ``bench.viewers``). Admission control is off (``DaemonUnderTest``
turns it off), so the node takes every join.

Three ramps, each in a fresh daemon, each point read after every peer has
its media (every viewer its first keyframe) and a settle time, as the
median of three reads of VmRSS 0.5 s apart:

* **base**: the daemon with nothing on it;
* **viewers**: one show (Janus: a VideoRoom room), its publisher, then N viewers (``--viewers``);
  RSS per viewer is the slope of a least-squares line through the points;
* **shows**: S shows with one publisher each and ``--viewers-per-show``
  viewers each (``--shows``); RSS per show is the slope.

RSS is the figure to trust on a loaded machine: other processes change CPU
time and latency, not the bytes a process holds. The JSON records the load
average at each point all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import options, scenario
from bench.peers import wait_for
from bench.publisher import Workload


@dataclass
class Point:
    shows: int
    viewers: int
    rss_mb: float
    loadavg_1m: float


@dataclass
class Ramp:
    name: str
    points: list[Point] = field(default_factory=list)
    slope_mb: float = 0.0  # per viewer (viewers ramp) or per show (shows ramp)
    intercept_mb: float = 0.0
    errors: list[str] = field(default_factory=list)


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ys against xs."""
    if len(xs) < 2:
        return 0.0, ys[0] if ys else 0.0
    s, i = statistics.linear_regression(xs, ys)
    return s, i


class Node(scenario.Peers):
    """The peers on one SFU process (each show: a publisher and its viewers)."""

    async def add_viewers(self, show: str, n: int, concurrency: int, errors: list[str]) -> None:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(self.add_viewer(show, sem, errors) for _ in range(n)))

    async def rss(self, settle_s: float) -> float:
        """Median of three VmRSS reads 0.5 s apart, after every viewer has its first keyframe and ``settle_s``."""
        await wait_for(lambda: all(v.first_key_ns for v in self.viewers), timeout=30, interval=0.05)
        await asyncio.sleep(settle_s)
        reads = []
        for _ in range(3):
            reads.append(self.server.rss_mb())
            await asyncio.sleep(0.5)
        return round(statistics.median(reads), 2)


def _point(shows: int, viewers: int, rss: float) -> Point:
    return Point(shows, viewers, rss, round(os.getloadavg()[0], 2))


async def ramp_viewers(o: argparse.Namespace, target: str, wl: Workload) -> tuple[Point, Ramp, str]:
    ramp = Ramp("viewers")
    async with scenario.fresh_server(target, o.cpu) as server:
        node = Node(server, wl)
        what = server.software()
        try:
            base = _point(0, 0, await node.rss(o.settle))
            await node.add_show("mem-0")
            for n in o.viewers:
                await node.add_viewers("mem-0", n - len(node.viewers), o.concurrency, ramp.errors)
                ramp.points.append(_point(1, len(node.viewers), await node.rss(o.settle)))
                print(f"  {target} viewers: {ramp.points[-1]}", file=sys.stderr)
        finally:
            await node.close()
    ramp.slope_mb, ramp.intercept_mb = slope([p.viewers for p in ramp.points], [p.rss_mb for p in ramp.points])
    return base, ramp, what


async def ramp_shows(o: argparse.Namespace, target: str, wl: Workload) -> Ramp:
    ramp = Ramp("shows")
    async with scenario.fresh_server(target, o.cpu) as server:
        node = Node(server, wl)
        try:
            for s in o.shows:
                while len(node.pubs) < s:
                    show = f"mem-{len(node.pubs)}"
                    await node.add_show(show)
                    await node.add_viewers(show, o.viewers_per_show, o.concurrency, ramp.errors)
                ramp.points.append(_point(len(node.pubs), len(node.viewers), await node.rss(o.settle)))
                print(f"  {target} shows: {ramp.points[-1]}", file=sys.stderr)
        finally:
            await node.close()
    ramp.slope_mb, ramp.intercept_mb = slope([p.shows for p in ramp.points], [p.rss_mb for p in ramp.points])
    return ramp


def _ints(text: str) -> list[int]:
    return sorted({int(x) for x in text.split(",") if x.strip()})


async def main_async(o: argparse.Namespace) -> dict[str, Any]:
    wl, started = scenario.begin()
    results: dict[str, Any] = {}
    for target in o.targets:
        base, viewers, what = await ramp_viewers(o, target, wl)
        shows = await ramp_shows(o, target, wl)
        results[target] = {
            "software": what,
            "base_rss_mb": base.rss_mb,
            "base": asdict(base),
            "rss_per_viewer_mb": round(viewers.slope_mb, 3),
            "rss_per_show_mb": round(shows.slope_mb, 3),
            "ramps": [asdict(viewers), asdict(shows)],
        }
    out = scenario.record("memory", o, wl, started, results, viewers_per_show=o.viewers_per_show)
    if "jasmin" in results and "janus" in results:
        j, g = results["jasmin"], results["janus"]
        out["ratio_rss_per_viewer"] = (
            round(j["rss_per_viewer_mb"] / g["rss_per_viewer_mb"], 2) if g["rss_per_viewer_mb"] else None
        )
        out["ratio_rss_per_show"] = (
            round(j["rss_per_show_mb"] / g["rss_per_show_mb"], 2) if g["rss_per_show_mb"] else None
        )
    return out


def print_table(r: dict[str, Any]) -> None:
    t = r["targets"]
    names = list(t)
    scenario.heading("memory, RSS", r)
    print(f"{'':40}" + "".join(f"{n:>12}" for n in names))
    rows = [
        ("base (no show)", "base_rss_mb", "{:>9.1f} MB"),
        ("per viewer (one show, slope)", "rss_per_viewer_mb", "{:>9.3f} MB"),
        (f"per show (1 pub + {r['viewers_per_show']} viewers, slope)", "rss_per_show_mb", "{:>9.3f} MB"),
    ]
    for label, key, fmt in rows:
        print(f"{label:40}" + "".join(fmt.format(t[n][key]) for n in names))
    for n in names:
        for ramp in t[n]["ramps"]:
            pts = ", ".join(f"{p['shows']}s/{p['viewers']}v={p['rss_mb']:.1f}" for p in ramp["points"])
            failed = f"  ({len(ramp['errors'])} failed joins)" if ramp["errors"] else ""
            print(f"  {n} {ramp['name']}: {pts}{failed}")
    for k in ("ratio_rss_per_viewer", "ratio_rss_per_show"):
        if k in r:
            print(f"{k} (jasmin / janus): {r[k]}")
    scenario.note(r)


def parser() -> argparse.ArgumentParser:
    ap = options.scenario_parser("python -m bench.memory", (__doc__ or "").split("\n\n")[0], raw=False)
    ap.add_argument(
        "--viewers", type=_ints, default=_ints("0,25,50,100,150"), help="viewer counts of the one-show ramp"
    )
    ap.add_argument("--shows", type=_ints, default=_ints("1,5,10,15"), help="show counts of the shows ramp")
    ap.add_argument("--viewers-per-show", type=int, default=2, help="viewers on each show of the shows ramp")
    ap.add_argument("--concurrency", type=int, default=10, help="viewer joins at once")
    ap.add_argument(
        "--settle", type=float, default=3.0, help="seconds after the last first keyframe before reading RSS"
    )
    options.add_pinning(ap, tool=False)
    options.add_record(ap, png=False)
    return ap


def main(argv: list[str] | None = None) -> int:
    # This tool pins only the SFU (--cpu), and writes no PNG.
    return scenario.cli("bench.memory", argv, parser, main_async, print_table, None, pin=False)


if __name__ == "__main__":
    raise SystemExit(main())
