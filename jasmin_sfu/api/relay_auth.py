"""The relays' control channel's signatures (docs/cluster.md "Relays"): every call between
nodes (``/internal/relay/open``, jasmin_sfu/api/relay.py; ``/internal/relay/member`` and
``/internal/relay/member-events``, jasmin_sfu/api/relay_members.py) is signed and checked here.

HMAC-SHA256 under the shared secret of ``METHOD \\n PATH \\n TIMESTAMP \\n NODE \\n BODY``,
in the headers ``X-Jasmin-Node``, ``X-Jasmin-Timestamp`` and ``X-Jasmin-Signature``; a
timestamp outside ``REPLAY_WINDOW_S`` and a signature already accepted are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Callable

NODE_HEADER = "X-Jasmin-Node"
TIMESTAMP_HEADER = "X-Jasmin-Timestamp"
SIGNATURE_HEADER = "X-Jasmin-Signature"
REPLAY_WINDOW_S = 30.0


class RelayError(Exception):
    """A relay could not be opened; ``code`` is a wire error code (docs/signaling.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sign(secret: str, method: str, path: str, timestamp: str, node: str, body: bytes) -> str:
    """The control channel's request signature (see the module docstring)."""
    msg = b"\n".join((method.upper().encode(), path.encode(), timestamp.encode(), node.encode(), body))
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


class RequestVerifier:
    """Checks signed control requests: the MAC, the replay window, and replays within it."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time, window_s: float = REPLAY_WINDOW_S) -> None:
        self._secret = secret
        self._clock = clock
        self._window = window_s
        self._seen: dict[str, float] = {}

    def verify(self, method: str, path: str, headers: Any, body: bytes) -> str:
        """The calling node's id; raises :class:`RelayError` ``forbidden`` saying why not."""
        node = str(headers.get(NODE_HEADER, ""))
        stamp = str(headers.get(TIMESTAMP_HEADER, ""))
        mac = str(headers.get(SIGNATURE_HEADER, ""))
        if not node or not stamp or not mac:
            raise RelayError("forbidden", "unsigned request")
        try:
            at = float(stamp)
        except ValueError:
            raise RelayError("forbidden", "bad timestamp") from None
        now = self._clock()
        if abs(now - at) > self._window:
            raise RelayError("forbidden", "timestamp outside the replay window")
        if not hmac.compare_digest(mac, sign(self._secret, method, path, stamp, node, body)):
            raise RelayError("forbidden", "bad signature")
        for old, seen_at in list(self._seen.items()):
            if now - seen_at > 2 * self._window:
                del self._seen[old]
        if mac in self._seen:
            raise RelayError("forbidden", "replayed request")
        self._seen[mac] = now
        return node

    def verify_json(self, method: str, path: str, headers: Any, body: bytes, limit: int) -> tuple[str, dict[str, Any]]:
        """A signed JSON request of a node: at most ``limit`` bytes, signed (:meth:`verify`), an
        object naming the signing node as its ``node``. Returns that node's id and the object;
        raises :class:`RelayError` (``bad_request``, ``forbidden``), or ``ValueError`` for JSON
        that does not parse."""
        if len(body) > limit:
            raise RelayError("bad_request", "body too large")
        node = self.verify(method, path, headers, body)
        ask = json.loads(body)
        if not isinstance(ask, dict) or ask.get("node") != node:
            raise RelayError("forbidden", "the body's node is not the signing node")
        return node, ask


def signed_headers(secret: str, path: str, node: str, stamp: str, body: bytes) -> dict[str, str]:
    """The headers of a signed JSON ``POST`` to ``path`` from ``node``."""
    return {
        NODE_HEADER: node,
        TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, "POST", path, stamp, node, body),
    }
