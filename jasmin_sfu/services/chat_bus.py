"""How room events travel between daemon processes: an in-memory bus, or Redis pub/sub.

Every process delivers its own room events to its local connections at once
and publishes them on the bus; every process delivers what it receives from
the bus to its local connections. An envelope carries its origin (a random id
per process), so a process never delivers its own envelope twice.

Redis: one ``PSUBSCRIBE <prefix>:chat:*`` per process, envelopes published on
``<prefix>:chat:<room>`` as JSON. Every process therefore receives every
room's events, also rooms it has nobody in; at the site's scale (a message is
~300 bytes, a busy room ~10 messages/s) that is cheaper than subscribing and
unsubscribing per room on every join and leave. Pub/sub is fire-and-forget:
an envelope published while a process is disconnected is lost for that
process (its clients can fetch ``chat.history``), which is why bans and mutes
live in the shared database and never only on the bus.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

Envelope = dict[str, Any]
Receiver = Callable[[Envelope], None]


class ChatBus(Protocol):
    """Room events to and from the other processes of the site."""

    async def start(self, origin: str, receive: Receiver) -> None:
        """Start delivering envelopes of other origins to ``receive``."""
        ...

    async def publish(self, room: str, envelope: Envelope) -> None:
        """Send one envelope to every other process (best effort)."""
        ...

    async def close(self) -> None: ...


class InMemoryBus:
    """One process (or several services in one process, in tests): no broker at all."""

    def __init__(self) -> None:
        self._receivers: dict[str, Receiver] = {}

    async def start(self, origin: str, receive: Receiver) -> None:
        self._receivers[origin] = receive

    async def publish(self, room: str, envelope: Envelope) -> None:
        for origin, receive in list(self._receivers.items()):
            if origin != envelope.get("origin"):
                receive(envelope)

    async def close(self) -> None:
        self._receivers.clear()


class RedisBus:
    """Redis pub/sub on ``<prefix>:chat:<room>``; reconnects with a 1 s back-off."""

    def __init__(self, url: str, prefix: str = "jasmin") -> None:
        self.url = url
        self.prefix = prefix
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._origin = ""
        self._receive: Receiver | None = None

    def channel(self, room: str) -> str:
        return f"{self.prefix}:chat:{room}"

    async def start(self, origin: str, receive: Receiver) -> None:
        import redis.asyncio as redis

        self._origin, self._receive = origin, receive
        self._client = redis.from_url(self.url)
        pubsub = await self._subscribe()
        self._task = asyncio.get_running_loop().create_task(self._listen(pubsub))

    async def _subscribe(self) -> Any:
        pubsub = self._client.pubsub()
        await pubsub.psubscribe(self.channel("*"))
        # Wait for the confirmation: from here on no envelope published elsewhere is missed.
        while True:
            msg = await pubsub.get_message(timeout=5)
            if msg is not None and msg.get("type") == "psubscribe":
                return pubsub

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                async for msg in pubsub.listen():
                    if msg.get("type") != "pmessage":
                        continue
                    self._dispatch(msg.get("data"))
            except asyncio.CancelledError:
                await _quiet(pubsub.aclose())
                raise
            except Exception as exc:  # noqa: BLE001 - a broker outage must not end chat on this node
                log.warning("redis chat bus: %r; reconnecting in 1 s", exc)
                await _quiet(pubsub.aclose())
                await asyncio.sleep(1.0)
                try:
                    pubsub = await self._subscribe()
                except Exception as again:  # noqa: BLE001
                    log.warning("redis chat bus: resubscribe failed: %r", again)
                    pubsub = self._client.pubsub()

    def _dispatch(self, raw: Any) -> None:
        try:
            env = json.loads(raw)
        except (TypeError, ValueError):
            log.warning("redis chat bus: dropped a malformed envelope")
            return
        if not isinstance(env, dict) or env.get("origin") == self._origin or self._receive is None:
            return
        try:
            self._receive(env)
        except Exception:  # noqa: BLE001 - one bad envelope must not stop the listener
            log.exception("redis chat bus: delivering an envelope failed")

    async def publish(self, room: str, envelope: Envelope) -> None:
        try:
            await self._client.publish(self.channel(room), json.dumps(envelope, separators=(",", ":")))
        except Exception as exc:  # noqa: BLE001 - local delivery already happened; other nodes miss it
            log.warning("redis chat bus: publish failed: %r", exc, extra={"room": room})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._client is not None:
            await _quiet(self._client.aclose())
            self._client = None


async def _quiet(aw: Any) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001 - closing a broken connection
        pass
