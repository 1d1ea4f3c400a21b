"""Light viewers send RR + REMB like real receivers (issue 16's method), and the SFU takes them."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bench.peers import loopback_only, wait_for
from bench.publisher import MAGIC, SyntheticPublisher, Workload
from bench.shows import JasminServer
from bench.viewers import LightViewer, RawPoller, Recorder
from jasmin_codecs.rtcp import ReceiverReport, Remb, parse_rtcp


async def test_receiver_report_carries_the_viewers_loss_and_a_remb() -> None:
    """Protects the RR's content: per received SSRC the cumulative loss, the loss fraction
    since the previous report and the extended highest sequence number, from the viewer's
    own sequence accounting; a REMB for the same SSRCs follows in the compound."""
    poller = RawPoller(Recorder())
    try:
        v = LightViewer(0, poller.rec, poller)
        ssrc = (0x1234).to_bytes(4, "big")
        trailer = MAGIC + bytes(12)
        for seq in [*range(100, 105), *range(106, 110)]:  # 105 lost: 1 of 10
            v.on_parts(ssrc, seq, trailer, 0)
        rr, remb = parse_rtcp(v.receiver_report(2_000_000))
        assert isinstance(rr, ReceiverReport) and isinstance(remb, Remb)
        (block,) = rr.reports
        assert (block.ssrc, block.cumulative_lost, block.highest_seq) == (0x1234, 1, 109)
        assert block.fraction_lost == 256 * 1 // 10
        assert remb.ssrcs == (0x1234,) and 1_900_000 < remb.bitrate <= 2_000_000
        for seq in range(110, 120):  # nothing lost since
            v.on_parts(ssrc, seq, trailer, 0)
        rr, _ = parse_rtcp(v.receiver_report(2_000_000))
        assert isinstance(rr, ReceiverReport)
        assert (rr.reports[0].fraction_lost, rr.reports[0].cumulative_lost, rr.reports[0].highest_seq) == (0, 1, 119)
    finally:
        poller.close()


async def _metric(port: int, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        total = 0.0
        for line in (await r.text()).splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.split()[-1])
        return total


@pytest.mark.slow
async def test_the_daemon_receives_every_viewers_rtcp() -> None:
    """Protects the viewers' RTCP end to end: after the raw poller has taken their RTP,
    two viewers' SRTCP-protected RR + REMB compounds reach the real daemon and are
    unprotected and counted there (jasmin_rtcp_packets_in grows by at least as many as the
    viewers sent; the publisher's own few reports cannot make up for them), with no RTCP drop."""
    loopback_only()
    server = JasminServer(None)
    poller = RawPoller(Recorder(), rtcp_every_s=0.05)
    pub = SyntheticPublisher(Workload())
    viewers = [LightViewer(i, poller.rec, poller) for i in range(2)]
    try:
        await pub.start(await server.show("rtcp"))
        for v in viewers:
            await server.viewer("rtcp", v)
        assert await wait_for(lambda: all(v.first_key_ns and v.raw for v in viewers), timeout=20)
        port = server.d.port
        in0 = await _metric(port, "jasmin_rtcp_packets_in")
        drops0 = await _metric(port, 'jasmin_rtp_drops_total{reason="rtcp_')
        sent0 = poller.rtcp_sent
        assert await wait_for(lambda: poller.rtcp_sent - sent0 >= 40, timeout=20)
        sent = poller.rtcp_sent - sent0
        got = 0.0
        for _ in range(60):
            got = await _metric(port, "jasmin_rtcp_packets_in") - in0
            if got >= sent:
                break
            await asyncio.sleep(0.05)
        assert got >= sent, (got, sent)
        assert poller.rtcp_errors == 0
        assert await _metric(port, 'jasmin_rtp_drops_total{reason="rtcp_') == drops0
    finally:
        for v in viewers:
            await v.close()
        await pub.close()
        poller.close()
        await server.close()
