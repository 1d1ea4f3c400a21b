"""The worker's SR timer (jasmin_sfu/media/sender_report_timer.py) on an injected clock.

The producer, consumer and timer are the real classes; the viewer's sink is the tests'
fake (Python path: it keeps the bytes) or a real C target (libsrtp + sendto on loopback):
an SR counts what the viewer was sent, read from the C lane's counters when the copies
went through C, and its RTP time continues the viewer's rewritten timeline across a
simulcast layer switch.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from jasmin_codecs.rtcp import NTP_UNIX_OFFSET, Bye, ReceiverReport, Sdes, SenderReport, ntp_now, parse_rtcp
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.keyframe_requester import KeyframeRequester
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.sender_report_timer import SenderReportTimer
from jasmin_sfu.media.stats import MediaStats
from tests.realparts import require_fastpath
from tests.support import Clock, CSink, FakeSink, Scheduled, pkt

WALL0 = 1.8e9  # the wall clock (time.time()) at Clock() == 0
SSRCS = {"q": 0x1000, "f": 0x3000}
SIZES = {"q": (320, 180), "f": (1280, 720)}
# Each simulcast stream has its own random timestamp base.
TS0 = {"q": 1000, "f": 4_000_000_000}


class PySink(FakeSink):
    """The Python path's sink, keeping RTCP too."""

    def __init__(self) -> None:
        super().__init__()
        self.rtcp: list[bytes] = []

    def send_rtcp(self, data: bytes) -> bool:
        self.rtcp.append(data)
        return True

    def got(self) -> list[bytes]:
        return self.sent


class CTargetSink(CSink):
    """A real C target; what reached its UDP inbox is what the viewer got."""

    def __init__(self) -> None:
        super().__init__()
        self.rtcp: list[bytes] = []
        self.inbox.setblocking(False)
        self._got: list[bytes] = []

    def send_rtcp(self, data: bytes) -> bool:
        self.rtcp.append(data)
        return True

    def got(self) -> list[bytes]:
        while True:
            try:
                self._got.append(self.rx.unprotect(self.inbox.recv(4096)))
            except BlockingIOError:
                return self._got


class Show:
    """A two-layer VP8 simulcast publisher at 30 fps in step with ``clock``, its SRs (one
    NTP clock, each stream's own RTP base) every second, and one viewer of it."""

    def __init__(self, sink: Any) -> None:
        self.clock = Clock()
        self.clock.t = 0.0
        self.stats = MediaStats()
        self.p = Producer(
            producer_id="sim",
            kind="video",
            mime="video/VP8",
            clock_rate=90000,
            payload_type=96,
            ssrc=None,
            rtx_ssrc=None,
            rtx_payload_type=97,
            codec_parameters={},
            extensions={},
            send_rtcp=lambda b: True,
            rtcp_ssrc=0xABCDEF01,
            stats=self.stats,
            cache_size=64,
            keyframes=lambda prod: KeyframeRequester(0.0, self.clock, prod.send_pli, Scheduled()),
            rids=("q", "f"),
        )
        for layer in self.p.all_layers:
            assert layer.rid is not None
            layer.ssrc = SSRCS[layer.rid]
        self.seq = {"q": 100, "f": 65500}
        self.n = 0
        self.sink = sink
        self.c = Consumer(
            consumer_id="c1",
            producer=self.p,
            ssrc=0x33333333,
            payload_type=100,
            sink=sink,
            stats=self.stats,
            clock=self.clock,
        )
        self.c.profile = self.p.profile_for({}, {})
        self.p.add_consumer(self.c)

    def ts(self, rid: str) -> int:
        return (TS0[rid] + 3000 * self.n) & 0xFFFFFFFF

    def frame(self, keys: str = "") -> None:
        """One frame on both layers (keyframes on ``keys``), then 1/30 s passes."""
        arrival_ms = int((WALL0 + self.clock.t + NTP_UNIX_OFFSET) * 1000)
        for rid in ("q", "f"):
            layer = self.p.layer_by_rid(rid)
            assert layer is not None
            for i in range(2):
                desc = bytes([0x90 if i == 0 else 0x80, 0x80, self.n & 0x7F])
                if i == 0 and rid in keys:
                    body = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", *SIZES[rid])
                else:
                    body = b"\x11\x02\x00" if i == 0 else b"\x00" * 50
                data = pkt(self.seq[rid], self.ts(rid), desc + body, marker=i == 1, ssrc=SSRCS[rid], exts=[])
                self.p.on_rtp(data, arrival_ms, layer)
                self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
            if self.n % 30 == 15 and self.n > 30:
                # The publisher's SR of this stream (the first at 1.5 s): its NTP clock (5 s ahead
                # of ours), this frame's RTP time.
                self.p.on_sender_report(ntp_now(WALL0 + 5.0 + self.clock.t), self.ts(rid), self.clock(), layer)
        self.n += 1
        self.clock.t += 1 / 30


def sender_reports(sink: Any) -> list[SenderReport]:
    return [x for b in sink.rtcp for x in parse_rtcp(b) if isinstance(x, SenderReport)]


@pytest.mark.parametrize("path", ["python", "c"])
async def test_srs_count_what_was_sent_and_continue_the_viewers_timeline_across_a_switch(path: str) -> None:
    """Protects the SR's content: its packet and octet counts are what the viewer got
    (through C: the lane's counters), and its RTP time is the viewer's own timeline at the
    SR's moment: from the last packet before the publisher's first SR, on the publisher's
    NTP/RTP line after it, and still after a switch to a layer with another RTP base;
    every SR's NTP and RTP times advance together."""
    if path == "c":
        require_fastpath()
    sink: PySink | CTargetSink = PySink() if path == "python" else CTargetSink()
    show = Show(sink)
    c = show.c
    timer = SenderReportTimer(show.stats, clock=show.clock, wall=lambda: WALL0 + show.clock(), rand=lambda: 0.5)
    timer.add(c, "viewer@example")
    show.frame(keys="qf")  # ranks the layers
    c.set_target_layer(1)
    show.frame(keys="f")
    assert c.current_layer is not None and c.current_layer.spatial == 1
    assert c.fast == (path == "c")
    # (SR, what the viewer had got, the last packet's timestamp and how long ago it was sent)
    checks: list[tuple[SenderReport, int, int, int, float]] = []
    last_frame_at = 0.0
    switched_at: list[int] = []  # how many SRs had been sent when the switch happened
    for i in range(180):
        if i == 90:
            c.set_target_layer(0)
        switches = show.stats.layer_switches
        show.frame(keys="q" if i == 92 else "")
        if show.stats.layer_switches > switches:
            switched_at.append(len(checks))
        last_frame_at = show.clock() - 1 / 30
        before = len(sink.rtcp)
        if timer.run_due():
            assert len(sink.rtcp) == before + 1
            (sr,) = [x for x in parse_rtcp(sink.rtcp[-1]) if isinstance(x, SenderReport)]
            got = sink.got()
            last_ts = struct.unpack_from("!I", got[-1], 4)[0]
            checks.append((sr, len(got), sum(len(g) - 12 for g in got), last_ts, show.clock() - last_frame_at))
    assert c.current_layer is not None and c.current_layer.spatial == 0
    assert show.stats.layer_switches >= 1
    assert 5 <= len(checks) <= 7  # one a second (the random factor fixed at 1)
    assert len(switched_at) == 1 and 0 < switched_at[0] < len(checks) - 1  # SRs on both sides of it
    for sr, packets, octets, last_ts, since in checks:
        assert sr.ssrc == 0x33333333
        assert sr.packet_count == packets and sr.octet_count == octets, (sr, packets, octets)
        expected = (last_ts + round(since * 90000)) & 0xFFFFFFFF
        off = ((sr.rtp_timestamp - expected + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        assert abs(off) <= 2, (sr, last_ts, since)
    for (a, *_), (b, *_) in zip(checks, checks[1:]):
        d_ntp = (b.ntp_timestamp - a.ntp_timestamp) / 2**32
        d_rtp = ((b.rtp_timestamp - a.rtp_timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        # 1 s apart; the publisher's clock (5 s ahead) replaces ours at its first SR.
        assert 0.9 < d_ntp < 6.2 and 0.9 * 90000 < d_rtp < 1.1 * 90000, (a, b)
    # The publisher's line from its first SR on: NTP and RTP time advance together.
    on_line = [sr for sr, *_ in checks if sr.ntp_timestamp >= ntp_now(WALL0 + 5.0)]
    assert on_line[0] is not checks[0][0]  # the first SR came before the publisher's: from the last packet
    for a, b in zip(on_line, on_line[1:]):
        d_ntp = (b.ntp_timestamp - a.ntp_timestamp) / 2**32
        d_rtp = ((b.rtp_timestamp - a.rtp_timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        assert abs(d_rtp / 90000 - d_ntp) < 2 / 90000 + 1e-6, (a, b)
    assert len(on_line) >= 4
    sdes = [x for b in sink.rtcp for x in parse_rtcp(b) if isinstance(x, Sdes)]
    assert sdes and all(s.chunks == ((0x33333333, ((1, b"viewer@example"),)),) for s in sdes)
    timer.close()
    if isinstance(sink, CTargetSink):
        sink.close()


async def test_no_sr_while_nothing_is_forwarded_and_a_removed_stream_says_bye() -> None:
    """Protects RFC 3550's sender rule and the leave: a viewer whose video is paused gets
    no SR (it is not sending); a stream removed from the timer gets its last report and a
    BYE, the timer forgets it and stops once no leg is left."""
    sink = PySink()
    show = Show(sink)
    c = show.c
    timer = SenderReportTimer(show.stats, clock=show.clock, wall=lambda: WALL0 + show.clock(), rand=lambda: 0.5)
    timer.add(c, "v")
    assert timer.running and timer.streams == 1 and timer.legs == 1
    show.frame(keys="qf")
    show.frame(keys="f")
    c.pause()
    for _ in range(60):
        show.frame()
        timer.run_due()
    assert sender_reports(sink) == []
    c.resume()
    show.frame(keys="qf")
    for _ in range(40):
        show.frame()
        timer.run_due()
    assert len(sender_reports(sink)) == 1
    assert show.stats.sender_reports_sent == 1
    c.close()
    timer.remove(c)
    last = parse_rtcp(sink.rtcp[-1])
    assert isinstance(last[0], (SenderReport, ReceiverReport)) and last[-1] == Bye(ssrcs=(0x33333333,))
    assert timer.streams == 0 and timer.legs == 0 and not timer.running
    n = len(sink.rtcp)
    for _ in range(60):
        show.frame()
        timer.run_due()
    assert len(sink.rtcp) == n
    timer.close()
