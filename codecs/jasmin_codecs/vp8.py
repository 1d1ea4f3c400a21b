"""VP8 RTP payload descriptor (RFC 7741 section 4.2) and keyframe detection."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MalformedPacket

__all__ = ["Vp8Descriptor", "parse_vp8_descriptor", "vp8_is_keyframe"]


@dataclass(slots=True)
class Vp8Descriptor:
    """The fields of a VP8 payload descriptor.

    ``picture_id_bits`` is 0 when there is no PictureID, else 7 or 15 (the M
    bit), which an SFU rewriting picture ids must preserve.  ``temporal_id``
    and ``layer_sync`` come from the T bit, ``key_idx`` from the K bit; absent
    fields are None (``layer_sync`` False).  ``header_size`` is the descriptor
    length in bytes: the VP8 payload starts at ``offset + header_size``.
    """

    start_of_partition: bool
    partition_id: int
    non_reference: bool
    picture_id: int | None
    picture_id_bits: int
    tl0_pic_idx: int | None
    temporal_id: int | None
    layer_sync: bool
    key_idx: int | None
    header_size: int


def parse_vp8_descriptor(payload: bytes | bytearray | memoryview, offset: int = 0) -> Vp8Descriptor:
    """Parse the VP8 payload descriptor at ``payload[offset:]``.

    Only the descriptor is checked, not that VP8 data follows it.  Raises
    ``MalformedPacket("bad_vp8")`` when the descriptor is truncated.
    """
    n = len(payload)
    pos = offset
    if pos < 0 or pos >= n:
        raise MalformedPacket("bad_vp8", "empty payload")
    b0 = payload[pos]
    pos += 1
    picture_id: int | None = None
    picture_id_bits = 0
    tl0_pic_idx: int | None = None
    temporal_id: int | None = None
    layer_sync = False
    key_idx: int | None = None
    if b0 & 0x80:  # X: extension byte follows
        if pos >= n:
            raise MalformedPacket("bad_vp8", "truncated extension byte")
        x = payload[pos]
        pos += 1
        if x & 0x80:  # I: PictureID
            if pos >= n:
                raise MalformedPacket("bad_vp8", "truncated picture id")
            p = payload[pos]
            if p & 0x80:  # M: 15-bit PictureID
                if pos + 1 >= n:
                    raise MalformedPacket("bad_vp8", "truncated picture id")
                picture_id = ((p & 0x7F) << 8) | payload[pos + 1]
                picture_id_bits = 15
                pos += 2
            else:
                picture_id = p
                picture_id_bits = 7
                pos += 1
        if x & 0x40:  # L: TL0PICIDX
            if pos >= n:
                raise MalformedPacket("bad_vp8", "truncated tl0picidx")
            tl0_pic_idx = payload[pos]
            pos += 1
        if x & 0x30:  # T or K: one shared TID/Y/KEYIDX byte
            if pos >= n:
                raise MalformedPacket("bad_vp8", "truncated tid/keyidx")
            t = payload[pos]
            pos += 1
            if x & 0x20:
                temporal_id = t >> 6
                layer_sync = bool(t & 0x20)
            if x & 0x10:
                key_idx = t & 0x1F
    return Vp8Descriptor(
        start_of_partition=bool(b0 & 0x10),
        partition_id=b0 & 0x07,
        non_reference=bool(b0 & 0x20),
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        tl0_pic_idx=tl0_pic_idx,
        temporal_id=temporal_id,
        layer_sync=layer_sync,
        key_idx=key_idx,
        header_size=pos - offset,
    )


def vp8_is_keyframe(payload: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """Return True when this RTP payload begins a VP8 keyframe.

    That is the first packet of partition 0 (S=1, PID=0) whose VP8 payload
    header has the inverse keyframe flag P (bit 0 of its first byte) clear
    (RFC 7741 section 4.3).  Called for every video packet, so it skips the
    descriptor by arithmetic instead of building a :class:`Vp8Descriptor`,
    and returns False rather than raising on short or garbage input.
    """
    n = len(payload)
    if offset < 0 or offset >= n:
        return False
    b0 = payload[offset]
    if b0 & 0x17 != 0x10:  # S must be 1 and PID 0
        return False
    pos = offset + 1
    if b0 & 0x80:
        if pos >= n:
            return False
        x = payload[pos]
        pos += 1
        if x & 0x80:
            if pos >= n:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    if pos >= n:
        return False
    return not payload[pos] & 0x01
