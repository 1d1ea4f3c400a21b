"""Signaling v1 verbs for one websocket: join, publish, subscribe, answer, leave.

Domain errors of the media core are mapped to wire error codes here, at the
edge, and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from jasmin_signaling.errors import SignalingError
from jasmin_signaling.messages import Answer, Join, Publish, Subscribe, Unsubscribe
from jasmin_signaling.session import SignalingSession

from jasmin_sfu.media.errors import (
    InvalidStateError,
    MediaError,
    NotFoundError,
    SdpError,
    UnsupportedCodecError,
)
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.transport import WebRtcTransport
from jasmin_sfu.shows.registry import Show, ShowRegistry

log = logging.getLogger("jasmin_sfu.signaling")


def map_media_error(exc: MediaError) -> SignalingError:
    if isinstance(exc, UnsupportedCodecError):
        return SignalingError("unsupported_codec", str(exc))
    if isinstance(exc, SdpError):
        return SignalingError("bad_sdp", str(exc))
    if isinstance(exc, NotFoundError):
        return SignalingError("unknown_producer", str(exc))
    if isinstance(exc, InvalidStateError):
        return SignalingError("invalid_state", str(exc))
    return SignalingError("internal", str(exc))


class SessionHandler:
    """The state of one signaling connection inside one show."""

    def __init__(self, session: SignalingSession, shows: ShowRegistry) -> None:
        self.session = session
        self.shows = shows
        self.show: Show | None = None
        self.role: str | None = None
        self.publisher: WebRtcTransport | None = None
        self.subscriptions: dict[str, WebRtcTransport] = {}
        self._unobserve: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- dispatch ------------------------------------------------------------

    async def handle(self, method: str, body: Any) -> dict[str, Any]:
        fn = getattr(self, "_m_" + method)
        try:
            result: dict[str, Any] = await fn(body)
            return result
        except MediaError as exc:
            raise map_media_error(exc) from None

    async def closed(self) -> None:
        await self._leave()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.session.send_event(name, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _require_show(self) -> Show:
        if self.show is None:
            raise SignalingError("not_joined", "join a show first")
        if self.show.router.closed:
            raise SignalingError("invalid_state", "the show has ended")
        return self.show

    # -- verbs ---------------------------------------------------------------

    async def _m_join(self, body: Join) -> dict[str, Any]:
        if self.show is not None:
            raise SignalingError("already_joined", f"already in show {self.show.id}; leave first")
        if body.role == "performer":
            show = self.shows.open(body.show_id)
            show.performers.add(self)
        else:
            found = self.shows.get(body.show_id)
            if found is None:
                raise SignalingError("unknown_show", f"show {body.show_id!r} is not live")
            show = found
            show.viewers.add(self)
        self.show = show
        self.role = body.role
        self._unobserve = show.router.observe(self._on_producer)
        log.info("joined", extra={"show_id": show.id, "session_id": self.session.id, "role": body.role})
        return {
            "show_id": show.id,
            "role": body.role,
            "producers": [p.describe() for p in show.router.producers.values()],
        }

    async def _m_publish(self, body: Publish) -> dict[str, Any]:
        show = self._require_show()
        if self.role != "performer":
            raise SignalingError("forbidden", "only a performer may publish")
        if self.publisher is not None and not self.publisher.closed:
            raise SignalingError("already_publishing", "unpublish first")
        t = show.router.create_transport("recv", {"session_id": self.session.id})
        self.publisher = t
        try:
            answer, producers = await show.router.publish(t, body.sdp, {"session_id": self.session.id})
        except BaseException:
            self.publisher = None
            await t.close()
            raise
        return {"transport_id": t.id, "sdp": answer, "producers": [p.describe() for p in producers]}

    async def _m_unpublish(self, _body: Any) -> dict[str, Any]:
        self._require_show()
        if self.publisher is None:
            raise SignalingError("invalid_state", "not publishing")
        t, self.publisher = self.publisher, None
        await t.close()
        return {}

    async def _m_subscribe(self, body: Subscribe) -> dict[str, Any]:
        show = self._require_show()
        if not show.router.producers:
            raise SignalingError("no_producers", "the show has nothing published yet")
        t = show.router.create_transport("send", {"session_id": self.session.id})
        try:
            offer, consumers = await show.router.consume(t, body.producer_ids, paused=body.paused)
        except BaseException:
            await t.close()
            raise
        self.subscriptions[t.id] = t
        t.on_close.append(self._subscription_closed)
        return {
            "transport_id": t.id,
            "sdp": offer,
            "consumers": [c.describe() for c in consumers],
        }

    def _subscription_closed(self, t: WebRtcTransport) -> None:
        self.subscriptions.pop(t.id, None)

    async def _m_answer(self, body: Answer) -> dict[str, Any]:
        show = self._require_show()
        t = self.subscriptions.get(body.transport_id)
        if t is None:
            raise SignalingError("unknown_transport", f"no transport {body.transport_id} on this connection")
        consumers = await show.router.accept_answer(t, body.sdp)
        return {"transport_id": t.id, "consumers": [c.describe() for c in consumers]}

    async def _m_unsubscribe(self, body: Unsubscribe) -> dict[str, Any]:
        self._require_show()
        t = self.subscriptions.pop(body.transport_id, None)
        if t is None:
            raise SignalingError("unknown_transport", f"no transport {body.transport_id} on this connection")
        await t.close()
        return {}

    async def _m_leave(self, _body: Any) -> dict[str, Any]:
        if self.show is None:
            raise SignalingError("not_joined", "not in a show")
        await self._leave()
        return {}

    # -- events and teardown -------------------------------------------------

    def _on_producer(self, what: str, producer: Producer) -> None:
        show = self.show
        if show is None:
            return
        if what == "added":
            self._event("producer.added", {"show_id": show.id, "producer": producer.describe()})
        else:
            self._event("producer.removed", {"show_id": show.id, "producer_id": producer.id})

    async def _leave(self) -> None:
        show, self.show = self.show, None
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        transports = list(self.subscriptions.values())
        self.subscriptions.clear()
        if self.publisher is not None:
            transports.append(self.publisher)
            self.publisher = None
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
        if show is None:
            return
        show.performers.discard(self)
        show.viewers.discard(self)
        if self.role == "performer" and not show.performers:
            for viewer in list(show.viewers):
                viewer.show_ended(show.id)
            await self.shows.close(show.id)
        self.role = None

    def show_ended(self, show_id: str) -> None:
        """The show this viewer watched ended; it may join another."""
        self._event("show.ended", {"show_id": show_id})
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        self.subscriptions.clear()
        self.show = None
        self.role = None
