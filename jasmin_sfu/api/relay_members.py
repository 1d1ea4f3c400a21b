"""Members watching through an edge node (issue 15, docs/cluster.md "Members on an edge").

A member's ``join`` on an edge with room is served there like a guest's (media through
the relay), but the show's private flow, its machine and its meter stay on the origin:
one meter per private, exactly-once billing by construction. Two signed calls of the
relays' control channel (same HMAC and replay rules as ``POST /internal/relay/open``,
jasmin_sfu/api/relay.py) carry the rest:

``POST /internal/relay/member`` (edge -> origin), body ``{node, show_id, session,
member_id, verb, http_url}``: ``verb`` is ``join`` and ``leave`` (the member's session on
the edge came and went) or one of the member's show verbs (``private.request``,
``private.withdraw``, ``private.end``, ``sneak_peek``, ``cam2cam``, ``cam2cam.stop``); ``http_url`` is the edge's HTTP
origin, where the origin delivers the member's events. Answer ``{"data": …}`` (the verb's
answer as the origin's own handler gives it) or ``{"error": {code, message}}`` with the
origin's wire code (``403`` a bad signature, ``404`` ``unknown_show``, ``409`` a refusal).

On the origin the member's session is a :class:`RemoteMember`, a show participant like a
websocket's: the private's flow, billing and every end (the member, the performer, credit,
the show going offline) treat it as a local member's session.

``POST /internal/relay/member-events`` (origin -> edge), body ``{node, epoch, items}``:
the member's events (``private.started``, credit warnings, ``private.ended`` …) and the
edge show's **audience** (``members``: the only members whose sessions there may receive
the show's media; null: everyone), in order, each with a sequence number the edge
acknowledges (``{"acked": n}``) and never applies twice. One ordered queue per edge node,
retried until delivered; an edge that cannot be reached for ``ttl_s`` is gone.

Cam2Cam from a member on an edge (``cam2cam``, body also ``{host, port, key, producers}``): the
member's ``publish`` on the edge makes producers exclusive to ``relay:<show's node>`` (no viewer
there); the edge is the origin of those tracks over its pipe toward the show's node (``host:port``
and ``key``, ``producers`` as :func:`describe` gives them). The origin checks what a local member's
``publish`` is checked for (``StartCam2Cam``), adds replicas into the show's router exclusive to
the performers before they exist there, and answers its own end ``{host, port, key}``. Its ends:
the private's end (``CloseCam2Cam``) closes the replicas and tells the edge (``cam2cam_close``, on
the ordered queue) to close the member's producers; the member's ``unpublish`` on the edge is
``cam2cam.stop``; a replica closing (its producer gone on the edge, ``JGON``, or the pipe silent)
stops the Cam2Cam. Both pipes close once idle (``PipeTransport.close_when_idle``, set by
``Relays.pipe_to``): nothing stays bound after the Cam2Cam.

An edge stopping gracefully (``Daemon.stop``) sends its member sessions' ``leave`` to their
origins before its tasks are cancelled (:meth:`RelayMembers.leave_all`, bounded by
:data:`MEMBER_LEAVE_GRACE_S`): their privates end there at once, not after ``ttl_s``.

An audience back to everyone (null) carries ``floors``: per producer, its layers' ``next_seq``
at the origin when it was decided (the relay restarted in that step); the edge's replicas take
no packet older (a private's datagram delayed by the network reaches no guest once it opens).

Privacy (docs/cluster.md "Privacy"): the accept cuts every relay in its step, as before.
The origin then tells the member's edge its new audience (the member's sessions only); the
edge blocks every other consumer of the show there and acknowledges; only then does the
origin admit ``relay:<edge>`` again, a restart (a fresh keyframe, nothing older than the
restart). A packet sent after ``accepted_at`` therefore reaches the edge only after its
free viewers were blocked, however UDP reorders.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import aiohttp
from aiohttp import web

from jasmin_sfu.api.relay_auth import RelayError, RequestVerifier, signed_headers
from jasmin_sfu.media.errors import InvalidStateError
from jasmin_sfu.media.pipe_transport import PipeTransport, describe
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.shows.audience import Audiences
from jasmin_sfu.shows.machine import Rejected, SneakPeek, StartCam2Cam, StopCam2Cam
from jasmin_sfu.shows.registry import ShowRegistry
from jasmin_sfu.shows.show import Show
from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)

MEMBER_PATH = "/internal/relay/member"
MEMBER_EVENTS_PATH = "/internal/relay/member-events"
MEMBER_VERBS = (
    "join",
    "leave",
    "private.request",
    "private.withdraw",
    "private.end",
    "sneak_peek",
    "cam2cam",
    "cam2cam.stop",
)
MAX_BODY = 16384  # a cam2cam call carries its producers' descriptions
MAX_CAM_PRODUCERS = 4
MAX_EVENTS_BODY = 256 * 1024
BATCH = 64
# An edge stopping gracefully waits this long in all for its members' leave calls to their
# origins (concurrent: one round trip each, well under it on a private network); past it, the
# origin's TTL ends what was not told, as for a killed edge.
MEMBER_LEAVE_GRACE_S = 2.0
# Show events the edge tells its viewers itself (the pipe's JEVT, the edge show's end).
_EDGE_OWN_EVENTS = frozenset({"show.state", "show.ended"})


class RelayHost(Protocol):
    """What the members' link needs of the node's relays (jasmin_sfu/api/relay.py)."""

    node_id: str
    secret: str
    verifier: RequestVerifier
    shows: ShowRegistry
    origin_pipes: dict[str, PipeTransport]
    edge_pipes: dict[str, PipeTransport]
    edge_shows: dict[str, str]
    edge_origin_http: dict[str, str]
    silence_timeout_s: float
    request_timeout_s: float

    def is_edge(self, show_id: str) -> bool: ...

    async def pipe_to(self, node: str, role: str) -> PipeTransport: ...

    def refused(self) -> None: ...


class MemberCallError(Exception):
    """A member call refused or failed; ``code`` is a wire error code (docs/signaling.md)."""

    def __init__(self, code: str, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.unreachable = unreachable  # the show's node could not be reached


class RemoteMember:
    """A member's session on an edge node, as the origin's show sees it (a show Participant).

    Its events go to the edge over the edge's ordered queue (:class:`EdgeLink`); the show
    state and the show's end the edge tells its viewers itself, from the pipe."""

    role = "viewer"
    performer_id: str | None = None

    def __init__(self, link: "EdgeLink", show: Show, session: str, member_id: str) -> None:
        self.link = link
        self.show = show
        self.edge_session = session
        self.session_id = f"{link.node}/{session}"
        self.member_id: str | None = member_id
        # The replicas of its Cam2Cam sent from the edge (in the show's router).
        self.cam: list[Producer] = []

    def notify(self, event: str, data: dict[str, Any]) -> None:
        if event in _EDGE_OWN_EVENTS:
            return
        self.link.push(
            {"kind": "event", "show_id": self.show.id, "session": self.edge_session, "event": event, "data": data}
        )

    async def close_publisher(self, reason: str) -> None:
        """The show closes this member's Cam2Cam: its replicas here, its producers on the edge."""
        ids = self.close_cam()
        if ids:
            self.tell_cam_closed(ids)

    def close_cam(self) -> list[str]:
        cam, self.cam = self.cam, []
        for replica in cam:
            replica.close()
        return [r.id for r in cam]

    def tell_cam_closed(self, ids: list[str]) -> None:
        """The edge closes the member's producers ``ids`` (those still there: not a later Cam2Cam's)."""
        self.link.push(
            {"kind": "cam2cam_close", "show_id": self.show.id, "session": self.edge_session, "producers": ids}
        )

    def show_ended(self) -> None:
        self.link.members.pop(self.edge_session, None)
        self.link.forget(self.show)


class EdgeLink:
    """The origin's side of one edge node: its members here, and the ordered queue of
    what the edge must be told (events, audiences), delivered by one task."""

    def __init__(self, owner: "RelayMembers", node: str, http_url: str) -> None:
        self.owner = owner
        self.node = node
        self.http_url = http_url
        self.members: dict[str, RemoteMember] = {}  # edge session id -> its participant here
        self.outbox: list[dict[str, Any]] = []
        self.seq = 0
        # Per show (the instance: a show placed again starts afresh): the audience last sent
        # (absent: open, a new edge show's own default) ...
        self.told: dict[Show, frozenset[str] | None] = {}
        # ... the sequence number of that send while it is not acknowledged ...
        self.pending: dict[Show, int] = {}
        # ... and the members the edge confirmed its show's audience is limited to.
        self.acked: dict[Show, frozenset[str]] = {}
        self._audience_sent: dict[int, Show] = {}  # seq of an audience item -> its show
        self.failing_since: float | None = None
        self.created = owner.clock()
        self.closed = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    @property
    def relay_key(self) -> str:
        pipe = self.owner.relays.origin_pipes.get(self.node)
        return pipe.audience_key if pipe is not None else f"relay:{self.node}"

    def push(self, item: dict[str, Any]) -> int:
        if self.closed:
            return 0
        self.seq += 1
        item["seq"] = self.seq
        self.outbox.append(item)
        self._wake.set()
        if self._task is None:
            self._task = spawn_tracked(self.owner.tasks, self._run(), f"member events to {self.node}", log)
        return self.seq

    def tell_audience(self, show: Show, members: frozenset[str] | None) -> None:
        if self.told.get(show) == members:
            return
        if members is None:
            del self.told[show]
        else:
            self.told[show] = members
        self.acked.pop(show, None)  # not admitted again before the edge confirms this one
        item: dict[str, Any] = {
            "kind": "audience",
            "show_id": show.id,
            "members": None if members is None else sorted(members),
        }
        if members is None:
            # Open again: the relay restarted in this step, so every packet of the private relayed
            # toward the edge is older than each stream's next_seq now. The edge takes none of them
            # once it opens (a datagram of the private delayed by the network reaches no guest).
            item["floors"] = {p.id: describe(p)["layers"] for p in show.performer_producers() if not p.closed}
        seq = self.push(item)
        self.pending[show] = seq
        self._audience_sent[seq] = show

    def forget(self, show: Show) -> None:
        """Start ``show``'s audience afresh: the edge's copy of it is new (open)."""
        self.told.pop(show, None)
        self.acked.pop(show, None)
        self.pending.pop(show, None)

    async def _run(self) -> None:
        backoff = 0.05
        while not self.closed:
            if not self.outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self.outbox[:BATCH]
            try:
                acked = await self.owner.post_events(self, batch)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, MemberCallError) as exc:
                now = self.owner.clock()
                if self.failing_since is None:
                    self.failing_since = now
                    log.warning("member events to %s failed: %r; retrying", self.node, exc)
                if now - self.failing_since > self.owner.relays.silence_timeout_s:
                    self.owner.edge_gone(self, "unreachable")
                    return
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            self.failing_since = None
            backoff = 0.05
            done = [i for i in self.outbox if i["seq"] <= acked]
            self.outbox = [i for i in self.outbox if i["seq"] > acked]
            refresh: list[Show] = []
            for item in done:
                show = self._audience_sent.pop(item["seq"], None)
                if show is not None and self.pending.get(show) == item["seq"]:
                    del self.pending[show]
                    if item["members"] is not None:
                        self.acked[show] = frozenset(item["members"])
                        refresh.append(show)
            for show in refresh:
                show.refresh_audience()  # relay:<edge> admitted again: a restart

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()


@dataclass(frozen=True)
class _EdgeSession:
    """A member's session on this edge, as joined at its show's origin."""

    show_id: str
    origin: str
    url: str
    member_id: str


class RelayMembers:
    """Both ends of the members served by edges: the origin's :class:`EdgeLink` per edge node
    (an :class:`~jasmin_sfu.shows.show.AudienceListener` of its shows), and the edge's calls
    to origins and its edge shows' audiences."""

    def __init__(self, relays: RelayHost, http_url: str, clock: Callable[[], float]) -> None:
        self.relays = relays
        self.http_url = http_url
        self.clock = clock
        self.epoch = secrets.token_hex(8)
        self.tasks: set[asyncio.Task[Any]] = set()
        # Edge: the member sessions' leave calls under way (a graceful stop waits for them).
        self.leaving: set[asyncio.Task[Any]] = set()
        self.links: dict[str, EdgeLink] = {}
        # Edge: the members each edge show's media is limited to (absent: everyone).
        self.exclusive: dict[str, frozenset[str]] = {}
        # Edge: the member sessions here the origins know of.
        self.sessions: dict[str, _EdgeSession] = {}
        # Edge: the last sequence number applied, per origin node and epoch.
        self._applied: dict[tuple[str, str], int] = {}
        self._http: aiohttp.ClientSession | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.edges_gone = 0  # for /metrics
        # Origin: per show id, the show (this instance: one placed again is new) whose Cam2Cam
        # replicas are watched.
        self._cam_watched: dict[str, Show] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.relays.request_timeout_s)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return self._http

    async def _post(self, url: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        headers = signed_headers(self.relays.secret, path, self.relays.node_id, str(self.clock()), body)
        async with self._session().post(url.rstrip("/") + path, data=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    # -- origin side -------------------------------------------------------------------------

    async def handle_member(self, request: web.Request) -> web.Response:
        """``POST /internal/relay/member`` (see the module docstring)."""
        body = await request.content.read(MAX_BODY + 1)
        try:
            node, ask = self.relays.verifier.verify_json(request.method, request.path, request.headers, body, MAX_BODY)
            verb = str(ask["verb"])
            if verb not in MEMBER_VERBS:
                raise RelayError("bad_request", f"unknown member verb {verb!r}")
            data = await self.member_call(
                node,
                str(ask["http_url"]),
                str(ask["show_id"]),
                str(ask["session"]),
                str(ask["member_id"]),
                verb,
                ask,
            )
        except RelayError as exc:
            self.relays.refused()
            status = {"forbidden": 403, "unknown_show": 404}.get(exc.code, 400)
            log.warning("member call refused", extra={"error": exc.code, "reason": str(exc)})
            return web.json_response({"error": {"code": exc.code, "message": str(exc)}}, status=status)
        except Rejected as exc:
            return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=409)
        except (KeyError, ValueError, TypeError) as exc:
            self.relays.refused()
            return web.json_response(
                {"error": {"code": "bad_request", "message": f"bad member call: {exc}"}}, status=400
            )
        return web.json_response({"data": data})

    async def member_call(
        self,
        node: str,
        http_url: str,
        show_id: str,
        session: str,
        member_id: str,
        verb: str,
        ask: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        show = self.relays.shows.get(show_id)
        if show is None or show.closed or self.relays.is_edge(show_id):
            raise RelayError("unknown_show", f"show {show_id!r} is not live on node {self.relays.node_id}")
        link = self.links.get(node)
        if link is None or link.closed:
            link = self.links[node] = EdgeLink(self, node, http_url)
        link.http_url = http_url
        if verb == "join":
            self._watch_edges()  # while any member watches through an edge
            if session not in link.members:
                joining = link.members[session] = RemoteMember(link, show, session, member_id)
                show.audience_listener = self
                show.add(joining)
            return {}
        remote = link.members.get(session)
        if remote is None or remote.show is not show or remote.member_id != member_id:
            raise Rejected("not_joined", "this member's session is not in the show here")
        privates = self.relays.shows.privates(show)
        if verb == "leave":
            self._leave(remote)
            return {}
        if verb == "private.request":
            started = await privates.request(member_id)
            return {"state": show.public_state(remote), "private_member": started}
        if verb == "private.withdraw":
            privates.withdraw(member_id)
            return {}
        if verb == "private.end":
            return {"ended_at": privates.end_by_member(member_id)}
        if verb == "cam2cam":
            return await self._cam2cam(show, remote, node, ask or {})
        if verb == "cam2cam.stop":
            remote.close_cam()
            show.apply(StopCam2Cam(member_id, show.clock()))
            return {}
        at = show.clock()  # sneak_peek
        show.apply(SneakPeek(member_id, at))
        return {"started_at": at, "until": show.machine.peeks[member_id]}

    async def _cam2cam(self, show: Show, remote: RemoteMember, node: str, ask: dict[str, Any]) -> dict[str, Any]:
        """The member's camera sent from its edge: replicas exclusive to the performers (see the
        module docstring); raises :class:`Rejected` as a local member's ``publish`` would be."""
        member_id = remote.member_id
        assert member_id is not None
        if not show.machine.can_cam2cam(member_id):
            raise Rejected("forbidden", "only a performer may publish (or the member of a private, for Cam2Cam)")
        if any(not r.closed for r in remote.cam):
            raise Rejected("already_publishing", "unpublish first")
        descs = ask["producers"]
        if not isinstance(descs, list) or not 0 < len(descs) <= MAX_CAM_PRODUCERS:
            raise RelayError("bad_request", "cam2cam producers: a list of 1 to 4 descriptions")
        key = bytes.fromhex(str(ask["key"]))
        pipe = await self.relays.pipe_to(node, "edge")
        pipe.connect(str(ask["host"]), int(ask["port"]), key)
        if show.closed or not show.machine.can_cam2cam(member_id):
            # The private ended while the pipe was bound: the performers are never told of it.
            raise Rejected("forbidden", "Cam2Cam is only for the member of a running private")
        self._watch_cams(show)
        performers = frozenset(p.session_id for p in show.performers)
        # What the performers are told of it is the origin's word, not the edge's.
        trusted = {"session_id": remote.session_id, "cam2cam": True, "member_id": member_id}
        replicas: list[Producer] = []
        try:
            for desc in descs:
                replicas.append(pipe.add_replica(show.router, dict(desc, app_data=trusted), exclusive_to=performers))
            show.apply(StartCam2Cam(member_id, show.clock()))
        except InvalidStateError as exc:  # the pipe or the show closed meanwhile
            for r in replicas:
                r.close()
            raise Rejected("invalid_state", str(exc)) from None
        except BaseException:
            for r in replicas:
                r.close()
            raise
        remote.cam = replicas
        assert pipe.local is not None
        return {"host": pipe.local[0], "port": pipe.local[1], "key": pipe.local_key.hex()}

    def _watch_cams(self, show: Show) -> None:
        """A member's Cam2Cam replica closing (its producer ended on the edge, or the pipe went
        silent) stops that member's Cam2Cam, as its local ``unpublish`` would."""
        if self._cam_watched.get(show.id) is show:
            return
        self._cam_watched[show.id] = show

        def removed(what: str, p: Producer) -> None:
            if what != "removed" or not p.app_data.get("cam2cam") or "relayed_from" not in p.app_data:
                return
            member = str(p.app_data.get("member_id"))
            if show.closed or any(
                q.app_data.get("cam2cam") and q.app_data.get("member_id") == member
                for q in show.router.producers.values()
            ):
                return
            for link in self.links.values():
                for remote in link.members.values():
                    if remote.show is show and remote.member_id == member and p in remote.cam:
                        # Closed here, not by the member (the pipe went silent): its edge stops sending.
                        closed = [r.id for r in remote.cam if r.closed]
                        remote.cam = [r for r in remote.cam if not r.closed]
                        remote.tell_cam_closed(closed)
            try:
                show.apply(StopCam2Cam(member, show.clock()))
            except Rejected:  # pragma: no cover - StopCam2Cam applies only what the machine allows
                pass

        show.router.observe(removed)

    def _leave(self, remote: RemoteMember) -> None:
        """The member's session on the edge left: as a local member's session leaving."""
        show = remote.show
        remote.link.members.pop(remote.edge_session, None)
        if show.closed:
            return
        assert remote.member_id is not None
        try:
            self.relays.shows.privates(show).member_leaving(remote.member_id)
        except Rejected:  # pragma: no cover - member_leaving applies only what the machine allows
            pass
        show.remove(remote)

    def edge_gone(self, link: EdgeLink, why: str) -> None:
        """The edge was not heard from for ``ttl_s``: its members left (their privates end)."""
        log.warning("edge %s gone (%s): its %d member sessions leave", link.node, why, len(link.members))
        self.edges_gone += 1
        link.close()
        if self.links.get(link.node) is link:
            del self.links[link.node]
        for remote in list(link.members.values()):
            self._leave(remote)

    def _watch_edges(self) -> None:
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(1.0, self._check_edges)

    def _check_edges(self) -> None:
        """Once a second while members are served by edges: an edge whose pipe was silent
        for ``ttl_s`` (it says what it wants every RTCP interval) is gone."""
        self._watch = None
        now = self.clock()
        for link in list(self.links.values()):
            if not link.members:
                continue
            pipe = self.relays.origin_pipes.get(link.node)
            if pipe is not None and not pipe.closed:
                silent = pipe.clock() - pipe.last_heard  # the pipe's own clock (the media core's)
            else:
                silent = now - link.created
            if silent > self.relays.silence_timeout_s and now - link.created > self.relays.silence_timeout_s:
                self.edge_gone(link, "silent")
        if any(link.members for link in self.links.values()):
            self._watch_edges()

    async def post_events(self, link: EdgeLink, batch: list[dict[str, Any]]) -> int:
        status, answer = await self._post(
            link.http_url, MEMBER_EVENTS_PATH, {"node": self.relays.node_id, "epoch": self.epoch, "items": batch}
        )
        if status != 200:
            raise MemberCallError("invalid_state", f"edge {link.node} answered {status}: {answer}")
        return int(answer["acked"])

    # -- AudienceListener (origin) -----------------------------------------------------------------

    def _edge_members(self, show: Show, members: frozenset[str]) -> dict[str, frozenset[str]]:
        """Per edge: the members of ``members`` watching ``show`` there."""
        out: dict[str, set[str]] = {}
        for node, link in self.links.items():
            for remote in link.members.values():
                if remote.show is show and remote.member_id in members:
                    out.setdefault(node, set()).add(remote.member_id)
        return {node: frozenset(ms) for node, ms in out.items()}

    def extra_keys(self, show: Show, members: frozenset[str]) -> frozenset[str]:
        """The relay toward an edge is in the audience only once that edge confirmed its own
        audience is exactly this audience's members there."""
        keys = set()
        for node, ms in self._edge_members(show, members).items():
            link = self.links[node]
            if link.acked.get(show) == ms and show not in link.pending:
                keys.add(link.relay_key)
        return frozenset(keys)

    def audience_set(self, show: Show, members: frozenset[str] | None) -> None:
        """Tell each edge with members of this show its new audience (in order, acknowledged).
        An edge with none of the audience's members gets no media at all: nothing to tell."""
        if members is None:
            for link in self.links.values():
                if show in link.told:
                    link.tell_audience(show, None)
            return
        for node, ms in self._edge_members(show, members).items():
            self.links[node].tell_audience(show, ms)

    def edge_show_opened(self, node: str, show: Show) -> None:
        """Edge ``node`` made a new copy of ``show`` (its first viewer, or after losing the
        pipe): that copy is open to all, whatever the old one was told. The relay toward it
        is cut until the edge confirms the audience again."""
        link = self.links.get(node)
        if link is not None and (show in link.told or show in link.acked or show in link.pending):
            link.forget(show)
            show.refresh_audience()

    # -- edge side -----------------------------------------------------------------------------------

    async def join(self, show_id: str, session: str, member_id: str) -> None:
        """The member's session joins the edge show of ``show_id``: the origin learns of it
        (raises :class:`MemberCallError`). From now on its verbs go to that origin, and its
        leaving (:meth:`left`) is told there, even once the edge show has gone."""
        origin = self.relays.edge_shows.get(show_id)
        url = self.relays.edge_origin_http.get(show_id)
        if origin is None or url is None:
            raise MemberCallError("invalid_state", "the show's node is not known here")
        self.sessions[session] = _EdgeSession(show_id, origin, url, member_id)
        try:
            await self._call(self.sessions[session], session, "join")
        except MemberCallError:
            self.sessions.pop(session, None)
            raise

    async def call(self, session: str, verb: str) -> dict[str, Any]:
        """One member verb on the show's origin; raises :class:`MemberCallError` with the
        origin's wire code, or ``invalid_state`` when the origin cannot be reached."""
        joined = self.sessions.get(session)
        if joined is None:
            raise MemberCallError("invalid_state", "this session is not known to the show's node")
        return await self._call(joined, session, verb)

    async def cam2cam_pipe(self, session: str) -> PipeTransport:
        """Edge: the pipe a member's Cam2Cam goes up, toward its show's node (raises
        :class:`MemberCallError`)."""
        joined = self.sessions.get(session)
        if joined is None:
            raise MemberCallError("invalid_state", "this session is not known to the show's node")
        return await self.relays.pipe_to(joined.origin, "origin")

    async def cam2cam(self, session: str, pipe: PipeTransport, producers: list[Producer]) -> None:
        """Edge: offer the member's Cam2Cam ``producers`` up ``pipe`` and start it at the show's
        node (raises :class:`MemberCallError` with its refusal)."""
        joined = self.sessions.get(session)
        if joined is None:
            raise MemberCallError("invalid_state", "this session is not known to the show's node")
        if pipe.closed:
            # Idle while the member's producers were made (nothing offered yet): closed by its
            # tick. A new one toward the same node (the producers' audience key is the node's).
            pipe = await self.relays.pipe_to(joined.origin, "origin")
        assert pipe.local is not None
        descs = [pipe.offer(p) for p in producers]
        extra = {"host": pipe.local[0], "port": pipe.local[1], "key": pipe.local_key.hex(), "producers": descs}
        answer = await self._call(joined, session, "cam2cam", extra)
        try:
            pipe.connect(str(answer["host"]), int(answer["port"]), bytes.fromhex(str(answer["key"])))
        except (KeyError, ValueError, TypeError) as exc:
            raise MemberCallError("invalid_state", f"the show's node answered a bad pipe end: {exc!r}") from None

    async def _call(
        self, joined: "_EdgeSession", session: str, verb: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        payload = {
            **(extra or {}),
            "node": self.relays.node_id,
            "show_id": joined.show_id,
            "session": session,
            "member_id": joined.member_id,
            "verb": verb,
            "http_url": self.http_url,
        }
        try:
            status, answer = await self._post(joined.url, MEMBER_PATH, payload)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise MemberCallError(
                "invalid_state", f"the show's node {joined.origin} cannot be reached: {exc!r}", unreachable=True
            ) from None
        if status == 200 and isinstance(answer, dict) and isinstance(answer.get("data"), dict):
            data: dict[str, Any] = answer["data"]
            return data
        err = answer.get("error") if isinstance(answer, dict) else None
        code = str(err.get("code")) if isinstance(err, dict) else "invalid_state"
        msg = str(err.get("message")) if isinstance(err, dict) else f"node {joined.origin} answered {status}"
        if status in (400, 403) or code == "not_joined":
            code = "invalid_state"  # the edge's own fault or a forgotten session: not the client's
        raise MemberCallError(code, msg)

    def left(self, session: str) -> None:
        """The member's session on this edge left, its websocket closed, or the edge show it
        was in ended: tell the origin (as a local member's session leaving there), retrying for
        ``ttl_s`` (after that the origin finds the edge gone by itself). Nothing for a session
        the origin does not know."""
        joined = self.sessions.pop(session, None)
        if joined is None:
            return

        async def tell() -> None:
            deadline = self.clock() + self.relays.silence_timeout_s
            while True:
                try:
                    await self._call(joined, session, "leave")
                    return
                except MemberCallError as exc:
                    if "cannot be reached" not in exc.message:
                        return  # answered: done (the show may have ended there meanwhile)
                    if self.clock() > deadline:
                        log.warning("member leave not delivered", extra={"show_id": joined.show_id})
                        return
                    await asyncio.sleep(0.5)

        spawn_tracked(self.leaving, tell(), f"member leave {joined.show_id}", log)

    async def leave_all(self) -> None:
        """Edge, stopping gracefully: every member session here leaves its show's origin now
        (concurrently), so that the origin ends its private (and its meter) at once instead of
        after ``ttl_s``. Returns once each origin answered (or gave up after ``ttl_s``): the
        caller bounds the wait (``Daemon.stop``); what is left then is the origin's TTL."""
        for session in list(self.sessions):
            self.left(session)
        if self.leaving:
            await asyncio.gather(*list(self.leaving), return_exceptions=True)

    async def handle_events(self, request: web.Request) -> web.Response:
        """``POST /internal/relay/member-events`` (see the module docstring)."""
        body = await request.content.read(MAX_EVENTS_BODY + 1)
        try:
            node, ask = self.relays.verifier.verify_json(
                request.method, request.path, request.headers, body, MAX_EVENTS_BODY
            )
            slot = (node, str(ask["epoch"]))
            last = self._applied.get(slot, 0)
            for item in sorted(ask["items"], key=lambda i: int(i["seq"])):
                seq = int(item["seq"])
                if seq <= last:
                    continue  # delivered before (its answer was lost): never applied twice
                self._apply(node, item)
                last = seq
            self._applied[slot] = last
        except RelayError as exc:
            self.relays.refused()
            status = 403 if exc.code == "forbidden" else 400
            return web.json_response({"error": {"code": exc.code, "message": str(exc)}}, status=status)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            self.relays.refused()
            return web.json_response({"error": {"code": "bad_request", "message": f"bad events: {exc}"}}, status=400)
        return web.json_response({"acked": last})

    def _apply(self, node: str, item: dict[str, Any]) -> None:
        show_id = str(item["show_id"])
        show = self.relays.shows.get(show_id)
        if show is None or self.relays.edge_shows.get(show_id) != node:
            return  # the edge show ended here meanwhile
        if item["kind"] == "audience":
            members = item["members"]
            if members is None:
                pipe = self.relays.edge_pipes.get(node)
                for pid, layers in dict(item.get("floors") or {}).items():
                    if pipe is not None:
                        pipe.hold_back(str(pid), list(layers))  # before the audience opens
                self.exclusive.pop(show_id, None)
            else:
                self.exclusive[show_id] = frozenset(str(m) for m in members)
            self.apply_edge_audience(show)
        elif item["kind"] == "event":
            who = show.participants.get(str(item["session"]))
            if who is not None:
                who.notify(str(item["event"]), dict(item["data"]))
        elif item["kind"] == "cam2cam_close":
            who = show.participants.get(str(item["session"]))
            if who is not None and any(str(i) in show.router.producers for i in item["producers"]):
                spawn_tracked(self.tasks, who.close_publisher("private_ended"), f"cam2cam close {show_id}", log)

    def edge_audiences(self, show: Show) -> Audiences:
        """Each audience owner's keys in the edge show, for the members the origin limited it
        to (absent: everyone): the show's own rule, so its replicas go to the sessions here of
        those members (an edge show has no performer, and no relay beyond it)."""
        return show.audiences(self.exclusive.get(show.id))

    def apply_edge_audience(self, show: Show) -> None:
        """Block every consumer of the edge show outside its audience, in this step: the one
        rule of jasmin_sfu/shows/audience.py (a member's Cam2Cam sent from here keeps its own)."""
        self.edge_audiences(show).apply(show.router.producers.values(), changed_only=True)

    def forget_show(self, show_id: str) -> None:
        self.exclusive.pop(show_id, None)

    async def close(self) -> None:
        for link in list(self.links.values()):
            link.close()
        if self._watch is not None:
            self._watch.cancel()
        for task in [*self.tasks, *self.leaving]:
            task.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None
