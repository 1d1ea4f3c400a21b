"""VP8 RTP payload descriptor (RFC 7741 section 4.2) and keyframe detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .errors import MalformedPacket

__all__ = [
    "MAX_TEMPORAL_ID",
    "Vp8Descriptor",
    "Vp8Munged",
    "Vp8Munger",
    "parse_vp8_descriptor",
    "rewrite_vp8_descriptor",
    "vp8_data_offset",
    "vp8_is_keyframe",
    "vp8_keyframe_size",
    "vp8_temporal_id",
]


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


def vp8_data_offset(payload: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """Where the VP8 data starts after the payload descriptor at ``payload[offset:]``.

    Skips the descriptor by arithmetic (RFC 7741 section 4.2: X, I with M, L,
    T/K), without building a :class:`Vp8Descriptor`; returns -1 when the
    descriptor is truncated or no VP8 byte follows it. The one descriptor skip
    that :func:`vp8_is_keyframe` and :func:`vp8_keyframe_size` share.
    """
    n = len(payload)
    if offset < 0 or offset >= n:
        return -1
    pos = offset + 1
    if payload[offset] & 0x80:
        if pos >= n:
            return -1
        x = payload[pos]
        pos += 1
        if x & 0x80:
            if pos >= n:
                return -1
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    return pos if pos < n else -1


def vp8_is_keyframe(payload: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """Return True when this RTP payload begins a VP8 keyframe.

    That is the first packet of partition 0 (S=1, PID=0) whose VP8 payload
    header has the inverse keyframe flag P (bit 0 of its first byte) clear
    (RFC 7741 section 4.3).  Called for every video packet: all but a frame's
    first packet return after one byte test; returns False rather than
    raising on short or garbage input.
    """
    if offset < 0 or offset >= len(payload) or payload[offset] & 0x17 != 0x10:  # S must be 1 and PID 0
        return False
    pos = vp8_data_offset(payload, offset)
    return pos >= 0 and not payload[pos] & 0x01


def vp8_keyframe_size(payload: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """(width, height) from the VP8 keyframe header of a keyframe's first packet, or None.

    RFC 6386 section 9.1: after the payload descriptor at ``payload[offset:]``,
    a 3-byte frame tag, the start code 9d 01 2a, then 16-bit little-endian
    width and height (14 bits each, 2 bits of scaling). None for a packet
    too short or without the start code (not a keyframe's first packet).
    """
    pos = vp8_data_offset(payload, offset)
    if pos < 0 or pos + 10 > len(payload) or bytes(payload[pos + 3 : pos + 6]) != b"\x9d\x01\x2a":
        return None
    width = (payload[pos + 6] | (payload[pos + 7] << 8)) & 0x3FFF
    height = (payload[pos + 8] | (payload[pos + 9] << 8)) & 0x3FFF
    return width, height


def vp8_temporal_id(payload: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The TID of the descriptor at ``payload[offset:]``: 0 without a T bit (a
    stream without temporal layers is all layer 0), -1 when truncated. For the
    per-packet, per-layer rate count, so no :class:`Vp8Descriptor` is built."""
    n = len(payload)
    if offset < 0 or offset >= n:
        return -1
    if not payload[offset] & 0x80:
        return 0
    pos = offset + 1
    if pos >= n:
        return -1
    x = payload[pos]
    if not x & 0x20:
        return 0
    pos += 1
    if x & 0x80:
        if pos >= n:
            return -1
        pos += 2 if payload[pos] & 0x80 else 1
    if x & 0x40:
        pos += 1
    if pos >= n:
        return -1
    return int(payload[pos] >> 6)


def rewrite_vp8_descriptor(
    payload: bytes | bytearray | memoryview,
    picture_id: int | None,
    tl0_pic_idx: int | None,
    offset: int = 0,
    desc: Vp8Descriptor | None = None,
) -> bytes:
    """Return a copy of ``payload`` whose VP8 descriptor carries new PictureID/TL0PICIDX.

    The descriptor keeps its layout and size: a 15-bit PictureID stays 15
    bits (the value is taken modulo 2**15), a 7-bit one stays 7 bits (modulo
    2**7, which RFC 7741 section 4.2 allows: a 7-bit id "MUST wrap to 0 after
    reaching the maximum ID"), so the payload offset does not move and the
    bytes can be patched in place by a fast path.  TL0PICIDX is taken modulo
    2**8.  ``None`` leaves a field as it is; a value for a field the
    descriptor does not carry raises ValueError (the caller's bug: the munger
    only produces values for fields it was given).  Every other bit (S, N,
    PartID, TID, Y, KEYIDX) and the VP8 data are copied unchanged.

    ``desc``, when given, must be :func:`parse_vp8_descriptor` of the same
    ``payload`` and ``offset`` (the forwarding path has parsed it already for
    the munger); it saves parsing twice.

    Raises ``MalformedPacket("bad_vp8")`` for a truncated descriptor.
    """
    if desc is None:
        desc = parse_vp8_descriptor(payload, offset)
    out = bytearray(payload)
    pos = offset + 2  # first byte after the X byte
    if picture_id is not None:
        if desc.picture_id is None:
            raise ValueError("descriptor has no PictureID to rewrite")
        if desc.picture_id_bits == 15:
            pid = picture_id & 0x7FFF
            out[pos] = 0x80 | (pid >> 8)
            out[pos + 1] = pid & 0xFF
        else:
            out[pos] = picture_id & 0x7F
    if desc.picture_id is not None:
        pos += 2 if desc.picture_id_bits == 15 else 1
    if tl0_pic_idx is not None:
        if desc.tl0_pic_idx is None:
            raise ValueError("descriptor has no TL0PICIDX to rewrite")
        out[pos] = tl0_pic_idx & 0xFF
    return bytes(out)


#: TID is a 2-bit field: temporal layers 0-3.
MAX_TEMPORAL_ID = 3
# How many recent frames of the forwarded layer keep their decision, so the
# late packets of a frame (reordered, or retransmitted by the performer) get
# the same picture id as its first one, or are dropped with it.
_FRAME_MEMORY = 32


class Vp8Munged(NamedTuple):
    """What one forwarded packet's descriptor must carry on the viewer's stream.

    ``picture_id`` is 15 bits (:func:`rewrite_vp8_descriptor` keeps a 7-bit
    descriptor 7 bits); it and ``tl0_pic_idx`` are None when the incoming
    descriptor has no such field.  ``switched`` is True for the packet that
    made a layer switch (the first packet of the new layer's keyframe).
    """

    picture_id: int | None
    tl0_pic_idx: int | None
    switched: bool


class Vp8Munger:
    """One viewer's VP8 layer switch and temporal-layer drop, with continuous ids.

    Pure state, no I/O: the forwarding path feeds it every packet of the layers
    it may forward, with the layer the packet belongs to (any int: the
    simulcast index), the packet's parsed descriptor and whether it begins a
    keyframe.  :meth:`munge` returns the PictureID/TL0PICIDX the packet must
    carry on the viewer's stream, or None when it must not be forwarded.

    Rules (RFC 7741 section 4.2; LiveKit's codecmunger/vp8.go keeps offsets the
    same way):

    * Spatial switch: packets of :attr:`target_layer` replace the current layer
      only from the first packet (S=1, PartID 0) of one of its keyframes; until
      then the current layer goes on, and packets of any other layer are
      dropped.  At the switch the offsets are chosen so the new layer's first
      frame gets the last forwarded PictureID + 1 and TL0PICIDX + 1 (a
      keyframe is a TL0 frame).  The very first frame forwarded keeps its ids.
    * Temporal drop: a frame whose TID is above the viewer's current temporal
      layer is dropped whole, and the PictureID offset shrinks by one, so the
      next forwarded frame still gets the previous one + 1.  TL0PICIDX needs no
      change: only TID 0 frames advance it and they are never dropped.
    * Temporal down-switch is immediate.  Up-switch waits for a frame one
      layer up with the Y (layer sync) bit, which depends only on TL0 frames
      the viewer has; a keyframe makes every layer up to the target decodable
      at once.  A stream without T bit counts as TID 0.
    * A gap in the incoming PictureIDs (frames lost before the node) stays a
      gap, so the decoder still learns it lost frames.  A packet of an older
      frame the munger no longer remembers is dropped.
    * ``target_layer`` None pauses: nothing is forwarded, and the next target
      starts again on a keyframe, continuing the ids.

    KEYIDX, TID, Y and the other bits are left as they come.  Per packet the
    cost is a few integer operations and one dict lookup.
    """

    __slots__ = (
        "_target_layer",
        "_layer",
        "_target_tid",
        "_tid",
        "_pid_offset",
        "_tl0_offset",
        "_last_out_pid",
        "_last_out_tl0",
        "_in_pid",
        "_in_ext",
        "_frames",
    )

    def __init__(self, target_layer: int | None = 0, target_tid: int = MAX_TEMPORAL_ID) -> None:
        """Start with nothing forwarded: the first keyframe of ``target_layer`` begins the stream."""
        self._target_layer = target_layer
        self._layer: int | None = None
        self._target_tid = _check_tid(target_tid)
        self._tid = self._target_tid
        self._pid_offset = 0
        self._tl0_offset = 0
        self._last_out_pid: int | None = None  # extended (never wraps)
        self._last_out_tl0: int | None = None
        self._in_pid = 0  # raw PictureID of the newest frame of the current layer
        self._in_ext = 0  # the same, extended
        self._frames: dict[int, int | None] = {}  # raw PictureID -> extended output id, None = dropped

    @property
    def layer(self) -> int | None:
        """The layer being forwarded now (None before the first keyframe and while paused)."""
        return self._layer

    @property
    def target_layer(self) -> int | None:
        """The layer asked for; it becomes :attr:`layer` at its next keyframe."""
        return self._target_layer

    @property
    def temporal_id(self) -> int:
        """The highest TID forwarded now (climbs to :attr:`target_tid` on layer sync frames)."""
        return self._tid

    @property
    def target_tid(self) -> int:
        """The highest TID asked for."""
        return self._target_tid

    def set_target(self, layer: int | None, tid: int | None = None) -> None:
        """Ask for ``layer`` (None pauses at once) and, when given, at most temporal layer ``tid``.

        Lowering the temporal layer applies from the next frame; raising it
        waits for a layer sync frame or a keyframe.
        """
        self._target_layer = layer
        if layer is None:
            self._layer = None
        if tid is not None:
            self._target_tid = _check_tid(tid)
            if self._tid > self._target_tid:
                self._tid = self._target_tid

    def munge(self, layer: int, desc: Vp8Descriptor, keyframe: bool) -> Vp8Munged | None:
        """Return the ids this packet carries on the viewer's stream, or None to drop it.

        ``desc`` is the packet's :func:`parse_vp8_descriptor`; ``keyframe`` is
        :func:`vp8_is_keyframe` of the packet (True only on a keyframe's first
        packet).
        """
        pid = desc.picture_id
        if layer != self._layer:
            if layer != self._target_layer or not keyframe:
                return None
            return self._switch(layer, desc)
        tl0 = desc.tl0_pic_idx
        out_tl0 = None if tl0 is None else (tl0 + self._tl0_offset) & 0xFF
        if pid is None:
            # No picture ids: frames cannot be told apart, nothing to renumber.
            return Vp8Munged(None, out_tl0, False)
        frames = self._frames
        if pid in frames:  # a later packet of a frame already decided
            out = frames[pid]
            return None if out is None else Vp8Munged(out & 0x7FFF, out_tl0, False)
        mod = 1 << desc.picture_id_bits
        delta = (pid - self._in_pid) % mod
        if delta >= mod >> 1:
            if keyframe:
                # The encoder restarted its ids (a publisher's reconnect or
                # encoder reset): re-anchor as at a switch, ids continue.
                return self._switch(layer, desc)
            return None  # an older frame than the newest, no longer remembered
        self._in_pid = pid
        self._in_ext += delta
        if len(frames) >= _FRAME_MEMORY:
            del frames[next(iter(frames))]
        tid = desc.temporal_id or 0
        if keyframe:
            self._tid = self._target_tid
        elif tid > self._tid:
            if tid == self._tid + 1 and tid <= self._target_tid and desc.layer_sync:
                self._tid = tid
            else:
                self._pid_offset -= 1
                frames[pid] = None
                return None
        out = self._in_ext + self._pid_offset
        frames[pid] = out
        self._last_out_pid = out
        if out_tl0 is not None:
            self._last_out_tl0 = out_tl0
        return Vp8Munged(out & 0x7FFF, out_tl0, False)

    def _switch(self, layer: int, desc: Vp8Descriptor) -> Vp8Munged:
        """Make ``layer`` the forwarded one from this keyframe packet on."""
        self._layer = layer
        self._tid = self._target_tid
        self._frames.clear()
        pid = desc.picture_id
        out_pid: int | None = None
        if pid is not None:
            self._in_pid = pid
            self._in_ext = pid
            out = pid if self._last_out_pid is None else self._last_out_pid + 1
            self._pid_offset = out - pid
            self._frames[pid] = out
            self._last_out_pid = out
            out_pid = out & 0x7FFF
        tl0 = desc.tl0_pic_idx
        out_tl0: int | None = None
        if tl0 is not None:
            out_tl0 = tl0 if self._last_out_tl0 is None else (self._last_out_tl0 + 1) & 0xFF
            self._tl0_offset = out_tl0 - tl0
            self._last_out_tl0 = out_tl0
        return Vp8Munged(out_pid, out_tl0, True)


def _check_tid(tid: int) -> int:
    if not 0 <= tid <= MAX_TEMPORAL_ID:
        raise ValueError(f"temporal layer {tid} out of range 0..{MAX_TEMPORAL_ID}")
    return tid
