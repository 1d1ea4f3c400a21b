"""What the forwarding core needs from an SDP: per m-section SSRCs, codecs, extensions."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import MediaDescription, SessionDescription

from .errors import SdpError

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


@dataclass
class SectionInfo:
    kind: str
    mid: str | None
    direction: str | None
    ssrc: int | None = None
    rtx_ssrc: int | None = None
    codecs: list[RTCRtpCodecParameters] = field(default_factory=list)
    extensions: dict[str, int] = field(default_factory=dict)  # uri -> id

    @property
    def media_codec(self) -> RTCRtpCodecParameters | None:
        for c in self.codecs:
            if not c.mimeType.lower().endswith("/rtx"):
                return c
        return None

    def rtx_payload_type(self, apt: int) -> int | None:
        for c in self.codecs:
            if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == apt:
                return c.payloadType
        return None


def parse_sdp(sdp: str) -> SessionDescription:
    """Parse an SDP, turning any parser failure into :class:`SdpError`."""
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise SdpError("SDP must start with v=0")
    try:
        return SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError...
        raise SdpError(f"SDP does not parse: {exc}") from None


def _ssrc(value: object, where: str) -> int:
    try:
        ssrc = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise SdpError(f"{where}: SSRC {value!r} is not a number") from None
    if not 0 <= ssrc <= 0xFFFFFFFF:
        raise SdpError(f"{where}: SSRC {ssrc} out of range 0..4294967295")
    return ssrc


def _check_section(m: MediaDescription, where: str) -> None:
    """Refuse numbers the forwarding core cannot use, and a section no DTLS can start on.

    aiortc parses these into Python ints without a range check; an id out of
    range used to surface later as a ValueError (``internal``) or an
    AssertionError in aiortc's connect task.
    """
    if m.port != 0 and (m.dtls is None or not m.dtls.fingerprints):
        raise SdpError(f"{where}: no a=fingerprint (and a=setup): DTLS cannot start")
    ids: set[int] = set()
    for e in m.rtp.headerExtensions:
        # RFC 8285: ids 1-14 (one-byte form) or 1-255 (two-byte form); 15 is reserved.
        if not 1 <= e.id <= 255 or e.id == 15:
            raise SdpError(f"{where}: a=extmap id {e.id} out of range 1-14, 16-255")
        if e.id in ids:
            raise SdpError(f"{where}: a=extmap id {e.id} used twice")
        ids.add(e.id)
    for desc in m.ssrc:
        _ssrc(desc.ssrc, where)
    for group in m.ssrc_group:
        for item in group.items:
            _ssrc(item, where)
    for c in m.rtp.codecs:
        if c.payloadType is None or not 0 <= c.payloadType <= 127:
            raise SdpError(f"{where}: payload type {c.payloadType} out of range 0-127")
        if not c.clockRate or c.clockRate <= 0:
            raise SdpError(f"{where}: {c.mimeType} has no positive clock rate")


def sections(sdp: str) -> list[SectionInfo]:
    """Per m-section info of an SDP (audio and video only); numbers out of range are :class:`SdpError`."""
    desc = parse_sdp(sdp)
    out = []
    for index, m in enumerate(desc.media):
        if m.kind not in ("audio", "video"):
            continue
        where = f"m-section {index} ({m.kind})"
        _check_section(m, where)
        info = SectionInfo(kind=m.kind, mid=m.rtp.muxId or None, direction=m.direction)
        fid = [g for g in m.ssrc_group if g.semantic == "FID" and len(g.items) >= 2]
        if fid:
            info.ssrc, info.rtx_ssrc = _ssrc(fid[0].items[0], where), _ssrc(fid[0].items[1], where)
        elif m.ssrc:
            info.ssrc = _ssrc(m.ssrc[0].ssrc, where)
        info.codecs = list(m.rtp.codecs)
        info.extensions = {e.uri: e.id for e in m.rtp.headerExtensions}
        out.append(info)
    return out
