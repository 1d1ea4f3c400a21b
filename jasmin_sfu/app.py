"""The one composition root: config in, a running daemon out."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hmac
import ipaddress
import logging
import time
from typing import Any, Callable

from aiohttp import web

from jasmin_signaling.session import SignalingSession

from jasmin_sfu import __version__
from jasmin_sfu.api.admission import Admission, ProcessCpu
from jasmin_sfu.api.demo import add_demo_routes
from jasmin_sfu.api.ice_servers import ICE_KEY, IceServers
from jasmin_sfu.api.join_auth import JoinAuthenticator
from jasmin_sfu.api.metrics import (
    AdmissionCollector,
    ClusterCollector,
    MediaCollector,
    NodeCollector,
    make_registry,
    render,
)
from jasmin_sfu.api.origin import OriginPolicy, origin_middleware
from jasmin_sfu.api.page_assets import PageAssets
from jasmin_sfu.api.relay import RELAY_OPEN_PATH, RELAY_ORIGIN_HEADER, Relays, SiblingOrigin, sibling_origin
from jasmin_sfu.api.rest import RestApi
from jasmin_sfu.api.rest_chat import CHAT_KEY, ChatRef
from jasmin_sfu.api.rest_privacy import PRIVACY_KEY
from jasmin_sfu.api.rest_social import SOCIAL_KEY
from jasmin_sfu.api.relay_members import MEMBER_EVENTS_PATH, MEMBER_LEAVE_GRACE_S, MEMBER_PATH
from jasmin_sfu.api.signaling_handler import EventChannel, SessionHandler, http_base
from jasmin_sfu.api.whip import WhipWhep
from jasmin_sfu.config import Config
from jasmin_sfu.lifecycle import HttpListener, close_websockets, drain, run
from jasmin_sfu.loop_lag import LoopLagMonitor
from jasmin_sfu.media.worker import Worker
from jasmin_sfu.services.accounts import AccountsService, open_accounts
from jasmin_sfu.services.chat import ChatService, open_chat
from jasmin_sfu.services.cluster import ClusterNode, ClusterSettings, NodeLoad
from jasmin_sfu.services.demo import DemoAccounts, DemoSeeder, demo_enabled
from jasmin_sfu.services.errors import AccountsError
from jasmin_sfu.services.payments import ApprovingTestProcessor, Purchases
from jasmin_sfu.services.personal_data import PersonalDataRegistry
from jasmin_sfu.services.redis_windows import RedisWindows
from jasmin_sfu.services.retention import PrivacyStack, SupervisorLink, open_privacy, revocation_request
from jasmin_sfu.services.social import SocialService, open_social
from jasmin_sfu.services.social_notify import OnlineNotifier
from jasmin_sfu.shows.billing import BillingStack, open_billing
from jasmin_sfu.shows.events import EventBus
from jasmin_sfu.shows.registry import ShowRegistry

log = logging.getLogger(__name__)

# Headers a supervisor sets on the websockets it routes to its workers.
INTERNAL_SECRET_HEADER = "X-Jasmin-Internal-Secret"
# A worker's live WHIP/WHEP session Locations, for its supervisor only (docs/workers.md).
INTERNAL_HTTP_SESSIONS = "/internal/http-sessions"
# A revocation made in another worker, posted by the supervisor (docs/workers.md, "Revocations");
# the supervisor's own internal endpoint, where a worker posts its revocations, has the same path.
INTERNAL_REVOKE = "/internal/revoke"
# A worker's load (NodeLoad: viewers, CPU against its admission limits), for its supervisor's
# placement rule (docs/workers.md, "One show over every worker").
INTERNAL_LOAD = "/internal/load"
INTERNAL_SESSION_HEADER = "X-Jasmin-Session-Id"

WORKER_KEY = web.AppKey("worker", Worker)
DAEMON_KEY = web.AppKey("daemon", object)


def internal_session_id(request: web.Request, secret: str) -> str | None:
    """The session id a supervisor names for a connection it routes here (docs/workers.md).

    Honoured only with the supervisor's secret (compared in constant time):
    anybody else could otherwise take over a session id.
    """
    if not secret:
        return None
    given = request.headers.get(INTERNAL_SECRET_HEADER, "")
    sid = request.headers.get(INTERNAL_SESSION_HEADER, "")
    if not sid or not hmac.compare_digest(given.encode(), secret.encode()):
        return None
    return sid if len(sid) <= 64 and sid.isalnum() else None


def internal_relay_origin(request: web.Request, secret: str) -> SiblingOrigin | None:
    """The sibling worker holding the show a supervisor routed this guest's websocket for
    (docs/workers.md, "One show over every worker"); only with the supervisor's secret."""
    if not secret:
        return None
    given = request.headers.get(INTERNAL_SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        return None
    return sibling_origin(request.headers.get(RELAY_ORIGIN_HEADER, ""))


class Daemon:
    """Owns the worker, the show registry, the websockets and the HTTP app."""

    def __init__(self, cfg: Config, *, accounts_clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.worker = Worker(cfg.media)
        self.bus = EventBus()
        self.shows = ShowRegistry(
            self.worker,
            self.bus,
            cfg.shows,
        )
        self.sessions: set[SignalingSession] = set()
        # Set once a session's close handler ran (it left its show): an erasure waits for it.
        self._session_ended: dict[SignalingSession, asyncio.Event] = {}
        # Opened in start(): it needs the event loop (ledger store, relay tasks).
        self.billing: BillingStack | None = None
        # Opened in start() too; tests inject the accounts' clock to expire tokens.
        self.accounts: AccountsService | None = None
        self.purchases: Purchases | None = None
        # Free-chat rooms (docs/chat.md), opened in start() beside the accounts store.
        self.chat: ChatService | None = None
        # TopMembership, favourites, feeds, search (docs/social.md); the notifier exists from the
        # start because signaling sessions register with it.
        self.social: SocialService | None = None
        self.social_notifier = OnlineNotifier()
        self._social_housekeeping: asyncio.Task[None] | None = None
        self._accounts_clock = accounts_clock
        # TURN credentials for the join answer and GET /api/v1/ice-servers (docs/deploy.md).
        t = cfg.turn
        self.ice_servers = IceServers(t.urls, t.secret, t.ttl_s, accounts_clock)
        # Every service holding rows about people registers its source here in
        # start(); the privacy service downloads, erases and purges through it.
        self.personal_data = PersonalDataRegistry()
        # Profile, visibility, download, erasure, retention (docs/privacy.md); opened in start().
        self.privacy: PrivacyStack | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        # `make run`'s demo accounts (jasmin_sfu/services/demo.py); seeded by serve(), not start().
        self.demo: DemoSeeder | None = None
        self.draining = False
        # Joins past this worker's capacity are refused at once (`overloaded`).
        self.admission = Admission(cfg.admission, ProcessCpu(cfg.admission.cpu_window_s))
        # The site's registry in Redis ([cluster], docs/cluster.md); opened in start() once the port is known.
        self.cluster: ClusterNode | None = None
        # Relays of other nodes' shows, and of this node's shows to other nodes (docs/cluster.md); with [cluster].
        self.relays: Relays | None = None
        # The login throttle's and the chat's counts, shared by the nodes through Redis with [cluster].
        c = cfg.cluster
        self.limit_windows = RedisWindows(c.redis_url, c.key_prefix) if c.redis_url else None
        # How long the event loop is blocked (jasmin_sfu/loop_lag.py); runs while listening.
        self.loop_lag = LoopLagMonitor(cfg.server.loop_lag_warn_ms)
        self.registry = make_registry(
            MediaCollector(self.worker, lambda: len(self.sessions)),
            AdmissionCollector(self.admission),
            ClusterCollector(lambda: self.cluster, self.limit_windows, lambda: self.relays),
            NodeCollector(self.loop_lag.histogram),
        )
        self.app = self._make_app()
        self.listener = HttpListener(self.app)
        self.port: int | None = None

    def _make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.cfg.server.hard_max_frame_bytes,
            middlewares=[origin_middleware(OriginPolicy(self.cfg.server.allowed_origins))],
        )
        app[WORKER_KEY] = self.worker
        app.router.add_get("/ws", self.ws_handler)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        if self.cfg.cluster.redis_url or self.cfg.server.internal_secret:
            # Between nodes ([cluster] secret) or between a supervisor's workers (its per-run secret).
            app.router.add_post(RELAY_OPEN_PATH, self.relay_open)
        if self.cfg.cluster.redis_url:
            # Members watching through an edge: their calls to the origin, their events back.
            app.router.add_post(MEMBER_PATH, self.relay_member)
            app.router.add_post(MEMBER_EVENTS_PATH, self.relay_member_events)
        # WHIP ingest and WHEP playback (docs/whip-whep.md): a performer or viewer like a websocket's.
        self.whip = WhipWhep(
            # A WHEP guest the supervisor routed here for a sibling worker's show is served by a
            # relay, as a websocket guest is (docs/workers.md, "One show over every worker").
            lambda channel, request: self._session_handler(
                channel, internal_relay_origin(request, self.cfg.server.internal_secret)
            ),
            draining=lambda: self.draining,
            accounts=lambda: self.accounts,
            origins=OriginPolicy(self.cfg.server.allowed_origins),
            ice_servers=lambda: self.ice_servers.issue(),
        )
        self.whip.install(app)
        if self.cfg.server.internal_secret:
            # A supervised worker: its supervisor asks which WHIP/WHEP sessions are live.
            app.router.add_get(INTERNAL_HTTP_SESSIONS, self.http_sessions)
            # ... and has this worker end the sessions of a token or account another worker revoked.
            app.router.add_post(INTERNAL_REVOKE, self.internal_revoke)
            # ... and reads its load, the one the cluster heartbeat reports (_node_load).
            app.router.add_get(INTERNAL_LOAD, self.internal_load)
        app[CHAT_KEY] = ChatRef(lambda: self.chat)
        app[SOCIAL_KEY] = lambda: self.social
        app[ICE_KEY] = self.ice_servers
        app[PRIVACY_KEY] = lambda: self.privacy.service if self.privacy is not None else None
        RestApi(lambda: self.accounts, lambda: self.purchases).install(app)
        if self.cfg.server.demo_page:
            PageAssets().install(app)
            trust = self.cfg.accounts.trust_client_ids
            # The media settings' simulcast flag (media.simulcast, issue 12).
            simulcast = self.worker.settings.simulcast
            add_demo_routes(app, lambda: self.demo, lambda: self.accounts, trust, simulcast)
        return app

    def _performer_online(self, username: str) -> bool:
        show = self.shows.get(username)
        if show is not None:
            return show.machine.state.value != "offline"
        # Live on another node of the site, as of this node's last heartbeat (docs/cluster.md).
        return self.cluster is not None and username in self.cluster.live_shows

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    def _from_supervisor(self, request: web.Request) -> bool:
        given = request.headers.get(INTERNAL_SECRET_HEADER, "").encode()
        secret = self.cfg.server.internal_secret.encode()
        return bool(secret) and hmac.compare_digest(given, secret)

    async def internal_load(self, request: web.Request) -> web.Response:
        """This worker's :class:`NodeLoad`, for its supervisor only (the per-run secret)."""
        if not self._from_supervisor(request):
            return web.json_response({"error": {"code": "forbidden", "message": "for the supervisor only"}}, status=403)
        return web.json_response(dataclasses.asdict(self._node_load()))

    async def relay_open(self, request: web.Request) -> web.Response:
        """The relays' control channel (jasmin_sfu/api/relay.py); 503 while relays are off."""
        if self.relays is None:
            return web.json_response(
                {"error": {"code": "invalid_state", "message": "relays are off on this node"}}, status=503
            )
        return await self.relays.handle_open(request)

    async def relay_member(self, request: web.Request) -> web.Response:
        """A member watching through an edge calls the show's origin (jasmin_sfu/api/relay_members.py)."""
        if self.relays is None or self.relays.members is None:
            return web.json_response(
                {"error": {"code": "invalid_state", "message": "relays are off on this node"}}, status=503
            )
        return await self.relays.members.handle_member(request)

    async def relay_member_events(self, request: web.Request) -> web.Response:
        """An origin delivers the events of a member watching here (jasmin_sfu/api/relay_members.py)."""
        if self.relays is None or self.relays.members is None:
            return web.json_response(
                {"error": {"code": "invalid_state", "message": "relays are off on this node"}}, status=503
            )
        return await self.relays.members.handle_events(request)

    async def http_sessions(self, request: web.Request) -> web.Response:
        """The live WHIP/WHEP session Locations of this worker: its supervisor's sweep
        releases the show placements of sessions that ended without a DELETE."""
        if not self._from_supervisor(request):
            return _forbidden()
        return web.json_response({"locations": self.whip.locations()})

    async def internal_revoke(self, request: web.Request) -> web.Response:
        """Another worker revoked a token or an account: end this worker's sessions of it
        (4401) and answer once they left their shows (``retention.WorkerRevocations``)."""
        if not self._from_supervisor(request):
            return _forbidden()
        try:
            member_id, session_id = revocation_request(await request.json())
        except ValueError as exc:
            return web.json_response({"error": {"code": "bad_request", "message": str(exc)}}, status=400)
        revocations = self.privacy.revocations if self.privacy is not None else None
        ended = await revocations.revoke_here(member_id, session_id) if revocations is not None else 0
        return web.json_response({"ended": ended})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        # Still 200 when full: a show lives on one node, so its viewers cannot be sent
        # elsewhere; joins past capacity get `overloaded` instead (docs/workers.md).
        adm = self.admission
        load = {"overloaded": adm.overload(), "viewers": adm.viewers, "joins_in_flight": adm.joins_in_flight()}
        body: dict[str, Any] = {
            "status": "ready",
            **self.worker.counts(),
            "admission": load,
            "media_udp": self.worker.udp_ports(),  # the ICE port(s) bound (docs/media.md, "One UDP port per worker")
        }
        if self.cluster is not None:
            # Still 200 when Redis is away: the shows held here go on; new placements are refused
            # per join (`invalid_state`) and said here (`placements: refused`).
            body["cluster"] = self.cluster.describe()
            if self.relays is not None:
                body["cluster"]["relays"] = self.relays.describe()
        elif self.relays is not None:
            body["relays"] = self.relays.describe()  # a supervised worker's relays to and from its siblings
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=render(self.registry), content_type="text/plain", charset="utf-8")

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self.draining:
            return web.json_response({"error": {"code": "invalid_state", "message": "draining"}}, status=503)
        s = self.cfg.server
        ws = web.WebSocketResponse(heartbeat=s.heartbeat_s, max_msg_size=s.hard_max_frame_bytes)
        await ws.prepare(request)
        sibling = internal_relay_origin(request, s.internal_secret)
        session = SignalingSession(
            ws,
            lambda channel: self._session_handler(channel, sibling),
            max_frame_bytes=s.max_frame_bytes,
            max_requests_per_s=s.max_requests_per_s,
            heartbeat_s=s.heartbeat_s,
            server_name=f"jasmin-sfu/{__version__}",
            session_id=internal_session_id(request, s.internal_secret),
        )
        self.sessions.add(session)
        ended = self._session_ended[session] = asyncio.Event()
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._session_ended.pop(session, None)
            ended.set()
        return ws

    def _session_handler(self, channel: EventChannel, sibling: SiblingOrigin | None = None) -> SessionHandler:
        """One connection's handler: a websocket's, or a WHIP/WHEP session's. ``sibling``: the
        worker holding the show a supervisor routed this guest here for (served by a relay)."""
        return SessionHandler(
            channel,
            self.shows,
            JoinAuthenticator(self.accounts, trust_client_ids=self.cfg.accounts.trust_client_ids),
            chat=self.chat,
            notifier=self.social_notifier,
            ice_servers=self.ice_servers.issue,
            admission=self.admission,
            cluster=self.cluster,
            relays=self.relays,
            sibling=sibling,
        )

    async def _session_closed(self, session: SignalingSession) -> None:
        """Return once ``session``'s close handler has run (at once when it is gone already)."""
        ended = self._session_ended.get(session)
        if ended is not None:
            await ended.wait()

    async def start(self, *, listen: bool = True) -> None:
        if self.cfg.billing.enabled:
            self.billing = await open_billing(self.cfg.billing)
            # The privates of every show opened from now on are billed (shows/privates.py).
            self.shows.billing = self.billing.billing
        if self.cfg.accounts.enabled:
            self.accounts = await open_accounts(self.cfg.accounts, self._accounts_clock, self.limit_windows)
            # A revoked token (logout, erasure) ends its WHIP/WHEP sessions as it closes websockets.
            self.accounts.revocation_listeners.append(self.whip.revoked)
            self._housekeeping = asyncio.get_running_loop().create_task(
                self.accounts.housekeeping(self.cfg.accounts.purge_interval_s)
            )
            if self.billing is not None:
                processor = None
                if self.cfg.payments.provider == "test":
                    log.warning("payments.provider = test: every purchase is approved and nothing is charged")
                    processor = ApprovingTestProcessor()
                self.purchases = Purchases(self.accounts.store, self.billing.cc, processor, self._accounts_clock)
        if self.accounts is not None:
            self.social = await open_social(
                self.cfg.accounts,
                self.accounts,
                self.billing.ledger if self.billing is not None else None,
                self._accounts_clock,
                notifier=self.social_notifier,
                is_online=self._performer_online,
            )
            self.bus.subscribe(self.social.on_show_event)
            self.personal_data.register(self.social.personal_data_source())
            self._social_housekeeping = asyncio.get_running_loop().create_task(self.social.housekeeping())
        self.chat = await open_chat(
            self.cfg.chat,
            self.cfg.accounts,
            self._accounts_clock,
            ledger=self.billing.ledger if self.billing is not None else None,
            windows=self.limit_windows,
            **({"is_top_member": self.social.is_top_member} if self.social is not None else {}),
        )
        self.personal_data.register(self.chat)
        if self.accounts is not None:
            # A supervised worker's revocations reach its sibling workers (docs/workers.md).
            srv = self.cfg.server
            supervisor = (
                SupervisorLink(
                    srv.supervisor_url + INTERNAL_REVOKE,
                    {INTERNAL_SECRET_HEADER: srv.internal_secret},
                    lambda: self.port,
                )
                if srv.supervisor_url and listen
                else None
            )
            self.privacy = await open_privacy(
                self.cfg,
                self.accounts,
                self.personal_data,
                self.billing,
                self.social,
                self.sessions,
                schedule=listen,
                session_ended=self._session_closed,
                supervisor=supervisor,
            )
        if not listen:  # the command line (`jasmin-sfu retention`): services only
            return
        s = self.cfg.server
        if self.cfg.cluster.redis_url:
            # Before the port opens, so every connection sees it; it refuses placements until start().
            # Edge shows are held by their origin: never claimed in the registry from here.
            self.cluster = ClusterNode(
                self._cluster_settings(),
                self._node_load,
                self._origin_shows,
                edge_shows=lambda: list(self.relays.edge_shows) if self.relays is not None else [],
                billing_node_id=self.cfg.billing.node_id if self.cfg.billing.enabled else "",
            )
        self.port = await self.listener.start(s.host, s.port)
        self.loop_lag.start()
        if self.cluster is not None:
            self.cluster.settings = self._cluster_settings()  # the advertised URL may name the port
            relay_host = self._relay_host()
            if relay_host is None:
                log.warning(
                    "cluster: no relay_host (an IP address) could be derived; viewers of other"
                    " nodes' shows are sent there (`moved`)"
                )
            else:
                c = self.cfg.cluster
                self.relays = Relays(
                    node_id=c.node_id,
                    secret=c.secret,
                    relay_host=relay_host,
                    worker=self.worker,
                    shows=self.shows,
                    silence_timeout_s=c.ttl_s,
                    http_url=http_base(self.cluster.settings.advertised_url),
                )
            await self.cluster.start()
        elif s.internal_secret:
            # A supervised worker: it relays its shows to its sibling workers, and theirs to its
            # guests, over loopback UDP (docs/workers.md, "One show over every worker"). Its node
            # id is the one its supervisor gave it (billing.node_id, unique per worker).
            self.relays = Relays(
                node_id=self.cfg.billing.node_id,
                secret=s.internal_secret,
                relay_host="127.0.0.1",
                worker=self.worker,
                shows=self.shows,
            )

    def _origin_shows(self) -> list[str]:
        """The shows this node holds (not those it relays from another node)."""
        relays = self.relays
        return [s for s in self.shows.shows if relays is None or not relays.is_edge(s)]

    def _relay_host(self) -> str | None:
        """``cluster.relay_host``, else the advertised URL's host or server.host when an IP address."""
        c = self.cfg.cluster
        if c.relay_host:
            return c.relay_host
        assert self.cluster is not None
        url = self.cluster.settings.advertised_url
        host = url.partition("://")[2].split("/", 1)[0]
        host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        for candidate in (host, self.cfg.server.host):
            try:
                ip = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            if not ip.is_unspecified:
                return str(ip)
        return None

    def _cluster_settings(self) -> ClusterSettings:
        c, host = self.cfg.cluster, self.cfg.server.host
        shown = f"[{host}]" if ":" in host else host
        return dataclasses.replace(
            c, advertised_url=c.advertised_url or f"ws://{shown}:{self.port or self.cfg.server.port}/ws"
        )

    def _node_load(self) -> NodeLoad:
        """This node's load for the registry: viewers and CPU against its admission limits."""
        a = self.cfg.admission
        publishers = sum(1 for show in self.shows.shows.values() if not show.closed and show.performers)
        return NodeLoad(
            viewers=self.admission.viewers,
            publishers=publishers,
            cpu=self.admission.cpu.share(),
            max_viewers=a.max_viewers_per_worker,
            max_cpu=a.max_cpu_share,
            draining=self.draining,
        )

    async def seed_demo(self) -> DemoAccounts | None:
        """Seed the demo accounts when the config allows it (services/demo.py); None otherwise."""
        if not demo_enabled(self.cfg) or self.accounts is None or self.billing is None:
            return None
        self.demo = DemoSeeder(self.accounts, self.billing.cc)
        try:
            return await self.demo.seed()
        except AccountsError as exc:  # e.g. a real account already holds a demo name
            log.warning("demo accounts not seeded", extra={"reason": str(exc)})
            self.demo = None
            return None

    async def stop(self) -> None:
        """Drain: refuse new sessions, close every websocket and peer connection."""
        self.draining = True
        if self.cluster is not None:
            await self.cluster.stop()  # this node's record and its shows' go at once
        await close_websockets(session.ws for session in self.sessions)
        await self.whip.close()
        for show_id in list(self.shows.shows):
            await self.shows.close(show_id)
        if self.relays is not None:
            if self.relays.members is not None:
                # Before the relays' tasks are cancelled: each member watching here leaves its
                # show's origin now (concurrently, at most MEMBER_LEAVE_GRACE_S in all), so a
                # private through this edge ends there, and stops billing, at once rather than
                # after the origin's TTL (docs/cluster.md, "Failure behaviour").
                await drain(self.relays.members.leave_all(), MEMBER_LEAVE_GRACE_S, "member leaves", log)
            await self.relays.close()
        await drain(self.worker.close(), self.cfg.server.drain_timeout_s, "media", log)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        if self.privacy is not None:
            await self.privacy.close()
        if self.chat is not None:
            await self.chat.close()
        if self._social_housekeeping is not None:
            self._social_housekeeping.cancel()
            await asyncio.gather(self._social_housekeeping, return_exceptions=True)
        if self.social is not None:
            await self.social.close()
        if self.accounts is not None:
            await self.accounts.close()
        if self.billing is not None:
            await self.billing.close()
        if self.limit_windows is not None:
            await self.limit_windows.close()
        await self.loop_lag.stop()
        await self.listener.close()


def _forbidden() -> web.Response:
    return web.json_response({"error": {"code": "forbidden", "message": "for the supervisor only"}}, status=403)


def demo_banner(demo: DemoAccounts, host: str, port: int) -> str:
    """What `make run` prints about the demo accounts: who, with which password, and where to click."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    base = f"http://{shown}:{port}/"
    p, m, show = demo.performer, demo.member, demo.show_id
    return "\n".join(
        [
            "demo accounts (accounts.seed_demo = false turns them off; never seeded with a DSN):",
            f"  performer  {p.username} / {p.password}   show {show!r}",
            f"  member     {m.username} / {m.password}   {demo.member_credits} credits",
            f"  performer view  {base}?role=performer&demo=performer   (logs in, then: Go live)",
            f"  member view     {base}?role=viewer&show={show}&demo=member   (logs in, then: Watch)",
            f"  guest view      {base}?role=viewer&show={show}   (Watch, confirm 18+)",
        ]
    )


async def serve(cfg: Config, ready: Callable[[int], Any] | None = None) -> int:
    """Run one node until SIGINT/SIGTERM (jasmin_sfu/lifecycle.py); returns the exit status
    (0 on a clean drain). ``ready(port)`` is called once it listens and said so."""
    daemon = Daemon(cfg)

    async def announce(port: int) -> list[str]:
        demo = await daemon.seed_demo()
        if demo is None or cfg.server.internal_secret:  # a supervised worker: its port is not public
            return []
        return [demo_banner(demo, cfg.server.host, port)]

    def on_ready(port: int) -> None:
        freeze_startup_heap()
        if ready is not None:
            ready(port)

    return await run(daemon, cfg.server.host, logger=log, announce=announce, ready=on_ready)


def freeze_startup_heap() -> None:
    """Put everything the process made up to now out of the cyclic collector's sight.

    The modules, the app and the stores live as long as the process: 70 000-90 000 objects
    that every collection of the oldest generation walked again, 40-65 ms of CPU on the loop that
    forwards media, at a moment the allocations of a join storm chose (the single longest
    loop turns of the storm profile, bench/README.md). After ``gc.freeze`` a collection walks
    only what was made since (docs/media.md, "Join storms")."""
    gc.collect()
    gc.freeze()
