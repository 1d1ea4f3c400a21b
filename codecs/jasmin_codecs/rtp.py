"""RTP packet parsing and building (RFC 3550) and header extensions (RFC 8285).

The forwarding path of the SFU touches every packet, so the parser here does
the minimum an SFU needs: it validates the framing, reads the fixed header,
and reports *where* the extension block and the payload are, without copying
the payload.  Header extension elements are decoded only on demand
(:func:`parse_extensions`, :class:`ExtensionRewriter`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import MalformedPacket

__all__ = [
    "RTP_HEADER_SIZE",
    "ONE_BYTE_PROFILE",
    "TWO_BYTE_PROFILE",
    "is_rtcp",
    "RtpHeader",
    "RtpSplit",
    "split_rtp",
    "parse_rtp",
    "parse_extensions",
    "build_extensions",
    "extension_section",
    "ExtensionRewriter",
    "build_rtp",
    "ABS_SEND_TIME_URI",
    "abs_send_time",
    "set_one_byte_extension",
]

#: The abs-send-time header extension (webrtc.org): the sender's 24-bit 6.18 fixed-point send time.
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

RTP_HEADER_SIZE = 12
#: RFC 8285 one-byte header form ("BEDE").
ONE_BYTE_PROFILE = 0xBEDE
#: RFC 8285 two-byte header form; the low 4 bits ("appbits") may be anything.
TWO_BYTE_PROFILE = 0x1000

_FIXED = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
# One precompiled struct per possible CSRC count: avoids building a format
# string per packet.
_CSRC_STRUCTS = tuple(struct.Struct(f"!{n}I") for n in range(16))


def is_rtcp(data: bytes) -> bool:
    """Return True when a datagram on an RTP/RTCP-muxed port is RTCP (RFC 5761 section 4).

    RTCP packet types 192-223 land, once the RTP marker bit is masked off, in
    64-95, a payload-type range RTP must not use when muxing.  (aiortc's own
    check stops at 208 and would misroute e.g. RTCP type 210.)
    """
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95


@dataclass(slots=True)
class RtpHeader:
    """The parsed header of one RTP packet, plus where its payload lies.

    The payload is ``data[payload_offset:payload_end]``; ``padding`` is the
    number of padding bytes at the end of the packet (0 when the P bit is
    clear).  ``ext_profile`` is None when the packet has no extension block;
    ``ext_data`` is the block body without its 4-byte profile/length header.
    """

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    ext_profile: int | None
    ext_data: bytes
    payload_offset: int
    payload_end: int
    padding: int


RtpSplit = tuple[int, int, int, int, int, int, int | None, int, int]
"""What :func:`split_rtp` returns, in this order:

``(b0, b1, sequence, timestamp, ssrc, csrc_end, ext_profile, payload_offset, padding)``

``b0``/``b1`` are the first two header bytes as they are (V/P/X/CC and M/PT);
the CSRC list is ``data[12:csrc_end]``; ``ext_profile`` is None without an
extension block, else the block's body is ``data[csrc_end + 4:payload_offset]``;
the payload is ``data[payload_offset:len(data) - padding]``.
"""


def split_rtp(data: bytes) -> RtpSplit:
    """Validate the framing of an RTP packet and return where its parts lie.

    This is the one RTP header parser of the project: the SFU's hot path
    (``Producer.on_rtp``, ``on_rtx``, ``tail_for``) calls it per packet, and
    :func:`parse_rtp` builds its :class:`RtpHeader` on it.  It is a plain
    function returning a tuple (:data:`RtpSplit`) and copies nothing, because
    an object per packet measurably costs on the hot path.

    Raises :class:`MalformedPacket` with reason ``too_short`` (under 12 bytes),
    ``bad_version`` (version is not 2), ``bad_csrc`` (CSRC list runs past the
    end), ``bad_extension`` (extension header or body runs past the end) or
    ``bad_padding`` (P bit set but the padding count is 0 or larger than what
    follows the header), checked in that order.
    """
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise MalformedPacket("too_short", f"{n} bytes")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 & 0xC0 != 0x80:
        raise MalformedPacket("bad_version", f"version {b0 >> 6}")
    csrc_end = RTP_HEADER_SIZE + ((b0 & 0x0F) << 2)
    if csrc_end > n:
        raise MalformedPacket("bad_csrc", f"{b0 & 0x0F} CSRCs in {n} bytes")
    if b0 & 0x10:
        if csrc_end + 4 > n:
            raise MalformedPacket("bad_extension", "truncated extension header")
        ext_profile, words = _EXT_HEADER.unpack_from(data, csrc_end)
        payload_offset = csrc_end + 4 + (words << 2)
        if payload_offset > n:
            raise MalformedPacket("bad_extension", f"{words} extension words past the end")
    else:
        ext_profile = None
        payload_offset = csrc_end
    if b0 & 0x20:
        padding = data[-1]
        # The count includes itself, so 0 is impossible; and padding may not eat
        # into the header.
        if padding == 0 or padding > n - payload_offset:
            raise MalformedPacket("bad_padding", f"padding {padding} with {n - payload_offset} bytes left")
    else:
        padding = 0
    return b0, b1, sequence, timestamp, ssrc, csrc_end, ext_profile, payload_offset, padding


def parse_rtp(data: bytes) -> RtpHeader:
    """Parse and validate the header of an RTP packet (:func:`split_rtp`, as an object).

    Raises :class:`MalformedPacket` exactly as :func:`split_rtp` does.
    """
    b0, b1, sequence, timestamp, ssrc, csrc_end, ext_profile, payload_offset, padding = split_rtp(data)
    cc = b0 & 0x0F
    csrcs: tuple[int, ...] = _CSRC_STRUCTS[cc].unpack_from(data, RTP_HEADER_SIZE) if cc else ()
    return RtpHeader(
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrcs=csrcs,
        ext_profile=ext_profile,
        ext_data=data[csrc_end + 4 : payload_offset] if ext_profile is not None else b"",
        payload_offset=payload_offset,
        payload_end=len(data) - padding,
        padding=padding,
    )


def parse_extensions(profile: int, ext_data: bytes) -> list[tuple[int, bytes]]:
    """Decode RFC 8285 header extension elements as ``(id, value)`` pairs, in wire order.

    ``profile`` 0xBEDE selects the one-byte form (ids 1-14; id 15 ends parsing
    as RFC 8285 section 4.2 requires), 0x1000-0x100F the two-byte form.  Zero
    bytes between elements are padding and skipped.  Any other profile is not
    RFC 8285 and yields no elements.

    Raises ``MalformedPacket("bad_extension")`` when an element runs past the
    end of ``ext_data``.
    """
    out: list[tuple[int, bytes]] = []
    n = len(ext_data)
    pos = 0
    if profile == ONE_BYTE_PROFILE:
        while pos < n:
            b = ext_data[pos]
            if b == 0:
                pos += 1
                continue
            xid = b >> 4
            # 15 is the reserved "stop" id.  An id of 0 with a non-zero length
            # nibble is not padding and not a valid element: like libwebrtc we
            # stop there and keep what came before.
            if xid == 15 or xid == 0:
                break
            end = pos + 2 + (b & 0x0F)
            if end > n:
                raise MalformedPacket("bad_extension", f"one-byte element {xid} truncated")
            out.append((xid, ext_data[pos + 1 : end]))
            pos = end
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos < n:
            xid = ext_data[pos]
            if xid == 0:
                pos += 1
                continue
            if pos + 2 > n:
                raise MalformedPacket("bad_extension", f"two-byte element {xid} truncated")
            end = pos + 2 + ext_data[pos + 1]
            if end > n:
                raise MalformedPacket("bad_extension", f"two-byte element {xid} truncated")
            out.append((xid, ext_data[pos + 2 : end]))
            pos = end
    return out


def build_extensions(elements: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    """Encode ``(id, value)`` elements; return ``(profile, body)``, body padded to 4 bytes.

    The one-byte form (0xBEDE) is used when every id is 1-14 and every value
    is 1-16 bytes long, since it is smaller and is what every browser
    negotiates by default; otherwise the two-byte form (0x1000), which allows
    ids up to 255 and values of 0-255 bytes.  An empty list gives ``(0, b"")``.

    Raises ValueError for elements that fit neither form.
    """
    if not elements:
        return 0, b""
    buf = bytearray()
    one_byte = True
    for xid, value in elements:
        if not (1 <= xid <= 14 and 1 <= len(value) <= 16):
            one_byte = False
            break
    if one_byte:
        profile = ONE_BYTE_PROFILE
        for xid, value in elements:
            buf.append((xid << 4) | (len(value) - 1))
            buf += value
    else:
        profile = TWO_BYTE_PROFILE
        for xid, value in elements:
            if not 1 <= xid <= 255 or len(value) > 255:
                raise ValueError(f"extension element {xid} ({len(value)} bytes) fits no RFC 8285 form")
            buf.append(xid)
            buf.append(len(value))
            buf += value
    buf += bytes(-len(buf) & 3)
    return profile, bytes(buf)


def extension_section(profile: int | None, ext_data: bytes) -> bytes:
    """Return the extension block as it sits in a packet: profile, length in words, body.

    ``ext_data`` must already be a multiple of 4 bytes long (as from
    :func:`parse_rtp` or :func:`build_extensions`).  ``profile`` None gives
    ``b""`` (no extension), so ``extension_section(h.ext_profile, h.ext_data)``
    always yields what :func:`build_rtp` expects.
    """
    if profile is None:
        return b""
    if len(ext_data) & 3:
        raise ValueError("extension body is not a multiple of 4 bytes")
    return _EXT_HEADER.pack(profile, len(ext_data) >> 2) + ext_data


class ExtensionRewriter:
    """Rewrite a packet's header extensions for one outgoing leg.

    Each PeerConnection negotiates its own extension ids, so forwarding a
    packet means renumbering ids, dropping the extensions the viewer did not
    negotiate, and stamping leg-specific values (the viewer's MID).

    ``id_map`` maps incoming id -> outgoing id; incoming ids absent from it are
    dropped.  ``replace`` maps an *outgoing* id to a fixed value: an element
    mapped to that id gets this value instead of the incoming one, and when
    no incoming element maps to it the element is appended, so every forwarded
    packet carries it.  That matters for the MID: browsers stop sending it
    once the far end has latched the SSRC, but a viewer who joins later still
    needs it on the packets it receives.

    One rewriter is built per (incoming, outgoing) extension profile pair and
    keeps no per-packet state, so it may be shared by every viewer with the
    same negotiated ids.
    """

    __slots__ = ("_table", "_replace", "_identity", "_one_byte_out", "_replace_one_byte")

    def __init__(self, id_map: dict[int, int], replace: dict[int, bytes] | None = None) -> None:
        """Validate the maps and precompute a lookup table (ids are 1..255)."""
        table = [0] * 256
        seen: set[int] = set()
        for in_id, out_id in id_map.items():
            if not (1 <= in_id <= 255 and 1 <= out_id <= 255):
                raise ValueError(f"extension id mapping {in_id}->{out_id} out of range 1..255")
            if out_id in seen:
                # Two elements with one id in a packet would be ambiguous to the receiver.
                raise ValueError(f"outgoing extension id {out_id} mapped twice")
            seen.add(out_id)
            table[in_id] = out_id
        # A list indexed by id is measurably faster than dict.get on the hot path.
        self._table = table
        self._replace: dict[int, bytes] = dict(replace or {})
        for out_id, value in self._replace.items():
            if not 1 <= out_id <= 255 or len(value) > 255:
                raise ValueError(f"replacement for extension id {out_id} out of range")
        # Per-id bitmap of "maps to itself"; only consulted when nothing is replaced.
        self._identity = [i != 0 and table[i] == i for i in range(256)] if not self._replace else None
        # When every outgoing id and replacement fits the one-byte form, a
        # one-byte incoming block (whose values are always 1-16 bytes) can be
        # rewritten in a single streaming pass: the browser-to-browser case.
        self._one_byte_out = all(o <= 14 for o in id_map.values()) and all(
            o <= 14 and 1 <= len(v) <= 16 for o, v in self._replace.items()
        )
        self._replace_one_byte = (
            {o: bytes(((o << 4) | (len(v) - 1),)) + v for o, v in self._replace.items()} if self._one_byte_out else {}
        )

    def rewrite(self, profile: int | None, ext_data: bytes) -> bytes:
        """Return the extension section for the outgoing packet.

        ``profile``/``ext_data`` are :attr:`RtpHeader.ext_profile` and
        :attr:`RtpHeader.ext_data`.  The result is the 4-byte profile/length
        header followed by the padded body, ready for
        :func:`build_rtp`'s ``ext_section``, or ``b""`` when no element
        remains.  When every element present maps to its own id and nothing is
        replaced, the incoming section is returned byte for byte.

        Raises ``MalformedPacket("bad_extension")`` for a malformed incoming block.
        """
        if profile == ONE_BYTE_PROFILE and self._one_byte_out:
            return self._rewrite_one_byte(ext_data)
        elements = parse_extensions(profile, ext_data) if profile is not None else []
        identity = self._identity
        if identity is not None and elements and profile is not None:
            for xid, _ in elements:
                if not identity[xid]:
                    break
            else:
                return _EXT_HEADER.pack(profile, len(ext_data) >> 2) + ext_data

        table = self._table
        replace = self._replace
        out: list[tuple[int, bytes]] = []
        if replace:
            pending = dict(replace)
            for xid, value in elements:
                out_id = table[xid]
                if out_id:
                    rep = pending.pop(out_id, None)
                    if rep is not None:
                        out.append((out_id, rep))
                    elif out_id not in replace:
                        out.append((out_id, value))
                    # else: a second element mapping to an already replaced id; drop it.
            out.extend(pending.items())
        else:
            for xid, value in elements:
                out_id = table[xid]
                if out_id:
                    out.append((out_id, value))
        if not out:
            return b""
        out_profile, body = build_extensions(out)
        return _EXT_HEADER.pack(out_profile, len(body) >> 2) + body

    def _rewrite_one_byte(self, ext_data: bytes) -> bytes:
        """One-pass rewrite of a one-byte block into a one-byte block (same result as the general path)."""
        table = self._table
        identity = self._identity
        same = identity is not None  # still an identity rewrite of everything seen?
        replace = self._replace_one_byte
        done: set[int] | None = None  # replacement ids already written
        buf = bytearray()
        n = len(ext_data)
        pos = 0
        while pos < n:
            b = ext_data[pos]
            if b == 0:
                pos += 1
                continue
            xid = b >> 4
            if xid == 15 or xid == 0:
                break
            end = pos + 2 + (b & 0x0F)
            if end > n:
                raise MalformedPacket("bad_extension", f"one-byte element {xid} truncated")
            out_id = table[xid]
            if out_id != xid:
                same = False
            if out_id:
                if replace and out_id in replace:
                    if done is None:
                        done = set()
                    if out_id not in done:
                        done.add(out_id)
                        buf += replace[out_id]
                else:
                    buf.append((out_id << 4) | (b & 0x0F))
                    buf += ext_data[pos + 1 : end]
            pos = end
        if same and buf:
            return _EXT_HEADER.pack(ONE_BYTE_PROFILE, n >> 2) + ext_data
        for out_id, encoded in replace.items():
            if done is None or out_id not in done:
                buf += encoded
        if not buf:
            return b""
        buf += bytes(-len(buf) & 3)
        return _EXT_HEADER.pack(ONE_BYTE_PROFILE, len(buf) >> 2) + buf


def build_rtp(
    *,
    marker: bool,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    csrcs: tuple[int, ...] = (),
    ext_section: bytes = b"",
    padding: int = 0,
) -> bytes:
    """Serialize an RTP packet.

    ``ext_section`` is a complete extension block (profile, length, body) as
    returned by :meth:`ExtensionRewriter.rewrite` or
    :func:`extension_section`; empty means no X bit.  ``padding`` is the total
    number of padding bytes (1-255, including the trailing count byte); they
    are zeros, so the output is deterministic (aiortc uses random bytes).

    Raises ValueError for out-of-range fields or an inconsistent ``ext_section``.
    """
    cc = len(csrcs)
    if cc > 15:
        raise ValueError(f"{cc} CSRCs, at most 15 fit")
    if payload_type & ~0x7F:
        raise ValueError(f"payload type {payload_type} out of range 0..127")
    if not 0 <= padding <= 255:
        raise ValueError(f"padding {padding} out of range 0..255")
    b0 = 0x80 | cc
    if ext_section:
        n_ext = len(ext_section)
        # Checking the length word is cheap and a wrong one desynchronizes the
        # receiver's parser for the whole packet.
        if n_ext < 4 or n_ext & 3 or ((ext_section[2] << 8) | ext_section[3]) * 4 + 4 != n_ext:
            raise ValueError("ext_section is not a well-formed extension block")
        b0 |= 0x10
    if padding:
        b0 |= 0x20
    parts = [
        _FIXED.pack(b0, (0x80 if marker else 0) | payload_type, sequence, timestamp, ssrc),
    ]
    if cc:
        parts.append(_CSRC_STRUCTS[cc].pack(*csrcs))
    if ext_section:
        parts.append(ext_section)
    parts.append(payload)
    if padding:
        parts.append(bytes(padding - 1) + bytes((padding,)))
    return b"".join(parts)


def abs_send_time(seconds: float) -> bytes:
    """The 3-byte abs-send-time value of a time in seconds (6.18 fixed point, wrapping every 64 s)."""
    return (int(seconds * 262144.0) & 0xFFFFFF).to_bytes(3, "big")


def set_one_byte_extension(ext_data: bytes, xid: int, value: bytes) -> bytes:
    """``ext_data`` (a one-byte-form block, RFC 8285) with element ``xid``'s value replaced
    by ``value`` of the same length; unchanged when that element is absent, of another
    length, or the block is malformed (the rewriter that follows reports that)."""
    n = len(ext_data)
    pos = 0
    size = len(value)
    while pos < n:
        b = ext_data[pos]
        if b == 0:
            pos += 1
            continue
        i = b >> 4
        if i == 15:
            break
        end = pos + 2 + (b & 0x0F)
        if i == xid:
            if end - pos - 1 == size and end <= n:
                return ext_data[: pos + 1] + value + ext_data[end:]
            break
        pos = end
    return ext_data
