"""Signaling error codes: the only place domain errors become wire codes."""

from __future__ import annotations

from typing import Any

# code -> one-line meaning (docs/signaling.md lists the same table).
ERROR_CODES: dict[str, str] = {
    "bad_frame": "the frame is not valid JSON / msgpack, or not an object",
    "frame_too_large": "the frame is larger than max_frame_bytes",
    "hello_required": "the first frame must be a hello",
    "unsupported_protocol": "the hello names a protocol version this server does not speak",
    "bad_request": "a field is missing or has the wrong type",
    "unknown_method": "no such method",
    "duplicate_request_id": "this request id was already used on this connection",
    "rate_limited": "too many requests; slow down",
    "not_joined": "join a show first",
    "already_joined": "this connection already joined a show",
    "forbidden": "the caller's role may not do this",
    "unknown_show": "no such show",
    "unknown_producer": "no such producer in this show",
    "unknown_transport": "no such transport on this connection",
    "unknown_consumer": "no such consumer on this connection",
    "no_producers": "the show has nothing published yet",
    "already_publishing": "this connection already publishes",
    "bad_sdp": "the SDP does not parse or cannot be used",
    "unsupported_codec": "no codec in common",
    "invalid_state": "the object is closed or not ready for this",
    "private_busy": "the performer is already in a private",
    "insufficient_credits": "the member's credits do not pay for one second of this private",
    "already_requested": "a private request from this member is pending",
    "unauthorized": "the token is missing, malformed, unknown, expired or revoked",
    "adult_confirmation_required": "confirm being 18 or older first (docs/product.md: before any content)",
    "banned": "banned from this room (chat and joining); `until` says till when (null: for ever)",
    "muted": "timed out in this room's chat; `until` says till when",
    "unknown_message": "no such chat message in this room",
    "idempotency_conflict": "this idempotency key (tip_id) was already used for a different request",
    "overloaded": "the node is past its capacity and refused this join at once; `reason`, `retry_after_ms`",
    "cam2cam_unavailable": "Cam2Cam through an edge node: the show's node cannot be reached now",
    "moved": "another node of the site holds this show: connect to `url` and join there (`node`, `http_url`)",
    "internal": "an unexpected server error; the connection stays up",
}


class SignalingError(Exception):
    """An error answered to the client as ``{code, message}``, plus ``extra`` fields
    where the code's documentation names them (``overloaded``: ``reason``, ``retry_after_ms``;
    ``moved``: ``url``, ``node``, ``http_url``)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown signaling error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra

    def to_wire(self) -> dict[str, Any]:
        return {**self.extra, "code": self.code, "message": self.message}
