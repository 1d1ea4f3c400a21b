"""Forwarding under reordering: what a late packet may reach, and NACKs on a long stream."""

from __future__ import annotations

import struct

from jasmin_codecs.rtp import parse_rtp
from tests.media.test_forwarding_unit import VP8_DELTA, VP8_KEY, make_consumer, make_producer, pkt


def test_a_nack_is_served_more_than_2_15_packets_into_a_viewers_stream() -> None:
    """Protects retransmissions on a long-running stream: the anchor check compares
    extended sequence numbers, so 40,000 packets (about 4 minutes of video) after the
    viewer started, a NACKed packet in the cache is still resent. Compared as 16-bit
    numbers it looked older than the anchor and was refused for every other 2^15 packets."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats)
    for seq in (100, 20100, 40100, 40101):  # jumps below 2^15: each is newer than the last
        p.on_rtp(pkt(seq, seq * 30, VP8_KEY if seq == 100 else VP8_DELTA), 0)
    last = parse_rtp(sink.sent[-1]).sequence
    sink.sent.clear()
    c.on_nack((last,))
    assert [parse_rtp(b).sequence for b in sink.sent] == [last]
    assert stats.nack_packets_served == 1 and stats.nack_packets_refused == 0


def test_a_late_packet_from_a_private_never_reaches_a_viewer_unblocked_after_it() -> None:
    """Protects exclusivity against reordering: a packet the publisher sent during a
    private that reaches the SFU only after the private ended (delayed, or retransmitted
    by the publisher after the member's NACK) is older than the free viewer's new anchor:
    it is not forwarded to that viewer (it would also reuse one of its sequence numbers),
    while the member, whose stream began before it, still gets it."""
    p, stats = make_producer()
    member, m_sink = make_consumer(p, stats, cid="member", ssrc=1)
    member.audience_key = "m"
    free, f_sink = make_consumer(p, stats, cid="free", ssrc=2)
    free.audience_key = "f"
    p.on_rtp(pkt(10, 0, VP8_KEY), 0)
    p.set_audience(frozenset({"m"}))  # the private
    p.on_rtp(pkt(11, 3000, VP8_DELTA + b"private"), 0)
    p.set_audience(None)  # the private ends; packet 12 of the private is still on its way
    p.on_rtp(pkt(13, 9000, VP8_KEY), 0)
    p.on_rtx(pkt(1, 6000, struct.pack("!H", 12) + VP8_DELTA + b"late", pt=97, ssrc=0x22222222), 0)
    free_payloads = [b[parse_rtp(b).payload_offset:] for b in f_sink.sent]
    assert free_payloads == [VP8_KEY, VP8_KEY]
    assert [parse_rtp(b).sequence - parse_rtp(f_sink.sent[0]).sequence for b in f_sink.sent] == [0, 1]
    assert VP8_DELTA + b"late" in [b[parse_rtp(b).payload_offset:] for b in m_sink.sent]
