"""What the bench tools share around their run: the SFU per step, pinning and scheduling, the record,
the table, the JSON and PNG, the re-execution inside a network namespace.

The scenarios of issue 16 (``bench.longtail``, ``bench.joinstorm``) use all of it,
``bench.memory`` the SFU per step, the record, the table and the CLI (no pinning of
itself, no PNG), ``bench.load`` the pinning and scheduling and the JSON + PNG
(bench/README.md). When Janus is a target a scenario re-executes itself inside a
private network namespace (``bench.netns``), as ``bench.load`` does. The command-line
options they share are in ``bench.options``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import os
import resource
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import asdict
from typing import Any

from bench.publisher import SyntheticPublisher, Workload
from bench.report import machine
from bench.shows import Server, make_server
from bench.viewers import LightViewer, RawPoller, Recorder

TARGETS = ("jasmin", "janus")

Record = dict[str, Any]
Draw = Callable[[Record, str], None]


# -- pinning and scheduling of this tool ------------------------------------------------------------


def set_scheduling(how: str) -> str:
    """Protect the measurement from other work on a shared machine; returns what was set.

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
    """This process's scheduling, as the records describe it."""
    policy = os.sched_getscheduler(0)
    if policy == os.SCHED_RR:
        return f"SCHED_RR priority {os.sched_getparam(0).sched_priority} (inherited by the SFU processes)"
    return f"SCHED_OTHER nice {os.getpriority(os.PRIO_PROCESS, 0)} (inherited by the SFU processes)"


def settle_tool(cpu: int | None, sched: str) -> str:
    """Pin this tool to ``cpu`` (None: not pinned), set its scheduling (``sched``, inherited by the
    SFUs it starts) and raise its open-files limit to the hard limit (hundreds of viewers' sockets).
    Returns the scheduling that was set."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    how = set_scheduling(sched)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return how


def cores(o: argparse.Namespace) -> None:
    """``--cpu`` / ``--tool-cpu`` below 0 mean: not pinned (None)."""
    o.cpu = o.cpu if o.cpu is not None and o.cpu >= 0 else None
    o.tool_cpu = o.tool_cpu if o.tool_cpu is not None and o.tool_cpu >= 0 else None


def prepare(o: argparse.Namespace) -> None:
    """Pinning and scheduling of this tool (the SFUs it starts inherit the scheduling)."""
    cores(o)
    o.sched = settle_tool(o.tool_cpu, o.sched)


# -- the SFU of a step, the record ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_server(target: str, cpu: int | None, admission: bool = False) -> AsyncIterator[Server]:
    """A fresh SFU process (``bench.shows.make_server``, started off the event loop), closed on leaving."""
    server = await asyncio.to_thread(make_server, target, cpu, admission)
    try:
        yield server
    finally:
        await server.close()


class Peers:
    """The peers a step puts on one SFU: a synthetic publisher per show and light viewers, all read by
    one poller (``sample_every``, ``rtcp_every``: ``bench.viewers.RawPoller``)."""

    def __init__(self, server: Server, wl: Workload, sample_every: int = 4, rtcp_every: float = 0.0) -> None:
        self.server, self.wl = server, wl
        self.rec = Recorder()
        self.poller = RawPoller(self.rec, sample_every, rtcp_every_s=rtcp_every)
        self.pubs: list[SyntheticPublisher] = []
        self.viewers: list[LightViewer] = []

    def sent(self) -> int:
        """Packets the publishers have sent."""
        return sum(sum(p.sent.values()) for p in self.pubs)

    async def add_show(self, show: str) -> None:
        """A show on the SFU and its publisher, sending."""
        pub = SyntheticPublisher(self.wl)
        self.pubs.append(pub)
        await pub.start(await self.server.show(show))

    async def add_viewer(self, show: str, sem: asyncio.Semaphore, errors: list[str]) -> None:
        """One viewer of ``show`` (joins ``sem`` at a time); a failed join is kept in ``errors``."""
        v = LightViewer(len(self.viewers), self.rec, self.poller)
        self.viewers.append(v)
        async with sem:
            try:
                await self.server.viewer(show, v)
            except Exception as exc:
                errors.append(f"join {show}: {exc!r}")

    async def close(self) -> None:
        """The viewers, the publishers, the poller (the SFU stays: ``fresh_server`` closes it)."""
        for v in self.viewers:
            await v.close()
        for p in self.pubs:
            await p.close()
        self.poller.close()


def begin() -> tuple[Workload, str]:
    """The start of a scenario's run: loopback-only peers, the publishers' workload, the start time."""
    from bench.peers import loopback_only

    loopback_only()
    return Workload(), _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


async def by_target(
    targets: list[str],
    key: str,
    steps: Callable[[str], AsyncIterator[tuple[Any, str]]],
    summarize: Callable[[Any], Record],
) -> Record:
    """The results of every target in turn: ``steps(target)`` runs the target's steps (each its own SFU
    process) and yields each step's result (a dataclass) with the SFU's software; a target's results are
    that software, ``summarize`` of its steps, and the steps themselves under ``key``."""
    results: Record = {}
    for target in targets:
        done: list[Any] = []
        what = ""
        async for step, software in steps(target):
            done.append(step)
            what = software
        results[target] = {"software": what, "summary": summarize(done), key: [asdict(s) for s in done]}
    return results


def record(scenario: str, o: argparse.Namespace, wl: Workload, started: str, results: Record, **middle: Any) -> Record:
    """A scenario's JSON record: what ran, where and how (``middle``: its own fields, placed between the
    options and the targets' results), the results per target, the note."""
    return {
        "scenario": scenario,
        "started": started,
        "machine": machine(),
        "workload": asdict(wl),
        "options": {k: v for k, v in vars(o).items() if k != "json"},
        **middle,
        "targets": results,
        "note": o.note,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` to 3 places; None unless both are positive."""
    return round(a / b, 3) if a and b and a > 0 and b > 0 else None


# -- the table and the plot -------------------------------------------------------------------------


def heading(title: str, r: Record, file: Any = None) -> None:
    """The table's first line: the scenario, when it started, on what machine."""
    print(f"{title} ({r['started']}, {r['machine']['cpu']}, {r['machine']['cores']} cores)", file=file)


def row(cells: Iterable[Any], width: int, file: Any = None) -> None:
    """One line of a table: every cell right-aligned in ``width`` characters, two spaces apart."""
    print("  ".join(f"{str(c):>{width}}" for c in cells), file=file)


def note(r: Record, file: Any = None) -> None:
    """The table's last line: the record's note, when it has one."""
    if r.get("note"):
        print(f"note: {r['note']}", file=file)


def plot_title(title: str, r: Record) -> str:
    """A scenario's PNG title: the targets compared, when and on what machine."""
    return f"{title}: {' vs '.join(r['targets'])}\n{r['started']}  {r['machine'].get('cpu', '')}"


# -- the JSON and the command line ------------------------------------------------------------------


def write(r: Record, path: str, draw: Draw | None = None, *, indent: int = 1) -> str | None:
    """The JSON record at ``path`` and, with ``draw``, its PNG next to it (returns the PNG's path)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(r, f, indent=indent)
        f.write("\n")
    if draw is None:
        return None
    png = os.path.splitext(path)[0] + ".png"
    draw(r, png)
    return png


def outside_netns(module: str, targets: list[str], args: list[str]) -> int | None:
    """Check the target names; with Janus among them, re-execute ``python -m module args`` inside a
    private network namespace and return its exit status. None: run here."""
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise SystemExit(f"unknown target(s) {bad} (jasmin, janus)")
    from bench import netns

    if "janus" in targets and not netns.inside():
        from bench.janus import installed

        why = netns.available() or installed()
        if why:
            raise SystemExit(f"the Janus side runs in its own network namespace: {why}")
        return netns.run_inside(["-m", module, *args])
    return None


def cli(
    module: str,
    argv: list[str] | None,
    make_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, Record]],
    table: Callable[[Record], None],
    draw: Draw | None,
    *,
    pin: bool = True,
) -> int:
    """A scenario's command line: parse, re-execute inside a network namespace when Janus is a target,
    (with ``pin``) pin and schedule this tool, run, print the table, write the JSON (and, with ``draw``,
    the PNG)."""
    args = sys.argv[1:] if argv is None else argv
    o = make_parser().parse_args(args)
    code = outside_netns(module, o.targets, args)
    if code is not None:
        return code
    if pin:
        prepare(o)
    r = asyncio.run(run(o))
    table(r)
    if o.json:
        png = write(r, o.json, draw)
        if png:
            print(f"\nwrote {o.json} and {png}")
    return 0
