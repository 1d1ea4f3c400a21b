"""Errors raised by the packet parsers in :mod:`jasmin_codecs`."""

from __future__ import annotations

__all__ = ["MalformedPacket", "MalformedSdp"]


class MalformedPacket(ValueError):
    """A packet could not be parsed.

    ``reason`` is a short, stable slug meant to be used directly as a metric
    label (``too_short``, ``bad_version``, ``bad_csrc``, ``bad_extension``,
    ``bad_padding``, ``bad_length``, ``unknown_type``, ``bad_vp8`` ...), so the
    set of values must stay small and must never contain packet data.
    ``detail`` is free-form text for logs only.
    """

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str = "") -> None:
        # Subclassing ValueError keeps callers that already catch ValueError
        # (the aiortc convention for parse errors) working unchanged.
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MalformedSdp(ValueError):
    """An SDP section (``a=simulcast``, ``a=rid``) cannot be used.

    The message names the problem and the offending value, in words a
    publisher's developer can act on; the signaling edge returns it as
    ``bad_sdp``.  Subclassing ValueError keeps it catchable like the
    other parse errors.
    """
