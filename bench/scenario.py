"""What the scenarios of issue 16 share around their run: pinning, the CLI, the JSON and PNG.

``bench.longtail`` and ``bench.joinstorm`` (bench/README.md). When Janus is a
target the run re-executes itself inside a private network namespace
(``bench.netns``), as ``bench.load`` and ``bench.memory`` do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """The options both scenarios take alike: the viewers' RTCP and latency sampling, pinning,
    scheduling, and where the record goes."""
    ap.add_argument("--rtcp-every", type=float, default=1.0, help="viewers' RR + REMB interval, seconds (0: none)")
    ap.add_argument("--sample-every", type=int, default=4, help="time 1 packet in K for latency")
    ap.add_argument(
        "--cpu", type=int, default=0 if (os.cpu_count() or 1) > 1 else None, help="core to pin the SFU to (-1: none)"
    )
    ap.add_argument(
        "--tool-cpu",
        type=int,
        default=1 if (os.cpu_count() or 1) > 1 else None,
        help="core to pin this tool to (-1: none)",
    )
    ap.add_argument(
        "--sched",
        choices=("none", "rr", "nice"),
        default="none",
        help="scheduling of this tool and the SFUs (inherited); issue 16's method: none (normal priority)",
    )
    ap.add_argument("--note", default="", help="recorded in the JSON (e.g. what else loaded the machine)")
    ap.add_argument("--json", default="", help="write the record here (and a PNG next to it)")


def cores(o: argparse.Namespace) -> None:
    """``--cpu`` / ``--tool-cpu`` below 0 mean: not pinned (None)."""
    o.cpu = o.cpu if o.cpu is not None and o.cpu >= 0 else None
    o.tool_cpu = o.tool_cpu if o.tool_cpu is not None and o.tool_cpu >= 0 else None


def prepare(o: argparse.Namespace) -> None:
    """Pinning and scheduling of this tool (the SFUs it starts inherit the scheduling)."""
    from bench.load import set_scheduling

    cores(o)
    if o.tool_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {o.tool_cpu})
    o.sched = set_scheduling(o.sched)
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def write(r: dict[str, Any], path: str, draw: Any) -> None:
    """The JSON record at ``path`` and its PNG next to it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
        f.write("\n")
    draw(r, os.path.splitext(path)[0] + ".png")


def cli(module: str, argv: list[str] | None, make_parser: Any, run: Any, table: Any, draw: Any) -> int:
    """The shared CLI of the scenarios: re-exec inside a network namespace when Janus is a target."""
    args = sys.argv[1:] if argv is None else argv
    o = make_parser().parse_args(args)
    bad = [t for t in o.targets if t not in ("jasmin", "janus")]
    if bad:
        raise SystemExit(f"unknown target(s) {bad} (jasmin, janus)")
    from bench import netns

    if "janus" in o.targets and not netns.inside():
        from bench.janus import installed

        why = netns.available() or installed()
        if why:
            raise SystemExit(f"the Janus side runs in its own network namespace: {why}")
        return netns.run_inside(["-m", module, *args])
    prepare(o)
    r = asyncio.run(run(o))
    table(r)
    if o.json:
        write(r, o.json, draw)
        print(f"\nwrote {o.json} and {os.path.splitext(o.json)[0]}.png")
    return 0
