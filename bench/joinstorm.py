"""The join storm: V viewers joining one live show within T seconds, jasmin-sfu against tuned Janus (issue 16).

    python -m bench.joinstorm                                    # jasmin-sfu, 40/2, 100/2, 200/2
    python -m bench.joinstorm --targets jasmin,janus --storms 40/2,100/2,200/2 \\
        --json bench/results/$(date +%F)-joinstorm.json          # root, Janus installed

A storm ``V/T`` runs in a fresh SFU process pinned to one core (this tool on
the other): one show (Janus: one VideoRoom room) with the synthetic publisher
(``bench.publisher``), ``--watchers`` viewers already watching, then V
viewers joining in concurrent batches of ``--batch``, the batches spread
evenly over T seconds. Every viewer (watchers and joiners) is a light viewer
with real ICE, DTLS and SRTP that sends RR + REMB every second.

Per storm:

* **every join** is timed from its subscribe request (jasmin-sfu: the
  ``subscribe`` request after ``join``; Janus: the ``attach`` of its
  subscriber handle) to the kernel receive time of the first packet that
  starts a keyframe (TTFF; ``bench.shows``). TTFF p50/p95/max over the joins
  that got media; ``ttff_from_request_ms`` also counts jasmin-sfu's websocket
  connect and ``join``.
* **outcomes**: ``ok``; ``overloaded`` (jasmin-sfu's admission control refused
  the join at once, counted apart; ``--admission on``, the default, keeps the
  daemon's default thresholds); ``error`` (any other failure); ``timeout`` (no
  first keyframe within ``--join-timeout`` s of the subscribe request).
* **the watchers' added latency and loss**, in a baseline window before the
  storm and over the storm (from its first join until every join has ended).
* **the SFU's CPU** over the storm: ``cpu_ms_per_join`` = (storm CPU - the
  baseline's CPU rate x storm time) / joins that got media, and
  ``joins_per_core_s_fit`` = 1000 / that: joins one core could take per second
  if it did nothing else.

A storm holds when every join got media (no ``overloaded``, no error, no
timeout) and TTFF p95 < ``--max-ttff-p95`` ms. ``joins_per_s_per_core_held``
is the highest V/T that held (the SFU has one core).

Honest method: normal priority (``--sched none``, the default); the machine's
other load (besides the SFU and this tool) is recorded in both windows and a
storm whose windows were disturbed (``--max-other``) is run again in a fresh
SFU, up to ``--reruns`` times. This tool's own CPU during the storm is
recorded too: it runs the client side of every handshake, on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench import loop_profile, options, scenario
from bench.measure import pct
from bench.peers import wait_for
from bench.plot import COLORS, figure
from bench.publisher import SyntheticPublisher, Workload
from bench.shows import Server, Window, WindowResult, disturbed, join_outcome
from bench.viewers import LightViewer, RawPoller, Recorder

SHOW = "storm"


@dataclass
class Join:
    outcome: str  # ok | overloaded | error | timeout
    ttff_ms: float = -1.0  # subscribe request -> first keyframe packet
    ttff_from_request_ms: float = -1.0  # first request of the join -> first keyframe packet
    offset_ms: float = 0.0  # when the join started, from the storm's start
    error: str = ""


@dataclass
class Storm:
    viewers: int
    seconds: float  # T: the joins spread over this long
    offered_joins_per_s: float
    watchers: int
    joins: list[Join]
    ok: int
    overloaded: int
    errors: int
    timeouts: int
    ttff_ms_p50: float
    ttff_ms_p95: float
    ttff_ms_max: float
    baseline: WindowResult  # the watchers before the storm
    storm: WindowResult  # the watchers (and the SFU, this tool) from the first join until every join ended
    added_p50_ms: float  # the watchers' p50 during the storm minus before
    added_p99_ms: float
    cpu_ms_per_join: float
    joins_per_core_s_fit: float
    rss_mb: float
    held: bool
    disturbed: bool
    attempts: int
    viewer_rtcp_sent: int  # RR + REMB compounds the watchers and joiners sent (--rtcp-every)
    overloaded_reasons: dict[str, int] = field(default_factory=dict)
    loop: dict[str, Any] = field(default_factory=dict)  # --loop-profile: the SFU loop's turns and CPU by phase


def parse_storms(text: str) -> list[tuple[int, float]]:
    """``"40/2,200/2"`` -> [(40, 2.0), (200, 2.0)]."""
    out = []
    for part in text.split(","):
        if part.strip():
            v, t = part.split("/")
            out.append((int(v), float(t)))
    return out


class JoinStorm:
    def __init__(self, o: argparse.Namespace, server: Server, wl: Workload) -> None:
        self.o, self.server, self.wl = o, server, wl
        self.wpoll = RawPoller(Recorder(), o.sample_every, rtcp_every_s=o.rtcp_every)
        self.spoll = RawPoller(Recorder(), o.sample_every, rtcp_every_s=o.rtcp_every)
        self.pub = SyntheticPublisher(wl)
        self.watchers: list[LightViewer] = []
        self.joiners: list[LightViewer] = []
        self.reasons: dict[str, int] = {}

    def sent(self) -> int:
        return sum(self.pub.sent.values())

    async def join(self, v: LightViewer, t0: float) -> Join:
        offset = round(1000 * (time.monotonic() - t0), 1)
        try:
            await self.server.viewer(SHOW, v)
        except Exception as exc:
            outcome = join_outcome(exc)
            if outcome == "overloaded":
                reason = str(getattr(exc, "reason", ""))
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
            return Join(outcome, offset_ms=offset, error=repr(exc)[:200])
        deadline = v.t_join_ns / 1e9 + self.o.join_timeout
        await wait_for(lambda: v.first_key_ns > 0, timeout=max(0.1, deadline - time.time()), interval=0.01)
        if not v.first_key_ns:
            return Join("timeout", offset_ms=offset)
        return Join(
            "ok",
            ttff_ms=round((v.first_key_ns - v.t_join_ns) / 1e6, 1),
            ttff_from_request_ms=round((v.first_key_ns - v.ctx["t_request_ns"]) / 1e6, 1),
            offset_ms=offset,
        )

    async def run(self, n: int, spread_s: float) -> tuple[list[Join], WindowResult, WindowResult]:
        """The storm; ``self.windows`` holds the baseline's and the storm's monotonic (start, end)."""
        o = self.o
        await self.pub.start(await self.server.show(SHOW))
        sem = asyncio.Semaphore(o.concurrency)

        async def watcher(i: int) -> None:
            v = LightViewer(i, self.wpoll.rec, self.wpoll)
            self.watchers.append(v)
            async with sem:
                await self.server.viewer(SHOW, v)

        await asyncio.gather(*(watcher(i) for i in range(o.watchers)))
        await wait_for(lambda: all(v.first_key_ns for v in self.watchers), timeout=30, interval=0.05)
        await asyncio.sleep(o.settle)
        base = Window(self.server, [self.wpoll], self.watchers, self.sent, o.cpu, o.tool_cpu)
        base.start()
        b0 = time.monotonic()
        await asyncio.sleep(o.seconds)
        baseline = base.stop()
        b1 = time.monotonic()
        # The storm: batches of --batch joins, spread evenly over spread_s.
        batches = max(1, math.ceil(n / o.batch))
        gap = spread_s / batches if batches > 1 else 0.0
        win = Window(self.server, [self.wpoll], self.watchers, self.sent, o.cpu, o.tool_cpu)
        win.start()
        t0 = time.monotonic()
        tasks: list[asyncio.Task[Join]] = []
        for b in range(batches):
            await asyncio.sleep(max(0.0, t0 + b * gap - time.monotonic()))
            for _ in range(min(o.batch, n - b * o.batch)):
                v = LightViewer(len(self.joiners), self.spoll.rec, self.spoll)
                self.joiners.append(v)
                tasks.append(asyncio.ensure_future(self.join(v, t0)))
        joins = list(await asyncio.gather(*tasks))
        storm = win.stop()
        self.windows = ((b0, b1), (t0, time.monotonic()))
        return joins, baseline, storm

    async def close(self) -> None:
        for v in self.watchers + self.joiners:
            await v.close()
        await self.pub.close()
        self.wpoll.close()
        self.spoll.close()


async def run_storm(o: argparse.Namespace, target: str, n: int, spread_s: float, wl: Workload) -> tuple[Storm, str]:
    """One storm in a fresh SFU; run again (fresh SFU) while disturbed, up to --reruns times."""
    for attempt in range(o.reruns + 1):
        prefix = f"{o.loop_profile}-{target}-{n}_{spread_s:g}" if o.loop_profile and target == "jasmin" else ""
        if prefix:
            loop_profile.enable(prefix)
        async with scenario.fresh_server(target, o.cpu, o.admission == "on") as server:
            what = server.software()
            js = JoinStorm(o, server, wl)
            try:
                joins, baseline, storm = await js.run(n, spread_s)
                rss = round(server.rss_mb(), 1)
                rtcp = js.wpoll.rtcp_sent + js.spoll.rtcp_sent
                pid = server.pid
            finally:
                await js.close()
        loop: dict[str, Any] = {}
        if prefix:
            worked = sum(1 for j in joins if j.outcome in ("ok", "timeout"))  # every join the SFU negotiated
            loop = loop_profile.summarize(prefix, pid, js.windows[0], js.windows[1], worked)
        shaken = disturbed(baseline, o.max_other) or disturbed(storm, o.max_other)
        if not shaken or attempt == o.reruns:
            break
        print(
            f"  disturbed storm (other {baseline.other_pct} / {storm.other_pct} % of a core), running it again",
            file=sys.stderr,
        )
    ok = [j for j in joins if j.outcome == "ok"]
    ttffs = [j.ttff_ms for j in ok]
    count = {k: sum(1 for j in joins if j.outcome == k) for k in ("ok", "overloaded", "error", "timeout")}
    storm_cpu_s = storm.sfu_cpu_pct * storm.seconds / 100.0
    extra_s = max(0.0, storm_cpu_s - baseline.sfu_cpu_pct * storm.seconds / 100.0)
    per_join = 1000.0 * extra_s / len(ok) if ok else -1.0
    p95 = round(pct(ttffs, 95), 1) if ttffs else -1.0
    return Storm(
        viewers=n,
        seconds=spread_s,
        offered_joins_per_s=round(n / spread_s, 1) if spread_s else float(n),
        watchers=o.watchers,
        joins=joins,
        ok=count["ok"],
        overloaded=count["overloaded"],
        errors=count["error"],
        timeouts=count["timeout"],
        ttff_ms_p50=round(pct(ttffs, 50), 1) if ttffs else -1.0,
        ttff_ms_p95=p95,
        ttff_ms_max=max(ttffs) if ttffs else -1.0,
        baseline=baseline,
        storm=storm,
        added_p50_ms=round(storm.p50_ms - baseline.p50_ms, 3),
        added_p99_ms=round(storm.p99_ms - baseline.p99_ms, 3),
        cpu_ms_per_join=round(per_join, 2),
        joins_per_core_s_fit=round(1000.0 / per_join, 1) if per_join > 0 else -1.0,
        rss_mb=rss,
        held=count["ok"] == n and 0 <= p95 < o.max_ttff_p95,
        disturbed=shaken,
        attempts=attempt + 1,
        viewer_rtcp_sent=rtcp,
        overloaded_reasons=dict(js.reasons),
        loop=loop,
    ), what


def summarize(storms: list[Storm]) -> dict[str, Any]:
    held = [s for s in storms if s.held]
    fits = [s.joins_per_core_s_fit for s in storms if s.joins_per_core_s_fit > 0]
    return {
        "joins_per_s_per_core_held": max((s.offered_joins_per_s for s in held), default=0.0),
        "joins_per_core_s_fit": round(sorted(fits)[len(fits) // 2], 1) if fits else None,
        "joins_per_core_s_fit_note": "median over the storms of 1000 / cpu_ms_per_join",
        "joins": sum(s.viewers for s in storms),
        "ok": sum(s.ok for s in storms),
        "overloaded": sum(s.overloaded for s in storms),
        "errors": sum(s.errors for s in storms),
        "timeouts": sum(s.timeouts for s in storms),
    }


async def main_async(o: argparse.Namespace) -> dict[str, Any]:
    scenario.cores(o)
    wl, started = scenario.begin()

    async def storms(target: str) -> AsyncIterator[tuple[Storm, str]]:
        for n, spread in o.storms:
            print(f"  {target}: {n} joins in {spread} s", file=sys.stderr)
            s, what = await run_storm(o, target, n, spread, wl)
            yield s, what
            print(
                f"  {target} {n}/{spread}: ok {s.ok} overloaded {s.overloaded} errors {s.errors} timeouts {s.timeouts}, "
                f"TTFF p50/p95/max {s.ttff_ms_p50}/{s.ttff_ms_p95}/{s.ttff_ms_max} ms, tool {s.storm.tool_cpu_pct} %, "
                f"other {s.storm.other_pct} %",
                file=sys.stderr,
            )
            if s.loop and "error" not in s.loop:
                q = s.loop
                print(
                    f"    loop turns (CPU ms): p50 {q['turn_cpu_ms_p50']} p99 {q['turn_cpu_ms_p99']} max "
                    f"{q['turn_cpu_ms_max']}, over 5/10/20/50 ms {list(q['turns_over_ms'].values())}; join work in one "
                    f"turn max {q['join_work_ms_per_turn_max']} ms, turns with over 2/5/10/20 ms of it "
                    f"{list(q['turns_with_join_work_over_ms'].values())}; CPU ms per join: "
                    + ", ".join(f"{k.split(' (')[0]} {v}" for k, v in q["cpu_ms_per_join_by_phase"].items()),
                    file=sys.stderr,
                )
            elif s.loop:
                print(f"    loop profile: {s.loop['error']}", file=sys.stderr)

    results = await scenario.by_target(o.targets, "storms", storms, summarize)
    out = scenario.record(
        "joinstorm",
        o,
        wl,
        started,
        results,
        criteria={"max_ttff_p95_ms": o.max_ttff_p95, "every_join_ok": True},
        method={
            "ttff": "subscribe request (jasmin: subscribe; janus: attach of the subscriber handle) -> kernel receive "
            "time of the first packet starting a keyframe, every join",
            "batches": f"{o.batch} joins at once, batches spread evenly over T",
            "cpu": "utime+stime of the SFU process (all threads) from /proc",
            "other_pct": "the machine's busy time (all CPUs, /proc/stat, softirq apart) minus the SFU and this tool",
            "viewers": f"light viewers (real ICE/DTLS/SRTP, no decoding), RR + REMB every {o.rtcp_every} s",
            "admission": "jasmin-sfu's admission control at its defaults" if o.admission == "on" else "off",
            "scheduling": "normal priority (SCHED_OTHER) unless --sched says otherwise",
        },
    )
    if "jasmin" in results and "janus" in results:
        j, g = results["jasmin"]["summary"], results["janus"]["summary"]
        out["ratios"] = {
            "joins_per_s_per_core_held": scenario.ratio(j["joins_per_s_per_core_held"], g["joins_per_s_per_core_held"]),
            "joins_per_core_s_fit": scenario.ratio(j["joins_per_core_s_fit"], g["joins_per_core_s_fit"]),
        }
    return out


def print_table(r: dict[str, Any], file: Any = sys.stdout) -> None:
    scenario.heading("join storm", r, file)
    cols = (
        "target",
        "V/T",
        "ok",
        "overld",
        "err",
        "tmout",
        "ttff50",
        "ttff95",
        "ttffmax",
        "w.p99",
        "+p99",
        "w.loss%",
        "sfu%",
        "ms/join",
        "j/core.s",
        "tool%",
        "other%",
        "held",
    )
    scenario.row(cols, 8, file)
    for name, t in r["targets"].items():
        for s in t["storms"]:
            row = (
                name,
                f"{s['viewers']}/{s['seconds']:g}",
                s["ok"],
                s["overloaded"],
                s["errors"],
                s["timeouts"],
                s["ttff_ms_p50"],
                s["ttff_ms_p95"],
                s["ttff_ms_max"],
                s["storm"]["p99_ms"],
                s["added_p99_ms"],
                s["storm"]["loss_pct"],
                s["storm"]["sfu_cpu_pct"],
                s["cpu_ms_per_join"],
                s["joins_per_core_s_fit"],
                s["storm"]["tool_cpu_pct"],
                s["storm"]["other_pct"],
                ("yes" if s["held"] else "no") + (" (disturbed)" if s["disturbed"] else ""),
            )
            scenario.row(row, 8, file)
    for name, t in r["targets"].items():
        q = t["summary"]
        print(
            f"{name}: joins/s per core held (TTFF p95 < {r['criteria']['max_ttff_p95_ms']:g} ms, every join ok) "
            f"{q['joins_per_s_per_core_held']}, from CPU {q['joins_per_core_s_fit']}; "
            f"{q['ok']}/{q['joins']} ok, {q['overloaded']} overloaded, {q['errors']} errors, {q['timeouts']} timeouts",
            file=file,
        )
    if "ratios" in r:
        print(f"ratio jasmin/janus: {r['ratios']}", file=file)
    scenario.note(r, file)


def plot(r: dict[str, Any], png: str) -> None:
    """TTFF p50/p95/max per storm and the watchers' p99 added latency, per target."""
    with figure(png, 2, 8, scenario.plot_title("join storm", r)) as (ax_t, ax_w):
        _draw(r, ax_t, ax_w)


def _draw(r: dict[str, Any], ax_t: Any, ax_w: Any) -> None:
    for name, t in r["targets"].items():
        storms = sorted(t["storms"], key=lambda s: s["offered_joins_per_s"])
        x = [s["offered_joins_per_s"] for s in storms]
        c = COLORS.get(name)
        ax_t.plot(x, [max(1.0, s["ttff_ms_p95"]) for s in storms], "o-", color=c, label=f"{name} TTFF p95")
        ax_t.plot(x, [max(1.0, s["ttff_ms_p50"]) for s in storms], ".:", color=c, label=f"{name} TTFF p50")
        ax_t.plot(x, [max(1.0, s["ttff_ms_max"]) for s in storms], "x--", color=c, alpha=0.5, label=f"{name} TTFF max")
        ax_w.plot(
            x, [max(0.1, s["storm"]["p99_ms"]) for s in storms], "o-", color=c, label=f"{name} watchers p99, storm"
        )
        ax_w.plot(
            x, [max(0.1, s["baseline"]["p99_ms"]) for s in storms], ".:", color=c, label=f"{name} watchers p99, before"
        )
    ax_t.axhline(r["criteria"]["max_ttff_p95_ms"], color="red", lw=0.8, ls="--", label="p95 limit")
    ax_t.set_ylabel("TTFF, ms (from subscribe)")
    ax_t.set_yscale("log")
    ax_w.set_ylabel("watchers' added latency, ms")
    ax_w.set_yscale("log")
    ax_w.set_xlabel("joins offered per second (one show, one core)")


def parser() -> argparse.ArgumentParser:
    ap = options.scenario_parser("python -m bench.joinstorm", __doc__)
    ap.add_argument(
        "--storms",
        type=parse_storms,
        default=parse_storms("40/2,100/2,200/2"),
        help="V/T: V joins spread over T seconds, each storm in a fresh SFU",
    )
    ap.add_argument("--watchers", type=int, default=10, help="viewers already watching before the storm")
    ap.add_argument("--batch", type=int, default=10, help="joins started at once (a batch)")
    ap.add_argument("--join-timeout", type=float, default=10.0, help="seconds from subscribe to first keyframe")
    ap.add_argument("--max-ttff-p95", type=float, default=1000.0, help="a storm holds with TTFF p95 below this, ms")
    ap.add_argument(
        "--admission",
        choices=("on", "off"),
        default="on",
        help="jasmin-sfu's admission control: on = its default thresholds (refusals counted as overloaded)",
    )
    ap.add_argument("--seconds", type=float, default=3.0, help="the watchers' baseline window before the storm")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before the baseline window")
    ap.add_argument("--concurrency", type=int, default=16, help="watcher joins at once")
    options.add_disturbance(ap, "a storm", "run")
    ap.add_argument(
        "--loop-profile",
        default="",
        help="path prefix: profile jasmin-sfu's event loop (CPU per turn and per callback, by phase of a join;"
        " bench/loop_profile.py) into <prefix>-jasmin-V_T.<pid>.json and the record's `loop`",
    )
    options.add_run_arguments(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    return scenario.cli("bench.joinstorm", argv, parser, main_async, print_table, plot)


if __name__ == "__main__":
    raise SystemExit(main())
