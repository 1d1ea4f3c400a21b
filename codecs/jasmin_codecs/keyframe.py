"""Codec-independent keyframe detection, dispatching on the negotiated MIME type."""

from __future__ import annotations

from collections.abc import Callable

from .h264 import h264_is_keyframe
from .vp8 import vp8_is_keyframe

__all__ = ["KeyframeDetector", "keyframe_detector", "is_keyframe"]

KeyframeDetector = Callable[[bytes | bytearray | memoryview, int], bool]

_DETECTORS: dict[str, KeyframeDetector] = {
    "video/vp8": vp8_is_keyframe,
    "video/h264": h264_is_keyframe,
}


def keyframe_detector(mime: str) -> KeyframeDetector | None:
    """Return the keyframe test for ``mime`` (case-insensitive), or None if there is none.

    Lets a per-track hot path resolve the codec once instead of per packet.
    """
    return _DETECTORS.get(mime.lower())


def is_keyframe(mime: str, payload: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """Return True when ``payload`` (an RTP payload) begins a keyframe of codec ``mime``.

    Handles "video/VP8" and "video/H264" (case-insensitive); any other type,
    audio included, is never a keyframe.  Never raises on malformed payloads.
    """
    detector = _DETECTORS.get(mime.lower())
    return detector is not None and detector(payload, offset)
