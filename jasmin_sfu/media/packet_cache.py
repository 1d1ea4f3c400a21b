"""A ring of the last N RTP packets of one producer, keyed by sequence number."""

from __future__ import annotations


class PacketCache:
    """Fixed-size cache answering viewer NACKs without asking the publisher.

    Slots are indexed by ``seq & mask``; a slot remembers the sequence number
    it holds so a stale packet 65536 or ``size`` packets old is never served.
    """

    __slots__ = ("_mask", "_seqs", "_packets")

    def __init__(self, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._packets: list[bytes | None] = [None] * size

    @property
    def size(self) -> int:
        return self._mask + 1

    def put(self, seq: int, packet: bytes) -> None:
        i = seq & self._mask
        self._seqs[i] = seq
        self._packets[i] = packet

    def get(self, seq: int) -> bytes | None:
        i = seq & self._mask
        if self._seqs[i] == seq:
            return self._packets[i]
        return None

    def clear(self) -> None:
        n = self._mask + 1
        self._seqs = [-1] * n
        self._packets = [None] * n
