"""The worker's one timer for RTCP sender reports to viewers.

aiortc runs one task per ``RTCRtpSender`` that wakes every 0.5-1.5 s to send an
SR + SDES; at 400 viewers (800 senders) that was 7 % of the forwarding loop
(bench/README.md). Here one timer per worker wakes every ``tick_s`` and
serves the viewer legs that are due: one compound packet per leg (an SR per
forwarded stream on it, then one SDES with their CNAMEs), protected with the
leg's SRTCP and sent on its socket, synchronously. Each leg is next due after
``interval_s`` times a random factor in [0.5, 1.5] (RFC 3550 6.3.1, as aiortc
does), so the legs spread over the ticks instead of bursting.

What an SR says comes from the stream itself (:class:`ReportedStream`, the
consumer): NTP and RTP time in the viewer's rewritten timeline, and the
packets and octets actually sent (the C lane's counters plus the Python
path's). The stream remembers the SR's compact NTP time to measure the
viewer's RTT from its receiver reports.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import struct
import time
from typing import Any, Callable, Protocol

from jasmin_codecs.rtcp import SDES_CNAME, Bye, ReceiverReport, Sdes

from .stats import MediaStats

log = logging.getLogger(__name__)

#: The mean interval between two compound packets of one leg (RFC 3550's 5 s
#: minimum is relaxed for video; aiortc and browsers send about every second).
SR_INTERVAL_S = 1.0
#: How often the timer wakes to serve the legs that are due.
TICK_S = 0.2

# An SR without report blocks: header (V=2, RC=0, PT=200, length 6 words), SSRC,
# NTP (64 bits), RTP timestamp, packet count, octet count.
_SR = struct.Struct("!BBHIQIII")
_SDES_HEADER = struct.Struct("!BBH")
_RTCP_SDES = 202


class ReportedStream(Protocol):
    """What the timer needs of one forwarded stream (a consumer)."""

    ssrc: int
    sink: Any  # the viewer leg's SrtpSink: ``ready``, ``send_rtcp(bytes) -> bool``

    def sender_info(self, now: float, wall: float) -> tuple[int, int, int, int] | None:
        """(NTP time, RTP timestamp, packets, octets) for an SR at ``now``, or None when not sending."""
        ...


class _Leg:
    """The forwarded streams of one viewer leg (one sink: one DTLS transport)."""

    __slots__ = ("sink", "streams", "chunks", "gone")

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.streams: list[ReportedStream] = []
        self.chunks: dict[int, bytes] = {}  # ssrc -> its SDES chunk (CNAME)
        self.gone = False


class SenderReportTimer:
    """Sends every forwarded stream's SR + SDES, from one timer per worker."""

    def __init__(
        self,
        stats: MediaStats,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        interval_s: float = SR_INTERVAL_S,
        tick_s: float = TICK_S,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._stats = stats
        self._clock = clock
        self._wall = wall
        self.interval_s = interval_s
        self.tick_s = tick_s
        self._rand = rand
        self._legs: dict[int, _Leg] = {}  # id(sink) -> leg
        self._due: list[tuple[float, int, _Leg]] = []  # heap of (due time, tie-break, leg)
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self.closed = False

    # -- membership ------------------------------------------------------------

    @property
    def streams(self) -> int:
        """Forwarded streams the timer reports on."""
        return sum(len(leg.streams) for leg in self._legs.values())

    @property
    def legs(self) -> int:
        """Viewer legs the timer sends to."""
        return len(self._legs)

    @property
    def running(self) -> bool:
        """True while the timer is armed (it stops when no leg is left)."""
        return self._handle is not None

    def add(self, stream: ReportedStream, cname: str) -> None:
        """Report on ``stream`` (its sink set) from now on; its SDES carries ``cname``."""
        if self.closed:
            return
        key = id(stream.sink)
        leg = self._legs.get(key)
        if leg is None:
            leg = self._legs[key] = _Leg(stream.sink)
            self._schedule(leg, self._clock())
        if stream not in leg.streams:
            leg.streams.append(stream)
        if cname:
            item = ((SDES_CNAME, cname.encode("utf-8")[:255]),)
            leg.chunks[stream.ssrc] = Sdes(((stream.ssrc, item),)).to_bytes()[4:]  # the chunk, without the header
        self._arm()

    def remove(self, stream: ReportedStream, bye: bool = True) -> None:
        """Stop reporting on ``stream``; with ``bye`` (and its leg still up) send its
        last SR and an RTCP BYE, as aiortc's sender did when it stopped."""
        leg = self._legs.get(id(stream.sink))
        if leg is None or stream not in leg.streams:
            return
        if bye:
            try:
                self._send_bye(leg, stream)
            except Exception:  # pragma: no cover - a goodbye must not break a close
                log.exception("RTCP BYE failed")
        leg.streams.remove(stream)
        leg.chunks.pop(stream.ssrc, None)
        if not leg.streams:
            leg.gone = True
            del self._legs[id(leg.sink)]
            if not self._legs and self._handle is not None:
                self._handle.cancel()
                self._handle = None
                self._due.clear()

    def close(self) -> None:
        """Stop the timer and forget every leg (no BYE: the worker is closing them)."""
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for leg in self._legs.values():
            leg.gone = True
        self._legs.clear()
        self._due.clear()

    # -- the timer -------------------------------------------------------------

    def _schedule(self, leg: _Leg, now: float) -> None:
        # RFC 3550 6.3.1: the interval varies randomly over [0.5, 1.5] times the mean.
        due = now + self.interval_s * (0.5 + self._rand())
        heapq.heappush(self._due, (due, next(self._order), leg))

    def _arm(self) -> None:
        if self._handle is None and self._legs and not self.closed:
            self._handle = asyncio.get_running_loop().call_later(self.tick_s, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self.run_due()
        self._arm()

    def run_due(self) -> int:
        """Send to every leg due by now (within half a tick); returns the compound packets sent."""
        now = self._clock()
        wall = self._wall()
        horizon = now + self.tick_s / 2
        due = self._due
        sent = 0
        while due and due[0][0] <= horizon:
            _, _, leg = heapq.heappop(due)
            if leg.gone:
                continue
            try:
                sent += self._send(leg, now, wall)
            except Exception:  # pragma: no cover - one leg must not stop the others
                log.exception("sender report failed")
            self._schedule(leg, now)
        return sent

    # -- packets ---------------------------------------------------------------

    def _send(self, leg: _Leg, now: float, wall: float) -> int:
        parts: list[bytes] = []
        chunks: list[bytes] = []
        for s in leg.streams:
            info = s.sender_info(now, wall)
            if info is None:
                continue
            ntp, rtp, packets, octets = info
            parts.append(_SR.pack(0x80, 200, 6, s.ssrc, ntp, rtp, packets, octets))
            chunk = leg.chunks.get(s.ssrc)
            if chunk is not None:
                chunks.append(chunk)
        if not parts:
            return 0
        n = len(parts)
        if chunks:
            body = b"".join(chunks)
            parts.append(_SDES_HEADER.pack(0x80 | len(chunks), _RTCP_SDES, len(body) >> 2) + body)
        if not leg.sink.send_rtcp(b"".join(parts)):
            return 0
        stats = self._stats
        stats.rtcp_packets_out += 1
        stats.sender_reports_sent += n
        return 1

    def _send_bye(self, leg: _Leg, stream: ReportedStream) -> None:
        if not leg.sink.ready:
            return
        info = stream.sender_info(self._clock(), self._wall())
        if info is not None:
            ntp, rtp, packets, octets = info
            first = _SR.pack(0x80, 200, 6, stream.ssrc, ntp, rtp, packets, octets)
        else:
            first = ReceiverReport(ssrc=stream.ssrc).to_bytes()
        if leg.sink.send_rtcp(first + Bye(ssrcs=(stream.ssrc,)).to_bytes()):
            self._stats.rtcp_packets_out += 1
