"""The keyframe cache: a starting viewer gets the last keyframe at once, never
another audience's, and the live stream continues without a gap."""

from __future__ import annotations

from jasmin_codecs.rtcp import Pli, parse_rtcp
from jasmin_codecs.rtp import parse_rtp
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.keyframe_cache import KeyframeCache
from jasmin_sfu.media.keyframe_requester import KeyframeRequester
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.stats import MediaStats

from tests.support import MID, ABS, VP8_CONT, VP8_DELTA, VP8_KEY, Clock, FakeSink, Scheduled, pkt


def make(clock: Clock, rtcp: list[bytes], *, cache: bool = True) -> tuple[Producer, MediaStats]:
    stats = MediaStats()
    p = Producer(
        producer_id="p1",
        kind="video",
        mime="video/VP8",
        clock_rate=90000,
        payload_type=96,
        ssrc=0x11111111,
        rtx_ssrc=None,
        rtx_payload_type=None,
        codec_parameters={},
        extensions={MID: 4, ABS: 2},
        send_rtcp=lambda b: rtcp.append(b) or True,
        rtcp_ssrc=1,
        stats=stats,
        cache_size=64,
        keyframe_cache=cache,
        keyframes=lambda prod: KeyframeRequester(0.0, clock, prod.send_pli, Scheduled()),
    )
    return p, stats


def viewer(
    p: Producer, stats: MediaStats, clock: Clock, *, key: str = "", cid: str = "c1", ready: bool = True
) -> tuple[Consumer, FakeSink]:
    sink = FakeSink(ready=ready)
    c = Consumer(
        consumer_id=cid,
        producer=p,
        ssrc=0x33333333,
        payload_type=100,
        sink=sink,  # type: ignore[arg-type]
        stats=stats,
        clock=clock,
        audience_key=key,
        blocked=not p.admits(key),
    )
    c.profile = p.profile_for({4: 1, 2: 3}, {1: b"v0"})
    p.add_consumer(c)
    return c, sink


def keyframe(p: Producer, seq: int, ts: int, tag: bytes = b"") -> None:
    """A three-packet keyframe: start, continuation, marker."""
    p.on_rtp(pkt(seq, ts, VP8_KEY + tag), 0)
    p.on_rtp(pkt(seq + 1, ts, VP8_CONT + tag), 0)
    p.on_rtp(pkt(seq + 2, ts, VP8_CONT + tag, marker=True), 0)


def plis(rtcp: list[bytes]) -> int:
    return sum(1 for b in rtcp for r in parse_rtcp(b) if isinstance(r, Pli))


# -- assembling -----------------------------------------------------------------


def test_cache_keeps_the_last_complete_keyframe_and_ignores_delta_frames() -> None:
    """Protects assembly: start packet + same-timestamp continuation up to the marker."""
    kc = KeyframeCache()
    kc.put(b"k0", 10, 900, True, False)
    kc.put(b"k1", 11, 900, False, False)
    kc.put(b"k2", 12, 900, False, True)
    assert kc.frame == (b"k0", b"k1", b"k2")
    kc.put(b"d0", 13, 1800, False, True)  # a delta frame changes nothing
    assert kc.frame == (b"k0", b"k1", b"k2")
    kc.put(b"s", 14, 2700, True, True)  # a one-packet keyframe replaces it
    assert kc.frame == (b"s",)


def test_cache_drops_a_keyframe_with_a_hole_and_keeps_the_previous_one() -> None:
    """Protects against replaying a broken frame: loss, reordering or a missing marker."""
    kc = KeyframeCache()
    kc.put(b"a0", 1, 100, True, False)
    kc.put(b"a1", 2, 100, False, True)
    kc.put(b"b0", 3, 200, True, False)
    kc.put(b"b2", 5, 200, False, True)  # seq 4 lost
    assert kc.frame == (b"a0", b"a1")
    kc.put(b"c0", 6, 300, True, False)
    kc.put(b"d0", 7, 400, False, True)  # next frame before c's marker
    assert kc.frame == (b"a0", b"a1")
    kc.put(b"e0", 0xFFFF, 500, True, False)  # sequence wrap inside a frame is fine
    kc.put(b"e1", 0, 500, False, True)
    assert kc.frame == (b"e0", b"e1")


def test_cache_gives_up_on_a_runaway_frame() -> None:
    """Protects memory: a frame longer than the limit is not kept."""
    kc = KeyframeCache(max_packets=4)
    kc.put(b"x", 1, 7, True, False)
    for i in range(2, 10):
        kc.put(b"x", i, 7, False, i == 9)
    assert kc.frame == ()
    assert kc.assembling is None


# -- replay to a starting viewer --------------------------------------------------


def test_starting_viewer_gets_the_cached_keyframe_at_once_and_a_pli_is_sent() -> None:
    """Protects TTFF: the whole last keyframe goes out before any live packet, in
    the viewer's SSRC/PT/sequence space, and the publisher is asked for a fresh one."""
    clock, rtcp = Clock(), []
    p, stats = make(clock, rtcp)
    keyframe(p, 1000, 90000)
    p.on_rtp(pkt(1003, 93000, VP8_DELTA, marker=True), 0)
    c, sink = viewer(p, stats, clock)
    assert c.start() == 3
    hdrs = [parse_rtp(b) for b in sink.sent]
    assert {h.ssrc for h in hdrs} == {0x33333333} and {h.payload_type for h in hdrs} == {100}
    seqs = [h.sequence for h in hdrs]
    assert seqs == [seqs[0], (seqs[0] + 1) & 0xFFFF, (seqs[0] + 2) & 0xFFFF]
    assert [h.marker for h in hdrs] == [False, False, True]
    assert sink.sent[0][hdrs[0].payload_offset :] == VP8_KEY
    assert plis(rtcp) == 1
    assert stats.keyframe_packets_replayed == 3


def test_live_stream_continues_the_replay_without_a_gap() -> None:
    """Protects the seam: delta frames before the fresh keyframe are skipped (their
    references are missing), then the live keyframe continues the sequence and its
    timestamp advances by the wall-clock time since the replay."""
    clock, rtcp = Clock(), []
    p, stats = make(clock, rtcp)
    keyframe(p, 1000, 90000)
    c, sink = viewer(p, stats, clock)
    c.start()
    replayed = [parse_rtp(b) for b in sink.sent]
    p.on_rtp(pkt(1003, 93000, VP8_DELTA, marker=True), 0)
    assert len(sink.sent) == 3  # a delta frame is not forwarded yet
    clock.t += 0.2
    keyframe(p, 1004, 111000)
    live = [parse_rtp(b) for b in sink.sent[3:]]
    assert len(live) == 3
    assert live[0].sequence == (replayed[-1].sequence + 1) & 0xFFFF
    assert (live[0].timestamp - replayed[0].timestamp) & 0xFFFFFFFF == 18000  # 0.2 s at 90 kHz
    p.on_rtp(pkt(1007, 114000, VP8_DELTA, marker=True), 0)
    assert parse_rtp(sink.sent[-1]).sequence == (live[-1].sequence + 1) & 0xFFFF


def test_no_replay_without_cache_before_dtls_or_to_an_already_running_viewer() -> None:
    """Protects the conditions: cache off, leg not ready, viewer already anchored."""
    clock = Clock()
    p, stats = make(clock, [], cache=False)
    keyframe(p, 1, 900)
    c, sink = viewer(p, stats, clock)
    assert c.start() == 0 and sink.sent == []

    p, stats = make(clock, [])
    keyframe(p, 1, 900)
    c, sink = viewer(p, stats, clock, ready=False)
    assert c.start() == 0 and sink.sent == []

    c2, sink2 = viewer(p, stats, clock, cid="c2")
    keyframe(p, 4, 1800)  # live keyframe anchors c2
    n = len(sink2.sent)
    assert c2.start() == 0 and len(sink2.sent) == n


def test_user_resume_replays_the_cached_keyframe() -> None:
    """Protects resume TTFF: a viewer who un-pauses sees a picture at once."""
    clock = Clock()
    p, stats = make(clock, [])
    c, sink = viewer(p, stats, clock)
    keyframe(p, 1, 900)
    c.pause()
    keyframe(p, 4, 1800, b"new")
    sent = len(sink.sent)
    c.resume()
    assert len(sink.sent) == sent + 3
    assert sink.sent[-1].endswith(VP8_CONT + b"new")
    # The resumed stream continues the old one's sequence numbers.
    before = parse_rtp(sink.sent[sent - 1]).sequence
    assert parse_rtp(sink.sent[sent]).sequence == (before + 1) & 0xFFFF


# -- privacy ----------------------------------------------------------------------


def test_a_private_shows_keyframe_is_never_replayed_to_a_free_viewer() -> None:
    """Protects the private's exclusivity: a blocked viewer gets no replay, and the
    keyframe captured during the private is gone when the private ends, so neither a
    returning nor a newly joining free viewer ever receives a packet of it."""
    clock = Clock()
    p, stats = make(clock, [])
    keyframe(p, 1, 900, b"free")
    free, free_sink = viewer(p, stats, clock, key="free", cid="free")
    free.start()
    p.set_audience(frozenset({"member"}))  # the private starts
    assert free.blocked and free.start() == 0
    member, member_sink = viewer(p, stats, clock, key="member", cid="member")
    keyframe(p, 4, 1800, b"private")  # the private's keyframe
    assert member_sink.sent and all(b"private" in b for b in member_sink.sent)
    newcomer, newcomer_sink = viewer(p, stats, clock, key="late", cid="late")
    assert newcomer.blocked and newcomer.start() == 0
    free_before = len(free_sink.sent)

    p.set_audience(None)  # the private ends
    assert p.keyframe_cache is not None and p.keyframe_cache.frame == ()
    late2, late2_sink = viewer(p, stats, clock, key="late2", cid="late2")
    assert late2.start() == 0
    for s in (free_sink, newcomer_sink, late2_sink):
        assert not any(b"private" in b for b in s.sent)
    assert len(free_sink.sent) == free_before
    keyframe(p, 7, 2700, b"after")
    assert free_sink.sent[-1].endswith(b"after") and late2_sink.sent[-1].endswith(b"after")


def test_a_nack_for_a_packet_from_before_the_viewers_stream_is_refused() -> None:
    """Protects the private against NACK probing: a free viewer who returns after a
    private cannot fetch the private's packets from the retransmission cache by
    NACKing sequence numbers before its resumed stream began."""
    clock = Clock()
    p, stats = make(clock, [])
    free, sink = viewer(p, stats, clock, key="free")
    keyframe(p, 1, 900, b"free")
    p.set_audience(frozenset({"member"}))
    keyframe(p, 4, 1800, b"private")
    p.set_audience(None)
    keyframe(p, 7, 2700, b"after")
    first_after = parse_rtp(sink.sent[-3]).sequence
    n = len(sink.sent)
    # Out seqs that map onto the private's packets 4..6 and the post-private 7.
    free.on_nack(((first_after - 3) & 0xFFFF, (first_after - 2) & 0xFFFF, (first_after - 1) & 0xFFFF, first_after))
    resent = sink.sent[n:]
    assert len(resent) == 1 and resent[0].endswith(VP8_KEY + b"after")
    assert not any(b"private" in b for b in sink.sent)
    assert stats.nack_packets_refused == 3
