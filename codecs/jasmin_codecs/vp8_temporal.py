"""Which frames of a VP8 stream with temporal layers one viewer gets (RFC 7741 TID and Y bits)."""

from __future__ import annotations

from .vp8 import MAX_TEMPORAL_ID

__all__ = ["Vp8TemporalFilter"]

# How many recent frames keep their decision: the late packets of a frame
# (reordered) and the viewer's NACKs get the frame's decision and picture id
# shift. Two seconds at 30 fps; a frame older than that is not forwarded.
_FRAME_MEMORY = 64


class Vp8TemporalFilter:
    """One viewer's temporal-layer cut of one VP8 stream, frame by frame.

    Pure state, no I/O. The forwarding path calls :meth:`admit` for each packet
    with its frame (any key that is the same for every packet of a frame and
    differs between frames: the RTP timestamp), the descriptor's TID and Y
    (layer sync) bits, whether it begins a keyframe, and whether it is the
    newest packet of the stream (not a late, reordered one). The answer is None
    (drop it) or how many frames were dropped since :meth:`reset` before this
    packet's frame: the forwarding path lowers the frame's PictureID by that
    much, so the viewer's picture ids stay consecutive.

    Rules:

    * A frame is decided once, at its first packet seen; its other packets
      (and NACKs of them, :meth:`frame_shift`) follow that decision.
    * A frame whose TID is above :attr:`temporal_id` is dropped.
    * Down-switch (:meth:`set_target` below the current layer) applies at the
      next frame, never inside one.
    * Up-switch goes one layer at a time, on a frame of the next layer up
      with the Y bit (it depends only on TL0 frames the viewer has); a
      keyframe makes every layer up to the target decodable at once.
    * A late packet of a frame never seen (older than the newest) is dropped:
      the frames after it were numbered without it.
    * TID 0 frames are never dropped, so TL0PICIDX needs no rewrite.
    """

    __slots__ = ("_target", "_tid", "_frames", "dropped", "frame", "frame_shift_now")

    def __init__(self, target: int = MAX_TEMPORAL_ID) -> None:
        self._target = _check_tid(target)
        self._tid = self._target
        # frame key -> frames dropped before it since reset (>= 0), or -1: dropped.
        self._frames: dict[int, int] = {}
        #: Frames dropped since :meth:`reset`.
        self.dropped = 0
        #: The key of the newest frame decided (None since :meth:`reset`), and
        #: its answer (the drop count, -1: dropped): the forwarding path's
        #: shortcut for the later packets of that frame.
        self.frame: int | None = None
        self.frame_shift_now = -1

    @property
    def target(self) -> int:
        """The highest temporal layer asked for."""
        return self._target

    @property
    def temporal_id(self) -> int:
        """The highest temporal layer forwarded now (climbs to :attr:`target` on sync frames)."""
        return self._tid

    @property
    def settled(self) -> bool:
        """Every temporal layer is asked for and forwarded: nothing to filter any more."""
        return self._target == MAX_TEMPORAL_ID and self._tid == MAX_TEMPORAL_ID

    def set_target(self, tid: int) -> None:
        """Forward at most temporal layer ``tid`` (down from the next frame, up on sync frames)."""
        self._target = _check_tid(tid)

    def reset(self) -> None:
        """A new stream starts on a keyframe (a (re)start or a layer switch): frames are
        forgotten, the drop count restarts at 0 and every target layer is forwarded."""
        self._frames.clear()
        self.dropped = 0
        self.frame = None
        self.frame_shift_now = -1
        self._tid = self._target

    def admit(self, frame: int, tid: int, sync: bool, keyframe: bool, newest: bool) -> int | None:
        """None to drop this packet, else the frames dropped before its frame (see the class doc)."""
        frames = self._frames
        got = frames.get(frame)
        if got is not None:
            return None if got < 0 else got
        if not newest:
            return None
        if keyframe:
            self._tid = self._target
        elif self._tid > self._target:
            self._tid = self._target
        elif tid == self._tid + 1 and tid <= self._target and sync:
            self._tid = tid
        if len(frames) >= _FRAME_MEMORY:
            del frames[next(iter(frames))]
        self.frame = frame
        if tid > self._tid:
            self.dropped += 1
            frames[frame] = self.frame_shift_now = -1
            return None
        frames[frame] = self.frame_shift_now = self.dropped
        return self.dropped

    def frame_shift(self, frame: int) -> int | None:
        """For a NACK: the drop count of a remembered forwarded ``frame``; None when it
        was dropped or is no longer remembered (never resend what the viewer was not sent)."""
        got = self._frames.get(frame)
        return None if got is None or got < 0 else got


def _check_tid(tid: int) -> int:
    if not 0 <= tid <= MAX_TEMPORAL_ID:
        raise ValueError(f"temporal layer {tid} out of range 0..{MAX_TEMPORAL_ID}")
    return tid
