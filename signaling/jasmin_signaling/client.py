"""Python client SDK for signaling v1 (used by the tests, bench/ and integrators)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp

from .codec import PROTOCOL, decode_frame, encode_frame


class RemoteError(Exception):
    """The server answered a request with ``ok: false``; ``error`` is the whole wire error."""

    def __init__(self, code: str, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.error = error or {"code": code, "message": message}

    @staticmethod
    def from_wire(err: Any) -> "RemoteError":
        """The typed error for a wire ``error`` object (:class:`Overloaded` for ``overloaded``)."""
        err = err if isinstance(err, dict) else {}
        code, message = str(err.get("code", "?")), str(err.get("message", ""))
        if code == "overloaded":
            return Overloaded(code, message, err)
        if code == "moved":
            return Moved(code, message, err)
        return RemoteError(code, message, err)


class Overloaded(RemoteError):
    """``overloaded``: the node refused the join at once, past its capacity.

    Try again after ``retry_after_ms`` (or another node); ``reason`` is
    ``viewers``, ``joins_in_flight`` or ``cpu``.
    """

    def __init__(self, code: str, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, error)
        retry = self.error.get("retry_after_ms")
        self.retry_after_ms: int = retry if isinstance(retry, int) and not isinstance(retry, bool) else 0
        self.reason: str = str(self.error.get("reason", ""))


class Moved(RemoteError):
    """``moved``: another node of the site holds the show (docs/cluster.md); ``url`` is its
    signaling websocket. :meth:`SignalingClient.request` follows it once for a ``join``."""

    def __init__(self, code: str, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, error)
        self.url: str = str(self.error.get("url", ""))
        self.node: str = str(self.error.get("node", ""))


class SignalingClient:
    """One websocket to the daemon.

    >>> c = await SignalingClient.connect("ws://127.0.0.1:8080/ws")
    >>> await c.request("join", show_id="alice", role="viewer")
    """

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, binary: bool) -> None:
        self._session = session
        self.ws = ws
        self.binary = binary
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.welcome: dict[str, Any] = {}
        self._client_name = "jasmin-py/1"
        # The node this client was sent to by a `moved` answer, if any (docs/cluster.md).
        self.moved_to: str | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, *, binary: bool = False, hello: bool = True, client: str = "jasmin-py/1"
    ) -> "SignalingClient":
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, max_msg_size=4 * 1024 * 1024)
        except Exception:
            await session.close()
            raise
        c = cls(session, ws, binary)
        if hello:
            await c.hello(client)
        return c

    async def hello(self, client: str = "jasmin-py/1", protocol: str = PROTOCOL) -> dict[str, Any]:
        fut = asyncio.get_running_loop().create_future()
        self._pending["__hello__"] = fut
        self._client_name = client
        await self.send_raw({"type": "hello", "protocol": protocol, "client": client})
        self.welcome = await asyncio.wait_for(fut, 10)
        return self.welcome

    async def send_raw(self, obj: dict[str, Any] | str | bytes) -> None:
        """Send a frame as is (tests use this to send malformed input)."""
        if isinstance(obj, dict):
            obj = encode_frame(obj, self.binary)
        if isinstance(obj, bytes):
            await self.ws.send_bytes(obj)
        else:
            await self.ws.send_str(obj)

    async def request(self, method: str, timeout: float = 30, **data: Any) -> dict[str, Any]:
        """Send a request and return its ``data``, or raise :class:`RemoteError`.

        A ``join`` answered ``moved`` is followed once: this client closes its websocket,
        opens one to the ``url`` of the answer, says ``hello`` there and sends the same
        ``join``; a second ``moved`` is raised (:class:`Moved`).
        """
        try:
            return await self._request(method, timeout, data)
        except Moved as moved:
            if method != "join" or not moved.url.startswith(("ws://", "wss://")):
                raise
            await self._reconnect(moved.url)
            return await self._request(method, timeout, data)

    async def _reconnect(self, url: str) -> None:
        """Move this client to another node's websocket (after ``moved``): a new session there."""
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self._pending.clear()
        self.ws = await self._session.ws_connect(url, max_msg_size=4 * 1024 * 1024)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.moved_to = url
        await self.hello(self._client_name)

    async def _request(self, method: str, timeout: float, data: dict[str, Any]) -> dict[str, Any]:
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        await self.send_raw({"type": "request", "id": req_id, "method": method, "data": data})
        try:
            resp = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(req_id, None)
        if not resp.get("ok"):
            raise RemoteError.from_wire(resp.get("error"))
        return resp.get("data") or {}

    async def next_event(self, name: str | None = None, timeout: float = 10) -> dict[str, Any]:
        """The next event (optionally of one name), skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ev = await asyncio.wait_for(self.events.get(), max(0.01, deadline - loop.time()))
            if name is None or ev.get("event") == name:
                return ev

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                frame = decode_frame(msg.data)
                ftype = frame.get("type")
                if ftype == "welcome":
                    fut = self._pending.pop("__hello__", None)
                    if fut and not fut.done():
                        fut.set_result(frame)
                elif ftype == "response":
                    fut = self._pending.get(frame.get("id"))
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    else:
                        await self.errors.put(frame)
                elif ftype == "event":
                    await self.events.put(frame)
                elif ftype == "error":
                    fut = self._pending.pop("__hello__", None)
                    if fut and not fut.done():
                        fut.set_exception(RemoteError.from_wire(frame.get("error")))
                    await self.errors.put(frame)
        except Exception:  # pragma: no cover - connection torn down
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("signaling connection closed"))

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self._session.close()
