"""NATS JetStream billing sink: publish with ``Nats-Msg-Id`` = the event id.

The stream is created when missing, with ``duplicate_window_s`` (default 1 h):
JetStream drops a message whose id it saw within the window and answers the
publish with ``duplicate=True``, which counts as success. The event id embeds
the session id, so it is unique across sources. JetStream cannot compare
payloads, so a same-id-different-payload conflict is not detected here (the
outbox refuses it upstream), and a re-send after the window is stored twice:
consumers dedupe on (source, id), which the body carries.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import nats
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from jasmin_metering.config import NatsSinkConfig
from jasmin_metering.errors import SinkUnavailableError
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import dedupe_batch

log = logging.getLogger(__name__)


async def _quiet(e: Exception) -> None:
    # nats-py logs every failed attempt with a traceback; the relay logs one line.
    log.debug("nats: %r", e)


class NatsSink:
    """Events published to a JetStream stream, deduped by Nats-Msg-Id."""

    def __init__(self, config: NatsSinkConfig, name: str = "nats") -> None:
        self.name = name
        self.config = config
        self._nc: Any = None
        self._js: Any = None
        self.duplicates = 0  # publishes JetStream answered as duplicates

    async def _connect(self) -> Any:
        if self._js is not None and self._nc is not None and self._nc.is_connected:
            return self._js
        await self.close()
        c = self.config
        self._nc = await nats.connect(
            servers=list(c.servers),
            connect_timeout=c.connect_timeout_s,
            # Two connect attempts 100 ms apart, then NoServersError: the relay's
            # backoff owns the retry schedule (0 would mean "forever" in nats-py).
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=_quiet,
        )
        js = self._nc.jetstream(timeout=c.publish_timeout_s)
        try:
            await js.stream_info(c.stream)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(name=c.stream, subjects=[c.subject], duplicate_window=float(c.duplicate_window_s))
            )
        self._js = js
        return js

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """Publish each event and wait for its JetStream ack."""
        batch, _conflicts = dedupe_batch(events)
        if not batch:
            return
        try:
            js = await self._connect()
            for ev in batch:
                ack = await js.publish(self.config.subject, ev.to_json(), headers={"Nats-Msg-Id": ev.id})
                if ack.duplicate:
                    self.duplicates += 1
        except (NatsError, OSError, TimeoutError) as e:
            await self.close()
            raise SinkUnavailableError(f"nats sink: {e!r}") from e

    async def close(self) -> None:
        """Close the connection."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await nc.close()
            except (NatsError, OSError):
                pass
