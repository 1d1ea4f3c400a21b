"""VP8 temporal layers in the forwarding core, byte by byte (issue 12): a viewer capped below
the stream's top temporal layer gets only the frames of its layers, in one continuous
stream (sequence numbers and PictureIDs close up over the dropped frames, TL0PICIDX,
timestamps and markers as sent), climbs back only on layer-sync frames, and its NACKs map
back to the publisher's packets without ever resending a dropped one. A viewer in a C
lane stays there: the producer asks it per packet whether its lane sends it.

The producer and consumers are the real classes; the sinks keep the bytes (CSink: a real
C target, libsrtp and a UDP socket on 127.0.0.1).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs.rtp import parse_rtp
from jasmin_codecs.vp8 import parse_vp8_descriptor
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.stats import MediaStats
from tests.realparts import require_fastpath
from tests.support import CSink, FakeSink, make_consumer, make_producer, pkt

L1T3 = (0, 2, 1, 2)


class L1T3Publisher:
    """One VP8 stream with three temporal layers (libwebrtc's 0,2,1,2 pattern), two packets a frame."""

    def __init__(self, p: Producer, seq: int = 65530, pid: int = 32765, tl0: int = 254) -> None:
        self.p = p
        self.seq = seq
        self.ts = 90000
        self.pid = pid
        self.tl0 = tl0
        self.n = 0
        self.sent: dict[int, bytes] = {}  # seq -> the publisher's packet

    def frame(self, key: bool = False, sync: bool = False, deliver: bool = True) -> list[bytes]:
        """The next frame of the pattern (TID 0 on a keyframe); its packets, delivered unless told."""
        tid = 0 if key else L1T3[self.n % 4]
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        out = []
        for i in range(2):
            t = tid << 6 | (0x20 if sync else 0)
            desc = bytes([0x90 if i == 0 else 0x80, 0xE0, 0x80 | self.pid >> 8, self.pid & 0xFF, self.tl0, t])
            body = (b"\x10\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01" if key else b"\x11\x02\x00") if i == 0 else b"\x00"
            data = pkt(self.seq, self.ts, desc + body + bytes([self.n & 0xFF, tid]), marker=i == 1)
            self.sent[self.seq] = data
            out.append(data)
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.pid = (self.pid + 1) & 0x7FFF
        self.n += 1
        if deliver:
            for data in out:
                self.p.on_rtp(data, 0)
        return out


Got = tuple[int, int, int, int, int, bool, int]


def received(packets: list[bytes]) -> list[Got]:
    """(seq, ts, picture id, tl0picidx, tid, marker, frame number) of what the viewer got."""
    out = []
    for data in packets:
        h = parse_rtp(data)
        payload = data[h.payload_offset : h.payload_end]
        d = parse_vp8_descriptor(payload)
        assert d.picture_id is not None and d.tl0_pic_idx is not None and d.temporal_id is not None
        out.append((h.sequence, h.timestamp, d.picture_id, d.tl0_pic_idx, d.temporal_id, h.marker, payload[-2]))
    return out


def assert_continuous(got: list[Got]) -> None:
    """Sequence +1 per packet; per new frame the PictureID +1 and the timestamp forward."""
    for a, b in zip(got, got[1:]):
        assert (b[0] - a[0]) & 0xFFFF == 1, (a, b)
        if b[6] != a[6]:
            assert (b[2] - a[2]) & 0x7FFF == 1, (a, b)
            assert 0 < (b[1] - a[1]) & 0xFFFFFFFF < 0x80000000, (a, b)
        else:
            assert (b[1], b[2]) == (a[1], a[2])


def setup() -> tuple[Producer, MediaStats, L1T3Publisher, Consumer, FakeSink]:
    p, stats = make_producer()
    pub = L1T3Publisher(p)
    c, sink = make_consumer(p, stats)
    c.start()
    pub.frame(key=True)
    return p, stats, pub, c, sink


def test_a_viewer_capped_at_t0_gets_every_fourth_frame_in_one_continuous_stream() -> None:
    """Protects the temporal drop (consumer.set_layers max_temporal=0): of an L1T3 stream the
    viewer gets only the TID 0 frames (a quarter), with consecutive sequence numbers and
    PictureIDs across the dropped frames (through both wraps), TL0PICIDX +1 per frame as
    the publisher numbered it, timestamps and markers as sent; the drops are counted."""
    p, stats, pub, c, sink = setup()
    assert p.temporal and c.vp8
    c.set_layer_caps(None, 0)
    start = len(sink.sent)
    for _ in range(40):
        pub.frame()
    got = received(sink.sent[start:])
    assert len(got) == 2 * 10
    assert {g[4] for g in got} == {0}
    assert_continuous(received(sink.sent))
    tl0s = [g[3] for g in got[::2]]
    assert all((b - a) & 0xFF == 1 for a, b in zip(tl0s, tl0s[1:]))
    assert [g[5] for g in got] == [False, True] * 10
    ts = [g[1] for g in got[::2]]
    assert all((b - a) & 0xFFFFFFFF == 4 * 3000 for a, b in zip(ts, ts[1:]))
    assert stats.temporal_packets_dropped == 60
    assert c.current_layer is not None and c.current_layer.temporal == 0


def test_raising_the_cap_climbs_only_on_layer_sync_frames() -> None:
    """Protects decodability of an up-switch: after the cap is lifted, T1 and T2 frames
    without the Y bit stay dropped; a T1 frame with Y brings T1, then a T2 frame with Y
    brings T2 (and consumer.layer reports every layer: temporal None)."""
    p, stats, pub, c, sink = setup()
    c.set_layer_caps(None, 0)
    for _ in range(4):
        pub.frame()
    c.set_layer_caps(None, None)
    start = len(sink.sent)
    for _ in range(8):
        pub.frame()
    assert {g[4] for g in received(sink.sent[start:])} == {0}
    pub.frame()  # T2, no Y: dropped
    pub.frame(sync=True)  # T1 with Y: taken
    pub.frame(sync=True)  # T2 with Y: taken
    tids = [g[4] for g in received(sink.sent[start:])][::2]
    assert tids[-3:] == [0, 1, 2] and tids[:-3] == [0] * (len(tids) - 3)
    assert_continuous(received(sink.sent))
    assert c.current_layer is not None and c.current_layer.temporal is None


def test_nacks_map_back_through_the_drops() -> None:
    """Protects the retransmit path: a NACK of the viewer's sequence numbers gets the bytes it
    was sent for those numbers, though the drops shifted the offset between them."""
    p, stats, pub, c, sink = setup()
    c.set_layer_caps(None, 0)
    for _ in range(12):
        pub.frame()
    sent = list(sink.sent)
    wanted = [sent[i] for i in (0, 3, 4, len(sent) - 1)]
    c.on_nack(tuple(parse_rtp(d).sequence for d in wanted))
    assert sink.sent[len(sent) :] == wanted
    assert stats.nack_temporal_refused == 0


def gaps(sink: FakeSink) -> list[int]:
    """The viewer's sequence numbers missing between the first and the last it got."""
    seqs = [parse_rtp(d).sequence for d in sink.sent]
    return [(a + i) & 0xFFFF for a, b in zip(seqs, seqs[1:]) for i in range(1, (b - a) & 0xFFFF)]


def test_a_late_packet_of_a_dropped_frame_leaves_a_gap_whose_nack_is_refused() -> None:
    """Protects "a dropped packet is never resent" under reordering: a T2 frame whose second
    packet arrives after the next frame was numbered leaves a one-packet gap for a T1
    viewer; the NACK of it maps to that dropped packet and is refused and counted."""
    p, stats, pub, c, sink = setup()
    c.set_layer_caps(None, 1)
    for _ in range(2):
        pub.frame()  # T2 T1 (after the keyframe)
    t2 = pub.frame(deliver=False)  # T2: its packets arrive out of order
    t0 = pub.frame(deliver=False)
    for data in (t2[0], *t0, t2[1]):
        p.on_rtp(data, 0)
    missing = gaps(sink)
    assert len(missing) == 1
    before = len(sink.sent)
    c.on_nack(tuple(missing))
    assert len(sink.sent) == before
    assert stats.nack_temporal_refused == 1
    assert {g[4] for g in received(sink.sent)} <= {0, 1}


def test_a_whole_frame_arriving_late_is_dropped_like_a_lost_one_and_never_resent() -> None:
    """Protects the same under a late frame: a T1 frame arriving after the frames that follow
    it were numbered is not forwarded to a T0 viewer (its sequence numbers stay a gap, as
    for a frame lost before the node); the NACKs of the gap are refused, nothing is resent."""
    p, stats, pub, c, sink = setup()
    c.set_layer_caps(None, 0)
    pub.frame()  # T2 (after the keyframe)
    late = pub.frame(deliver=False)  # T1
    for _ in range(2):
        pub.frame()  # T2 T0
    for data in late:
        p.on_rtp(data, 0)
    missing = gaps(sink)
    assert len(missing) == 2
    before = len(sink.sent)
    c.on_nack(tuple(missing))
    assert len(sink.sent) == before
    assert stats.nack_temporal_refused == 2
    assert {g[4] for g in received(sink.sent)} == {0}


def test_the_producer_measures_each_temporal_layers_rate() -> None:
    """Protects the selector's input: a layer's LayerInfo says how many temporal layers its
    descriptors showed and the measured rate up to each but the top one (cumulative)."""
    p, stats = make_producer()
    pub = L1T3Publisher(p)
    p.tick(0.0)
    pub.frame(key=True)
    for _ in range(39):
        pub.frame()
    p.tick(1.0)
    (info,) = p.layers
    assert info.temporal_layers == 3
    t0, t01 = info.temporal_bps
    assert 0 < t0 < t01 < info.bitrate_bps
    assert p.describe()["layers"][0]["temporal_layers"] == 3


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([None, 0, 1, 2]), st.integers(1, 9), st.booleans(), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_a_c_lane_viewer_drops_temporal_layers_with_the_python_paths_bytes(
    steps: list[tuple[int | None, int, bool, bool]],
) -> None:
    """Protects temporal layers on the C fast path: a viewer in a C lane, capped below the
    top layer, stays in its lane (the producer asks it per packet whether the lane sends
    it, with its offsets set), and gets byte for byte what an identical Python-path viewer
    gets, through any caps, sync bits and frames whose second packet arrives late."""
    require_fastpath()
    p, stats = make_producer()
    pub = L1T3Publisher(p)
    fake = FakeSink()
    csink = CSink()
    try:
        pair = []
        for cid, sink in (("py", fake), ("c", csink)):
            c, _ = make_consumer(p, stats, sink=sink, cid=cid)  # type: ignore[arg-type]
            c._last_out = (1000, 5000, 100.0)  # the same random start of both streams
            pair.append(c)
        py, cc = pair
        for c in pair:
            c.start()
        pub.frame(key=True)
        assert cc.fast and not py.fast
        for cap, frames, sync, late in steps:
            for c in pair:
                c.set_layer_caps(None, cap)
            for _ in range(frames):
                if late:
                    first = pub.frame(sync=sync, deliver=False)
                    p.on_rtp(first[0], 0)
                    nxt = pub.frame(deliver=False)
                    for data in (*nxt, first[1]):
                        p.on_rtp(data, 0)
                else:
                    pub.frame(sync=sync)
                assert cc.fast
        assert csink.received(len(fake.sent)) == fake.sent
        assert csink.nothing_received()
        if not any(s[3] for s in steps):
            assert_continuous(received(fake.sent))
    finally:
        csink.close()


def test_a_c_lane_viewer_capped_and_uncapped_stays_in_its_lane() -> None:
    """Protects the C path with temporal layers: a capped viewer's kept packets go out
    through its C lane (its lane counts them); once it forwards every temporal layer again
    (on sync frames) the filter is gone and the lane goes on alone, the sequence and ids
    continuing."""
    require_fastpath()
    p, stats = make_producer()
    pub = L1T3Publisher(p)
    csink = CSink()
    try:
        c, _ = make_consumer(p, stats, sink=csink)  # type: ignore[arg-type]
        c.start()
        pub.frame(key=True)
        assert c.fast
        c.set_layer_caps(None, 0)
        before = c.lane.packets
        for _ in range(8):
            pub.frame()
        assert c.fast and c.lane.packets == before + 4  # the two T0 frames, through C
        c.set_layer_caps(None, None)
        for sync in (False, True, True, False, False, False, False, False):  # T2 T1 T2 T0 T2 T1 T2 T0
            pub.frame(sync=sync)
        assert c.fast and c.temporal_id is None
        assert c.packets - c.lane.packets == 1  # only the first packet, at the start, went the Python way
        got = received(csink.received(c.packets))
        assert csink.nothing_received()
        assert [g[4] for g in got[::2]] == [0, 0, 0, 1, 2, 0, 2, 1, 2, 0]
        seqs = [g[0] for g in got]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
        pids = [g[2] for g in got[::2]]
        assert all((b - a) & 0x7FFF == 1 for a, b in zip(pids, pids[1:]))
        assert stats.temporal_packets_dropped == 14
    finally:
        csink.close()


def test_temporal_drops_inside_simulcast_survive_spatial_switches() -> None:
    """Protects temporal layers inside simulcast: a viewer capped at T0 and switched between
    two spatial layers (each its own seq/ts/picture id space, L1T3 each) gets only T0
    frames, in one stream whose sequence numbers, PictureIDs and TL0PICIDX continue across
    the drops and the switches."""
    from tests.media.test_simulcast_switching import SSRCS, make, viewer

    p, stats, _ = make(rids=("q", "h"))
    pubs = {
        rid: L1T3Publisher(p, seq=seq, pid=pid, tl0=tl0)
        for rid, seq, pid, tl0 in (("q", 100, 5, 0), ("h", 65000, 32000, 200))
    }
    for rid, pub in pubs.items():
        layer = p.layer_by_rid(rid)
        assert layer is not None
        pub.p = _LayerFeed(p, layer, SSRCS[rid])  # type: ignore[assignment]
    c, sink = viewer(p, stats)

    def frames(n: int, key: frozenset[str] = frozenset()) -> None:
        for i in range(n):
            for rid, pub in pubs.items():
                pub.frame(key=rid in key and i == 0)

    frames(1, frozenset("qh"))
    c.set_layer_caps(None, 0)
    for target in (0, 1, 0, 1):
        c.set_target_layer(target)
        frames(6)
        frames(9, frozenset("qh"))
    got = received(sink.sent)
    assert stats.layer_switches >= 3
    assert {g[4] for g in got} == {0}
    seqs = [g[0] for g in got]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    firsts = got[::2]
    assert all((b[2] - a[2]) & 0x7FFF == 1 for a, b in zip(firsts, firsts[1:]))
    assert all((b[3] - a[3]) & 0xFF == 1 for a, b in zip(firsts, firsts[1:]))


class _LayerFeed:
    """Stands for the producer in L1T3Publisher: feeds one simulcast layer, in its SSRC."""

    def __init__(self, p: Producer, layer: object, ssrc: int) -> None:
        self.p, self.layer, self.ssrc = p, layer, ssrc

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        data = data[:8] + self.ssrc.to_bytes(4, "big") + data[12:]
        self.p.on_rtp(data, arrival_ms, self.layer)  # type: ignore[arg-type]


OPS = st.one_of(
    st.tuples(st.just("frames"), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("cap"), st.sampled_from([None, 0, 1, 2])),
    st.tuples(st.just("key")),
    st.tuples(st.just("pad")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("nack"), st.integers(0, 40)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=25))
def test_any_mix_of_caps_padding_pauses_and_nacks_keeps_one_stream_and_resends_only_what_was_sent(
    ops: list[tuple[object, ...]],
) -> None:
    """Protects the temporal drop among everything else that moves a viewer's offsets: under
    any sequence of frames (with and without sync bits), cap changes, keyframes, padding
    probes, pauses and resumes, the viewer's media has consecutive sequence numbers (padding
    included) and PictureIDs, no frame above the cap in force when it began, and every NACK
    answer is byte for byte a packet the viewer was sent under that number (never a dropped
    packet, never one under another number)."""
    p, stats, pub, c, sink = setup()
    by_seq: dict[int, bytes] = {parse_rtp(d).sequence: d for d in sink.sent}
    cap = 3
    for op in ops:
        before = len(sink.sent)
        if op[0] == "frames":
            for _ in range(int(op[1])):  # type: ignore[call-overload]
                pub.frame(sync=bool(op[2]))
            media = [d for d in sink.sent[before:] if parse_rtp(d).payload_end > parse_rtp(d).payload_offset]
            assert all(g[4] <= cap for g in received(media))
        elif op[0] == "cap":
            c.set_layer_caps(None, op[1])  # type: ignore[arg-type]
            cap = 3 if op[1] is None else int(op[1])  # type: ignore[call-overload]
        elif op[0] == "key":
            pub.frame(key=True)
        elif op[0] == "pad":
            c.send_padding(300)
        elif op[0] == "pause":
            c.pause()
        elif op[0] == "resume":
            c.resume()
        else:
            seqs = sorted(by_seq)
            if seqs:
                c.on_nack((seqs[int(op[1]) % len(seqs)],))  # type: ignore[call-overload]
            for d in sink.sent[before:]:
                assert d == by_seq[parse_rtp(d).sequence]
            del sink.sent[before:]
            continue
        for d in sink.sent[before:]:
            by_seq.setdefault(parse_rtp(d).sequence, d)
    seqs = [parse_rtp(d).sequence for d in sink.sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    media = [d for d in sink.sent if parse_rtp(d).payload_end > parse_rtp(d).payload_offset]
    got = received(media)
    pids = [g[2] for a, g in zip([None, *got], got) if a is None or a[2] != g[2]]  # one per frame sent
    assert all((b - a) & 0x7FFF == 1 for a, b in zip(pids, pids[1:]))


def test_metrics_export_the_temporal_counters() -> None:
    """Protects /metrics: the drops and the refused NACKs of dropped frames are exported by
    the real collector."""
    from jasmin_sfu.api.metrics import MediaCollector, make_registry, render
    from jasmin_sfu.media.settings import MediaSettings
    from jasmin_sfu.media.worker import Worker

    w = Worker(MediaSettings())
    s = w.stats
    s.temporal_packets_dropped, s.nack_temporal_refused = 7, 3
    text = render(make_registry(MediaCollector(w, lambda: 0))).decode()
    assert "jasmin_temporal_packets_dropped_total 7.0" in text
    assert "jasmin_nack_temporal_refused_total 3.0" in text
