"""Compound RTCP parsing and serialization (RFC 3550, RFC 4585, RFC 5104, REMB).

Every packet type the SFU reads or writes gets its own frozen dataclass;
everything else (APP, XR, transport-wide CC, other feedback formats) is kept
as :class:`UnknownRtcp` so it can be forwarded or re-serialized unchanged.

Parsing is strict about framing (version, length words, padding), because a
wrong length desynchronizes the rest of a compound packet, and lenient about
trailing bytes inside a packet that RFC 3550 allows profiles to add.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from .errors import MalformedPacket

__all__ = [
    "RTCP_SR",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_BYE",
    "RTCP_APP",
    "RTCP_RTPFB",
    "RTCP_PSFB",
    "RTCP_XR",
    "SDES_CNAME",
    "ReportBlock",
    "SenderReport",
    "ReceiverReport",
    "Sdes",
    "Bye",
    "Nack",
    "Pli",
    "Fir",
    "Remb",
    "UnknownRtcp",
    "RtcpPacket",
    "parse_rtcp",
    "serialize_rtcp",
    "nack_pairs",
    "ntp_to_compact",
    "ntp_now",
    "ntp_to_time",
    "NTP_UNIX_OFFSET",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTCP_XR = 207

SDES_CNAME = 1

_FMT_NACK = 1
_FMT_PLI = 1
_FMT_FIR = 4
_FMT_AFB = 15  # application layer feedback; REMB is recognised by its "REMB" tag

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_TWO_U32 = struct.Struct("!II")
_REPORT = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IQIII")
_NACK_PAIR = struct.Struct("!HH")
_FIR_ENTRY = struct.Struct("!IB3x")
_REMB_FIXED = struct.Struct("!II4sBBH")

_MAX_COUNT = 31  # the 5-bit count field
_LOST_MAX = 0x7FFFFF
_LOST_MIN = -0x800000

#: Seconds from the NTP epoch (1900) to the UNIX epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800


def _header(count: int, packet_type: int, body: bytes, padding: int = 0) -> bytes:
    """Common header for a body whose length (with padding) is a multiple of 4."""
    if not 0 <= count <= _MAX_COUNT:
        raise ValueError(f"RTCP count/FMT {count} out of range 0..31")
    total = len(body) + padding
    if total & 3:
        raise ValueError(f"RTCP body of {total} bytes is not a multiple of 4")
    b0 = 0x80 | count | (0x20 if padding else 0)
    return _HEADER.pack(b0, packet_type, total >> 2)


def _pad4(body: bytes) -> bytes:
    return body + bytes(-len(body) & 3)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1), as found in SR and RR.

    ``cumulative_lost`` is signed (duplicates can make it negative); values
    outside the 24-bit range are clamped on serialization, as the RFC asks.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int

    def to_bytes(self) -> bytes:
        """Serialize to the 24-byte wire form."""
        lost = min(max(self.cumulative_lost, _LOST_MIN), _LOST_MAX) & 0xFFFFFF
        return _REPORT.pack(
            self.ssrc,
            (self.fraction_lost << 24) | lost,
            self.highest_seq,
            self.jitter,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> ReportBlock:
        """Parse 24 bytes at ``offset`` (the caller checks the length)."""
        ssrc, word, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, offset)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr)


def _reports_bytes(reports: tuple[ReportBlock, ...]) -> bytes:
    return b"".join([r.to_bytes() for r in reports])


def _parse_reports(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock.from_bytes(body, offset + 24 * i) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """Sender report, PT 200.  ``ntp_timestamp`` is the full 64-bit NTP time."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        body = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        ) + _reports_bytes(self.reports)
        return _header(len(self.reports), RTCP_SR, body) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """Receiver report, PT 201."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        body = _U32.pack(self.ssrc) + _reports_bytes(self.reports)
        return _header(len(self.reports), RTCP_RR, body) + body


@dataclass(frozen=True, slots=True)
class Sdes:
    """Source description, PT 202: ``chunks`` is ``((ssrc, ((item_type, value), ...)), ...)``.

    Item type 1 is CNAME (:data:`SDES_CNAME`).
    """

    chunks: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]

    def to_bytes(self) -> bytes:
        """Serialize to wire form; each chunk ends with 1-4 null bytes up to a word boundary."""
        parts: list[bytes] = []
        for ssrc, items in self.chunks:
            chunk = bytearray(_U32.pack(ssrc))
            for item_type, value in items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise ValueError(f"SDES item {item_type} ({len(value)} bytes) out of range")
                chunk.append(item_type)
                chunk.append(len(value))
                chunk += value
            # The terminating null item plus padding: at least one zero byte.
            chunk += bytes(4 - (len(chunk) & 3))
            parts.append(bytes(chunk))
        body = b"".join(parts)
        return _header(len(self.chunks), RTCP_SDES, body) + body


@dataclass(frozen=True, slots=True)
class Bye:
    """Goodbye, PT 203, with an optional reason (at most 255 bytes)."""

    ssrcs: tuple[int, ...]
    reason: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        body = b"".join([_U32.pack(s) for s in self.ssrcs])
        if self.reason:
            if len(self.reason) > 255:
                raise ValueError("BYE reason longer than 255 bytes")
            body += _pad4(bytes((len(self.reason),)) + self.reason)
        return _header(len(self.ssrcs), RTCP_BYE, body) + body


def nack_pairs(lost: Iterable[int]) -> list[tuple[int, int]]:
    """Compress lost sequence numbers into generic NACK ``(pid, blp)`` pairs (RFC 4585 6.2.1).

    The numbers are de-duplicated and put in wraparound order: the sequence is
    taken to start right after the largest gap on the 16-bit circle, so
    ``65534, 65535, 0, 1`` becomes one pair ``(65534, 0b111)``.  This is the
    correct order whenever the losses span less than half the sequence space,
    which a NACK list always does.
    """
    seqs = sorted(set(lost))
    if not seqs:
        return []
    if seqs[0] < 0 or seqs[-1] > 0xFFFF:
        raise ValueError("NACK sequence numbers must be 0..65535")
    if len(seqs) > 1:
        start = 0
        best_gap = seqs[0] + 0x10000 - seqs[-1]
        for i in range(1, len(seqs)):
            gap = seqs[i] - seqs[i - 1]
            if gap > best_gap:
                best_gap = gap
                start = i
        if start:
            seqs = seqs[start:] + seqs[:start]
    pairs: list[tuple[int, int]] = []
    pid = seqs[0]
    blp = 0
    for seq in seqs[1:]:
        d = ((seq - pid) & 0xFFFF) - 1
        if d < 16:
            blp |= 1 << d
        else:
            pairs.append((pid, blp))
            pid = seq
            blp = 0
    pairs.append((pid, blp))
    return pairs


@dataclass(frozen=True, slots=True)
class Nack:
    """Generic NACK, PT 205 FMT 1.

    ``lost`` lists sequence numbers; serialization compresses them with
    :func:`nack_pairs` (so order and duplicates do not matter) and parsing
    expands the PID/BLP pairs in wire order.
    """

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        body = _TWO_U32.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            [_NACK_PAIR.pack(pid, blp) for pid, blp in nack_pairs(self.lost)]
        )
        return _header(_FMT_NACK, RTCP_RTPFB, body) + body


@dataclass(frozen=True, slots=True)
class Pli:
    """Picture loss indication, PT 206 FMT 1."""

    sender_ssrc: int
    media_ssrc: int

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        body = _TWO_U32.pack(self.sender_ssrc, self.media_ssrc)
        return _header(_FMT_PLI, RTCP_PSFB, body) + body


@dataclass(frozen=True, slots=True)
class Fir:
    """Full intra request, PT 206 FMT 4 (RFC 5104): ``entries`` are ``(ssrc, seqnr)``.

    The common media-source SSRC field is zero, as RFC 5104 section 4.3.1 requires;
    the targets are in the entries.
    """

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        body = _TWO_U32.pack(self.sender_ssrc, 0) + b"".join(
            [_FIR_ENTRY.pack(ssrc, seqnr) for ssrc, seqnr in self.entries]
        )
        return _header(_FMT_FIR, RTCP_PSFB, body) + body


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver estimated maximum bitrate, PT 206 FMT 15 (draft-alvestrand-rmcat-remb).

    The bitrate travels as an 18-bit mantissa and 6-bit exponent; serialization
    uses the smallest exponent that fits, which truncates the low bits, so a
    parsed value is never above the one sent (an under-estimate is the safe
    direction for a bandwidth cap).
    """

    sender_ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        if self.bitrate < 0:
            raise ValueError("REMB bitrate is negative")
        exponent = max(0, self.bitrate.bit_length() - 18)
        if exponent > 63:
            raise ValueError("REMB bitrate too large for a 6-bit exponent")
        if len(self.ssrcs) > 255:
            raise ValueError("REMB lists at most 255 SSRCs")
        mantissa = self.bitrate >> exponent
        body = _REMB_FIXED.pack(
            self.sender_ssrc,
            0,
            b"REMB",
            len(self.ssrcs),
            (exponent << 2) | (mantissa >> 16),
            mantissa & 0xFFFF,
        ) + b"".join([_U32.pack(s) for s in self.ssrcs])
        return _header(_FMT_AFB, RTCP_PSFB, body) + body


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any RTCP packet not modelled above, kept verbatim.

    ``fmt`` is the 5-bit count/FMT field, ``body`` everything after the 4-byte
    header minus padding, ``padding`` the padding byte count (0 if the P bit is
    clear).  Re-serialization is byte-exact, except that padding bytes other
    than the final count are written as zeros.
    """

    packet_type: int
    fmt: int
    body: bytes
    padding: int = 0

    def to_bytes(self) -> bytes:
        """Serialize to wire form."""
        if not 0 <= self.padding <= 255:
            raise ValueError("RTCP padding out of range 0..255")
        head = _header(self.fmt, self.packet_type, self.body, self.padding)
        if self.padding:
            return head + self.body + bytes(self.padding - 1) + bytes((self.padding,))
        return head + self.body


RtcpPacket: TypeAlias = SenderReport | ReceiverReport | Sdes | Bye | Nack | Pli | Fir | Remb | UnknownRtcp


def _bad_length(what: str, n: int) -> MalformedPacket:
    return MalformedPacket("bad_length", f"{what} body of {n} bytes")


def _parse_sdes(count: int, body: bytes) -> Sdes:
    n = len(body)
    pos = 0
    chunks: list[tuple[int, tuple[tuple[int, bytes], ...]]] = []
    for _ in range(count):
        if pos + 4 > n:
            raise _bad_length("SDES", n)
        ssrc = _U32.unpack_from(body, pos)[0]
        pos += 4
        items: list[tuple[int, bytes]] = []
        # A chunk that reaches the end of the body without its null item is
        # accepted: the items themselves are intact.
        while pos < n:
            item_type = body[pos]
            if item_type == 0:
                # Null item, then null padding to the next word boundary.
                pos = (pos + 4) & ~3
                break
            if pos + 2 > n:
                raise _bad_length("SDES", n)
            end = pos + 2 + body[pos + 1]
            if end > n:
                raise _bad_length("SDES", n)
            items.append((item_type, body[pos + 2 : end]))
            pos = end
        chunks.append((ssrc, tuple(items)))
    return Sdes(tuple(chunks))


def _parse_bye(count: int, body: bytes) -> Bye:
    n = len(body)
    pos = 4 * count
    if pos > n:
        raise _bad_length("BYE", n)
    ssrcs: tuple[int, ...] = struct.unpack_from(f"!{count}I", body, 0)
    reason = b""
    if pos < n:
        end = pos + 1 + body[pos]
        if end > n:
            raise _bad_length("BYE reason", n)
        reason = body[pos + 1 : end]
    return Bye(ssrcs, reason)


def _parse_one(packet_type: int, count: int, body: bytes, padding: int) -> RtcpPacket:
    n = len(body)
    if packet_type == RTCP_SR:
        # Bytes past the report blocks are profile-specific extensions
        # (RFC 3550 6.4.1); they are tolerated and dropped.
        if n < 24 + 24 * count:
            raise _bad_length("SR", n)
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body, 0)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _parse_reports(body, 24, count))
    if packet_type == RTCP_RR:
        if n < 4 + 24 * count:
            raise _bad_length("RR", n)
        return ReceiverReport(_U32.unpack_from(body, 0)[0], _parse_reports(body, 4, count))
    if packet_type == RTCP_SDES:
        return _parse_sdes(count, body)
    if packet_type == RTCP_BYE:
        return _parse_bye(count, body)
    if packet_type == RTCP_RTPFB or packet_type == RTCP_PSFB:
        # Every RFC 4585 feedback message starts with the two SSRCs.
        if n < 8:
            raise _bad_length("feedback", n)
        if packet_type == RTCP_RTPFB and count == _FMT_NACK:
            if n & 3:
                raise _bad_length("NACK", n)
            sender, media = _TWO_U32.unpack_from(body, 0)
            lost: list[int] = []
            for pos in range(8, n, 4):
                pid, blp = _NACK_PAIR.unpack_from(body, pos)
                lost.append(pid)
                d = 1
                while blp:
                    if blp & 1:
                        lost.append((pid + d) & 0xFFFF)
                    blp >>= 1
                    d += 1
            return Nack(sender, media, tuple(lost))
        if packet_type == RTCP_PSFB and count == _FMT_PLI:
            sender, media = _TWO_U32.unpack_from(body, 0)
            return Pli(sender, media)
        if packet_type == RTCP_PSFB and count == _FMT_FIR:
            if n & 7:
                raise _bad_length("FIR", n)
            sender = _U32.unpack_from(body, 0)[0]
            entries = tuple(_FIR_ENTRY.unpack_from(body, pos) for pos in range(8, n, 8))
            return Fir(sender, entries)
        # FMT 15 is generic "application layer feedback"; only the REMB tag is ours.
        if packet_type == RTCP_PSFB and count == _FMT_AFB and n >= 16 and body[8:12] == b"REMB":
            sender, _media, _tag, num, exp_hi, mant_lo = _REMB_FIXED.unpack_from(body, 0)
            if n < 16 + 4 * num:
                raise _bad_length("REMB", n)
            bitrate = (((exp_hi & 0x03) << 16) | mant_lo) << (exp_hi >> 2)
            ssrcs: tuple[int, ...] = struct.unpack_from(f"!{num}I", body, 16)
            return Remb(sender, bitrate, ssrcs)
    return UnknownRtcp(packet_type, count, body, padding)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram into its packets, in order.

    Raises :class:`MalformedPacket` with reason ``too_short`` (empty, or fewer
    than 4 bytes left for a header), ``bad_version``, ``unknown_type`` (packet
    type outside the RTCP range 192-223), ``bad_length`` (length words run past
    the datagram, or a body too short for its type and count) or
    ``bad_padding``.  Nothing is returned for a datagram that fails anywhere:
    a broken length makes everything after it suspect.
    """
    n = len(data)
    if n == 0:
        raise MalformedPacket("too_short", "empty RTCP datagram")
    out: list[RtcpPacket] = []
    pos = 0
    while pos < n:
        if n - pos < 4:
            raise MalformedPacket("too_short", f"{n - pos} bytes left for an RTCP header")
        b0, packet_type, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise MalformedPacket("bad_version", f"version {b0 >> 6}")
        if not 192 <= packet_type <= 223:
            raise MalformedPacket("unknown_type", f"packet type {packet_type}")
        start = pos + 4
        end = start + 4 * words
        if end > n:
            raise MalformedPacket("bad_length", f"{words} words with {n - start} bytes left")
        body_end = end
        padding = 0
        if b0 & 0x20:
            padding = data[end - 1] if end > start else 0
            if padding == 0 or padding > end - start:
                raise MalformedPacket("bad_padding", f"padding {padding} in {end - start} bytes")
            body_end -= padding
        out.append(_parse_one(packet_type, b0 & 0x1F, data[start:body_end], padding))
        pos = end
    return out


def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialize packets back to back into one compound RTCP datagram."""
    return b"".join([p.to_bytes() for p in packets])


def ntp_to_compact(ntp64: int) -> int:
    """Return the middle 32 bits of a 64-bit NTP time (16.16 fixed point), as used in LSR."""
    return (ntp64 >> 16) & 0xFFFFFFFF


def ntp_now(time_s: float) -> int:
    """Convert a UNIX time in seconds (e.g. ``time.time()``) to a 64-bit NTP timestamp.

    Scaling by 2**32 is exact in floating point, so this only floors the
    sub-nanosecond remainder.  The result wraps at the NTP era boundary (2036).
    """
    return (math.floor(time_s * 4294967296.0) + (NTP_UNIX_OFFSET << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_to_time(ntp64: int) -> float:
    """Convert a 64-bit NTP timestamp (era 0) back to UNIX seconds."""
    return ntp64 / 4294967296.0 - NTP_UNIX_OFFSET
