"""Simulcast in SDP (RFC 8853 ``a=simulcast``, RFC 8851 ``a=rid``) and the RID header extensions.

A simulcast publisher (Chromium, Firefox with ``sendEncodings``) sends up to
three encodings of one track in one m-section, told apart by a RID
(restriction identifier): the section names them in ``a=rid`` and
``a=simulcast`` lines and carries no ``a=ssrc``, and each RTP stream says its
RID in a header extension until the receiver has learnt its SSRC.

:func:`parse_simulcast` validates one m-section's lines and returns what the
node needs, or raises :class:`MalformedSdp` naming the problem (the signaling
edge answers it as ``bad_sdp``).  :func:`read_rid` and
:func:`read_repaired_rid` read the RID of one packet.  Pure and synchronous.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import MalformedPacket, MalformedSdp
from .rtp import parse_extensions

__all__ = [
    "MAX_RID_LENGTH",
    "MAX_SIMULCAST_LAYERS",
    "RID_URI",
    "REPAIRED_RID_URI",
    "RidDescription",
    "SimulcastAlternative",
    "SimulcastLayer",
    "SimulcastSection",
    "is_valid_rid",
    "parse_simulcast",
    "read_repaired_rid",
    "read_rid",
]

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
#: A RID travels in a header extension, whose one-byte form holds 16 bytes at
#: most; libwebrtc refuses longer RIDs for the same reason.
MAX_RID_LENGTH = 16
#: Spatial layers one publisher may send (LiveKit, mediasoup and Chromium's
#: default all stop at 3).
MAX_SIMULCAST_LAYERS = 3

# RFC 8851 section 10: rid-id = 1*(alpha-numeric / "-" / "_").
_RID_RE = re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_RID_LENGTH)
_RID_BYTES_RE = re.compile(rb"[A-Za-z0-9_-]{1,%d}" % MAX_RID_LENGTH)
# param-name = 1*(alpha-numeric / "-"); param-val = *(%x20-3A / %x3C-7E).
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9-]+")
_PARAM_VAL_RE = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_INT_RE = re.compile(r"[0-9]{1,10}")
_FLOAT_RE = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")
_INT_PARAMS = ("max-width", "max-height", "max-fs", "max-br", "max-pps")
_FLOAT_PARAMS = ("max-fps", "max-bpp")
_MAX_INT = 2**31 - 1


def _show(text: str) -> str:
    """Quote a piece of the offer for an error message, cut at 40 characters (messages go back to the client)."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def is_valid_rid(rid: str) -> bool:
    """Return True when ``rid`` is an RFC 8851 rid-id of at most :data:`MAX_RID_LENGTH` characters."""
    return _RID_RE.fullmatch(rid) is not None


@dataclass(frozen=True, slots=True)
class RidDescription:
    """One ``a=rid`` line: its id, direction and restrictions (None: not restricted).

    ``payload_types`` is empty when the line has no ``pt=`` (every payload
    type of the section may be used).  Restrictions RFC 8851 defines but the
    node does not use (``depend`` and unknown ones) are accepted and ignored,
    as the RFC asks.
    """

    rid: str
    direction: str
    payload_types: tuple[int, ...] = ()
    max_width: int | None = None
    max_height: int | None = None
    max_fps: float | None = None
    max_fs: int | None = None
    max_br: int | None = None
    max_pps: int | None = None
    max_bpp: float | None = None


@dataclass(frozen=True, slots=True)
class SimulcastAlternative:
    """One RID of an ``a=simulcast`` stream; ``paused`` is the ``~`` prefix."""

    rid: RidDescription
    paused: bool


@dataclass(frozen=True, slots=True)
class SimulcastLayer:
    """One simulcast stream (a spatial layer): its RID and any alternatives, in preference order."""

    alternatives: tuple[SimulcastAlternative, ...]

    @property
    def rid(self) -> str:
        """The preferred RID of this layer."""
        return self.alternatives[0].rid.rid

    @property
    def paused(self) -> bool:
        """True when every alternative starts paused (``~``)."""
        return all(a.paused for a in self.alternatives)


@dataclass(frozen=True, slots=True)
class SimulcastSection:
    """The send simulcast of one m-section: its layers in the offer's order.

    The order is the publisher's (Chromium follows ``sendEncodings``), not a
    quality order: which layer is larger shows in the media, or in the
    ``max-width``/``max-height`` restrictions when the publisher sends them.
    """

    layers: tuple[SimulcastLayer, ...]

    @property
    def rids(self) -> tuple[str, ...]:
        """Every RID the publisher may send, alternatives included, in offer order."""
        return tuple(a.rid.rid for layer in self.layers for a in layer.alternatives)


def _attribute(line: str) -> tuple[str, str] | None:
    """Split ``a=name:value`` into (name, value); None for other lines."""
    if not line.startswith("a="):
        return None
    name, _, value = line[2:].partition(":")
    return name, value


def _payload_types(m_line: str) -> set[int]:
    parts = m_line[2:].split()
    if len(parts) < 4:
        raise MalformedSdp(f"m-line {_show(m_line)} has no payload types")
    out: set[int] = set()
    for fmt in parts[3:]:
        if not _INT_RE.fullmatch(fmt) or int(fmt) > 127:
            raise MalformedSdp(f"m-line payload type {_show(fmt)} is not 0-127")
        out.add(int(fmt))
    return out


def _parse_rid(value: str, section_pts: set[int]) -> RidDescription:
    """Parse the value of one ``a=rid:`` line (RFC 8851 section 10)."""
    parts = value.split(" ")
    if len(parts) not in (2, 3):
        raise MalformedSdp(f"a=rid:{_show(value)}: expected 'a=rid:<id> send|recv [restrictions]'")
    rid, direction = parts[0], parts[1]
    if not is_valid_rid(rid):
        raise MalformedSdp(f"a=rid: rid {_show(rid)} is not 1-{MAX_RID_LENGTH} letters, digits, '-' or '_'")
    if direction not in ("send", "recv"):
        raise MalformedSdp(f"a=rid:{rid}: direction {_show(direction)} is not send or recv")
    payload_types: tuple[int, ...] = ()
    limits: dict[str, float] = {}  # restriction name -> value
    if len(parts) == 3:
        for n, param in enumerate(parts[2].split(";")):
            name, eq, val = param.partition("=")
            if name == "pt":
                if n != 0:
                    raise MalformedSdp(f"a=rid:{rid}: pt= must come first")
                pts: list[int] = []
                for fmt in val.split(","):
                    if not _INT_RE.fullmatch(fmt) or int(fmt) not in section_pts:
                        raise MalformedSdp(f"a=rid:{rid}: pt {_show(fmt)} is not a payload type of the m-section")
                    pts.append(int(fmt))
                payload_types = tuple(pts)
            elif not _PARAM_NAME_RE.fullmatch(name) or not _PARAM_VAL_RE.fullmatch(val):
                raise MalformedSdp(f"a=rid:{rid}: restriction {_show(param)} is malformed")
            elif name in limits:
                raise MalformedSdp(f"a=rid:{rid}: restriction {name} given twice")
            elif name in _INT_PARAMS or name in _FLOAT_PARAMS:
                pattern = _INT_RE if name in _INT_PARAMS else _FLOAT_RE
                if not eq or not pattern.fullmatch(val) or not 0 < float(val) <= _MAX_INT:
                    raise MalformedSdp(f"a=rid:{rid}: {name} {_show(val)} is not a positive number")
                limits[name] = float(val)
            # else: depend or an unknown restriction, ignored (RFC 8851 section 5).

    def whole(name: str) -> int | None:
        value = limits.get(name)
        return None if value is None else int(value)

    return RidDescription(
        rid=rid,
        direction=direction,
        payload_types=payload_types,
        max_width=whole("max-width"),
        max_height=whole("max-height"),
        max_fps=limits.get("max-fps"),
        max_fs=whole("max-fs"),
        max_br=whole("max-br"),
        max_pps=whole("max-pps"),
        max_bpp=limits.get("max-bpp"),
    )


def _parse_sc_list(value: str, rids: dict[str, RidDescription]) -> tuple[SimulcastLayer, ...]:
    """Parse an RFC 8853 sc-str-list: streams split by ';', alternatives by ','."""
    layers: list[SimulcastLayer] = []
    seen: set[str] = set()
    for stream in value.split(";"):
        alternatives: list[SimulcastAlternative] = []
        for sc_id in stream.split(","):
            paused = sc_id.startswith("~")
            rid = sc_id[1:] if paused else sc_id
            if not is_valid_rid(rid):
                raise MalformedSdp(
                    f"a=simulcast: rid {_show(rid)} is not 1-{MAX_RID_LENGTH} letters, digits, '-' or '_'"
                )
            if rid in seen:
                raise MalformedSdp(f"a=simulcast: rid {rid!r} named twice")
            seen.add(rid)
            desc = rids.get(rid)
            if desc is None:
                raise MalformedSdp(f"a=simulcast: rid {rid!r} has no a=rid line")
            if desc.direction != "send":
                raise MalformedSdp(f"a=simulcast: rid {rid!r} is a=rid {desc.direction}, not send")
            alternatives.append(SimulcastAlternative(desc, paused))
        layers.append(SimulcastLayer(tuple(alternatives)))
    if len(seen) > MAX_SIMULCAST_LAYERS:
        raise MalformedSdp(f"a=simulcast names {len(seen)} rids, at most {MAX_SIMULCAST_LAYERS} layers are supported")
    return tuple(layers)


def parse_simulcast(lines: Iterable[str]) -> SimulcastSection | None:
    """Validate the simulcast of one m-section; None when it has no ``a=simulcast``.

    ``lines`` are the section's lines from its ``m=`` line on (line endings
    are stripped here).  Accepted: one ``a=simulcast:send <list>`` line
    (RFC 8853: layers split by ``;``, alternatives by ``,``, ``~`` marks a
    paused RID) naming at most :data:`MAX_SIMULCAST_LAYERS` RIDs, each once,
    each with an ``a=rid:<id> send`` line whose ``pt=`` restriction (if any)
    names payload types of the m-line.  ``a=rid`` lines not named in
    ``a=simulcast`` are checked for syntax and otherwise ignored; a section
    with ``a=rid`` but no ``a=simulcast`` is not simulcast (None).

    Raises :class:`MalformedSdp` with a message naming the problem: a
    malformed line, a repeated ``a=simulcast`` or ``a=rid``, a receive
    simulcast (the node does not send simulcast), too many layers, a RID
    that is not an RFC 8851 rid-id of at most :data:`MAX_RID_LENGTH`
    characters, a RID without ``a=rid`` or with ``recv``, an unknown
    payload type in ``pt=``.
    """
    section_pts: set[int] | None = None
    rid_values: list[str] = []
    simulcast: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith("m="):
            if section_pts is not None:
                raise MalformedSdp("more than one m-line in one section")
            section_pts = _payload_types(line)
            continue
        attr = _attribute(line)
        if attr is None:
            continue
        if attr[0] == "rid":
            rid_values.append(attr[1])
        elif attr[0] == "simulcast":
            simulcast.append(attr[1])
    if not simulcast:
        return None
    if section_pts is None:
        raise MalformedSdp("a=simulcast outside an m-section")
    if len(simulcast) > 1:
        raise MalformedSdp("a=simulcast given more than once in one m-section")
    rids: dict[str, RidDescription] = {}
    for value in rid_values:
        desc = _parse_rid(value, section_pts)
        if desc.rid in rids:
            raise MalformedSdp(f"a=rid:{desc.rid} given twice")
        rids[desc.rid] = desc

    parts = simulcast[0].split(" ")
    if "recv" in parts[0::2]:
        raise MalformedSdp("a=simulcast recv is not supported: the node does not send simulcast")
    if len(parts) != 2 or parts[0] != "send" or not parts[1]:
        raise MalformedSdp(f"a=simulcast:{_show(simulcast[0])}: expected 'a=simulcast:send <rid>;<rid>...'")
    return SimulcastSection(_parse_sc_list(parts[1], rids))


def _read(profile: int | None, ext_data: bytes, ext_id: int) -> str | None:
    if profile is None:
        return None
    for xid, value in parse_extensions(profile, ext_data):
        if xid == ext_id:
            if _RID_BYTES_RE.fullmatch(value) is None:
                raise MalformedPacket("bad_rid", f"extension {xid}: {len(value)} bytes, not a rid-id")
            return value.decode("ascii")
    return None


def read_rid(profile: int | None, ext_data: bytes, ext_id: int) -> str | None:
    """Return the RID (:data:`RID_URI` negotiated as ``ext_id``) of a packet, or None.

    ``profile``/``ext_data`` are :attr:`RtpHeader.ext_profile` and
    :attr:`RtpHeader.ext_data`, decoded by :func:`parse_extensions` (the
    reader every extension goes through).  Publishers stop sending the RID
    once the SSRC is known, so this runs for the first packets of a stream,
    not on the steady forwarding path.  Raises ``MalformedPacket("bad_rid")``
    when the value is not a rid-id, ``MalformedPacket("bad_extension")``
    for a malformed block.
    """
    return _read(profile, ext_data, ext_id)


def read_repaired_rid(profile: int | None, ext_data: bytes, ext_id: int) -> str | None:
    """Return the repaired RID (:data:`REPAIRED_RID_URI` as ``ext_id``) of an RTX packet, or None.

    An RTX stream names the RID of the stream it repairs this way (RFC 8852),
    which is how its SSRC is tied to a layer.  Same errors as :func:`read_rid`.
    """
    return _read(profile, ext_data, ext_id)
