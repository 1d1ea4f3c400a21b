"""The SFUs under test: jasmin-sfu as a real daemon process; Janus lives in bench/janus.py.

Part of the load tool (``python -m bench.load``; bench/README.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections import deque
from typing import Any, Protocol

from bench.daemon_process import REPO, TOOL_ENV, start_daemon
from bench.viewers import LightViewer
from jasmin_signaling.client import SignalingClient

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def _family(pid: int) -> list[int]:
    """``pid`` and its live descendants (a supervisor's workers, docs/workers.md)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


class DaemonUnderTest:
    """jasmin-sfu as a real process (``python -m jasmin_sfu serve``), pinned to ``cpu``.

    ``workers`` > 1 runs it as a supervisor of that many workers (docs/workers.md); its CPU
    and RSS are then those of the supervisor and its workers together."""

    def __init__(self, cpu: int | None, admission: bool = False, workers: int = 1, repo: str = REPO) -> None:
        """``admission``: keep the daemon's admission control at its defaults
        (joins past capacity answered ``overloaded``; ``JASMIN_ADMISSION_*`` in
        this process's environment still apply); off by default, so a ramp
        looks for the capacity itself. ``repo``: run the daemon of another checkout
        (its own C extension built in place), for a before/after in one run."""
        wrapper: list[str] = []
        if cpu is not None and shutil.which("taskset"):
            wrapper = ["taskset", "-c", str(cpu)]
        self.env = {
            "JASMIN_SERVER_PORT": "0",
            **TOOL_ENV,
            "JASMIN_LOG_LEVEL": os.environ.get("BENCH_JASMIN_LOG_LEVEL", "warning"),
            "JASMIN_SERVER_MAX_REQUESTS_PER_S": "1000",
            # The tool's own loop stalls for seconds while hundreds of its viewers
            # handshake at once; a missed pong must not end the publisher's
            # session. 60 s matches Janus's session_timeout in bench/janus.py.
            "JASMIN_SERVER_HEARTBEAT_S": "60",
            # The ramp looks for the capacity itself: no admission limit in its way.
            "JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER": "0",
            "JASMIN_ADMISSION_MAX_JOINS_IN_FLIGHT": "0",
            "JASMIN_ADMISSION_MAX_CPU_SHARE": "0",
        }
        if workers != 1:
            self.env["JASMIN_SERVER_WORKERS"] = str(workers)
        if admission:
            for key in (
                "JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER",
                "JASMIN_ADMISSION_MAX_JOINS_IN_FLIGHT",
                "JASMIN_ADMISSION_MAX_CPU_SHARE",
            ):
                del self.env[key]
        # The daemon's last lines (a long run's output is not all kept): describe() reports them.
        self.tail: deque[str] = deque(maxlen=2000)
        self.process = start_daemon(self.env, repo=repo, wrapper=wrapper, output=self.tail)
        self.proc = self.process.proc
        self.port = self.process.port

    @property
    def url(self) -> str:
        return self.process.url

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in _family(self.proc.pid):
            try:
                total += _proc_cpu_seconds(pid)
            except OSError:
                continue  # a worker that ended between the listing and the read
        return total

    def rss_mb(self) -> float:
        total = 0.0
        for pid in _family(self.proc.pid):
            try:
                total += _proc_rss_mb(pid)
            except OSError:
                continue
        return total

    def stop(self) -> None:
        """SIGTERM, SIGKILL past 20 s; remove the daemon's data directory. Blocks."""
        self.process.stop(timeout=20)


class JasminTarget:
    name = "jasmin"

    def __init__(self, cpu: int | None, show: str = "bench", workers: int = 1, repo: str = REPO) -> None:
        self.daemon = DaemonUnderTest(cpu, workers=workers, repo=repo)
        if workers != 1:
            self.name = f"jasmin-w{workers}"
        self.show = show
        self.pub_client: SignalingClient | None = None

    def cpu_seconds(self) -> float:
        return self.daemon.cpu_seconds()

    def rss_mb(self) -> float:
        return self.daemon.rss_mb()

    def describe(self) -> dict[str, Any]:
        from jasmin_sfu import __version__

        return {
            "software": f"jasmin-sfu {__version__} (python -m jasmin_sfu serve, uvloop)",
            "config": {"env": self.daemon.env, "other": "built-in defaults (jasmin_sfu/config.py)"},
            # Warnings and errors the daemon logged during the run (its log level is warning).
            "log_tail": [line.rstrip()[:300] for line in list(self.daemon.tail)[-20:]],
            "log_transport_events": [line.rstrip()[:300] for line in self.daemon.tail if " connection " in line][-50:],
        }

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
        await asyncio.to_thread(self.daemon.stop)


def make_target(name: str, cpu: int | None) -> Target:
    if name == "jasmin":
        return JasminTarget(cpu)
    m = re.fullmatch(r"jasmin-w([0-9]+)", name)
    if m:  # a supervisor of N workers: one show's guests spread over them through relays
        return JasminTarget(cpu, workers=int(m.group(1)))
    if name == "janus":
        from bench.janus import JanusTarget

        return JanusTarget(cpu)
    raise SystemExit(f"unknown target {name!r} (jasmin, janus)")
