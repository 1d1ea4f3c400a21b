"""A minimal Janus API client (WebSockets transport) for the VideoRoom plugin.

Just what the load tool needs: one websocket and one Janus session shared by
the publisher and every subscriber handle, keep-alives, a publisher that
sends an SDP offer and gets Janus's answer, and subscribers that get Janus's
offer and answer it. SDPs carry all candidates (no trickle from us; Janus
sends its own in the SDP, "half-trickle").

Protocol reference: https://janus.conf.meetecho.com/docs/rest.html and the
VideoRoom plugin docs (``join`` as ``publisher``/``subscriber``, ``configure``,
``start``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One websocket, one Janus session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self._ws = ws
        self._http = http
        self._ids = itertools.count(1)
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.session_id = 0
        self.unsolicited: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())
        self._keepalive: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str) -> "JanusSession":
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, protocols=("janus-protocol",), max_msg_size=0, heartbeat=None)
        except Exception:
            await http.close()
            raise
        self = cls(ws, http)
        res = await self.request({"janus": "create"})
        self.session_id = int(res["data"]["id"])
        self._keepalive = asyncio.ensure_future(self._keepalives())
        return self

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            tx = data.get("transaction")
            kind = data.get("janus")
            if tx is None:
                self.unsolicited.append(data)
                continue
            if kind == "ack":
                fut = self._acks.pop(tx, None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                continue
            # "success"/"error" answer synchronous requests; "event" answers
            # asynchronous plugin messages (after an "ack").
            fut = self._acks.pop(tx, None) if kind in ("success", "error") else None
            if fut is not None:
                if not fut.done():
                    fut.set_result(data)
                self._events.pop(tx, None)
                continue
            fut = self._events.pop(tx, None)
            if fut is not None and not fut.done():
                fut.set_result(data)
        for fut in list(self._acks.values()) + list(self._events.values()):
            if not fut.done():
                fut.set_exception(JanusError("websocket closed"))

    async def _keepalives(self) -> None:
        while True:
            await asyncio.sleep(20)
            try:
                await self.request({"janus": "keepalive", "session_id": self.session_id})
            except Exception:
                return

    def _send(self, msg: dict[str, Any]) -> tuple[str, asyncio.Future[dict[str, Any]], asyncio.Future[dict[str, Any]]]:
        tx = f"t{next(self._ids)}"
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[dict[str, Any]] = loop.create_future()
        ev: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._acks[tx] = ack
        self._events[tx] = ev
        msg = dict(msg, transaction=tx)
        asyncio.ensure_future(self._ws.send_str(json.dumps(msg)))
        return tx, ack, ev

    async def request(self, msg: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """A synchronous Janus request (create, attach, keepalive, trickle...)."""
        tx, ack, ev = self._send(msg)
        try:
            res = await asyncio.wait_for(ack, timeout)
        finally:
            self._events.pop(tx, None)
        if res.get("janus") == "error":
            raise JanusError(str(res.get("error")))
        return res

    async def message(
        self, handle_id: int, body: dict[str, Any], jsep: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """A plugin message; returns the plugin's event (after Janus's ack)."""
        msg: dict[str, Any] = {"janus": "message", "session_id": self.session_id, "handle_id": handle_id, "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        tx, ack, ev = self._send(msg)
        first = await asyncio.wait_for(ack, timeout)
        if first.get("janus") == "error":
            self._events.pop(tx, None)
            raise JanusError(str(first.get("error")))
        if first.get("janus") == "success":  # synchronous plugin answer
            self._events.pop(tx, None)
            res = first
        else:
            res = await asyncio.wait_for(ev, timeout)
        data = res.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{data.get('error_code')}: {data['error']}")
        return res

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> int:
        res = await self.request({"janus": "attach", "session_id": self.session_id, "plugin": plugin})
        return int(res["data"]["id"])

    async def detach(self, handle_id: int) -> None:
        try:
            await self.request({"janus": "detach", "session_id": self.session_id, "handle_id": handle_id}, timeout=10)
        except Exception:
            pass

    async def trickle_done(self, handle_id: int) -> None:
        await self.request(
            {
                "janus": "trickle",
                "session_id": self.session_id,
                "handle_id": handle_id,
                "candidate": {"completed": True},
            }
        )

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        try:
            if self.session_id:
                await self.request({"janus": "destroy", "session_id": self.session_id}, timeout=10)
        except Exception:
            pass
        await self._ws.close()
        await self._http.close()
        self._reader.cancel()


# -- VideoRoom ---------------------------------------------------------------


async def create_room(s: JanusSession, room: int, options: dict[str, Any]) -> int:
    """Create a VideoRoom room (not permanent); returns its id."""
    h = await s.attach()
    body = {"request": "create", "room": room, "permanent": False, "is_private": True, **options}
    res = await s.message(h, body)
    await s.detach(h)
    return int(res["plugindata"]["data"]["room"])


async def publish(s: JanusSession, room: int, offer_sdp: str) -> tuple[int, int, str]:
    """Join ``room`` as its publisher with ``offer_sdp``; returns (handle, feed id, answer SDP)."""
    h = await s.attach()
    res = await s.message(h, {"request": "join", "ptype": "publisher", "room": room, "display": "bench"})
    feed = int(res["plugindata"]["data"]["id"])
    res = await s.message(
        h, {"request": "configure", "audio": True, "video": True}, jsep={"type": "offer", "sdp": offer_sdp}
    )
    jsep = res.get("jsep")
    if not jsep:
        raise JanusError(f"no answer from janus: {res}")
    await s.trickle_done(h)
    return h, feed, str(jsep["sdp"])


async def subscribe_offer(s: JanusSession, room: int, feed: int) -> tuple[int, str]:
    """Attach a subscriber handle to ``feed``; returns (handle, Janus's offer SDP)."""
    h = await s.attach()
    res = await s.message(h, {"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]})
    jsep = res.get("jsep")
    if not jsep:
        raise JanusError(f"no offer from janus: {res}")
    return h, str(jsep["sdp"])


async def subscribe_answer(s: JanusSession, handle: int, room: int, answer_sdp: str) -> None:
    await s.message(handle, {"request": "start", "room": room}, jsep={"type": "answer", "sdp": answer_sdp})
    await s.trickle_done(handle)
