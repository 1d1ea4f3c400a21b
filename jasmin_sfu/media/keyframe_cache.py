"""The packets of one video producer's last complete keyframe.

A new viewer otherwise waits for the publisher to answer a PLI: one RTT plus
the encoder's reaction plus the throttle window (``keyframe_request_interval``),
and 300 ms or more on a real network. With this cache the viewer is sent the
last keyframe at once, so its decoder shows a picture as soon as DTLS is up,
and the live stream then continues from the fresh keyframe the PLI asks for.

A frame is kept only when it is whole: it starts with a packet the codec says
begins a keyframe, every later packet has the next sequence number and the
same RTP timestamp, and the last one carries the marker bit. A frame with a
hole (loss, reordering) is dropped and the previous complete one stays.

Privacy: the owner clears the cache whenever the producer's audience changes
(a private starts or ends), so a frame captured for one audience is never
replayed to a viewer of another.
"""

from __future__ import annotations


class KeyframeCache:
    """Assembles keyframes packet by packet; ``frame`` is the last complete one."""

    __slots__ = ("frame", "assembling", "_ts", "_next_seq", "_max_packets")

    def __init__(self, max_packets: int = 512) -> None:
        # 512 packets of ~1200 bytes: a 600 KB keyframe, far above 1080p at
        # the bitrates a performer's camera sends.
        self._max_packets = max_packets
        self.frame: tuple[bytes, ...] = ()
        self.assembling: list[bytes] | None = None
        self._ts = 0
        self._next_seq = 0

    def put(self, data: bytes, seq: int, ts: int, keyframe: bool, marker: bool) -> None:
        """Offer one packet of the producer (called from the hot path, after
        the packet was validated)."""
        building = self.assembling
        if building is not None and ts == self._ts:
            if seq != self._next_seq or len(building) >= self._max_packets:
                self.assembling = None  # a hole or a runaway frame: keep the old one
                return
            building.append(data)
            self._next_seq = (seq + 1) & 0xFFFF
            if marker:
                self.frame = tuple(building)
                self.assembling = None
            return
        if keyframe:
            if marker:
                self.frame = (data,)
                self.assembling = None
                return
            self.assembling = [data]
            self._ts = ts
            self._next_seq = (seq + 1) & 0xFFFF
        elif building is not None:
            # The next frame began before the keyframe's marker: incomplete.
            self.assembling = None

    def clear(self) -> None:
        self.frame = ()
        self.assembling = None
