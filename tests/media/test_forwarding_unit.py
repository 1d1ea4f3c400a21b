"""The forwarding core without sockets: rewriting, keyframe start, pause/resume, NACK, drops."""

from __future__ import annotations

import struct

import pytest

from jasmin_codecs.rtcp import Nack, Pli, parse_rtcp
from jasmin_codecs.rtp import abs_send_time, build_rtp, parse_extensions, parse_rtp
from jasmin_sfu.media.keyframe_requester import KeyframeRequester
from jasmin_sfu.media.packet_cache import PacketCache
from tests.support import VP8_CONT, VP8_DELTA, VP8_KEY, Clock, FakeSink, Scheduled, make_consumer, make_producer, pkt


def test_consumer_rewrites_ssrc_seq_ts_pt_and_extension_ids() -> None:
    """Protects per-viewer rewriting: SSRC, PT, seq/ts offsets, ext ids and the viewer's MID."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats)
    p.on_rtp(pkt(1000, 5000, VP8_KEY, marker=False), 0)
    p.on_rtp(pkt(1001, 5000, VP8_CONT, marker=True), 0)
    p.on_rtp(pkt(1002, 8000, VP8_DELTA, marker=True), 0)
    assert len(sink.sent) == 3
    hdrs = [parse_rtp(b) for b in sink.sent]
    assert {h.ssrc for h in hdrs} == {0x33333333}
    assert {h.payload_type for h in hdrs} == {100}
    assert [h.marker for h in hdrs] == [False, True, True]
    seqs = [h.sequence for h in hdrs]
    assert seqs == [seqs[0], (seqs[0] + 1) & 0xFFFF, (seqs[0] + 2) & 0xFFFF]
    assert (hdrs[2].timestamp - hdrs[0].timestamp) & 0xFFFFFFFF == 3000
    ext = dict(parse_extensions(hdrs[0].ext_profile or 0, hdrs[0].ext_data))
    assert ext == {1: b"v0", 3: abs_send_time(100.0)}  # the node's send time (its clock), not the publisher's
    # Payload is forwarded byte for byte.
    assert sink.sent[0][hdrs[0].payload_offset :] == VP8_KEY
    assert stats.rtp_packets_out == 3 and stats.rtp_packets_in == 3


def test_video_consumer_starts_on_a_keyframe_only() -> None:
    """Protects viewers' decoders: delta frames before the first keyframe are not forwarded."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats)
    p.on_rtp(pkt(1, 0, VP8_DELTA), 0)
    p.on_rtp(pkt(2, 0, VP8_CONT), 0)
    assert sink.sent == []
    p.on_rtp(pkt(3, 3000, VP8_KEY), 0)
    assert len(sink.sent) == 1


def test_consumer_waits_for_its_leg_before_anchoring() -> None:
    """Protects the first keyframe: it is not burnt on a leg whose DTLS is not up yet."""
    p, stats = make_producer()
    sink = FakeSink(ready=False)
    c, _ = make_consumer(p, stats, sink=sink)
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    assert sink.sent == [] and stats.drops.get("send_failed", 0) == 0
    sink.ready = True
    p.on_rtp(pkt(2, 0, VP8_CONT), 0)
    assert sink.sent == []  # still waiting for the *start* of a keyframe
    p.on_rtp(pkt(3, 3000, VP8_KEY), 0)
    assert len(sink.sent) == 1


def test_audio_consumer_starts_at_once() -> None:
    """Protects audio: every Opus packet is decodable, no keyframe wait."""
    p, stats = make_producer(kind="audio", mime="audio/opus", pt=111)
    c, sink = make_consumer(p, stats)
    p.on_rtp(pkt(7, 960, b"\xfc\x00", pt=111, exts=[(4, b"1"), (1, b"\x90")]), 0)
    assert len(sink.sent) == 1


def test_pause_stops_at_once_and_resume_continues_the_sequence() -> None:
    """Protects exclusivity and cheap resume: no packet after pause(); after resume the
    viewer's sequence continues without a gap and timestamps advance by the pause time."""
    clock = Clock()
    p, stats = make_producer(clock=clock)
    c, sink = make_consumer(p, stats, clock=clock)
    p.on_rtp(pkt(10, 90000, VP8_KEY), 0)
    p.on_rtp(pkt(11, 90000, VP8_CONT), 0)
    c.pause()
    for s in range(12, 40):
        p.on_rtp(pkt(s, 90000 + s * 100, VP8_KEY if s == 20 else VP8_DELTA), 0)
    assert len(sink.sent) == 2
    clock.t += 2.0
    c.resume()
    p.on_rtp(pkt(40, 500000, VP8_DELTA), 0)
    assert len(sink.sent) == 2  # waits for a keyframe
    p.on_rtp(pkt(41, 503000, VP8_KEY), 0)
    h = [parse_rtp(b) for b in sink.sent]
    assert h[2].sequence == (h[1].sequence + 1) & 0xFFFF
    assert (h[2].timestamp - h[1].timestamp) & 0xFFFFFFFF == 2 * 90000


def test_resume_requests_a_keyframe() -> None:
    """Protects time to first frame after resume: a PLI goes upstream."""
    out: list[bytes] = []
    p, stats = make_producer(rtcp_out=out)
    c, _ = make_consumer(p, stats)
    c.pause()
    c.resume()
    plis = [x for b in out for x in parse_rtcp(b) if isinstance(x, Pli)]
    assert len(plis) == 1 and plis[0].media_ssrc == 0x11111111


def test_nack_is_served_from_the_cache_with_the_viewers_numbers() -> None:
    """Protects NACK handling: cached packets are resent rewritten; a packet the
    publisher leg lost (a gap inside the cache's window) is asked upstream; one
    older than the cache is answered with nothing, upstream neither, and counted."""
    out: list[bytes] = []
    p, stats = make_producer(rtcp_out=out)
    c, sink = make_consumer(p, stats)
    for s in range(100, 110):
        if s != 106:
            p.on_rtp(pkt(s, 1000, VP8_KEY if s == 100 else VP8_DELTA), 0)
    first = parse_rtp(sink.sent[0]).sequence
    sink.sent.clear()
    c.on_nack(((first + 3) & 0xFFFF, (first + 5) & 0xFFFF))
    assert [parse_rtp(b).sequence for b in sink.sent] == [(first + 3) & 0xFFFF, (first + 5) & 0xFFFF]
    assert stats.nack_packets_served == 2
    assert stats.nack_resends["video"] == 2 and c.resent == 2
    c.on_nack(((first + 6) & 0xFFFF,))
    nacks = [x for b in out for x in parse_rtcp(b) if isinstance(x, Nack)]
    assert nacks and nacks[-1].lost == (106,) and nacks[-1].media_ssrc == 0x11111111
    assert stats.nack_packets_missed == 1
    # A packet older than the cache (64 slots): nothing sent, nothing asked.
    for s in range(110, 200):
        p.on_rtp(pkt(s, 1000, VP8_DELTA), 0)
    sink.sent.clear()
    c.on_nack(((first + 1) & 0xFFFF,))
    assert sink.sent == []
    assert len([x for b in out for x in parse_rtcp(b) if isinstance(x, Nack)]) == 1
    assert stats.nack_packets_missed == 1 and stats.nack_suppressed_age == 1


def test_rtx_from_the_publisher_is_unwrapped() -> None:
    """Protects upstream recovery: an RFC 4588 packet is forwarded as the original seq."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats)
    p.on_rtp(pkt(500, 1000, VP8_KEY), 0)
    rtx = pkt(9, 1000, struct.pack("!H", 501) + VP8_CONT, pt=97, ssrc=0x22222222)
    p.on_rtx(rtx, 0)
    h = [parse_rtp(b) for b in sink.sent]
    assert h[1].sequence == (h[0].sequence + 1) & 0xFFFF
    assert sink.sent[1][h[1].payload_offset :] == VP8_CONT


def test_rtx_padding_probes_are_ignored_not_counted_as_malformed() -> None:
    """Protects the drop metric: libwebrtc's RTX probes (padding only, no OSN) are normal traffic."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats)
    probe = build_rtp(marker=False, payload_type=97, sequence=1, timestamp=0, ssrc=0x22222222, payload=b"", padding=255)
    p.on_rtx(probe, 0)
    with_osn = build_rtp(
        marker=False, payload_type=97, sequence=2, timestamp=0, ssrc=0x22222222, payload=b"\x00\x05", padding=200
    )
    p.on_rtx(with_osn, 0)
    assert not stats.drops and sink.sent == []


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"\x80\x60", "too_short"),
        (b"\x40" + b"\x60" + b"\x00" * 10, "bad_version"),
        (b"\x80\x7f" + b"\x00" * 6 + bytes.fromhex("11111111") + b"x", "unknown_pt"),
        (b"\x90\x60" + b"\x00" * 6 + bytes.fromhex("11111111") + b"\xbe\xde\x00\x05", "bad_extension"),
        (b"\xa0\x60" + b"\x00" * 6 + bytes.fromhex("11111111") + b"ab\x09", "bad_padding"),
        (b"\xa0\x60" + b"\x00" * 6 + bytes.fromhex("11111111") + b"ab\x00", "bad_padding"),
        (
            b"\x90\x60" + b"\x00" * 6 + bytes.fromhex("11111111") + b"\xbe\xde\x00\x01\x4f\x00\x00\x00" + VP8_KEY,
            "bad_extension",
        ),  # one-byte element claiming 16 bytes inside a 4-byte block
    ],
)
def test_malformed_rtp_is_dropped_and_counted(data: bytes, reason: str) -> None:
    """Protects the receive path: drop, count by reason, never raise."""
    p, stats = make_producer()
    make_consumer(p, stats)
    p.on_rtp(data, 0)
    assert stats.drops[reason] == 1
    assert stats.rtp_packets_out == 0


def test_one_viewers_failing_leg_does_not_affect_others() -> None:
    """Protects fan-out: a closed viewer leg is counted, the other viewers still get the packet."""
    p, stats = make_producer()
    bad, bad_sink = make_consumer(p, stats, cid="bad", ssrc=1)
    good, good_sink = make_consumer(p, stats, cid="good", ssrc=2)
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    bad_sink.ready = False  # leg closed after anchoring
    p.on_rtp(pkt(2, 0, VP8_CONT), 0)
    assert len(good_sink.sent) == 2 and len(bad_sink.sent) == 1
    assert stats.drops["send_failed"] == 1


def test_closing_a_producer_closes_its_consumers_once() -> None:
    """Protects teardown: children close once; later packets go nowhere."""
    p, stats = make_producer()
    closed: list[str] = []
    c, sink = make_consumer(p, stats)
    c.on_close = lambda cons: closed.append(cons.id)
    assert p.close() == [c]
    assert p.close() == []
    assert closed == ["c1"] and c.closed
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    assert sink.sent == []


def test_receiver_report_counts_loss() -> None:
    """Protects RRs to the publisher: cumulative loss and extended highest seq."""
    p, stats = make_producer()
    for s in [65534, 65535, 1, 2]:  # 0 lost, across the wrap
        p.on_rtp(pkt(s, 0, VP8_DELTA), 0)
    block = p.report_block(now=1.0)
    assert block is not None
    assert block.cumulative_lost == 1
    assert block.highest_seq == 0x10000 + 2
    assert block.fraction_lost == 256 * 1 // 5


def test_keyframe_requests_are_throttled_and_coalesced() -> None:
    """Protects the publisher from PLI floods without losing a viewer's request."""
    clock = Clock()
    sched = Scheduled()
    sent: list[float] = []
    kr = KeyframeRequester(0.5, clock, lambda: sent.append(clock.t), sched)
    assert kr.request() is True
    for _ in range(10):
        clock.t += 0.01
        assert kr.request() is False
    assert len(sent) == 1 and len(sched.calls) == 1
    delay, fn = sched.calls[0]
    assert delay == pytest.approx(0.5 - 0.01)
    clock.t += delay
    fn()
    assert len(sent) == 2 and kr.coalesced == 9
    clock.t += 0.6
    assert kr.request() is True and len(sent) == 3


def test_packet_cache_never_serves_a_stale_slot() -> None:
    """Protects retransmissions: a slot reused by a newer seq does not answer the old one."""
    cache = PacketCache(64)
    cache.put(5, b"a")
    cache.put(69, b"b")  # same slot
    assert cache.get(5) is None and cache.get(69) == b"b"
    with pytest.raises(ValueError):
        PacketCache(100)
