"""WHIP ingest (RFC 9725) and WHEP playback: the show's media over plain HTTP.

A WHIP session is a performer and a WHEP session a viewer of the show, each a
``SessionHandler`` (jasmin_sfu/api/signaling_handler.py) like a websocket's,
driven through the same ``join`` and ``publish`` verbs, so the token rules
(18+, bans, show ownership), the show machine (free on the first performer,
privates, Cam2Cam, billing) and the media core treat them exactly as a
browser's. What differs is only the edge: the handler's events go nowhere
(WHIP/WHEP carry media only; show state and chat stay on ``/ws``), errors
become HTTP statuses, and the node answers the client's offer (WHEP's
client-offer mode) instead of offering. docs/whip-whep.md is the reference.

The node does not trickle: its answer carries every candidate, and ``PATCH``
(trickle ICE, ICE restart) gets RFC 9725's ``501 Not Implemented``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from jasmin_signaling.errors import SignalingError
from jasmin_signaling.messages import MAX_SDP_CHARS, Publish, parse_request

from jasmin_sfu.api.origin import OriginPolicy, refused
from jasmin_sfu.api.signaling_handler import EventChannel, SessionHandler, map_media_error
from jasmin_sfu.media.errors import MediaError, SdpError
from jasmin_sfu.media.sdp_info import sections
from jasmin_sfu.media.transport import WebRtcTransport
from jasmin_sfu.services.accounts import AccountsService
from jasmin_sfu.services.errors import AccountsError
from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)

SDP = "application/sdp"
# Wire codes (docs/signaling.md) as the statuses RFC 9725 and HTTP give them.
STATUS = {
    "bad_request": 400,
    "bad_sdp": 400,
    "unsupported_codec": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "adult_confirmation_required": 403,
    "banned": 403,
    "unknown_show": 404,
    "unknown_producer": 404,
    "no_producers": 404,
    "invalid_state": 409,
    "rate_limited": 429,
    "overloaded": 503,
}
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{1,256})\Z", re.IGNORECASE)
_RESOURCE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
RETRY_AFTER_S = 5
EXPOSED = "Location, ETag, Link, Accept-Post, Allow, Retry-After, WWW-Authenticate"


def ice_server_links(servers: Sequence[dict[str, Any]]) -> list[str]:
    """RTCIceServer dictionaries (``urls``, ``username``, ``credential``: what the ``join`` answer
    and ``GET /api/v1/ice-servers`` carry) as RFC 9725 ``Link`` headers, one per URL."""
    links = []
    for server in servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            link = f'<{url}>; rel="ice-server"'
            user, cred = server.get("username"), server.get("credential")
            if user is not None and cred is not None:
                user, cred = str(user).replace('"', ""), str(cred).replace('"', "")
                link += f'; username="{user}"; credential="{cred}"; credential-type="password"'
            links.append(link)
    return links


class HttpChannel:
    """A WHIP/WHEP session's ``EventChannel``: no channel, events are dropped."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        return None


@dataclass
class HttpSession:
    kind: str  # "whip" | "whep"
    resource_id: str
    show_id: str
    handler: SessionHandler
    transport: WebRtcTransport
    etag: str


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers or {})


def _from_signaling(exc: SignalingError) -> HttpError:
    status = STATUS.get(exc.code, 500)
    headers = {"WWW-Authenticate": 'Bearer realm="jasmin"'} if status == 401 else None
    if exc.code == "overloaded":  # admission control (docs/signaling.md): its hint, in whole seconds
        retry_ms = exc.extra.get("retry_after_ms")
        headers = {"Retry-After": str(max(1, -(-retry_ms // 1000)) if isinstance(retry_ms, int) else RETRY_AFTER_S)}
    return HttpError(status, exc.code, exc.message, headers)


@contextlib.asynccontextmanager
async def _leave_on_error(handler: SessionHandler) -> AsyncIterator[None]:
    """A step after the join: on any failure the session leaves the show (nothing stays
    behind a refused POST), and media or signaling errors become their HTTP status."""
    try:
        yield
    except BaseException as exc:
        await handler.closed()
        if isinstance(exc, MediaError):
            raise _from_signaling(map_media_error(exc)) from None
        if isinstance(exc, SignalingError):
            raise _from_signaling(exc) from None
        raise


class WhipWhep:
    """The ``/whip`` and ``/whep`` routes and the sessions they created."""

    def __init__(
        self,
        make_handler: Callable[[EventChannel, web.Request], SessionHandler],
        *,
        draining: Callable[[], bool],
        accounts: Callable[[], AccountsService | None] = lambda: None,
        ice_servers: Callable[[], list[dict[str, Any]]] = list,
        origins: OriginPolicy = OriginPolicy(()),
    ) -> None:
        self.make_handler = make_handler
        self.draining = draining
        self.accounts = accounts
        # The node's ICE servers (TURN credentials issued per session): Link headers of the 201.
        self.ice_servers = ice_servers
        self.origins = origins
        self.sessions: dict[str, HttpSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self, app: web.Application) -> None:
        for kind in ("whip", "whep"):
            app.router.add_route("*", f"/{kind}/{{show_id}}", self._guarded(self._endpoint))
            app.router.add_route("*", f"/{kind}/{{show_id}}/{{resource_id}}", self._guarded(self._resource))

    def _guarded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        """The node's Origin allow-list (server.allowed_origins, jasmin_sfu/api/origin.py) as on
        /api: a browser page of a refused origin gets 403; an allowed one gets CORS headers
        naming it. Encoders and players outside browsers send no Origin and pass."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin is not None and not self.origins.allows(origin, request.host):
                return refused(origin)
            response = await handler(request)
            if origin is not None:
                response.headers.update(
                    {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Expose-Headers": EXPOSED}
                )
            return response

        return guarded

    # -- routes ------------------------------------------------------------------------

    async def _endpoint(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return self._preflight("POST, OPTIONS", {"Accept-Post": SDP})
        if request.method != "POST":
            return _error(405, "method_not_allowed", f"{request.method}: use POST", {"Allow": "POST, OPTIONS"})
        kind = request.path.split("/")[1]
        if self.draining():
            return _error(503, "unavailable", "the node is draining; try another", {"Retry-After": str(RETRY_AFTER_S)})
        try:
            return await (self._whip(request) if kind == "whip" else self._whep(request))
        except HttpError as exc:
            return _error(exc.status, exc.code, exc.message, exc.headers)

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        allow = "DELETE, PATCH, OPTIONS"
        if request.method == "OPTIONS":
            return self._preflight(allow, {})
        session = self._find(request)
        if request.method == "DELETE":
            if session is None:
                return _error(404, "unknown_session", "no such WHIP/WHEP session (ended, or never created)")
            self.sessions.pop(session.resource_id, None)
            await session.handler.closed()
            log.info("%s session deleted", session.kind, extra={"show_id": session.show_id})
            return web.Response(status=200)
        if request.method == "PATCH":
            if session is None:
                return _error(404, "unknown_session", "no such WHIP/WHEP session (ended, or never created)")
            # RFC 9725 section 4.3.1: no PATCH for any purpose (neither trickle nor ICE restart).
            return _error(501, "not_implemented", "this node neither trickles nor restarts ICE: POST a new offer")
        return _error(405, "method_not_allowed", f"{request.method}: use DELETE", {"Allow": allow})

    def _preflight(self, allow: str, extra: dict[str, str]) -> web.Response:
        return web.Response(
            status=204,
            headers={
                **extra,
                "Allow": allow,
                "Access-Control-Allow-Methods": allow,
                "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
                "Access-Control-Max-Age": "86400",
            },
        )

    def _find(self, request: web.Request) -> HttpSession | None:
        rid = request.match_info["resource_id"]
        session = self.sessions.get(rid) if _RESOURCE.match(rid) else None
        kind = request.path.split("/")[1]
        if session is None or session.kind != kind or session.show_id != request.match_info["show_id"]:
            return None
        return session

    # -- POST --------------------------------------------------------------------------

    async def _offer(self, request: web.Request) -> str:
        """The SDP offer of a POST, or the RFC's status for what is wrong with it."""
        if request.content_type != SDP:
            raise HttpError(415, "unsupported_media_type", f"Content-Type must be {SDP}", {"Accept-Post": SDP})
        if request.content_length is not None and request.content_length > MAX_SDP_CHARS:
            raise HttpError(413, "too_large", f"an offer is at most {MAX_SDP_CHARS} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise HttpError(413, "too_large", f"an offer is at most {MAX_SDP_CHARS} bytes") from None
        if len(raw) > MAX_SDP_CHARS:
            raise HttpError(413, "too_large", f"an offer is at most {MAX_SDP_CHARS} bytes")
        try:
            sdp = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "bad_sdp", "the offer is not UTF-8") from None
        if "\x00" in sdp:
            raise HttpError(400, "bad_sdp", "the offer contains a NUL character")
        try:
            parse_request("publish", {"sdp": sdp})
            sections(sdp)
        except SignalingError as exc:
            raise _from_signaling(exc) from None
        except SdpError as exc:
            raise HttpError(400, "bad_sdp", str(exc)) from None
        return sdp

    @staticmethod
    def _token(request: web.Request, required: bool) -> str | None:
        header = request.headers.get("Authorization")
        if header is None and not required:
            return None
        m = _BEARER.match(header or "")
        if m is None:
            raise HttpError(
                401,
                "unauthorized",
                "Authorization: Bearer <session token> is required",
                {"WWW-Authenticate": 'Bearer realm="jasmin"'},
            )
        return m.group(1)

    async def _join(self, handler: SessionHandler, show_id: str, role: str, token: str | None) -> None:
        try:
            join = parse_request("join", {"show_id": show_id, "role": role, "token": token})
        except SignalingError:
            raise HttpError(404, "unknown_show", f"no show {show_id!r}") from None
        try:
            await handler.handle("join", join)
        except SignalingError as exc:
            # RFC 9725 4.5's redirect for `moved`: another node holds the show, or this node is
            # full and the join's own placement (ClusterNode.edge_for, as for a websocket) chose
            # the node relaying the show, a new edge, or the origin (docs/cluster.md, "Placement").
            if exc.code == "moved":
                kind = "whip" if role == "performer" else "whep"
                location = f"{exc.extra.get('http_url', '')}/{kind}/{show_id}"
                raise HttpError(307, "moved", exc.message, {"Location": location}) from None
            if exc.code == "forbidden" and role == "performer" and not await self._performer_exists(show_id):
                raise HttpError(404, "unknown_show", f"no performer account owns show {show_id!r}") from None
            raise _from_signaling(exc) from None

    async def _performer_exists(self, show_id: str) -> bool:
        accounts = self.accounts()
        if accounts is None:
            return True
        try:
            await accounts.performer_profile(show_id)
        except AccountsError:
            return False
        return True

    async def _whip(self, request: web.Request) -> web.Response:
        show_id = request.match_info["show_id"]
        token = self._token(request, required=True)
        sdp = await self._offer(request)
        handler = self.make_handler(HttpChannel(), request)
        await self._join(handler, show_id, "performer", token)
        async with _leave_on_error(handler):
            res = await handler.handle("publish", Publish(sdp))
        transport = handler.publisher
        assert transport is not None
        session = self._register("whip", show_id, handler, transport)
        # An encoder that reconnects (OBS after a network drop) replaces its old session:
        # the new one is in the show first, so the show never goes offline in between.
        for old in [
            s
            for s in self.sessions.values()
            if s.kind == "whip"
            and s.show_id == show_id
            and s is not session
            and s.handler.performer_id == handler.performer_id
        ]:
            self.sessions.pop(old.resource_id, None)
            await old.handler.closed()
        return self._created(request, session, str(res["sdp"]))

    async def _whep(self, request: web.Request) -> web.Response:
        show_id = request.match_info["show_id"]
        token = self._token(request, required=False)
        sdp = await self._offer(request)
        handler = self.make_handler(HttpChannel(), request)
        await self._join(handler, show_id, "viewer", token)
        async with _leave_on_error(handler):
            transport, answer = await handler.subscribe_offer(sdp)
        session = self._register("whep", show_id, handler, transport)
        self._end_with_media(session)
        return self._created(request, session, answer)

    def _end_with_media(self, session: HttpSession) -> None:
        """A WHEP session cannot renegotiate: when a producer it plays goes (the performer
        unpublished, or its encoder reconnected), the session ends and the player POSTs again."""
        show = session.handler.show
        if show is None:
            return
        played = {c.producer.id for c in session.transport.consumers.values()}

        def on_producer(what: str, producer: Any) -> None:
            if what == "removed" and producer.id in played and session.resource_id in self.sessions:
                spawn_tracked(self._tasks, session.transport.close(), "ending a WHEP session", log)

        unobserve = show.router.observe(on_producer)
        session.transport.on_close.append(lambda _t: unobserve())

    def _register(self, kind: str, show_id: str, handler: SessionHandler, transport: WebRtcTransport) -> HttpSession:
        session = HttpSession(kind, secrets.token_urlsafe(24), show_id, handler, transport, secrets.token_hex(16))
        self.sessions[session.resource_id] = session
        # The peer went away (ICE consent expired, DTLS closed) or the show ended: the session ends.
        transport.on_close.append(lambda _t: self._ended(session))
        log.info("%s session created", kind, extra={"show_id": show_id, "session_id": handler.session_id})
        return session

    def _ended(self, session: HttpSession) -> None:
        if self.sessions.pop(session.resource_id, None) is None:
            return
        spawn_tracked(self._tasks, session.handler.closed(), f"ending {session.kind} session", log)

    def _created(self, request: web.Request, session: HttpSession, answer: str) -> web.Response:
        headers = {
            "Location": f"/{session.kind}/{session.show_id}/{session.resource_id}",
            "ETag": f'"{session.etag}"',
        }
        resp = web.Response(status=201, body=answer.encode(), content_type=SDP, headers=headers)
        for link in ice_server_links(self.ice_servers()):
            resp.headers.add("Link", link)
        return resp

    def locations(self) -> list[str]:
        """The ``Location`` of every live session (its supervisor releases the others' placements)."""
        return [f"/{s.kind}/{s.show_id}/{s.resource_id}" for s in self.sessions.values()]

    def revoked(self, user_id: str | None, session_id: str | None) -> None:
        """An accounts revocation listener: end the sessions joined with a revoked token
        (``session_id``) or with any token of ``user_id``."""
        for s in list(self.sessions.values()):
            p = s.handler.principal
            if p is not None and (
                (user_id is not None and p.id == user_id) or (session_id is not None and p.session_id == session_id)
            ):
                log.info("%s session ended: token revoked", s.kind, extra={"show_id": s.show_id})
                spawn_tracked(self._tasks, s.transport.close(), f"ending a revoked {s.kind} session", log)

    async def close(self) -> None:
        """End every session (the daemon is stopping)."""
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.handler.closed() for s in sessions), return_exceptions=True)
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
