"""The relays' control channel between nodes (issue 15, docs/cluster.md "Relays").

An edge that serves a viewer of a show held by another node (its origin)
asks the origin, over HTTP, to open a relay:

``POST /internal/relay/open`` with a JSON body ``{show_id, node, host, port, key}``
(``node`` the edge's id, ``host:port`` its pipe's UDP address, ``key`` its SRTP
key in hex) and the headers ``X-Jasmin-Node`` (the edge's id),
``X-Jasmin-Timestamp`` (Unix seconds) and ``X-Jasmin-Signature``:
HMAC-SHA256 under ``[cluster] secret`` of ``METHOD \\n PATH \\n TIMESTAMP \\n
NODE \\n BODY``. The origin refuses (``403``, ``{"error": {"code": "forbidden", "message"}}``) a
signature that does not verify, a timestamp outside ``REPLAY_WINDOW_S`` of its
clock, a signature it has already accepted within that window (a replay), and
a ``node`` that differs from the header's. A show not live there (or itself
relayed from elsewhere: no chains) is ``404`` ``unknown_show``.

The answer: ``{node, host, port, key, producers}``: the origin's end of the
pipe toward that edge (one per edge, reused by every show) and the show's
producers as :func:`~jasmin_sfu.media.pipe_transport.describe` gives them
(Cam2Cam, exclusive to its private, is never offered). The edge creates a
replica producer for each in its own show (an *edge show*) and its viewers
subscribe to those; media flows once the edge asks for a producer over the
pipe (``JWNT``), i.e. once a viewer there consumes it.

A member watching through an edge buys its privates from the origin over two more signed
calls (jasmin_sfu/api/relay_members.py); the signatures are jasmin_sfu/api/relay_auth.py's.

Between the workers of one supervisor (``server.workers`` > 1, docs/workers.md,
"One show over every worker") the same channel runs over loopback, signed with
the supervisor's per-run secret instead of ``[cluster] secret``; a worker is
told which sibling holds a show by :data:`RELAY_ORIGIN_HEADER` on the websocket
the supervisor routes to it (:func:`sibling_origin`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
from aiohttp import web

from jasmin_sfu.api.relay_auth import (
    NODE_HEADER as NODE_HEADER,
    REPLAY_WINDOW_S as REPLAY_WINDOW_S,
    SIGNATURE_HEADER as SIGNATURE_HEADER,
    TIMESTAMP_HEADER as TIMESTAMP_HEADER,
    RelayError as RelayError,
    RequestVerifier as RequestVerifier,
    sign as sign,
    signed_headers,
)
from jasmin_sfu.api.relay_members import RelayMembers
from jasmin_sfu.media.pipe_transport import PipeTransport
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.worker import Worker
from jasmin_sfu.shows.events import ShowEvent
from jasmin_sfu.shows.registry import ShowRegistry
from jasmin_sfu.shows.show import Show

log = logging.getLogger(__name__)

RELAY_OPEN_PATH = "/internal/relay/open"
MAX_BODY = 4096
# Set by a supervisor on a guest's websocket it routes to a worker that does not hold the
# show: JSON ``{"show_id", "node", "url"}`` naming the sibling worker that does (its relay
# node id and loopback HTTP URL). Honoured only with the supervisor's secret.
RELAY_ORIGIN_HEADER = "X-Jasmin-Relay-Origin"
_LOOPBACK_URL = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}$")


@dataclass(frozen=True)
class SiblingOrigin:
    """The sibling worker holding ``show_id``, as the supervisor names it."""

    show_id: str
    node: str
    url: str


def sibling_origin(value: str) -> SiblingOrigin | None:
    """:data:`RELAY_ORIGIN_HEADER`'s value, or None when absent or malformed (the caller
    has checked the supervisor's secret). Only loopback URLs: workers relay on this machine."""
    if not value or len(value) > 512:
        return None
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    show_id, node, url = obj.get("show_id"), obj.get("node"), obj.get("url")
    if not (isinstance(show_id, str) and show_id and isinstance(node, str) and node and isinstance(url, str)):
        return None
    if not _LOOPBACK_URL.match(url):
        return None
    return SiblingOrigin(show_id, node, url)


@dataclass
class RelayStats:
    """Counters for /metrics."""

    opened_as_origin: int = 0
    opened_as_edge: int = 0
    served_warm: int = 0
    refused: int = 0
    failures: int = 0


class Relays:
    """This node's relays: origin pipes toward edges, edge pipes from origins, and the edge shows.

    ``relay_host`` is the address the pipes bind and announce; ``secret``
    signs the control channel.
    """

    def __init__(
        self,
        *,
        node_id: str,
        secret: str,
        relay_host: str,
        worker: Worker,
        shows: ShowRegistry,
        clock: Callable[[], float] = time.time,
        silence_timeout_s: float = 10.0,
        request_timeout_s: float = 5.0,
        http_url: str = "",
    ) -> None:
        self.node_id = node_id
        self.secret = secret
        self.relay_host = relay_host
        self.worker = worker
        self.shows = shows
        self.clock = clock
        self.silence_timeout_s = silence_timeout_s
        self.request_timeout_s = request_timeout_s
        self.verifier = RequestVerifier(secret, clock)
        self.origin_pipes: dict[str, PipeTransport] = {}
        self.edge_pipes: dict[str, PipeTransport] = {}
        # Shows served here from another node: show id -> origin node id.
        self.edge_shows: dict[str, str] = {}
        # ... and the origin's HTTP origin, where the members watching here call it.
        self.edge_origin_http: dict[str, str] = {}
        self.stats = RelayStats()
        self._locks: dict[str, asyncio.Lock] = {}
        # One bind at a time per (role, node): two first calls toward one node get one pipe.
        self._pipe_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Edge shows whose relay is being refreshed in the background.
        self._refreshing: set[str] = set()
        # Origin: (show id, edge node) -> the show whose new tracks are announced to that edge.
        self._announcing: dict[tuple[str, str], tuple[Show, PipeTransport]] = {}
        shows.bus.subscribe(self._on_show_event)
        # The cumulative counters of pipes closed since (for /metrics).
        self._closed_totals = {"packets_out": 0, "packets_in": 0, "dropped_unknown_address": 0}
        # Members watching through an edge (jasmin_sfu/api/relay_members.py): with this node's
        # HTTP origin (``http_url``, where origins deliver its members' events); None: every
        # member is sent to the show's node (between a supervisor's workers, always).
        self.members = RelayMembers(self, http_url, clock) if http_url else None

    # -- pipes -------------------------------------------------------------------------

    async def _pipe(
        self, pipes: dict[str, PipeTransport], node: str, role: str, cam2cam: bool = False
    ) -> PipeTransport:
        # The bind below yields to the loop: a second call toward the same node meanwhile (a
        # show's relay and a member's Cam2Cam, two shows' relays) waits for it and reuses its
        # pipe, instead of binding another that the first would then orphan, socket and all.
        async with self._pipe_locks.setdefault((role, node), asyncio.Lock()):
            return await self._pipe_locked(pipes, node, role, cam2cam)

    async def _pipe_locked(self, pipes: dict[str, PipeTransport], node: str, role: str, cam2cam: bool) -> PipeTransport:
        pipe = pipes.get(node)
        if pipe is not None and not pipe.closed:
            if not cam2cam:
                pipe.close_when_idle = False  # a show's relay runs over it too: it stays
            return pipe
        w = self.worker
        pipe = PipeTransport(
            peer_node=node,
            role=role,
            settings=w.settings,
            stats=w.stats,
            clock=w.clock,
            listener=self,
            silence_timeout_s=self.silence_timeout_s,
        )
        await pipe.bind(self.relay_host)
        # A pipe opened for a member's Cam2Cam closes once it carries nothing (docs/cluster.md).
        pipe.close_when_idle = cam2cam
        pipes[node] = pipe
        return pipe

    async def pipe_to(self, node: str, role: str) -> PipeTransport:
        """This node's pipe with ``node`` as ``role`` (``origin``: it sends; ``edge``: it
        receives), bound if new. A member's Cam2Cam runs against the show's relay: its edge
        is the origin of that one track, the show's node its edge. A pipe bound here closes by
        itself once idle (its tick: nothing offered or held), unless a show's relay uses it too."""
        return await self._pipe(self.origin_pipes if role == "origin" else self.edge_pipes, node, role, True)

    def on_pipe_closed(self, pipe: PipeTransport) -> None:
        """PipeListener: forget it (an edge pipe closed when its origin went silent)."""
        for pipes in (self.origin_pipes, self.edge_pipes):
            if pipes.get(pipe.peer_node) is pipe:
                del pipes[pipe.peer_node]
        self._closed_totals["packets_out"] += pipe.packets_out
        self._closed_totals["packets_in"] += pipe.packets_in
        self._closed_totals["dropped_unknown_address"] += pipe.dropped_unknown_address

    def on_pipe_event(self, pipe: PipeTransport, router_id: str, data: dict[str, Any]) -> None:
        """PipeListener: the origin's state of an edge show held here."""
        show = self.shows.get(router_id)
        state = data.get("state")
        if show is not None and self.edge_shows.get(router_id) == pipe.peer_node and isinstance(state, str):
            show.relay_state(state, float(data.get("at") or self.clock()))
            if state == "offline" and not show.closed:
                self._end_edge_show(show)  # its last performer left the origin: the show ended

    def _on_show_event(self, ev: ShowEvent) -> None:
        """The origin's show changed state: tell every edge it relays the show to."""
        if ev.name != "show.state_changed" or ev.state is None or self.is_edge(ev.show_id):
            return
        for (show_id, _node), (show, pipe) in list(self._announcing.items()):
            if show_id == ev.show_id and not pipe.closed and not show.closed:
                pipe.tell(show_id, {"state": ev.state, "at": ev.at})

    def is_edge(self, show_id: str) -> bool:
        return show_id in self.edge_shows

    def refused(self) -> None:
        """A control request was refused (counted for /metrics)."""
        self.stats.refused += 1

    # -- origin side ------------------------------------------------------------------------

    async def handle_open(self, request: web.Request) -> web.Response:
        """``POST /internal/relay/open`` (see the module docstring)."""
        body = await request.content.read(MAX_BODY + 1)
        try:
            node, ask = self.verifier.verify_json(request.method, request.path, request.headers, body, MAX_BODY)
            reply = await self.open_as_origin(
                show_id=str(ask["show_id"]),
                node=node,
                host=str(ask["host"]),
                port=int(ask["port"]),
                key=bytes.fromhex(str(ask["key"])),
                fresh=bool(ask.get("fresh", False)),
            )
        except RelayError as exc:
            self.stats.refused += 1
            status = {"forbidden": 403, "unknown_show": 404}.get(exc.code, 400)
            log.warning("relay open refused", extra={"error": exc.code, "reason": str(exc)})
            return web.json_response({"error": {"code": exc.code, "message": str(exc)}}, status=status)
        except (KeyError, ValueError, TypeError) as exc:
            self.stats.refused += 1
            return web.json_response(
                {"error": {"code": "bad_request", "message": f"bad relay request: {exc}"}}, status=400
            )
        return web.json_response(reply)

    async def open_as_origin(
        self, *, show_id: str, node: str, host: str, port: int, key: bytes, fresh: bool = False
    ) -> dict[str, Any]:
        show = self.shows.get(show_id)
        if show is None or self.is_edge(show_id):
            raise RelayError("unknown_show", f"show {show_id!r} is not live on node {self.node_id}")
        if node == self.node_id:
            raise RelayError("bad_request", "a node does not relay to itself")
        pipe = await self._pipe(self.origin_pipes, node, "origin")
        try:
            pipe.connect(host, port, key)
        except ValueError as exc:
            raise RelayError("bad_request", str(exc)) from None
        if fresh and self.members is not None:
            # A new edge show there is open to all: forget what its old copy was told (in this
            # step, before anything is offered toward it).
            self.members.edge_show_opened(node, show)
        producers = [pipe.offer(p) for p in show.performer_producers() if not p.closed]
        for old, (s, p) in list(self._announcing.items()):
            if s.closed or p.closed:
                del self._announcing[old]  # an ended show, a replaced pipe: nothing to announce to
        slot = (show_id, node)
        if self._announcing.get(slot) != (show, pipe):
            # Tracks published from now on reach this edge without waiting for its next join.
            self._announcing[slot] = (show, pipe)

            def announce(what: str, p: Producer, pipe: PipeTransport = pipe, show: Show = show) -> None:
                if what == "added" and not p.exclusive and self._announcing.get(slot) == (show, pipe):
                    if not pipe.closed:
                        pipe.announce(show.id, p)

            show.router.observe(announce)
        self.stats.opened_as_origin += 1
        assert pipe.local is not None
        return {
            "node": self.node_id,
            "host": pipe.local[0],
            "port": pipe.local[1],
            "key": pipe.local_key.hex(),
            "producers": producers,
            "state": show.machine.state.value,
        }

    # -- edge side ----------------------------------------------------------------------------

    async def serve(self, show_id: str, origin: str, origin_http: str) -> Show:
        """The edge show of ``show_id`` held by ``origin`` (reachable at ``origin_http``), its
        relay opened (or refreshed) and its replicas in place; raises :class:`RelayError`.

        An edge show whose origin was heard from within three RTCP intervals is served at
        once, and its relay refreshed in the background (the track list a new viewer may
        need): a join on a busy edge costs no round trip to the origin."""
        here = self.shows.get(show_id)
        pipe = self.edge_pipes.get(origin)
        if (
            here is not None
            and self.edge_shows.get(show_id) == origin
            and here.router.producers
            and pipe is not None
            and not pipe.closed
            and pipe.clock() - pipe.last_heard < 3 * pipe.settings.rtcp_interval_s
        ):
            if show_id not in self._refreshing:
                self._refreshing.add(show_id)
                task = asyncio.get_running_loop().create_task(self._refresh(show_id, origin, origin_http))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.stats.served_warm += 1
            return here
        return await self._serve_locked(show_id, origin, origin_http)

    async def _refresh(self, show_id: str, origin: str, origin_http: str) -> None:
        try:
            await self._serve_locked(show_id, origin, origin_http)
        except RelayError as exc:
            log.warning("relay refresh failed", extra={"show_id": show_id, "node": origin, "error": str(exc)})
        finally:
            self._refreshing.discard(show_id)

    async def _serve_locked(self, show_id: str, origin: str, origin_http: str) -> Show:
        lock = self._locks.setdefault(show_id, asyncio.Lock())
        async with lock:
            try:
                return await self._serve(show_id, origin, origin_http)
            except RelayError:
                self.stats.failures += 1
                raise
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, TypeError) as exc:
                self.stats.failures += 1
                raise RelayError(
                    "invalid_state", f"the relay from node {origin} could not be opened: {exc!r}"
                ) from None

    async def _serve(self, show_id: str, origin: str, origin_http: str) -> Show:
        here = self.shows.get(show_id)
        if here is not None and not self.is_edge(show_id):
            return here  # the origin is here after all
        if here is not None and self.edge_shows.get(show_id) != origin:
            # Relayed from a node that no longer holds it (it died, the show was placed again).
            await self._close_edge_show(here)
        pipe = await self._pipe(self.edge_pipes, origin, "edge")
        assert pipe.local is not None
        body = json.dumps(
            {
                "show_id": show_id,
                "node": self.node_id,
                "host": pipe.local[0],
                "port": pipe.local[1],
                "key": pipe.local_key.hex(),
                # A new edge show here (open to all): the origin forgets its old one's audience.
                "fresh": here is None or here.closed or self.edge_shows.get(show_id) != origin,
            }
        ).encode()
        headers = signed_headers(self.secret, RELAY_OPEN_PATH, self.node_id, str(self.clock()), body)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout_s))
        async with self._http.post(origin_http.rstrip("/") + RELAY_OPEN_PATH, data=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 200:
                err = answer.get("error") if isinstance(answer, dict) else None
                code = err.get("code") if isinstance(err, dict) else None
                msg = err.get("message") if isinstance(err, dict) else None
                raise RelayError(
                    "unknown_show" if code == "unknown_show" else "invalid_state",
                    f"node {origin} refused the relay: {code}: {msg}",
                )
        pipe.connect(str(answer["host"]), int(answer["port"]), bytes.fromhex(str(answer["key"])))
        show = self.shows.get(show_id)
        if show is None:
            show = self.shows.open(show_id)
            self.edge_shows[show_id] = origin
            edge_show = show

            def observer(what: str, p: Producer) -> None:
                self._on_edge_producer(edge_show, what, p)

            show.router.observe(observer)
        self.edge_origin_http[show_id] = origin_http
        if isinstance(answer.get("state"), str):
            show.relay_state(answer["state"], self.clock())
        offered = {str(d["producer_id"]) for d in answer["producers"]}
        for desc in answer["producers"]:
            pipe.add_replica(show.router, desc)  # its audience: _on_edge_producer
        for p in list(show.router.producers.values()):
            if p.id not in offered and "relayed_from" in p.app_data:
                p.close()  # gone at the origin since (a member's Cam2Cam sent from here stays)
        self.stats.opened_as_edge += 1
        return show

    async def forget(self, show_id: str) -> None:
        """End the edge show of ``show_id`` (its origin no longer holds it); its viewers are told."""
        show = self.shows.get(show_id)
        if show is not None and self.is_edge(show_id):
            for p in list(show.router.producers.values()):
                p.close()
            await self._close_edge_show(show)

    def _on_edge_producer(self, show: Show, what: str, producer: Producer) -> None:
        if what == "added":
            # The origin decides who gets the stream (its audience cuts the relay); every viewer
            # here may consume what the origin sends, but for a private of a member watching
            # here: only that member (relay_members.py). The one rule of shows/audience.py (a
            # member's Cam2Cam sent from here keeps its own). Only once: set_audience clears
            # the keyframe cache, which every later viewer here starts from.
            audiences = self.members.edge_audiences(show) if self.members is not None else show.audiences(None)
            audiences.apply([producer], changed_only=True)
        if what == "removed" and not show.router.producers and not show.closed:
            pipe = self.edge_pipes.get(self.edge_shows.get(show.id, ""))
            if pipe is None or pipe.closed or show.relayed_state == "offline":
                # Its origin went silent, or the show ended there: so does this edge show. (A
                # performer publishing again leaves it: its new tracks come over the pipe.)
                self._end_edge_show(show)

    def _end_edge_show(self, show: Show) -> None:
        task = asyncio.get_running_loop().create_task(self._close_edge_show(show))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_edge_show(self, show: Show) -> None:
        if self.edge_shows.get(show.id) is not None:
            del self.edge_shows[show.id]
        self.edge_origin_http.pop(show.id, None)
        if self.members is not None:
            self.members.forget_show(show.id)
        lock = self._locks.get(show.id)
        if lock is not None and not lock.locked():
            del self._locks[show.id]
        await self.shows.close(show.id, show)

    # -- metrics and lifecycle --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """For /metrics: relays in and out, replica producers, packets from unknown addresses."""
        pipes = [*self.origin_pipes.values(), *self.edge_pipes.values()]
        return {
            "relays_out": sum(len(p.relaying) for p in self.origin_pipes.values()),
            "relays_in": sum(len(p.wanted) for p in self.edge_pipes.values()),
            "replica_producers": sum(len(p.replicas) for p in self.edge_pipes.values()),
            "pipes_out": len(self.origin_pipes),
            "pipes_in": len(self.edge_pipes),
            **{k: v + sum(getattr(p, k) for p in pipes) for k, v in self._closed_totals.items()},
        }

    def describe(self) -> dict[str, Any]:
        return {
            "relay_host": self.relay_host,
            "edge_shows": dict(self.edge_shows),
            "pipes": [p.describe() for p in (*self.origin_pipes.values(), *self.edge_pipes.values())],
        }

    async def close(self) -> None:
        for pipe in [*self.origin_pipes.values(), *self.edge_pipes.values()]:
            pipe.close()
        for task in list(self._tasks):
            task.cancel()
        if self.members is not None:
            await self.members.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
