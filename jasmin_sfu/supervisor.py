"""One media worker process per core, and a supervisor that places shows on them.

mediasoup runs one Worker per core and keeps a Router (a show) on one of them;
a Python event loop is bound to one core by the GIL, so this is the only way a
node uses more than one. With ``server.workers`` > 1 the ``serve`` process
becomes this supervisor:

* it spawns N ``jasmin-sfu serve`` workers on loopback ports, each pinned to a
  core (``sched_setaffinity``), with its own slice of the ICE port range, its
  own billing outbox and node id, and the shared stores (ledger, accounts);
* it owns the public HTTP port: ``/ws``, ``/whip`` and ``/whep`` are routed per show, everything else
  (REST, demo page) goes to a live worker in turn, ``/metrics`` merges every
  worker's samples under a ``worker`` label, ``/readyz`` is ready when every
  worker is;
* it reads each worker's load every ``server.worker_load_poll_s`` (``GET
  /internal/load``: the :class:`NodeLoad` a cluster node's heartbeat reports,
  viewers and CPU against the worker's admission limits) and ranks workers by
  :class:`WorkerLoad` (that share in tenths, then connections);
* a show lives on one worker: the first performer ``join`` of a show places it
  on the least loaded worker with room, and every later ``join`` of that
  show goes there until its last connection leaves;
* a guest viewer's ``join`` of a placed show goes to the least loaded worker with
  room (the show's worker winning ties, a worker refusing ``overloaded``
  skipped): on another worker it is served through a relay from the show's
  worker over loopback UDP (jasmin_sfu/api/relay.py), so one show's audience
  spreads over every core; when that worker cannot serve it (the relay refused,
  ``overloaded``) the join is sent to the show's worker instead, the guest seeing
  no error; members and performers always go to the show's worker
  (privates, Cam2Cam and the meter live there);
* a worker that dies is restarted (its shows are gone; their clients see the
  websocket close and reconnect).

Routing needs the show id, which arrives in ``join``, after ``hello``. A
connection therefore starts on the least loaded worker; when its ``join``
names a show placed elsewhere the supervisor opens a websocket to that worker
with the same ``hello`` and the same session id (the worker takes it from an
internal header, with a per-run secret), swallows the second ``welcome`` and
forwards the ``join`` there. Media never passes through the supervisor: ICE
runs between the client and the worker's own UDP sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import itertools
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack
from aiohttp import WSMsgType, web

from jasmin_sfu import __version__
from jasmin_sfu.api.origin import OriginPolicy, origin_middleware
from jasmin_sfu.api.relay import RELAY_ORIGIN_HEADER
from jasmin_sfu.app import (
    INTERNAL_HTTP_SESSIONS,
    INTERNAL_LOAD,
    INTERNAL_REVOKE,
    INTERNAL_SECRET_HEADER,
    INTERNAL_SESSION_HEADER,
)
from jasmin_sfu.config import Config
from jasmin_sfu.services.cluster import NodeLoad
from jasmin_sfu.lifecycle import LISTENING, HttpListener, close_websockets, drain, run

log = logging.getLogger(__name__)

# Workers' internal endpoints (/internal/...), never proxied from the public port.
_INTERNAL_PATH = re.compile(r"^/+internal(/|\Z)", re.IGNORECASE)
# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp recomputes.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}
# A restart loop must not spin on a worker that dies at start (bad config, port range taken).
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
# A worker answers a revocation once that account's websockets left their shows (at most 5 s,
# docs/privacy.md): one that takes longer is counted as not answering. Below the posting
# worker's own wait for this supervisor (retention.SUPERVISOR_WAIT_S).
REVOKE_WAIT_S = 6.5
# Workers whose load shares fall in the same tenth of their limits count as equally loaded:
# their connections decide (a share read up to one poll ago must not send a burst to one worker).
LOAD_STEP = 0.1
# A relayed guest join answered with one of these by the worker chosen to relay is sent to the
# show's worker instead (docs/workers.md): the relay could not be opened, or the worker is full.
RELAY_FALLBACK_CODES = frozenset({"invalid_state", "overloaded", "unavailable"})


@dataclass(frozen=True)
class WorkerLoad:
    """What the supervisor knows of one live worker's load: its routed websockets (now) and its
    :class:`NodeLoad` as last read (viewers and CPU against its admission limits)."""

    connections: int
    load: NodeLoad = NodeLoad()

    def rank(self) -> tuple[int, int]:
        """Lower is less loaded: the load share in tenths of the limits, then connections."""
        return math.floor(self.load.share() / LOAD_STEP + 1e-9), self.connections

    def has_room(self) -> bool:
        """Under both admission limits, not draining (as of the last read)."""
        return self.load.has_room()


def node_load(body: Any) -> NodeLoad | None:
    """A worker's ``GET /internal/load`` answer as a :class:`NodeLoad`, or None when garbled."""
    return NodeLoad.parse(body)


def worker_count(requested: int) -> int:
    """``server.workers``: 0 means one per core this process may run on."""
    if requested > 0:
        return requested
    return max(1, len(os.sched_getaffinity(0)))


def port_slices(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    """Split the ICE port range into ``n`` disjoint slices ((0, 0) stays kernel-chosen)."""
    if (lo, hi) == (0, 0):
        return [(0, 0)] * n
    size = (hi - lo + 1) // n
    if size < 1:
        raise ValueError(f"media.rtc_min_port..rtc_max_port holds {hi - lo + 1} ports, fewer than {n} workers")
    return [(lo + i * size, lo + (i + 1) * size - 1) for i in range(n)]


def udp_ports(base: int, n: int, lo: int = 0, hi: int = 0) -> list[int]:
    """``media.rtc_udp_port`` per worker: worker i listens on base + i (0: none fixed, each worker's
    shared socket takes a free port of its slice of the range, :func:`port_slices`)."""
    if not base:
        return [0] * n
    ports = [base + i for i in range(n)]
    if ports[-1] > 65535:
        raise ValueError(f"media.rtc_udp_port {base} + {n} workers runs past port 65535")
    if (lo, hi) != (0, 0) and any(lo <= p <= hi for p in ports):
        raise ValueError(
            f"media.rtc_udp_port {base}..{ports[-1]} (one per worker) overlaps media.rtc_min_port..rtc_max_port"
        )
    return ports


class Placement:
    """Which worker holds which show (pure; the supervisor feeds it).

    A show is placed when a performer's ``join`` is routed, and stays placed
    while any routed connection is joined to it or a join is in flight.
    """

    def __init__(self) -> None:
        self._where: dict[str, int] = {}
        self._refs: dict[str, int] = {}

    def where(self, show_id: str) -> int | None:
        """The worker holding ``show_id``, if placed."""
        return self._where.get(show_id)

    def route(
        self, show_id: str, role: str, loads: dict[int, WorkerLoad], full: frozenset[int] = frozenset()
    ) -> int | None:
        """The worker a ``join`` of ``show_id`` goes to; None: any (a viewer of no show).

        ``loads``: per live worker. A performer of an unplaced show places it on the
        least loaded worker (:meth:`WorkerLoad.rank`; ties: the lowest index) that has
        room and is not ``full`` (it refused a join with ``overloaded`` lately), if any.
        A placed show's joins go to its worker, full or not: its media is there.
        """
        placed = self._where.get(show_id)
        if placed is not None and placed in loads:
            return placed
        if role != "performer" or not loads:
            return None
        room = {i: w for i, w in loads.items() if i not in full and w.has_room()} or loads
        chosen = min(room, key=lambda i: (room[i].rank(), i))
        self._where[show_id] = chosen
        self._refs.setdefault(show_id, 0)
        return chosen

    def hold(self, show_id: str, worker: int) -> None:
        """A connection joined ``show_id`` on ``worker``."""
        self._where.setdefault(show_id, worker)
        self._refs[show_id] = self._refs.get(show_id, 0) + 1

    def release(self, show_id: str) -> None:
        """A joined connection left; the last one unplaces the show."""
        n = self._refs.get(show_id, 0) - 1
        if n <= 0:
            self._refs.pop(show_id, None)
            self._where.pop(show_id, None)
        else:
            self._refs[show_id] = n

    def unplace_unheld(self, show_id: str) -> None:
        """A performer's join that placed ``show_id`` failed: forget it unless someone holds it."""
        if self._refs.get(show_id, 0) == 0:
            self._refs.pop(show_id, None)
            self._where.pop(show_id, None)

    def drop_worker(self, worker: int) -> list[str]:
        """A worker died: its shows are gone."""
        gone = [s for s, w in self._where.items() if w == worker]
        for s in gone:
            self._where.pop(s, None)
            self._refs.pop(s, None)
        return gone

    @property
    def shows(self) -> dict[str, int]:
        """Every placed show and its worker."""
        return dict(self._where)


def guest_worker(origin: int, loads: dict[int, WorkerLoad], full: frozenset[int] = frozenset()) -> int:
    """The worker a guest viewer's ``join`` of a show held by ``origin`` goes to.

    ``loads``: per live worker, not counting the joining connection. The least loaded
    worker (:meth:`WorkerLoad.rank`) that has room and is not ``full``, the origin
    winning ties (a small show stays on one worker and needs no relay); the origin when
    every other worker is full, past its limits or down.
    """
    room = {i: w for i, w in loads.items() if (i not in full and w.has_room()) or i == origin}
    if origin not in room:
        return origin
    return min(room, key=lambda i: (room[i].rank(), i != origin, i))


def is_guest(data: dict[str, Any]) -> bool:
    """A viewer's join with no account (no token, no member or performer id): the only
    joins a relayed worker serves (docs/workers.md, "One show over every worker")."""
    return (
        data.get("role") == "viewer"
        and not data.get("token")
        and not data.get("member_id")
        and not data.get("performer_id")
    )


def decode_client_frame(raw: str | bytes) -> dict[str, Any] | None:
    """A signaling frame as the supervisor needs it (type, method, id, data), or None."""
    try:
        obj = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


def _error_of(resp: web.Response) -> Any:
    """The ``error`` object of a worker's JSON error answer, or None; a WHIP/WHEP
    ``overloaded`` carries its hint in ``Retry-After`` (seconds), read back as ``retry_after_ms``."""
    if resp.content_type != "application/json" or not isinstance(resp.body, bytes):
        return None
    try:
        body = json.loads(resp.body)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    retry = resp.headers.get("Retry-After", "")
    if isinstance(error, dict) and "retry_after_ms" not in error and retry.isdigit():
        error = {**error, "retry_after_ms": int(retry) * 1000}
    return error


def merge_metrics(texts: dict[int, str]) -> str:
    """Prometheus text from every worker as one exposition, each sample labelled ``worker``.

    Families stay contiguous (the text format wants all samples of a family
    together), with the first worker's HELP/TYPE lines.
    """
    families: dict[str, tuple[list[str], list[str]]] = {}
    for index in sorted(texts):
        family = ""
        for line in texts[index].splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    heads, _ = families.setdefault(family, ([], []))
                    if index == min(texts) or not any(h.split(" ", 3)[1] == parts[1] for h in heads):
                        if line not in heads:
                            heads.append(line)
                continue
            cut = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
            if cut < 0:
                continue
            name, rest = line[:cut], line[cut:]
            label = f'worker="{index}"'
            sample = f"{name}{{{label},{rest[1:]}" if rest.startswith("{") else f"{name}{{{label}}}{rest}"
            families.setdefault(family or name, ([], []))[1].append(sample)
    out: list[str] = []
    for heads, samples in families.values():
        out.extend(heads)
        out.extend(samples)
    return "\n".join(out) + "\n"


@dataclass
class WorkerProcess:
    """One child daemon."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    alive: bool = False
    connections: int = 0
    restarts: int = 0
    # As last read from the worker (GET /internal/load); all zero until the first read.
    load: NodeLoad = NodeLoad()
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"


class Supervisor:
    """Spawns the workers, routes websockets per show, proxies the rest."""

    def __init__(self, cfg: Config, config_path: str | None = None, python: str = sys.executable) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.python = python
        self.n = worker_count(cfg.server.workers)
        self.secret = secrets.token_urlsafe(32)
        self.placement = Placement()
        self.workers = [WorkerProcess(i) for i in range(self.n)]
        self._ports = port_slices(cfg.media.rtc_min_port, cfg.media.rtc_max_port, self.n)
        self._udp_ports = udp_ports(cfg.media.rtc_udp_port, self.n, cfg.media.rtc_min_port, cfg.media.rtc_max_port)
        self._cpus = sorted(os.sched_getaffinity(0))
        self._rr = itertools.count()
        # Worker -> monotonic time until which it counts as full (it answered `overloaded`).
        self._full_until: dict[int, float] = {}
        # WHIP/WHEP session Location -> (show, worker, monotonic time created): each holds its
        # show's placement until DELETEd, or until a sweep finds it ended on its worker.
        self._http_sessions: dict[str, tuple[str, int, float]] = {}
        self.http_sessions_swept = 0
        # Revocations fanned out, and workers that did not answer one in time (docs/workers.md).
        self.revocations = 0
        self.revocations_unanswered = 0
        # Guest joins routed to a worker other than their show's (served there by a relay).
        self.relayed_joins = 0
        # ... of which that worker could not serve (relay refused, full): sent to the show's worker.
        self.relay_fallbacks = 0
        # The loopback listener of /internal/revoke (its URL goes to the workers in their env).
        self._internal: HttpListener | None = None
        self.internal_url = ""
        self._stopping = False
        self._monitors: list[asyncio.Task[None]] = []
        self._clients: set[web.WebSocketResponse] = set()
        self.http: aiohttp.ClientSession | None = None
        self.listener: HttpListener | None = None
        self.port: int | None = None

    # -- workers ----------------------------------------------------------------

    def _env(self, w: WorkerProcess) -> dict[str, str]:
        b = self.cfg.billing
        lo, hi = self._ports[w.index]
        env = {
            **os.environ,
            "JASMIN_SERVER_HOST": "127.0.0.1",
            "JASMIN_SERVER_PORT": "0",
            "JASMIN_SERVER_WORKERS": "1",
            "JASMIN_SERVER_INTERNAL_SECRET": self.secret,
            "JASMIN_SERVER_SUPERVISOR_URL": self.internal_url,
            "JASMIN_MEDIA_RTC_MIN_PORT": str(lo),
            "JASMIN_MEDIA_RTC_MAX_PORT": str(hi),
            "JASMIN_MEDIA_RTC_UDP_PORT": str(self._udp_ports[w.index]),
            # Each worker closes its own credit-control sessions after a crash,
            # and appends to its own outbox and local billing log.
            # Also the worker's node id on its relays to and from its siblings.
            "JASMIN_BILLING_NODE_ID": self.relay_node(w),
            "JASMIN_BILLING_OUTBOX_DIR": os.path.join(b.outbox_dir or b.data_dir, f"worker{w.index}"),
        }
        return env

    def relay_node(self, w: WorkerProcess) -> str:
        """The worker's node id (its billing node id, and its id on relays between workers)."""
        return f"{self.cfg.billing.node_id}w{w.index}"

    def sibling_header(self, show_id: str, origin: WorkerProcess) -> str:
        """``X-Jasmin-Relay-Origin`` for a guest of ``show_id`` routed away from ``origin``, its worker."""
        return json.dumps({"show_id": show_id, "node": self.relay_node(origin), "url": f"http://{origin.base}"})

    async def _spawn(self, w: WorkerProcess) -> None:
        cmd = [self.python, "-m", "jasmin_sfu", "serve"]
        if self.config_path:
            cmd += ["--config", self.config_path]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            env=self._env(w),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        w.proc = proc
        try:
            os.sched_setaffinity(proc.pid, {self._cpus[w.index % len(self._cpus)]})
        except OSError as exc:  # pragma: no cover - a container may forbid it
            log.warning("cannot pin worker", extra={"worker": w.index, "error": str(exc)})
        assert proc.stdout is not None
        lines: list[str] = []
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                await proc.wait()
                raise RuntimeError(
                    f"worker {w.index} exited with {proc.returncode} before listening:\n" + "".join(lines)
                )
            line = raw.decode(errors="replace")
            lines.append(line)
            m = LISTENING.search(line)
            if m:
                break
            sys.stderr.write(line)
        w.port = int(m.group(1))
        w.alive = True
        w.pumps = [asyncio.get_running_loop().create_task(self._relay_output(proc))]
        log.info("worker up", extra={"worker": w.index, "pid": proc.pid, "port": w.port})

    @staticmethod
    async def _relay_output(proc: asyncio.subprocess.Process) -> None:
        """Keep draining the worker's output (its logs) so it never blocks on a full pipe."""
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                return
            sys.stderr.write(raw.decode(errors="replace"))

    async def _monitor(self, w: WorkerProcess) -> None:
        """Restart a worker that dies, with backoff."""
        failures = 0
        while not self._stopping:
            assert w.proc is not None
            code = await w.proc.wait()
            w.alive = False
            w.load = NodeLoad()  # its restart starts empty
            for t in w.pumps:
                t.cancel()
            if self._stopping:
                return
            gone = self.placement.drop_worker(w.index)
            self._http_sessions = {k: v for k, v in self._http_sessions.items() if v[1] != w.index}
            log.error("worker died; restarting", extra={"worker": w.index, "code": code, "shows_lost": len(gone)})
            while not self._stopping:
                await asyncio.sleep(RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)])
                try:
                    await self._spawn(w)
                    w.restarts += 1
                    failures = 0
                    break
                except Exception as exc:
                    failures += 1
                    log.error("worker restart failed", extra={"worker": w.index, "error": str(exc)})

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.cfg.server.http_session_sweep_s)
            try:
                await self.sweep_http_sessions()
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried at the next one
                log.warning("WHIP/WHEP session sweep failed", extra={"error": repr(exc)})

    async def sweep_http_sessions(self) -> int:
        """Release the placement held by each WHIP/WHEP session that ended on its worker
        without a DELETE (the tab closed, the encoder died); returns how many.

        One request per live worker for its live sessions' Locations. A session created
        after that request was sent may be missing from the answer while live: only older
        ones are released. A worker that does not answer keeps its sessions until the next sweep.
        """
        assert self.http is not None
        released = 0
        for w in [w for w in self.workers if w.alive]:
            asked_at = time.monotonic()
            try:
                async with self.http.get(
                    f"http://{w.base}{INTERNAL_HTTP_SESSIONS}",
                    headers={INTERNAL_SECRET_HEADER: self.secret},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as r:
                    if r.status != 200:
                        continue
                    live = set((await r.json())["locations"])
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
                continue
            for location, (show_id, index, created) in list(self._http_sessions.items()):
                if index == w.index and created < asked_at and location not in live:
                    del self._http_sessions[location]
                    self.placement.release(show_id)
                    released += 1
        if released:
            self.http_sessions_swept += released
            log.info("released WHIP/WHEP sessions ended without a DELETE", extra={"sessions": released})
        return released

    async def _load_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.cfg.server.worker_load_poll_s)
            await self.read_loads()

    async def read_loads(self) -> None:
        """Read every live worker's load (``GET /internal/load``, with the secret) at once; a worker
        that does not answer keeps its last one (a dead one is not ranked at all)."""
        assert self.http is not None
        http = self.http

        async def read(w: WorkerProcess) -> None:
            try:
                async with http.get(
                    f"http://{w.base}{INTERNAL_LOAD}",
                    headers={INTERNAL_SECRET_HEADER: self.secret},
                    timeout=aiohttp.ClientTimeout(total=2),
                ) as r:
                    load = node_load(await r.json()) if r.status == 200 else None
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                log.debug("worker load not read", extra={"worker": w.index, "error": repr(exc)})
                return
            if load is not None:
                w.load = load

        await asyncio.gather(*(read(w) for w in self.workers if w.alive))

    def loads(self) -> dict[int, WorkerLoad]:
        """Each live worker's connections and last read load."""
        return {w.index: WorkerLoad(w.connections, w.load) for w in self.workers if w.alive}

    def full(self) -> frozenset[int]:
        """Workers that refused a join with ``overloaded`` within its ``retry_after_ms``."""
        now = time.monotonic()
        return frozenset(i for i, until in self._full_until.items() if until > now)

    def refused(self, worker: int, error: Any) -> None:
        """``worker`` answered a join with ``error``; an ``overloaded`` one keeps new shows off it a while."""
        if isinstance(error, dict) and error.get("code") == "overloaded":
            retry = error.get("retry_after_ms")
            wait_s = retry / 1000.0 if isinstance(retry, int) and 0 < retry <= 600_000 else 1.0
            self._full_until[worker] = time.monotonic() + wait_s

    def any_worker(self) -> WorkerProcess:
        """A live worker, in turn (REST and the demo page are stateless per request)."""
        live = [w for w in self.workers if w.alive]
        if not live:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": {"code": "unavailable", "message": "no worker is up"}}),
                content_type="application/json",
            )
        return live[next(self._rr) % len(live)]

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(auto_decompress=False)
        await self._start_internal()
        # Worker 0 first, alone: it creates and migrates the shared SQLite files,
        # so its siblings start on a migrated schema instead of racing for it.
        await self._spawn(self.workers[0])
        await asyncio.gather(*(self._spawn(w) for w in self.workers[1:]))
        self._monitors = [asyncio.get_running_loop().create_task(self._monitor(w)) for w in self.workers]
        self._monitors.append(asyncio.get_running_loop().create_task(self._sweep_loop()))
        await self.read_loads()
        self._monitors.append(asyncio.get_running_loop().create_task(self._load_loop()))
        s = self.cfg.server
        # The public face checks the Origin of /ws itself: its workers see the supervisor's connection.
        app = web.Application(
            client_max_size=s.hard_max_frame_bytes, middlewares=[origin_middleware(OriginPolicy(s.allowed_origins))]
        )
        app.router.add_get("/ws", self.ws_proxy)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        for kind in ("whip", "whep"):
            app.router.add_route("*", f"/{kind}/{{show_id}}", self.show_http_proxy)
            app.router.add_route("*", f"/{kind}/{{show_id}}/{{resource_id}}", self.show_http_proxy)
        app.router.add_route("*", "/{tail:.*}", self.http_proxy)
        self.listener = HttpListener(app)
        self.port = await self.listener.start(s.host, s.port)

    async def stop(self) -> None:
        """Drain: close the client websockets, SIGTERM every worker, wait, kill stragglers."""
        self._stopping = True
        await close_websockets(self._clients)
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.send_signal(signal.SIGTERM)
        # A worker drains its media, then gives its billing sinks billing.drain_timeout_s.
        deadline = self.cfg.server.drain_timeout_s + self.cfg.billing.drain_timeout_s + 10
        for w in self.workers:
            if w.proc is None:
                continue
            if not await drain(w.proc.wait(), deadline, f"worker {w.index}", log):  # pragma: no cover
                w.proc.kill()
                await w.proc.wait()
        for t in self._monitors:
            t.cancel()
        await asyncio.gather(*self._monitors, return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()
        if self._internal is not None:
            await self._internal.close()
        if self.http is not None:
            await self.http.close()

    # -- revocations: from one worker to every other -----------------------------------

    async def _start_internal(self) -> None:
        """The workers' way in: ``/internal/revoke`` on a loopback port, before any worker starts."""
        app = web.Application()
        app.router.add_post(INTERNAL_REVOKE, self.revoke)
        self._internal = HttpListener(app)
        port = await self._internal.start("127.0.0.1", 0)
        self.internal_url = f"http://127.0.0.1:{port}"
        log.info("internal endpoint listening", extra={"port": port})

    async def revoke(self, request: web.Request) -> web.Response:
        """A worker revoked a token or an account: post it to every other live worker's
        ``/internal/revoke`` at once and answer when each did (or after ``REVOKE_WAIT_S``).

        The worker's secret only. The supervisor owns no revocation logic: each worker ends
        its own sessions (``retention.WorkerRevocations``). Answers how many workers were
        asked and how many did not answer in time (logged and counted in /metrics).
        """
        given = request.headers.get(INTERNAL_SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret.encode()):
            return web.json_response({"error": {"code": "forbidden", "message": "for the workers only"}}, status=403)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"error": {"code": "bad_request", "message": "a JSON object"}}, status=400)
        origin = body.pop("from_port", None)
        others = [w for w in self.workers if w.alive and w.port != origin]
        answers = await asyncio.gather(*(self._revoke_on(w, body) for w in others))
        unanswered = answers.count(False)
        self.revocations += 1
        self.revocations_unanswered += unanswered
        return web.json_response({"workers": len(others), "unanswered": unanswered})

    async def _revoke_on(self, w: WorkerProcess, body: dict[str, Any]) -> bool:
        assert self.http is not None
        try:
            async with self.http.post(
                f"http://{w.base}{INTERNAL_REVOKE}",
                json=body,
                headers={INTERNAL_SECRET_HEADER: self.secret},
                timeout=aiohttp.ClientTimeout(total=REVOKE_WAIT_S),
            ) as r:
                if r.status == 200:
                    return True
                reason = f"status {r.status}: {(await r.text())[:200]}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = repr(exc)
        log.warning("a worker did not answer a revocation", extra={"worker": w.index, "error": reason})
        return False

    # -- HTTP ---------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        alive = sum(w.alive for w in self.workers)
        return web.json_response({"status": "ok", "version": __version__, "workers": self.n, "workers_alive": alive})

    async def _worker_json(self, w: WorkerProcess, path: str) -> tuple[int, Any]:
        assert self.http is not None
        try:
            async with self.http.get(f"http://{w.base}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r:
                return r.status, await r.json()
        except Exception as exc:
            return 503, {"status": "unreachable", "error": str(exc)}

    async def readyz(self, request: web.Request) -> web.Response:
        workers = []
        ready = not self._stopping
        for w in self.workers:
            status, body = await self._worker_json(w, "/readyz") if w.alive else (503, {"status": "down"})
            ready = ready and status == 200
            pid = w.proc.pid if w.proc is not None else None
            workers.append(
                {
                    "index": w.index,
                    "pid": pid,
                    "alive": w.alive,
                    "connections": w.connections,
                    "restarts": w.restarts,
                    # What the placement rule sees of it (as last read; docs/workers.md).
                    "load": {**dataclasses.asdict(w.load), "share": round(w.load.share(), 4)},
                    **(body if isinstance(body, dict) else {}),
                }
            )
        body = {"status": "ready" if ready else "not_ready", "workers": workers}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        assert self.http is not None
        texts: dict[int, str] = {}
        for w in self.workers:
            if not w.alive:
                continue
            try:
                async with self.http.get(f"http://{w.base}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    texts[w.index] = await r.text()
            except Exception:
                continue
        own = [
            "# HELP jasmin_supervisor_worker_up 1 while the worker process is up",
            "# TYPE jasmin_supervisor_worker_up gauge",
        ]
        own += [f'jasmin_supervisor_worker_up{{worker="{w.index}"}} {int(w.alive)}' for w in self.workers]
        own += [
            "# HELP jasmin_supervisor_worker_restarts_total Worker processes restarted after dying",
            "# TYPE jasmin_supervisor_worker_restarts_total counter",
        ]
        own += [f'jasmin_supervisor_worker_restarts_total{{worker="{w.index}"}} {w.restarts}' for w in self.workers]
        own += [
            "# HELP jasmin_supervisor_shows_placed Shows placed on each worker",
            "# TYPE jasmin_supervisor_shows_placed gauge",
        ]
        placed = self.placement.shows
        own += [
            f'jasmin_supervisor_shows_placed{{worker="{w.index}"}} {sum(1 for v in placed.values() if v == w.index)}'
            for w in self.workers
        ]
        own += [
            "# HELP jasmin_supervisor_http_sessions_swept_total WHIP/WHEP sessions ended without a DELETE "
            "whose show placement a sweep released",
            "# TYPE jasmin_supervisor_http_sessions_swept_total counter",
            f"jasmin_supervisor_http_sessions_swept_total {self.http_sessions_swept}",
            "# HELP jasmin_supervisor_revocations_total Revocations (erasures, logouts) a worker made, "
            "passed on to the other workers",
            "# TYPE jasmin_supervisor_revocations_total counter",
            f"jasmin_supervisor_revocations_total {self.revocations}",
            "# HELP jasmin_supervisor_revocations_unanswered_total Workers that did not confirm a revocation in time",
            "# TYPE jasmin_supervisor_revocations_unanswered_total counter",
            f"jasmin_supervisor_revocations_unanswered_total {self.revocations_unanswered}",
            "# HELP jasmin_supervisor_relayed_joins_total Guest joins routed to a worker other than their "
            "show's, served there through a relay",
            "# TYPE jasmin_supervisor_relayed_joins_total counter",
            f"jasmin_supervisor_relayed_joins_total {self.relayed_joins}",
            "# HELP jasmin_supervisor_relay_fallbacks_total Relayed guest joins the chosen worker could not serve"
            " (relay refused, overloaded), served by the show's worker instead",
            "# TYPE jasmin_supervisor_relay_fallbacks_total counter",
            f"jasmin_supervisor_relay_fallbacks_total {self.relay_fallbacks}",
            "# HELP jasmin_supervisor_worker_load_share Each worker's load as the placement rule reads it:"
            " the larger of its viewer and CPU shares of its admission limits",
            "# TYPE jasmin_supervisor_worker_load_share gauge",
            *(f'jasmin_supervisor_worker_load_share{{worker="{w.index}"}} {w.load.share():.4f}' for w in self.workers),
        ]
        body = "\n".join(own) + "\n" + merge_metrics(texts)
        return web.Response(body=body.encode(), content_type="text/plain", charset="utf-8")

    def _internal_headers(self, request: web.Request, session_id: str | None = None) -> dict[str, str]:
        h = {INTERNAL_SECRET_HEADER: self.secret, "X-Forwarded-For": request.remote or ""}
        if session_id:
            h[INTERNAL_SESSION_HEADER] = session_id
        return h

    async def http_proxy(self, request: web.Request) -> web.StreamResponse:
        if _INTERNAL_PATH.match(request.path):
            # The forwarded request would carry this supervisor's secret: the workers' internal
            # endpoints (closing anyone's websockets, listing WHIP/WHEP sessions) are not public.
            return web.json_response({"error": {"code": "not_found", "message": "no such route"}}, status=404)
        return await self._forward(request, self.any_worker())

    async def show_http_proxy(self, request: web.Request) -> web.StreamResponse:
        """WHIP/WHEP: to the worker of the show, placed as a websocket ``join`` places it.

        The session resource (``Location``: ``/{whip|whep}/{show_id}/{resource_id}``) names
        its show, so DELETE and PATCH reach the worker holding the session. A WHIP POST is a
        performer's join (it places an unplaced show); a 201 holds the placement like a joined
        websocket, and the DELETE of that Location (200, or 404 for a session that had ended
        by itself) releases it. A session that ends without a DELETE (the tab closed, the encoder
        died) is released by the next sweep (``sweep_http_sessions``, every
        ``server.http_session_sweep_s``).
        """
        kind = request.path.split("/")[1]
        show_id = request.match_info["show_id"]
        resource = request.match_info.get("resource_id")
        creating = resource is None and request.method == "POST"
        role = "performer" if creating and kind == "whip" else "viewer"
        placed_before = self.placement.where(show_id) is not None
        target = self.placement.route(show_id, role, self.loads(), self.full())
        held = self._http_sessions.get(request.path) if resource is not None else None
        if held is not None and self.workers[held[1]].alive:
            target = held[1]  # the worker holding the session (an edge's, for a relayed WHEP guest)
        extra: dict[str, str] = {}
        fallback: int | None = None
        if (
            creating
            and kind == "whep"
            and placed_before
            and target is not None
            and "Authorization" not in request.headers
        ):
            # A WHEP guest spreads like a websocket guest: maybe served by a relay elsewhere.
            edge = guest_worker(target, self.loads(), self.full())
            if edge != target:
                extra = {RELAY_ORIGIN_HEADER: self.sibling_header(show_id, self.workers[target])}
                self.relayed_joins += 1
                fallback, target = target, edge
        w = self.workers[target] if target is not None else self.any_worker()
        resp = await self._forward(request, w, extra)
        if fallback is not None and resp.status != 201:
            error = _error_of(resp)
            code = error.get("code") if isinstance(error, dict) else None
            if code in RELAY_FALLBACK_CODES and self.workers[fallback].alive:
                self.refused(w.index, error)
                self.relay_fallbacks += 1
                w = self.workers[fallback]
                resp = await self._forward(request, w)
        if creating:
            location = resp.headers.get("Location")
            if resp.status == 201 and location:
                self._http_sessions[location] = (show_id, w.index, time.monotonic())
                self.placement.hold(show_id, w.index)
            else:
                self.refused(w.index, _error_of(resp))
                if not placed_before and target is not None:
                    self.placement.unplace_unheld(show_id)
        elif request.method == "DELETE" and resp.status in (200, 404):
            # 404: the session had ended already (its peer left, its media ended): same release.
            held = self._http_sessions.pop(request.path, None)
            if held is not None:
                self.placement.release(held[0])
        return resp

    async def _forward(
        self, request: web.Request, w: WorkerProcess, extra: dict[str, str] | None = None
    ) -> web.Response:
        """``request`` to worker ``w`` (``extra``: internal headers of the supervisor's own, after
        the client's X-Jasmin-* ones are dropped)."""
        assert self.http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers = {
            **{k: v for k, v in headers.items() if not k.lower().startswith("x-jasmin-")},
            **self._internal_headers(request),
            **(extra or {}),
        }
        body = await request.read()
        try:
            async with self.http.request(
                request.method,
                f"http://{w.base}{request.rel_url}",
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as r:
                payload = await r.read()
                # The body is passed on as the worker sent it (this session does not decompress),
                # so its Content-Encoding (the demo page's gzip) goes with it.
                out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP or k.lower() == "content-encoding"}
                return web.Response(status=r.status, body=payload, headers=out)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": {"code": "unavailable", "message": f"worker: {exc}"}}, status=503)

    # -- websockets ---------------------------------------------------------------

    async def ws_proxy(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return web.json_response({"error": {"code": "invalid_state", "message": "draining"}}, status=503)
        s = self.cfg.server
        client = web.WebSocketResponse(heartbeat=s.heartbeat_s, max_msg_size=s.hard_max_frame_bytes)
        await client.prepare(request)
        self._clients.add(client)
        try:
            await RoutedConnection(self, client, request).run()
        finally:
            self._clients.discard(client)
        return client


@dataclass(frozen=True)
class PendingJoin:
    """A routed ``join`` waiting for its answer."""

    request_id: Any
    show_id: str
    worker: int
    placed_by_us: bool  # this join placed the show (unplaced again if it fails)
    raw: str | bytes  # the client's frame, to send again on the show's worker
    fallback: int | None  # a relayed guest join: the show's worker, to retry on when refused


class RoutedConnection:
    """One client websocket bridged to the worker of its show."""

    def __init__(self, sup: Supervisor, client: web.WebSocketResponse, request: web.Request) -> None:
        self.sup = sup
        self.client = client
        self.request = request
        self.session_id = uuid.uuid4().hex
        self.hello: str | bytes | None = None
        self.worker: WorkerProcess | None = None
        self.backend: aiohttp.ClientWebSocketResponse | None = None
        self.pump: asyncio.Task[None] | None = None
        self.joined_show: str | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self.pending_join: PendingJoin | None = None

    async def _open(self, w: WorkerProcess, extra: dict[str, str] | None = None) -> aiohttp.ClientWebSocketResponse:
        assert self.sup.http is not None
        s = self.sup.cfg.server
        return await self.sup.http.ws_connect(
            f"ws://{w.base}/ws",
            headers={**self.sup._internal_headers(self.request, self.session_id), **(extra or {})},
            max_msg_size=s.hard_max_frame_bytes,
            heartbeat=s.heartbeat_s,
        )

    def _attach(self, w: WorkerProcess, backend: aiohttp.ClientWebSocketResponse) -> None:
        if self.worker is not None:
            self.worker.connections -= 1
        self.worker, self.backend = w, backend
        w.connections += 1
        self.pump = asyncio.get_running_loop().create_task(self._pump_back(backend))

    async def run(self) -> None:
        loads = self.sup.loads()
        if not loads:
            await self.client.close(code=1013, message=b"no worker is up")
            return
        first = self.sup.workers[min(loads, key=lambda i: (loads[i].rank(), i))]
        try:
            self._attach(first, await self._open(first))
            async for msg in self.client:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                data: str | bytes = msg.data
                if self.joined_show is None:
                    await self._inspect(data)
                backend = self.backend
                if backend is None or backend.closed:
                    break
                if isinstance(data, str):
                    await backend.send_str(data)
                else:
                    await backend.send_bytes(data)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            log.warning("worker websocket failed", extra={"session_id": self.session_id, "error": str(exc)})
        finally:
            await self._close()

    async def _inspect(self, raw: str | bytes) -> None:
        """Before a successful join: keep the hello, route the join."""
        frame = decode_client_frame(raw)
        if frame is None:
            return
        if frame.get("type") == "hello" and self.hello is None:
            self.hello = raw
            return
        if frame.get("type") != "request" or frame.get("method") != "join" or self.pending_join is not None:
            return
        data = frame.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("show_id"), str):
            return  # the worker answers bad_request
        show_id, role = data["show_id"], data.get("role")
        placed_before = self.sup.placement.where(show_id) is not None
        target = self.sup.placement.route(show_id, str(role), self.sup.loads(), self.sup.full())
        assert self.worker is not None
        fallback: int | None = None
        if placed_before and target is not None and is_guest(data) and self.hello is not None:
            loads = self.sup.loads()
            here = loads.get(self.worker.index)
            if here is not None:  # not counting this connection where it waits now
                loads[self.worker.index] = dataclasses.replace(here, connections=here.connections - 1)
            edge = guest_worker(target, loads, self.sup.full())
            if edge != target:
                # Served by a relay from the show's worker: the edge is told which worker that is.
                sibling = self.sup.sibling_header(show_id, self.sup.workers[target])
                self.sup.relayed_joins += 1
                await self._switch(self.sup.workers[edge], {RELAY_ORIGIN_HEADER: sibling})
                fallback, target = target, edge
        if target is not None and target != self.worker.index and self.hello is not None:
            await self._switch(self.sup.workers[target])
        assert self.worker is not None
        self.pending_join = PendingJoin(
            frame.get("id"), show_id, self.worker.index, not placed_before and target is not None, raw, fallback
        )

    async def _switch(self, w: WorkerProcess, extra: dict[str, str] | None = None) -> None:
        """Move this not-yet-joined connection to ``w``: same hello, same session id (``extra``:
        headers for ``w``, e.g. the show's worker when ``w`` serves it by a relay)."""
        backend = await self._open(w, extra)
        assert self.hello is not None
        if isinstance(self.hello, str):
            await backend.send_str(self.hello)
        else:
            await backend.send_bytes(self.hello)
        while True:  # the worker's welcome: the client has had the first one
            msg = await asyncio.wait_for(backend.receive(), 10)
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                raise ConnectionError(f"worker {w.index} closed during the switch")
            frame = decode_client_frame(msg.data)
            if frame is not None and frame.get("type") == "welcome":
                break
        old, old_pump = self.backend, self.pump
        self.pump = None
        self._attach(w, backend)
        if old_pump is not None:
            old_pump.cancel()
        if old is not None:
            await old.close()

    async def _pump_back(self, backend: aiohttp.ClientWebSocketResponse) -> None:
        """Worker -> client, watching the join's answer until the connection is in a show."""
        try:
            async for msg in backend:
                if msg.type == WSMsgType.TEXT:
                    if not self._watch_join(msg.data):
                        await self.client.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    if not self._watch_join(msg.data):
                        await self.client.send_bytes(msg.data)
        except (ConnectionError, aiohttp.ClientError):
            pass
        if backend is self.backend and not self.client.closed:
            # The worker closed us (it drains, or it died): so does the client's socket.
            code = backend.close_code or 1011
            await self.client.close(code=code if 1000 <= code < 5000 else 1011, message=b"worker closed")

    def _watch_join(self, raw: str | bytes) -> bool:
        """Follow the join's answer; True: the answer is kept from the client (the join is being
        retried on the show's worker)."""
        if self.pending_join is None:
            return False
        frame = decode_client_frame(raw)
        pending = self.pending_join
        if frame is None or frame.get("type") not in ("response", "error") or frame.get("id") != pending.request_id:
            return False
        self.pending_join = None
        if frame.get("type") == "response" and frame.get("ok"):
            self.joined_show = pending.show_id
            self.sup.placement.hold(pending.show_id, pending.worker)
            return False
        error = frame.get("error")
        self.sup.refused(pending.worker, error)
        origin = pending.fallback
        code = error.get("code") if isinstance(error, dict) else None
        if origin is not None and code in RELAY_FALLBACK_CODES and self.sup.workers[origin].alive:
            # The worker chosen to relay the show could not serve this guest: its show's worker does.
            self.sup.relay_fallbacks += 1
            log.info(
                "relayed join refused; joining on the show's worker",
                extra={"session_id": self.session_id, "worker": pending.worker, "origin": origin, "error": code},
            )
            self.pending_join = dataclasses.replace(pending, worker=origin, fallback=None)
            task = asyncio.get_running_loop().create_task(self._join_on_origin(pending.raw, origin))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return True
        if pending.placed_by_us:
            self.sup.placement.unplace_unheld(pending.show_id)
        return False

    async def _join_on_origin(self, raw: str | bytes, origin: int) -> None:
        """Move to the show's worker (same hello, same session id) and send the join there."""
        try:
            await self._switch(self.sup.workers[origin])
            assert self.backend is not None
            if isinstance(raw, str):
                await self.backend.send_str(raw)
            else:
                await self.backend.send_bytes(raw)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            log.warning("join on the show's worker failed", extra={"session_id": self.session_id, "error": str(exc)})
            self.pending_join = None
            if not self.client.closed:
                await self.client.close(code=1011, message=b"worker unreachable")

    async def _close(self) -> None:
        for task in list(self._retries):
            task.cancel()
        if self.pump is not None:
            self.pump.cancel()
        if self.backend is not None and not self.backend.closed:
            await self.backend.close()
        if self.worker is not None:
            self.worker.connections -= 1
            self.worker = None
        if self.joined_show is not None:
            self.sup.placement.release(self.joined_show)
            self.joined_show = None
        if not self.client.closed:
            await self.client.close()


async def supervise(cfg: Config, config_path: str | None = None) -> int:
    """Run the supervisor until SIGINT/SIGTERM (jasmin_sfu/lifecycle.py); returns 0 after a clean drain."""
    sup = Supervisor(cfg, config_path)
    return await run(sup, cfg.server.host, logger=log, detail=f"{sup.n} workers", log_fields={"workers": sup.n})
