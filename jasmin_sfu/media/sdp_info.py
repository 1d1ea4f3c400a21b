"""What the forwarding core needs from an SDP: per m-section SSRCs, codecs, extensions."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription

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


def sections(sdp: str) -> list[SectionInfo]:
    """Per m-section info of an SDP (audio and video only)."""
    desc = parse_sdp(sdp)
    out = []
    for m in desc.media:
        if m.kind not in ("audio", "video"):
            continue
        info = SectionInfo(kind=m.kind, mid=m.rtp.muxId or None, direction=m.direction)
        fid = [g for g in m.ssrc_group if g.semantic == "FID" and len(g.items) >= 2]
        if fid:
            info.ssrc, info.rtx_ssrc = int(fid[0].items[0]), int(fid[0].items[1])
        elif m.ssrc:
            info.ssrc = int(m.ssrc[0].ssrc)
        info.codecs = list(m.rtp.codecs)
        info.extensions = {e.uri: e.id for e in m.rtp.headerExtensions}
        out.append(info)
    return out
