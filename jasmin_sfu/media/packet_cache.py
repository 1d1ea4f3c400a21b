"""The recent RTP packets of one producer's stream, keyed by sequence number."""

from __future__ import annotations

from collections import deque


class PacketCache:
    """The cache answering viewer NACKs without asking the publisher.

    Two bounds, whichever is reached first:

    * **count**: at most ``size`` packets (a power of two). Slots are indexed by
      ``seq & mask``; a slot remembers the sequence number it holds so a stale
      packet 65536 or ``size`` packets old is never served.
    * **media age** (``max_age_ticks`` > 0, in RTP timestamp units): a packet
      whose frame is more than that older than the newest frame is let go. The
      producer sets it to ``nack_max_delay_ms`` (jasmin_sfu/media/retransmit.py):
      a NACK of an older packet is refused by the retransmission policy anyway,
      so holding it only costs memory (at 1.5 Mbit/s a 1024-packet ring held
      ~5 s, ~1 MB per show; one second is ~0.2 MB, and a simulcast layer at
      30 packets/s no longer holds 30 s).

    The age bound works per frame (one RTP timestamp): when a frame newer than
    the newest one starts, whole frames older than the bound are cleared, from
    their first sequence number up to the next frame's. :meth:`expired` says
    whether a sequence number the cache does not hold was let go for its age
    (refused, not asked upstream) rather than lost on the way in.
    """

    __slots__ = ("_mask", "_seqs", "_packets", "_max_age", "_frames", "_newest_ts", "expired_packets")

    def __init__(self, size: int, max_age_ticks: int = 0) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("cache size must be a power of two")
        if max_age_ticks < 0 or max_age_ticks >= 0x80000000:
            raise ValueError("cache max age must be 0 (none) or under 2**31 RTP ticks")
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._packets: list[bytes | None] = [None] * size
        self._max_age = max_age_ticks
        # (RTP timestamp, first sequence number) of each frame held, oldest first.
        self._frames: deque[tuple[int, int]] = deque()
        self._newest_ts = -1
        # Packets let go for their age (not overwritten by the ring): for tests and metrics.
        self.expired_packets = 0

    @property
    def size(self) -> int:
        return self._mask + 1

    @property
    def max_age_ticks(self) -> int:
        return self._max_age

    def put(self, seq: int, packet: bytes, ts: int = 0) -> None:
        max_age = self._max_age
        if max_age:
            newest = self._newest_ts
            if ts != newest:
                d = (ts - newest) & 0xFFFFFFFF
                if newest < 0 or d < 0x80000000:
                    # A newer frame: remember where it starts, let the old ones go.
                    self._newest_ts = ts
                    self._frames.append((ts, seq))
                    self._expire(ts)
                elif 0x100000000 - d > max_age:
                    return  # a late packet of a frame already let go: never served
        i = seq & self._mask
        self._seqs[i] = seq
        self._packets[i] = packet

    def _expire(self, newest: int) -> None:
        frames = self._frames
        max_age = self._max_age
        seqs = self._seqs
        packets = self._packets
        mask = self._mask
        while len(frames) > 1 and (newest - frames[0][0]) & 0xFFFFFFFF > max_age:
            first = frames.popleft()[1]
            # Up to the next frame's first packet; never more than the ring.
            n = min((frames[0][1] - first) & 0xFFFF, mask + 1)
            for k in range(n):
                s = (first + k) & 0xFFFF
                i = s & mask
                if seqs[i] == s:
                    seqs[i] = -1
                    packets[i] = None
                    self.expired_packets += 1
        if len(frames) > mask + 1:
            # More frames than packets the ring holds (one packet per frame at a
            # high rate): the oldest ones' packets are overwritten already.
            for _ in range(len(frames) - mask - 1):
                frames.popleft()

    def get(self, seq: int) -> bytes | None:
        i = seq & self._mask
        if self._seqs[i] == seq:
            return self._packets[i]
        return None

    def expired(self, seq: int) -> bool:
        """``seq`` comes before the oldest frame the age bound kept (only with a max age)."""
        frames = self._frames
        if not self._max_age or not frames:
            return False
        return 0 < (frames[0][1] - seq) & 0xFFFF < 0x8000

    def held(self) -> int:
        """Packets held now (walks the ring: for tests and the memory bench, not the hot path)."""
        return sum(1 for p in self._packets if p is not None)

    def clear(self) -> None:
        n = self._mask + 1
        self._seqs = [-1] * n
        self._packets = [None] * n
        self._frames.clear()
        self._newest_ts = -1
