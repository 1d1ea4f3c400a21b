"""Wraparound arithmetic for RTP sequence numbers (16 bit) and timestamps (32 bit).

RTP counters wrap, so "newer" and "distance" are only meaningful modulo the
counter size; everything here uses the shortest signed distance, which is the
convention of RFC 3550 appendix A.1 and of libwebrtc.
"""

from __future__ import annotations

__all__ = [
    "SEQ_MOD",
    "TS_MOD",
    "seq_add",
    "seq_diff",
    "seq_newer",
    "ts_add",
    "ts_diff",
    "ts_newer",
    "seq_unwrap",
    "SeqUnwrapper",
]

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
_SEQ_MASK = SEQ_MOD - 1
_SEQ_HALF = SEQ_MOD >> 1
_TS_MASK = TS_MOD - 1
_TS_HALF = TS_MOD >> 1


def seq_add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 2**16 (``n`` may be negative)."""
    return (a + n) & _SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Return the signed shortest distance ``a - b`` in ``-32768..32767``.

    Positive means ``a`` comes after ``b``.  Two numbers exactly half the
    space apart give -32768 in both directions (see :func:`seq_newer` for how
    that tie is broken).
    """
    return ((a - b + _SEQ_HALF) & _SEQ_MASK) - _SEQ_HALF


def seq_newer(a: int, b: int) -> bool:
    """Return True when sequence number ``a`` is after ``b``, allowing for wraparound.

    When the two are exactly 2**15 apart the distance is ambiguous; like
    libwebrtc's ``IsNewerSequenceNumber`` we then call the numerically larger one
    newer, so that for ``a != b`` exactly one of ``seq_newer(a, b)`` and
    ``seq_newer(b, a)`` holds.
    """
    d = (a - b) & _SEQ_MASK
    if d == _SEQ_HALF:
        return (a & _SEQ_MASK) > (b & _SEQ_MASK)
    return 0 < d < _SEQ_HALF


def ts_add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 2**32 (RTP timestamp arithmetic)."""
    return (a + n) & _TS_MASK


def ts_diff(a: int, b: int) -> int:
    """Return the signed shortest distance ``a - b`` between two 32-bit RTP timestamps."""
    return ((a - b + _TS_HALF) & _TS_MASK) - _TS_HALF


def ts_newer(a: int, b: int) -> bool:
    """Return True when RTP timestamp ``a`` is after ``b``, allowing for wraparound.

    The half-range tie is broken the same way as in :func:`seq_newer`.
    """
    d = (a - b) & _TS_MASK
    if d == _TS_HALF:
        return (a & _TS_MASK) > (b & _TS_MASK)
    return 0 < d < _TS_HALF


def seq_unwrap(highest: int, seq: int) -> int:
    """Return the extended sequence number of the 16-bit ``seq``, given the highest so far.

    ``highest`` is the highest extended sequence number seen (its low 16 bits
    are the highest 16-bit number); the result is placed at the shortest
    signed distance from it, so ``result > highest`` means ``seq`` is newer.
    This is the stateless core of :class:`SeqUnwrapper`: a plain function,
    for the hot path, where a method call per packet measurably costs.
    """
    return highest + (((seq - highest + _SEQ_HALF) & _SEQ_MASK) - _SEQ_HALF)


class SeqUnwrapper:
    """Turn 16-bit RTP sequence numbers into monotonic extended integers.

    The first number passed to :meth:`unwrap` is returned unchanged (roll-over
    count 0), so for an ordinary stream ``unwrap(seq) & 0xFFFFFFFF`` is exactly
    RFC 3550's "extended highest sequence number".  Every later number is
    placed at the shortest signed distance from the *highest* number seen so
    far.  Anchoring on the highest (rather than the last) number means a single
    stray, very late packet cannot drag the reference backwards and shift the
    cycle count of the packets that follow it.

    A packet reordered to arrive before the first one across a wrap (first 0,
    then 65535) legitimately unwraps to a negative number (-1).
    """

    __slots__ = ("_highest_ext",)

    def __init__(self) -> None:
        self._highest_ext: int | None = None

    @property
    def highest(self) -> int | None:
        """The highest extended sequence number returned so far, or None before the first."""
        return self._highest_ext

    def unwrap(self, seq: int) -> int:
        """Return the extended sequence number for the 16-bit ``seq``."""
        highest = self._highest_ext
        if highest is None:
            seq &= _SEQ_MASK
            self._highest_ext = seq
            return seq
        ext = seq_unwrap(highest, seq)
        if ext > highest:
            self._highest_ext = ext
        return ext
