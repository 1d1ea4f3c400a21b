"""The server side of one signaling websocket: hello, framing, caps, dispatch.

Everything that can go wrong with a frame is answered with an error frame
and the connection stays up; only a frame above aiohttp's hard cap (which we
refuse to buffer) closes it, with websocket code 1009.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Protocol

from aiohttp import WSMsgType, web

from .codec import PROTOCOL, decode_frame, encode_frame
from .errors import SignalingError
from .messages import parse_request, valid_request_id
from .responses import Done
from .text import echo

log = logging.getLogger(__name__)

_RECENT_IDS = 1024


class Handler(Protocol):
    """What the daemon plugs into a session."""

    async def handle(self, method: str, body: Any) -> dict[str, Any]: ...

    async def closed(self) -> None: ...


class TokenBucket:
    """``rate`` requests per second with a burst of ``2 * rate``; time injected."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = max(1.0, 2 * rate)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SignalingSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        make_handler: Callable[["SignalingSession"], Handler],
        *,
        max_frame_bytes: int,
        max_requests_per_s: float,
        heartbeat_s: float,
        server_name: str,
        clock: Callable[[], float] = time.monotonic,
        session_id: str | None = None,
    ) -> None:
        self.ws = ws
        # A supervisor that moves a connection between its workers names the id,
        # so the client keeps the one its welcome gave it.
        self.id = session_id or uuid.uuid4().hex
        self.max_frame_bytes = max_frame_bytes
        self.heartbeat_s = heartbeat_s
        self.server_name = server_name
        self.binary = False
        self.hello_done = False
        self.closed = False
        self._bucket = TokenBucket(max_requests_per_s, clock)
        self._recent_ids: OrderedDict[Any, None] = OrderedDict()
        self._send_lock = asyncio.Lock()
        self.handler = make_handler(self)

    async def send(self, obj: dict[str, Any], binary: bool | None = None) -> None:
        if self.closed or self.ws.closed:
            return
        try:
            frame = encode_frame(obj, self.binary if binary is None else binary)
        except (UnicodeEncodeError, OverflowError, TypeError, ValueError):
            # A bug (input is checked before it can be echoed): say so, keep the connection.
            log.exception("session %s: a %s frame could not be encoded", self.id, obj.get("type"))
            reply: dict[str, Any] = {
                "type": "error",
                "error": SignalingError("internal", "unexpected server error").to_wire(),
            }
            frame = encode_frame(reply, self.binary if binary is None else binary)
        async with self._send_lock:
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                self.closed = True

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        """Push a server event; a no-op once the socket is gone."""
        await self.send({"type": "event", "event": event, "data": data})

    async def _error(self, err: SignalingError, req_id: Any = None, has_id: bool = False) -> None:
        if has_id:
            await self.send({"type": "response", "id": req_id, "ok": False, "error": err.to_wire()})
        else:
            await self.send({"type": "error", "error": err.to_wire()})

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_frame(msg.data, False)
                elif msg.type == WSMsgType.BINARY:
                    await self._on_frame(msg.data, True)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.closed = True
            try:
                await self.handler.closed()
            except Exception:  # pragma: no cover
                log.exception("session %s close handler failed", self.id)

    async def _on_frame(self, raw: str | bytes, binary: bool) -> None:
        size = len(raw.encode()) if isinstance(raw, str) else len(raw)
        self.binary = binary  # answer in the encoding of the last frame
        if size > self.max_frame_bytes:
            await self._error(
                SignalingError("frame_too_large", f"{size} bytes > max_frame_bytes {self.max_frame_bytes}")
            )
            return
        try:
            frame = decode_frame(raw)
        except SignalingError as err:
            await self._error(err)
            return
        ftype = frame.get("type")
        if ftype == "hello":
            await self._hello(frame)
            return
        if not self.hello_done:
            await self._error(SignalingError("hello_required", 'send {"type": "hello", "protocol": "jasmin/1"} first'))
            return
        if ftype != "request":
            await self._error(SignalingError("bad_frame", f"unknown frame type {echo(ftype)}; expected 'request'"))
            return
        has_id = "id" in frame
        req_id = frame.get("id")
        if not has_id or not valid_request_id(req_id):
            # Not echoed: an id that is no text (a lone surrogate) could not be sent back.
            await self._error(
                SignalingError(
                    "bad_request",
                    "id: an integer or a string of 1-64 characters (no NUL, no unpaired surrogate) is required",
                )
            )
            return
        if req_id in self._recent_ids:
            await self._error(
                SignalingError("duplicate_request_id", f"request id {echo(req_id)} was already used"), req_id, True
            )
            return
        self._recent_ids[req_id] = None
        if len(self._recent_ids) > _RECENT_IDS:
            self._recent_ids.popitem(last=False)
        if not self._bucket.take():
            await self._error(SignalingError("rate_limited", "too many requests"), req_id, True)
            return
        method = frame.get("method")
        if not isinstance(method, str):
            await self._error(SignalingError("bad_request", "method: a string is required"), req_id, True)
            return
        try:
            body = parse_request(method, frame.get("data"))
            if method == "ping":
                result: dict[str, Any] = Done().to_wire()
            else:
                result = await self.handler.handle(method, body)
        except SignalingError as err:
            await self._error(err, req_id, True)
            return
        except Exception:
            log.exception("session %s: %s failed", self.id, method)
            await self._error(SignalingError("internal", "unexpected server error"), req_id, True)
            return
        await self.send({"type": "response", "id": req_id, "ok": True, "data": result})

    async def _hello(self, frame: dict[str, Any]) -> None:
        proto = frame.get("protocol")
        if proto != PROTOCOL:
            await self._error(
                SignalingError(
                    "unsupported_protocol", f"protocol {echo(proto)} is not supported; this server speaks {PROTOCOL}"
                )
            )
            return
        if self.hello_done:
            await self._error(SignalingError("bad_request", "hello was already received"))
            return
        self.hello_done = True
        await self.send(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "session_id": self.id,
                "server": self.server_name,
                "max_frame_bytes": self.max_frame_bytes,
                "heartbeat_s": self.heartbeat_s,
            }
        )


def run_session(
    ws: web.WebSocketResponse, make_handler: Callable[[SignalingSession], Handler], **kwargs: Any
) -> Awaitable[None]:
    return SignalingSession(ws, make_handler, **kwargs).run()
