"""JSON text frames and msgpack binary frames carrying the same schema."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from .errors import SignalingError

PROTOCOL = "jasmin/1"


def decode_frame(raw: str | bytes) -> dict[str, Any]:
    """Decode one frame into a dict, or raise ``SignalingError('bad_frame')``."""
    try:
        if isinstance(raw, str):
            obj = json.loads(raw)
        else:
            obj = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:
        kind = "JSON" if isinstance(raw, str) else "msgpack"
        raise SignalingError("bad_frame", f"not valid {kind}: {str(exc)[:120]}") from None
    if not isinstance(obj, dict):
        raise SignalingError("bad_frame", "a frame must be an object/map")
    return obj


def encode_frame(obj: dict[str, Any], binary: bool) -> str | bytes:
    """Encode a frame: msgpack bytes when ``binary`` else compact JSON text (always valid UTF-8).

    msgpack raises for what it cannot carry (a lone surrogate, an integer
    beyond 64 bits); the session keeps such input from ever reaching here.
    """
    if binary:
        return bytes(msgpack.packb(obj, use_bin_type=True))
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 (a websocket text frame could not carry
        # it) but JSON can escape it: never let one string drop the connection.
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    return text
