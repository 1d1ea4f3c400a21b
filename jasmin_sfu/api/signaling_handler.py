"""Signaling v1 verbs for one websocket: media verbs and show verbs.

Every verb checks the caller's role server-side. Domain errors of the media
core and refusals of the show machine are mapped to wire error codes here, at
the edge, and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Protocol

import msgspec

from jasmin_signaling.errors import ERROR_CODES, SignalingError
from jasmin_signaling import events as ev
from jasmin_signaling import responses as rs
from jasmin_signaling.messages import Answer, Join, MemberRef, Publish, SetLayers, ShowSettings, Subscribe, Unsubscribe

from jasmin_sfu.api.admission import Admission
from jasmin_sfu.api.chat_handler import ChatConnection
from jasmin_sfu.api.join_auth import JoinAuthenticator, JoinIdentity
from jasmin_sfu.api.relay import RelayError, Relays, SiblingOrigin
from jasmin_sfu.api.relay_members import MemberCallError, RelayMembers
from jasmin_sfu.api.signaling_social import NotificationSubscription
from jasmin_sfu.media.errors import (
    InvalidStateError,
    MediaError,
    NoMediaPortError,
    NotFoundError,
    SdpError,
    UnsupportedCodecError,
)
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.layer import LayerChoice
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.transport import WebRtcTransport
from jasmin_sfu.services.accounts import Principal
from jasmin_sfu.services.chat import ChatService
from jasmin_sfu.services.cluster import ClusterNode, ClusterUnavailable, Placement
from jasmin_sfu.services.social_notify import OnlineNotifier
from jasmin_sfu.shows import machine as m
from jasmin_sfu.shows.audience import CAM2CAM_TO
from jasmin_sfu.shows.privates import Privates
from jasmin_sfu.shows.registry import ShowRegistry
from jasmin_sfu.shows.show import Show
from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)


# How long a client refused for want of a media port should wait (ports free as sessions end).
NO_PORT_RETRY_AFTER_MS = 5000


def map_media_error(exc: MediaError) -> SignalingError:
    if isinstance(exc, NoMediaPortError):
        return SignalingError("overloaded", str(exc), reason="media_ports", retry_after_ms=NO_PORT_RETRY_AFTER_MS)
    if isinstance(exc, UnsupportedCodecError):
        return SignalingError("unsupported_codec", str(exc))
    if isinstance(exc, SdpError):
        return SignalingError("bad_sdp", str(exc))
    if isinstance(exc, NotFoundError):
        return SignalingError("unknown_producer", str(exc))
    if isinstance(exc, InvalidStateError):
        return SignalingError("invalid_state", str(exc))
    return SignalingError("internal", str(exc))


def http_base(ws_url: str) -> str:
    """The HTTP origin of a node's signaling URL (``wss://n2.example/ws`` -> ``https://n2.example``):
    where its REST, WHIP and WHEP are served, beside ``/ws``."""
    scheme, _, rest = ws_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"


class EventChannel(Protocol):
    """What a handler needs of its connection: a websocket session, or an HTTP
    session of WHIP/WHEP (jasmin_sfu/api/whip.py) that has no channel for events."""

    id: str

    async def send_event(self, event: str, data: dict[str, Any]) -> None: ...


def _consumers(consumers: list[Consumer]) -> list[rs.Consumer]:
    """Consumer objects as the answers carry them (jasmin_signaling.responses)."""
    return [msgspec.convert(c.describe(), rs.Consumer) for c in consumers]


class SessionHandler:
    """The state of one signaling connection inside one show (a show Participant)."""

    def __init__(
        self,
        session: EventChannel,
        shows: ShowRegistry,
        auth: JoinAuthenticator | None = None,
        chat: ChatService | None = None,
        notifier: OnlineNotifier | None = None,
        ice_servers: Callable[[], list[dict[str, Any]]] = list,
        admission: Admission | None = None,
        cluster: ClusterNode | None = None,
        relays: Relays | None = None,
        sibling: SiblingOrigin | None = None,
    ) -> None:
        # With workers > 1: the sibling worker holding the show this guest was routed here for
        # (docs/workers.md, "One show over every worker"); served through a relay from it.
        self.sibling = sibling
        # Relays from other nodes' shows (docs/cluster.md, "Relays"); None: `moved` for every show held elsewhere.
        self.relays = relays
        # The site's registry of nodes and shows (docs/cluster.md); None: this node alone.
        self.cluster = cluster
        # Refuses joins past the worker's capacity (jasmin_sfu/api/admission.py); None: never.
        self.admission = admission
        # Fresh TURN credentials for each join answer (jasmin_sfu.api.ice_servers).
        self.ice_servers = ice_servers
        # None: ids in `join` are trusted as given (the legacy behaviour).
        self.auth = auth
        self.principal: Principal | None = None
        self.session = session
        self.session_id = session.id
        self.shows = shows
        self.show: Show | None = None
        self.role: str = ""
        self.member_id: str | None = None
        self.performer_id: str | None = None
        self.publisher: WebRtcTransport | None = None
        self.subscriptions: dict[str, WebRtcTransport] = {}
        self._unobserve: Callable[[], None] | None = None
        # The show's origin when this member watches through this node as an edge (its
        # private verbs go there: jasmin_sfu/api/relay_members.py); None otherwise.
        self._origin: Placement | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The show's free-chat room (jasmin_sfu.api.chat_handler); None: no chat on this node.
        self.chat = ChatConnection(self, chat, self._leave) if chat is not None else None
        # favourite.online events for a member's connection (jasmin_sfu.api.signaling_social).
        self.notifications = NotificationSubscription(notifier, auth, self.notify)

    # -- dispatch ------------------------------------------------------------

    async def handle(self, method: str, body: Any) -> dict[str, Any]:
        if method.startswith("chat."):
            if self.chat is None:
                raise SignalingError("invalid_state", "chat is not enabled on this node")
            return await self.chat.handle(method, body)
        if method == "notifications.subscribe":
            return await self.notifications.subscribe(body.token, self.principal)
        fn = getattr(self, "_m_" + method.replace(".", "_"))
        try:
            result: dict[str, Any] = await fn(body)
            return result
        except MediaError as exc:
            raise map_media_error(exc) from None
        except m.Rejected as exc:
            raise SignalingError(exc.code, exc.message) from None

    async def closed(self) -> None:
        self.notifications.close()
        await self._leave()

    # -- Participant ------------------------------------------------------------

    def notify(self, event: str, data: dict[str, Any]) -> None:
        spawn_tracked(self._tasks, self.session.send_event(event, data), f"sending event {event}", log)

    async def close_publisher(self, reason: str) -> None:
        """The show closes this member's Cam2Cam (the private ended)."""
        if self.publisher is not None and self.role == "viewer":
            t, self.publisher = self.publisher, None
            await t.close()

    # -- helpers ---------------------------------------------------------------

    def _require_show(self) -> Show:
        if self.show is None:
            raise SignalingError("not_joined", "join a show first")
        if self.show.closed:
            raise SignalingError("invalid_state", "the show has ended")
        return self.show

    def _require_performer(self) -> Show:
        show = self._require_show()
        if self.role != "performer":
            raise SignalingError("forbidden", "only a performer of this show may do this")
        return show

    def _require_member(self) -> Show:
        show = self._require_show()
        if self.role != "viewer" or self.member_id is None:
            raise SignalingError("forbidden", "guests watch free chat only; this needs a member")
        return show

    def _privates(self, show: Show) -> Privates:
        """The show's paid-private flow (jasmin_sfu/shows/privates.py): every private verb goes there."""
        return self.shows.privates(show)

    def _app_data(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "audience_key": self.session_id}

    # -- media verbs -----------------------------------------------------------

    async def _m_join(self, body: Join) -> dict[str, Any]:
        if self.show is not None:
            raise SignalingError("already_joined", f"already in show {self.show.id}; leave first")
        if self.auth is not None:
            who = await self.auth.resolve(body)
        else:
            who = JoinIdentity(body.role, body.member_id, body.performer_id)
        if who.role == "performer":
            # A show relayed here from its origin is not live here for its performer: it goes to the origin.
            edge_here = self.relays is not None and self.relays.is_edge(body.show_id)
            live_here = self.shows.get(body.show_id) is not None and not edge_here
            placed_now = False
            if not live_here and self.cluster is not None:
                placed_now = (await self._place(body.show_id)).decision == "local"
            if edge_here and self.relays is not None:
                await self.relays.forget(body.show_id)  # placed here: the stale relayed copy goes
            # A performer joining its live show is never refused: its viewers are here already.
            try:
                self._check_admission(exempt=live_here)
            except SignalingError:
                if placed_now and self.cluster is not None:
                    await self.cluster.release(body.show_id)
                raise
            show = self.shows.open(body.show_id)
            if self.cluster is not None:
                self.cluster.claimed(show.id)
            if who.price_per_minute is not None:
                # The owner's profile price; applies to the next private (a running one keeps its grant).
                show.price_per_minute = who.price_per_minute
        else:
            found = self.shows.get(body.show_id)
            edge = self.relays is not None and self.relays.is_edge(body.show_id)
            if (found is None or edge) and self.cluster is not None:
                located = True
                try:
                    where = await self.cluster.locate(body.show_id, count=self.relays is None)
                except ClusterUnavailable as exc:
                    if found is None:
                        raise SignalingError(
                            "invalid_state", f"{exc}; shows of other nodes cannot be found now"
                        ) from None
                    where, located = None, False  # the relay already running here keeps serving
                if where is not None:
                    found = await self._edge(body.show_id, where, member=who.member_id is not None)
                elif located and found is not None and self.relays is not None:
                    # Its origin is gone and nobody holds the show now: the relayed copy ends too.
                    await self.relays.forget(body.show_id)
                    found = None
            sibling = self.sibling
            if (
                (found is None or edge)
                and self.cluster is None
                and sibling is not None
                and sibling.show_id == body.show_id
                and who.member_id is None
            ):
                found = await self._sibling_edge(sibling)
            if found is None:
                raise SignalingError("unknown_show", f"show {body.show_id!r} is not live")
            show = found
            # The member of the running private is never refused: it rejoins the show it pays for.
            self._check_admission(exempt=who.member_id is not None and show.machine.private_member == who.member_id)
        if self.chat is not None:
            await self.chat.check_join(show.id, who.principal, who.role, who.member_id, who.performer_id)
        via_edge = self._edge_members(show, who.member_id)
        if via_edge is not None and who.member_id is not None:
            # The origin knows this member's session before it is in the edge show here: a
            # private it already pays for (a reloaded page) limits the edge's audience to it.
            await self._join_at_origin(via_edge, show, who.member_id)
        self.role = who.role
        self.member_id = who.member_id
        self.performer_id = who.performer_id
        self.principal = who.principal
        self.notifications.watch(who.principal)
        self.show = show
        self._unobserve = show.router.observe(self._on_producer)
        show.add(self)
        if via_edge is not None:
            via_edge.apply_edge_audience(show)
        if self.admission is not None and who.role == "viewer":
            self.admission.admit(self, self._media_started)
        log.info("joined", extra={"show_id": show.id, "session_id": self.session_id, "role": who.role})
        out: dict[str, Any] = {"role": who.role, **show.describe_for(self), "ice_servers": self.ice_servers()}
        if self.member_id is not None:
            out["member_id"] = self.member_id
        if self.performer_id is not None:
            out["performer_id"] = self.performer_id
        if self.chat is not None:
            out["chat"] = await self.chat.joined(show)
        return msgspec.convert(out, rs.Joined).to_wire()

    async def _place(self, show_id: str) -> Placement:
        """A performer's join of a show not live here: placed here, or `moved` to its node."""
        assert self.cluster is not None
        try:
            where = await self.cluster.place(show_id)
        except ClusterUnavailable as exc:
            raise SignalingError("invalid_state", f"{exc}; new shows cannot be placed now") from None
        if where.url is not None:
            raise self._moved(show_id, where)
        return where

    async def _edge(self, show_id: str, where: Placement, member: bool) -> Show:
        """A guest's join of a show held by another node: served here through a relay
        (docs/cluster.md, "Relays") while this node has room; when full, `moved` to another
        node with room (one already relaying the show first) or to the origin; a member's
        privates run at the origin (docs/cluster.md, "Members on an edge")."""
        assert self.cluster is not None
        if self.relays is None:
            raise self._moved(show_id, where)
        if member and self.relays.members is None:
            self.cluster.redirected()
            raise self._moved(show_id, where)
        try:
            self._check_admission(exempt=False)
        except SignalingError:
            # Full: to a node that relays the show already, else to one with room (a new edge),
            # else to the origin (docs/cluster.md, "Placement").
            raise self._moved(show_id, self.cluster.edge_for(show_id, where)) from None
        assert where.url is not None
        try:
            show = await self.relays.serve(show_id, where.node, http_base(where.url))
        except RelayError as exc:
            if exc.code == "unknown_show":
                raise SignalingError("unknown_show", f"show {show_id!r} is not live") from None
            log.warning("relay failed; redirecting", extra={"show_id": show_id, "node": where.node, "error": str(exc)})
            self.cluster.redirected()
            raise self._moved(show_id, where) from None
        self.cluster.served_as_edge()
        if member:
            self._origin = where
        return show

    def _edge_members(self, show: Show, member_id: str | None) -> RelayMembers | None:
        """The members' link when ``member_id`` watches ``show`` through this node as an edge."""
        relays = self.relays
        if member_id is None or relays is None or relays.members is None or not relays.is_edge(show.id):
            return None
        return relays.members

    async def _join_at_origin(self, members: RelayMembers, show: Show, member_id: str) -> None:
        try:
            await members.join(show.id, self.session_id, member_id)
        except MemberCallError as exc:
            if exc.code == "unknown_show":
                raise SignalingError("unknown_show", f"show {show.id!r} is not live") from None
            log.warning("member join at the origin failed", extra={"show_id": show.id, "error": exc.message})
            where, self._origin = self._origin, None
            if where is None or self.cluster is None:
                raise SignalingError("invalid_state", f"show {show.id!r} cannot be joined here now") from None
            self.cluster.redirected()
            raise self._moved(show.id, where) from None

    async def _at_origin(self, show: Show, verb: str) -> dict[str, Any] | None:
        """A member verb of a member watching through this edge, answered by the show's origin
        (None: the show is this node's own)."""
        members = self._edge_members(show, self.member_id)
        if members is None:
            return None
        try:
            return await members.call(self.session_id, verb)
        except MemberCallError as exc:
            code = exc.code if exc.code in ERROR_CODES else "invalid_state"
            raise SignalingError(code, exc.message) from None

    async def _sibling_edge(self, sibling: SiblingOrigin) -> Show:
        """A guest the supervisor routed here for a show its sibling worker holds: served
        through a relay from that worker (docs/workers.md). Guests only: members and performers
        are routed to the origin, where privates and their meter run."""
        assert self.relays is not None
        self._check_admission(exempt=False)
        try:
            return await self.relays.serve(sibling.show_id, sibling.node, sibling.url)
        except RelayError as exc:
            if exc.code == "unknown_show":
                raise SignalingError("unknown_show", f"show {sibling.show_id!r} is not live") from None
            log.warning(
                "worker relay failed", extra={"show_id": sibling.show_id, "node": sibling.node, "error": str(exc)}
            )
            raise SignalingError(
                "invalid_state", f"show {sibling.show_id!r} cannot be relayed here now; join again"
            ) from None

    @staticmethod
    def _moved(show_id: str, where: Placement) -> SignalingError:
        assert where.url is not None
        return SignalingError(
            "moved",
            f"show {show_id!r} is on node {where.node}; join there"
            if where.decision != "edge_elsewhere"
            else f"this node is full; join show {show_id!r} on node {where.node}",
            url=where.url,
            node=where.node,
            http_url=http_base(where.url),
        )

    def _check_admission(self, exempt: bool) -> None:
        if self.admission is not None:
            self.admission.check(exempt)

    def _media_started(self) -> bool:
        """The join has landed: a video packet (a keyframe first) reached the viewer, or audio when it takes no video."""
        consumers = [c for t in self.subscriptions.values() for c in t.consumers.values()]
        video = [c for c in consumers if c.producer.is_video]
        return any(c.packets for c in (video or consumers))

    async def _m_publish(self, body: Publish) -> dict[str, Any]:
        show = self._require_show()
        cam2cam = False
        members = self._edge_members(show, self.member_id) if self.role != "performer" else None
        if members is not None:
            return await self._publish_through_edge(show, members, body)
        if self.role != "performer":
            # The member of a running private may send its camera: Cam2Cam.
            if self.member_id is None or not show.machine.can_cam2cam(self.member_id):
                raise SignalingError(
                    "forbidden", "only a performer may publish (or the member of a private, for Cam2Cam)"
                )
            cam2cam = True
        if self.publisher is not None and not self.publisher.closed:
            raise SignalingError("already_publishing", "unpublish first")
        t = show.router.create_transport("recv", self._app_data())
        self.publisher = t
        app_data: dict[str, Any] = {"session_id": self.session_id}
        if cam2cam:
            app_data.update(cam2cam=True, member_id=self.member_id)
        try:
            if cam2cam:
                # Exclusive from the first packet: only the performers may consume it.
                answer, producers = await show.router.publish(
                    t, body.sdp, app_data, exclusive_to=frozenset(p.session_id for p in show.performers)
                )
                assert self.member_id is not None
                show.apply(m.StartCam2Cam(self.member_id, show.clock()))
            else:
                answer, producers = await show.router.publish(t, body.sdp, app_data)
        except BaseException:
            self.publisher = None
            await t.close()
            raise
        return self._published(t, answer, producers)

    @staticmethod
    def _published(t: WebRtcTransport, answer: str, producers: list[Producer]) -> dict[str, Any]:
        """The ``publish`` answer: the transport, the SDP answer and the producers made."""
        described = [msgspec.convert(p.describe(), ev.Producer) for p in producers]
        return rs.Published(transport_id=t.id, sdp=answer, producers=described).to_wire()

    async def _publish_through_edge(self, show: Show, members: RelayMembers, body: Publish) -> dict[str, Any]:
        """Cam2Cam of a member watching through this edge (docs/cluster.md "Members on an edge"):
        its producers have no viewer here, only the relay up to the show's node, which checks
        and starts the Cam2Cam (its performers consume the replicas there)."""
        if self.publisher is not None and not self.publisher.closed:
            raise SignalingError("already_publishing", "unpublish first")
        try:
            pipe = await members.cam2cam_pipe(self.session_id)
        except MemberCallError as exc:
            raise SignalingError("invalid_state", exc.message) from None
        except OSError as exc:
            raise SignalingError("cam2cam_unavailable", f"no relay toward the show's node: {exc!r}") from None
        t = show.router.create_transport("recv", self._app_data())
        self.publisher = t
        app_data: dict[str, Any] = {
            "session_id": self.session_id,
            "cam2cam": True,
            "member_id": self.member_id,
            CAM2CAM_TO: pipe.peer_node,
        }
        try:
            answer, producers = await show.router.publish(
                t, body.sdp, app_data, exclusive_to=frozenset({pipe.audience_key})
            )
            await members.cam2cam(self.session_id, pipe, producers)
        except MemberCallError as exc:
            self.publisher = None
            await t.close()
            if exc.unreachable:
                raise SignalingError("cam2cam_unavailable", exc.message) from None
            raise SignalingError(exc.code if exc.code in ERROR_CODES else "invalid_state", exc.message) from None
        except BaseException:
            self.publisher = None
            await t.close()
            raise
        return self._published(t, answer, producers)

    async def _m_unpublish(self, _body: Any) -> dict[str, Any]:
        show = self._require_show()
        if self.publisher is None:
            raise SignalingError("invalid_state", "not publishing")
        t, self.publisher = self.publisher, None
        await t.close()
        members = self._edge_members(show, self.member_id) if self.role != "performer" else None
        if members is not None:
            try:
                await members.call(self.session_id, "cam2cam.stop")
            except MemberCallError as exc:
                # Its replica there ends anyway when the producers' end reaches it (JGON).
                log.warning("cam2cam stop at the origin failed", extra={"show_id": show.id, "error": exc.message})
        elif self.member_id is not None:
            show.apply(m.StopCam2Cam(self.member_id, show.clock()))
        return rs.Done().to_wire()

    async def _m_subscribe(self, body: Subscribe) -> dict[str, Any]:
        show = self._require_show()
        if not show.router.visible_producers(self.session_id):
            raise SignalingError("no_producers", "the show has nothing published yet")
        t = show.router.create_transport("send", self._app_data())
        try:
            offer, consumers = await show.router.consume(t, body.producer_ids, paused=body.paused)
        except BaseException:
            await t.close()
            raise
        self.subscriptions[t.id] = t
        t.on_close.append(self._subscription_closed)
        t.on_layer.append(self._consumer_layer)
        return rs.Subscribed(transport_id=t.id, sdp=offer, consumers=_consumers(consumers)).to_wire()

    async def subscribe_offer(self, offer_sdp: str) -> tuple[WebRtcTransport, str]:
        """WHEP: like ``subscribe``, but the viewer offers and the node answers."""
        show = self._require_show()
        t = show.router.create_transport("send", self._app_data())
        try:
            answer, _consumers = await show.router.consume_offer(t, offer_sdp)
        except BaseException:
            await t.close()
            raise
        self.subscriptions[t.id] = t
        t.on_close.append(self._subscription_closed)
        t.on_layer.append(self._consumer_layer)
        return t, answer

    def _consumer_layer(self, c: Consumer, layer: LayerChoice | None) -> None:
        """The node forwards this viewer another layer of a simulcast producer (None: video paused)."""
        self.notify(
            "consumer.layer",
            ev.ConsumerLayer(
                producer_id=c.producer.id,
                consumer_id=c.id,
                spatial=None if layer is None else layer.spatial,
                temporal=None if layer is None else layer.temporal,
                rid=None if layer is None else c.layer.rid,
            ).to_wire(),
        )

    def _subscription_closed(self, t: WebRtcTransport) -> None:
        self.subscriptions.pop(t.id, None)

    async def _m_answer(self, body: Answer) -> dict[str, Any]:
        show = self._require_show()
        t = self.subscriptions.get(body.transport_id)
        if t is None:
            raise SignalingError("unknown_transport", f"no transport {body.transport_id} on this connection")
        consumers = await show.router.accept_answer(t, body.sdp)
        return rs.Answered(transport_id=t.id, consumers=_consumers(consumers)).to_wire()

    async def _m_consumer_set_layers(self, body: SetLayers) -> dict[str, Any]:
        """Cap one of this connection's video consumers (simulcast layers, docs/media.md)."""
        self._require_show()
        for t in self.subscriptions.values():
            c = t.consumers.get(body.consumer_id)
            if c is not None:
                break
        else:
            raise SignalingError("unknown_consumer", f"no consumer {body.consumer_id} on this connection")
        if c.kind != "video":
            raise SignalingError("bad_request", "consumer_id: layers are for a video consumer")
        c.set_layer_caps(body.max_spatial, body.max_temporal)
        return rs.LayersSet(consumer=msgspec.convert(c.describe(), rs.Consumer)).to_wire()

    async def _m_unsubscribe(self, body: Unsubscribe) -> dict[str, Any]:
        self._require_show()
        t = self.subscriptions.pop(body.transport_id, None)
        if t is None:
            raise SignalingError("unknown_transport", f"no transport {body.transport_id} on this connection")
        await t.close()
        return rs.Done().to_wire()

    async def _m_leave(self, _body: Any) -> dict[str, Any]:
        if self.show is None:
            raise SignalingError("not_joined", "not in a show")
        await self._leave()
        return rs.Done().to_wire()

    # -- show verbs --------------------------------------------------------------

    async def _m_private_request(self, _body: Any) -> dict[str, Any]:
        show = self._require_member()
        assert self.member_id is not None
        remote = await self._at_origin(show, "private.request")
        if remote is not None:
            return msgspec.convert(remote, rs.PrivateRequestSent).to_wire()
        started = await self._privates(show).request(self.member_id)
        return rs.PrivateRequestSent(state=show.public_state(self), private_member=started).to_wire()

    async def _m_private_withdraw(self, _body: Any) -> dict[str, Any]:
        show = self._require_member()
        assert self.member_id is not None
        if await self._at_origin(show, "private.withdraw") is not None:
            return rs.Done().to_wire()
        self._privates(show).withdraw(self.member_id)
        return rs.Done().to_wire()

    async def _m_private_accept(self, body: MemberRef) -> dict[str, Any]:
        show = self._require_performer()
        at = await self._privates(show).accept(body.member_id)
        # `accepted_at` is the instant every other viewer was paused (same step).
        return rs.PrivateAccepted(member_id=body.member_id, accepted_at=at).to_wire()

    async def _m_private_decline(self, body: MemberRef) -> dict[str, Any]:
        show = self._require_performer()
        self._privates(show).decline(body.member_id)
        return rs.Done().to_wire()

    async def _m_private_end(self, _body: Any) -> dict[str, Any]:
        show = self._require_show()
        if self.role == "performer":
            at = self._privates(show).end_by_performer()
        elif self.member_id is not None:
            remote = await self._at_origin(show, "private.end")
            if remote is not None:
                return msgspec.convert(remote, rs.PrivateEndedAnswer).to_wire()
            at = self._privates(show).end_by_member(self.member_id)
        else:
            raise SignalingError("forbidden", "guests have no private to end")
        return rs.PrivateEndedAnswer(ended_at=at).to_wire()

    async def _m_sneak_peek(self, _body: Any) -> dict[str, Any]:
        show = self._require_member()
        assert self.member_id is not None
        remote = await self._at_origin(show, "sneak_peek")
        if remote is not None:
            return msgspec.convert(remote, rs.SneakPeekAnswer).to_wire()
        at = show.clock()
        show.apply(m.SneakPeek(self.member_id, at))
        return rs.SneakPeekAnswer(started_at=at, until=show.machine.peeks[self.member_id]).to_wire()

    async def _m_show_free(self, _body: Any) -> dict[str, Any]:
        show = self._require_performer()
        at = self._privates(show).back_to_free()
        return rs.ShowFreed(state=show.machine.state.value, at=at).to_wire()

    async def _m_show_settings(self, body: ShowSettings) -> dict[str, Any]:
        show = self._require_performer()
        if body.auto_accept is not None:
            show.apply(m.SetAutoAccept(body.auto_accept, show.clock()))
        if body.price_per_minute is not None:
            # Applies to the next private; a running one keeps the rate it was granted at.
            show.price_per_minute = body.price_per_minute
        return rs.ShowSettingsSaved(
            auto_accept=show.machine.auto_accept, price_per_minute=show.price_per_minute
        ).to_wire()

    # -- events and teardown -------------------------------------------------

    def _on_producer(self, what: str, producer: Producer) -> None:
        show = self.show
        if show is None or not producer.visible_to(self.session_id):
            return
        if what == "added":
            described = msgspec.convert(producer.describe(), ev.Producer)
            self.notify("producer.added", ev.ProducerAdded(show_id=show.id, producer=described).to_wire())
        else:
            self.notify("producer.removed", ev.ProducerRemoved(show_id=show.id, producer_id=producer.id).to_wire())

    async def _leave(self) -> None:
        show, self.show = self.show, None
        if self.admission is not None:
            self.admission.release(self)
        if self.chat is not None:
            self.chat.left()
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        via_edge = None if show is None or show.closed else self._edge_members(show, self.member_id)
        if self.relays is not None and self.relays.members is not None:
            self.relays.members.left(self.session_id)  # watching through this edge: told to the origin
        if show is not None and via_edge is None and not show.closed and self.member_id is not None:
            try:
                self._privates(show).member_leaving(self.member_id)
            except m.Rejected:  # pragma: no cover
                pass
        transports = list(self.subscriptions.values())
        self.subscriptions.clear()
        if self.publisher is not None:
            transports.append(self.publisher)
            self.publisher = None
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
        if show is None:
            return
        if show.remove(self):
            await self.shows.close(show.id, show)
        self.role = ""

    def show_ended(self) -> None:
        """Called by the show when it ends: forget it; the session may join another."""
        if self.relays is not None and self.relays.members is not None:
            # An edge show ending (its relay lost) while its origin goes on: the member left there.
            self.relays.members.left(self.session_id)
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        self.subscriptions.clear()
        self.publisher = None
        self.show = None
        if self.admission is not None:
            self.admission.release(self)
        self.role = ""
        if self.chat is not None:
            self.chat.left()
