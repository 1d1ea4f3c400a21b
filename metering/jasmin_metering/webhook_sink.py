"""HTTP webhook billing sink: a signed CloudEvents JSON batch per POST.

Request: ``POST <url>``, ``Content-Type: application/cloudevents-batch+json``,
body = JSON array of events, header
``Jasmin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
(the timestamp is signed so a captured request cannot be replayed after the
receiver's tolerance, 300 s by default in ``verify_signature``).

Receiver contract: 2xx = every event stored or already stored (a duplicate MUST
answer success, Lago #3049); 409 with ``{"conflicts": [{"source", "id"}]}`` = those
keys exist with a different payload, the rest were stored; anything else, or no
answer, = retry. Inside one ``deliver`` the POST is retried ``max_attempts`` times
with exponential backoff (50 ms, 100 ms, 200 ms ...), then ``SinkUnavailableError``
hands the batch back to the relay's longer backoff. Nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from typing import Awaitable, Callable, Sequence

import aiohttp

from jasmin_metering.config import WebhookSinkConfig
from jasmin_metering.errors import SinkConflictError, SinkUnavailableError
from jasmin_metering.events import CloudEvent, batch_json

SIGNATURE_HEADER = "Jasmin-Signature"
CONTENT_TYPE = "application/cloudevents-batch+json"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Jasmin-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: float, tolerance_s: int = 300) -> bool:
    """Receiver side: True when ``header`` signs ``body`` and is not older than the tolerance."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


class WebhookSink:
    """POSTs batches to an HTTP receiver that dedupes on (source, id)."""

    def __init__(
        self,
        config: WebhookSinkConfig,
        clock: Callable[[], float],
        name: str = "webhook",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not config.url or not config.secret:
            raise ValueError("webhook sink needs url and secret")
        self.name = name
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self.attempts = 0  # observable for tests and metrics

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """POST the batch, retrying transient failures with exponential backoff."""
        if not events:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        body = batch_json(list(events))
        c = self.config
        delay = c.initial_backoff_ms / 1000.0
        last = "no attempt"
        for attempt in range(c.max_attempts):
            if attempt:
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, c.max_backoff_ms / 1000.0)
            self.attempts += 1
            headers = {"Content-Type": CONTENT_TYPE, SIGNATURE_HEADER: sign(c.secret, body, int(self._clock()))}
            try:
                async with self._session.post(c.url, data=body, headers=headers) as resp:
                    text = await resp.read()
                    if 200 <= resp.status < 300:
                        return
                    if resp.status == 409:
                        raise SinkConflictError(_conflicts(text))
                    last = f"HTTP {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                last = repr(e)
        raise SinkUnavailableError(f"webhook {c.url}: {last} after {c.max_attempts} attempts")

    async def close(self) -> None:
        """Close the HTTP session."""
        s, self._session = self._session, None
        if s is not None:
            await s.close()


def _conflicts(body: bytes) -> list[tuple[str, str]]:
    try:
        obj = json.loads(body)
        return [(str(c["source"]), str(c["id"])) for c in obj["conflicts"]]
    except (ValueError, KeyError, TypeError):
        return [("?", "?")]
