"""What the node does with a packet the publisher sends again (issue 12, measured with Chromium).

Asked a high REMB, Chromium probes its uplink by resending recent packets of its
lowest simulcast layer over RTX ("payload padding"). The node already has them:
forwarded again, each viewer of that layer got the performer's probe on top of
its stream (130-400 kbit/s more on a 180p layer of ~160 kbit/s), and counted,
they made that layer look as costly as the next one to every viewer's selector.
"""

from __future__ import annotations

from tests.support import VP8_CONT, VP8_DELTA, VP8_KEY, make_consumer, make_producer, pkt


def test_a_resend_of_a_packet_the_node_has_is_dropped_and_not_counted() -> None:
    """Protects viewers' links and the layer's measured rate: a second copy of a cached
    packet (an RTX resend, or any duplicate) is dropped as "duplicate" and adds nothing
    to the layer's octets; a late packet the node lacks (the answer to its own upstream
    NACK) still reaches the viewer, and counts as media neither."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats)
    packets = [pkt(100, 0, VP8_KEY), pkt(101, 0, VP8_CONT, marker=True), pkt(103, 3000, VP8_DELTA)]
    for data in packets:
        p.on_rtp(data, 0)
    layer = p.all_layers[0]
    sent, octets = len(sink.sent), layer.octets
    assert sent == 3 and octets == sum(len(d) for d in packets)
    p.on_rtp(packets[1], 0)  # the publisher resends 101: the node has it
    assert len(sink.sent) == sent and layer.octets == octets
    assert stats.drops["duplicate"] == 1
    p.on_rtp(pkt(102, 3000, VP8_CONT), 0)  # 102 never came: its retransmission is forwarded
    assert len(sink.sent) == sent + 1 and layer.octets == octets
