"""RTCP sender reports to viewers from the worker's one timer, over real aiortc peers on loopback.

The SFU's SRs (``jasmin_sfu/media/sender_report_timer.py``) replace aiortc's task per
sender: what a real aiortc viewer receives must still be SRs its own stats accept,
describing what it was actually sent, in its own (rewritten) timeline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiortc import RTCRtpSender

from bench.peers import publish, ssrc_of, subscribe, wait_for
from jasmin_codecs.rtcp import Bye, Sdes, SenderReport, parse_rtcp


def rtcp_tasks_of(senders: list[Any]) -> list[asyncio.Task[Any]]:
    """Running aiortc RTCP loops (``RTCRtpSender._run_rtcp``) of ``senders``."""
    out = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if getattr(coro, "__qualname__", "") == "RTCRtpSender._run_rtcp" and frame is not None:
            if any(frame.f_locals.get("self") is s for s in senders):
                out.append(task)
    return out


class Recorder:
    """Taps a viewer's receiving DTLS transport (before aiortc's own handlers, which still
    run): each RTP packet's count and timestamp per SSRC, and every RTCP packet with the
    counts as they stood when it arrived. aiortc handles one datagram after the other, so
    an SR's counts can be compared with what arrived before it."""

    def __init__(self, dtls: Any) -> None:
        self.packets: dict[int, int] = {}
        self.octets: dict[int, int] = {}
        self.last_ts: dict[int, int] = {}
        self.srs: list[tuple[SenderReport, int, int, int, float]] = []  # (sr, packets, octets, last ts, at)
        self.rtcp: list[Any] = []
        rtp_next, rtcp_next = dtls._handle_rtp_data, dtls._handle_rtcp_data

        async def on_rtp(data: bytes, arrival_time_ms: int) -> None:
            ssrc = int.from_bytes(data[8:12], "big")
            self.packets[ssrc] = self.packets.get(ssrc, 0) + 1
            self.octets[ssrc] = (
                self.octets.get(ssrc, 0) + len(data) - 12
            )  # what the SFU counts: all but the fixed header
            self.last_ts[ssrc] = int.from_bytes(data[4:8], "big")
            await rtp_next(data, arrival_time_ms=arrival_time_ms)

        async def on_rtcp(data: bytes) -> None:
            for pkt in parse_rtcp(data):
                self.rtcp.append(pkt)
                if isinstance(pkt, SenderReport):
                    s = pkt.ssrc
                    self.srs.append(
                        (pkt, self.packets.get(s, 0), self.octets.get(s, 0), self.last_ts.get(s, -1), time.monotonic())
                    )
            await rtcp_next(data)

        dtls._handle_rtp_data = on_rtp
        dtls._handle_rtcp_data = on_rtcp

    def of(self, ssrc: int) -> list[tuple[SenderReport, int, int, int, float]]:
        return [x for x in self.srs if x[0].ssrc == ssrc]


async def test_viewers_get_sender_reports_of_what_they_received_from_one_timer(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the viewers' SRs after aiortc's task per sender was replaced by the worker's
    one timer: every forwarded stream gets SRs (with its CNAME) whose packet and octet counts
    are exactly what the viewer had received when the SR arrived, whose RTP time is in the
    viewer's own timeline (near its last packet's) and advances with the NTP time; aiortc's
    receiver stats accept them (remote-outbound-rtp); no aiortc RTCP task runs for a
    forwarded sender; a closed viewer leaves the timer, with a BYE."""
    pub = await publish(daemon.url, "show-srs")
    viewer = await subscribe(daemon.url, "show-srs")
    dtls = viewer.pc.getTransceivers()[0].receiver.transport
    rec = Recorder(dtls)
    video, audio = ssrc_of(viewer.pc, "video"), ssrc_of(viewer.pc, "audio")
    assert await wait_for(lambda: len(rec.of(video)) >= 4 and len(rec.of(audio)) >= 4, timeout=30)

    worker = daemon.daemon.worker
    timer = worker.sender_reports
    router = worker.routers["show-srs"]
    (send_transport,) = [t for t in router.transports.values() if t.direction == "send"]
    forwarded: list[RTCRtpSender] = [t.sender for t in send_transport.pc.getTransceivers()]
    assert len(forwarded) == 2
    assert rtcp_tasks_of(forwarded) == []
    # The check itself sees aiortc's loop where one runs: the publisher's own senders.
    assert rtcp_tasks_of([t.sender for t in pub.pc.getTransceivers()])
    assert timer.streams == 2 and timer.legs == 1 and timer.running

    for ssrc, rate in ((video, 90000), (audio, 48000)):
        srs = rec.of(ssrc)
        for sr, packets, octets, last_ts, _at in srs:
            assert sr.packet_count == packets > 0, (ssrc, sr, packets)
            assert sr.octet_count == octets, (ssrc, sr, octets)
            ahead = ((sr.rtp_timestamp - last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            assert -0.5 * rate < ahead < 0.5 * rate, (ssrc, sr, last_ts)
        for (a, *_), (b, *_) in zip(srs, srs[1:]):
            d_ntp = (b.ntp_timestamp - a.ntp_timestamp) / 2**32
            d_rtp = ((b.rtp_timestamp - a.rtp_timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            assert 0.2 < d_ntp < 3.0, (ssrc, a, b)  # 0.5-1.5 s apart, on a loaded machine
            assert abs(d_rtp / rate - d_ntp) < 0.25, (ssrc, a, b)
            assert b.packet_count >= a.packet_count
    cnames = {ssrc: items for pkt in rec.rtcp if isinstance(pkt, Sdes) for ssrc, items in pkt.chunks}
    assert cnames.keys() >= {video, audio} and all(items[0][0] == 1 and items[0][1] for items in cnames.values())

    report = await viewer.pc.getStats()
    remote = {s.kind: s for s in report.values() if s.type == "remote-outbound-rtp"}
    inbound = {s.kind: s for s in report.values() if s.type == "inbound-rtp"}
    for kind in ("video", "audio"):
        assert 0 < remote[kind].packetsSent <= inbound[kind].packetsReceived, (kind, remote, inbound)
    assert worker.stats.sender_reports_sent >= 8

    # A viewer leaving: its streams leave the timer (which stops, nothing left) with a BYE.
    await viewer.client.request("leave")
    assert await wait_for(lambda: timer.streams == 0, timeout=10)
    assert timer.legs == 0 and not timer.running
    assert await wait_for(lambda: any(isinstance(p, Bye) for p in rec.rtcp), timeout=5)
    byes = {s for p in rec.rtcp if isinstance(p, Bye) for s in p.ssrcs}
    assert byes == {video, audio}
    await viewer.close()
    await pub.close()
