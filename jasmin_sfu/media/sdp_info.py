"""What the forwarding core needs from an SDP: per m-section SSRCs, codecs, extensions, simulcast.

aiortc knows no simulcast: :func:`sections` reads a section's ``a=simulcast``
and ``a=rid`` lines itself (``jasmin_codecs.simulcast``), and
:func:`answer_simulcast` is the one place the answer aiortc wrote is changed
so a simulcast publisher sends its layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import MediaDescription, SessionDescription

from jasmin_codecs.errors import MalformedSdp
from jasmin_codecs.simulcast import REPAIRED_RID_URI, RID_URI, SimulcastSection, parse_simulcast

from .errors import SdpError

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
# Chromium (156) refuses RIDs with '-' or '_' and longer than 16 characters,
# though RFC 8851 allows both: a viewer page could never echo them.
_CHROMIUM_RID = re.compile(r"[A-Za-z0-9]{1,16}")


@dataclass
class SectionInfo:
    kind: str
    mid: str | None
    direction: str | None
    ssrc: int | None = None
    rtx_ssrc: int | None = None
    codecs: list[RTCRtpCodecParameters] = field(default_factory=list)
    extensions: dict[str, int] = field(default_factory=dict)  # uri -> id
    # The section's send simulcast (a=simulcast, a=rid), None without it.
    simulcast: SimulcastSection | None = None

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


def _section_lines(sdp: str) -> list[list[str]]:
    """The lines of each m-section, from its m= line on, in order."""
    out: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append([line])
        elif out:
            out[-1].append(line)
    return out


def _simulcast(lines: list[str], where: str) -> SimulcastSection | None:
    try:
        sim = parse_simulcast(lines)
    except MalformedSdp as exc:
        raise SdpError(f"{where}: {exc}") from None
    if sim is not None:
        for rid in sim.rids:
            if not _CHROMIUM_RID.fullmatch(rid):
                raise SdpError(f"{where}: rid {rid!r}: use 1-16 letters or digits (browsers refuse '-' and '_')")
    return sim


def sections(sdp: str) -> list[SectionInfo]:
    """Per m-section info of an SDP (audio and video only); numbers out of range,
    a malformed ``a=simulcast``/``a=rid``, more than 3 layers and RIDs browsers
    refuse are :class:`SdpError` naming the problem."""
    desc = parse_sdp(sdp)
    raw = _section_lines(sdp)
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
        if index < len(raw) and m.direction in ("sendonly", "sendrecv", None):
            # Only a sending section's simulcast is read: our own answers and a
            # receiving viewer's (a=simulcast:recv) have nothing for the node.
            info.simulcast = _simulcast(raw[index], where)
        out.append(info)
    return out


def answer_simulcast(answer_sdp: str, offered: list[SectionInfo]) -> str:
    """The answer with, in each m-section answering a simulcast offer (matched by
    mid), the receive side of its simulcast: ``a=simulcast:recv`` and one
    ``a=rid:<rid> recv`` per offered RID, and the MID, RID and repaired-RID
    ``a=extmap`` lines of the offer that aiortc left out (the publisher sends the
    RIDs only when the answer accepts their extension). Other sections are unchanged.
    """
    wanted = {s.mid: s for s in offered if s.simulcast is not None and s.mid is not None}
    if not wanted:
        return answer_sdp
    eol = "\r\n" if "\r\n" in answer_sdp else "\n"
    lines = answer_sdp.split(eol)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.startswith("m="):
            continue
        section = []
        while i < len(lines) and not lines[i].startswith("m="):
            section.append(lines[i])
            i += 1
        mid = next((x[6:] for x in section if x.startswith("a=mid:")), None)
        off = wanted.get(mid) if mid is not None else None
        if off is None or off.simulcast is None:
            out.extend(section)
            continue
        have = {x.split(" ", 1)[1] for x in section if x.startswith("a=extmap:") and " " in x}
        extra = [
            f"a=extmap:{off.extensions[uri]} {uri}"
            for uri in (MID_URI, RID_URI, REPAIRED_RID_URI)
            if uri in off.extensions and uri not in have
        ]
        sim = off.simulcast
        extra += [f"a=rid:{rid} recv" for rid in sim.rids]
        extra.append(
            "a=simulcast:recv " + ";".join(",".join(a.rid.rid for a in layer.alternatives) for layer in sim.layers)
        )
        # After the last non-empty line of the section (the SDP ends with an empty "line").
        end = len(section)
        while end and not section[end - 1]:
            end -= 1
        out.extend(section[:end] + extra + section[end:])
    return eol.join(out)
