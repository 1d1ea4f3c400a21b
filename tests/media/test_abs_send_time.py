"""The node's own abs-send-time on everything a viewer is sent of a video track (issue 12).

A browser viewer's receive-side estimator (the REMB the per-viewer layers run on)
times packets by their abs-send-time and counts only packets that carry it. The
node's padding probes must therefore carry it, on the same timeline as the media:
the publisher's send times (its clock) beside the node's would be no timeline at
all. So the producer replaces the publisher's value by the node's send time in
every packet it forwards, resends or replays, and padding carries the same clock.
"""

from __future__ import annotations

from jasmin_codecs.rtp import abs_send_time, parse_extensions, parse_rtp, set_one_byte_extension
from tests.support import VP8_CONT, VP8_DELTA, VP8_KEY, Clock, make_consumer, make_producer, pkt

AST_OUT = 3  # the viewer leg's abs-send-time id (tests.support.make_consumer)


def ast_of(data: bytes) -> bytes | None:
    h = parse_rtp(data)
    if h.ext_profile is None:
        return None
    return dict(parse_extensions(h.ext_profile, h.ext_data)).get(AST_OUT)


def test_media_resends_and_padding_carry_the_nodes_send_time() -> None:
    """Protects padding probes that count for Chromium's estimator: forwarded media, a
    NACK's resend and padding all carry abs-send-time from the node's clock at the time
    they are sent (the publisher's value, b'\\x01\\x02\\x03', never reaches the viewer)."""
    clock = Clock()
    p, stats = make_producer(clock=clock)
    c, sink = make_consumer(p, stats)
    clock.t = 10.0
    p.on_rtp(pkt(1000, 5000, VP8_KEY), 0)
    clock.t = 10.5
    p.on_rtp(pkt(1001, 5000, VP8_CONT, marker=True), 0)
    clock.t = 11.0
    assert c.send_padding(600) > 0
    clock.t = 12.0
    p.on_rtp(pkt(1002, 8000, VP8_DELTA, marker=True), 0)
    clock.t = 13.0
    c.on_nack((parse_rtp(sink.sent[1]).sequence,))
    got = [ast_of(b) for b in sink.sent]
    pads = [b for b in sink.sent if parse_rtp(b).padding]
    assert len(pads) >= 2 and all(ast_of(b) == abs_send_time(11.0) for b in pads)
    media = [ast_of(b) for b in sink.sent if not parse_rtp(b).padding]
    assert media == [abs_send_time(t) for t in (10.0, 10.5, 12.0, 13.0)], got
    # Padding is still padding only: no payload, and the P count covers what follows the header.
    h = parse_rtp(pads[0])
    assert h.payload_offset + h.padding == len(pads[0])


def test_without_abs_send_time_on_the_publisher_leg_padding_carries_none() -> None:
    """Protects one timeline the other way: when the media carries no abs-send-time
    (the publisher did not negotiate it), padding carries none either."""
    p, stats = make_producer()
    p.ast_id = 0
    c, sink = make_consumer(p, stats)
    p.on_rtp(pkt(1000, 5000, VP8_KEY, exts=[(4, b"0")]), 0)
    assert c.send_padding(300) > 0
    assert parse_rtp(sink.sent[-1]).ext_profile is None


def test_set_one_byte_extension_replaces_only_a_same_sized_element() -> None:
    """Protects the splice: the element's value is replaced in place; an absent element, one
    of another size or a malformed block leave the bytes as they were."""
    block = bytes([0x40, 0x30, 0x22, 1, 2, 3, 0x00, 0x00])  # id 4 "0", id 2 three bytes, padding
    assert set_one_byte_extension(block, 2, b"\x09\x08\x07") == bytes([0x40, 0x30, 0x22, 9, 8, 7, 0, 0])
    assert set_one_byte_extension(block, 5, b"\x09\x08\x07") == block
    assert set_one_byte_extension(block, 4, b"\x09\x08") == block
    assert set_one_byte_extension(bytes([0x22, 1]), 2, b"\x09\x08\x07") == bytes([0x22, 1])
    assert abs_send_time(1.0) == b"\x04\x00\x00" and abs_send_time(64.0) == b"\x00\x00\x00"
