"""Simulcast layers in the forwarding core, byte by byte (issue 12): a viewer's switch
between spatial layers keeps one continuous stream (SSRC, sequence numbers, timestamps,
VP8 PictureID and TL0PICIDX), waits for the target layer's keyframe, asks for it on that
layer's SSRC; exclusivity and the keyframe caches hold for every layer; padding probes
stay in the viewer's sequence space.

The producer and consumers are the real classes; the viewer's sink is a fake that
keeps the bytes (the C lane's bytes equal the Python path's: tests/media/test_fastpath*).
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs.rtcp import Pli, parse_rtcp
from jasmin_codecs.rtp import parse_rtp
from jasmin_codecs.vp8 import parse_vp8_descriptor
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.keyframe_requester import KeyframeRequester
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.stats import MediaStats
from tests.realparts import require_fastpath
from tests.support import Clock, CSink, FakeSink, Scheduled, pkt

SIZES = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
SSRCS = {"q": 0x1000, "h": 0x2000, "f": 0x3000}


def make(rids: tuple[str, ...] = ("f", "q", "h"), mime: str = "video/VP8") -> tuple[Producer, MediaStats, list[bytes]]:
    """A simulcast producer whose layers' SSRCs are already learnt (as the transport binds them)."""
    stats = MediaStats()
    out: list[bytes] = []
    clock = Clock()
    p = Producer(
        producer_id="sim",
        kind="video",
        mime=mime,
        clock_rate=90000,
        payload_type=96,
        ssrc=None,
        rtx_ssrc=None,
        rtx_payload_type=97,
        codec_parameters={},
        extensions={},
        send_rtcp=lambda b: out.append(b) or True,
        rtcp_ssrc=0xABCDEF01,
        stats=stats,
        cache_size=64,
        keyframes=lambda prod: KeyframeRequester(0.0, clock, prod.send_pli, Scheduled()),
        rids=rids,
    )
    for layer in p.all_layers:
        assert layer.rid is not None
        layer.ssrc = SSRCS[layer.rid]
    return p, stats, out


def viewer(p: Producer, stats: MediaStats, cid: str = "c1", key: str = "") -> tuple[Consumer, FakeSink]:
    sink = FakeSink()
    c = Consumer(
        consumer_id=cid,
        producer=p,
        ssrc=0x33333333,
        payload_type=100,
        sink=sink,  # type: ignore[arg-type]
        stats=stats,
        clock=Clock(),
        audience_key=key,
        blocked=not p.admits(key),
    )
    c.profile = p.profile_for({}, {})
    p.add_consumer(c)
    return c, sink


class Publisher:
    """Three simulcast streams of VP8 frames, each with its own seq/ts/picture id base."""

    def __init__(self, p: Producer) -> None:
        self.p = p
        self.seq = {"q": 100, "h": 30000, "f": 65500}
        self.ts = {"q": 1000, "h": 4_000_000_000, "f": 77}
        self.pid = {"q": 10, "h": 20000, "f": 32760}
        self.tl0 = {"q": 0, "h": 100, "f": 250}
        self.frame_no = 0

    def frame(self, keys: frozenset[str] = frozenset(), packets: int = 2) -> None:
        """One frame on every layer (a keyframe on the layers in ``keys``)."""
        for rid in ("q", "h", "f"):
            layer = self.p.layer_by_rid(rid)
            assert layer is not None
            key = rid in keys
            pid = self.pid[rid]
            for i in range(packets):
                desc = bytes([0x90 if i == 0 else 0x80, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, self.tl0[rid], 0x00])
                if i == 0 and key:
                    w, h = SIZES[rid]
                    body = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", w, h)
                elif i == 0:
                    body = b"\x11\x02\x00"
                else:
                    body = b""
                payload = desc + body + bytes([self.frame_no & 0xFF]) + rid.encode()
                data = pkt(self.seq[rid], self.ts[rid], payload, marker=i == packets - 1, ssrc=SSRCS[rid], exts=[])
                self.p.on_rtp(data, 0, layer)
                self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
            self.ts[rid] = (self.ts[rid] + 3000) & 0xFFFFFFFF
            self.pid[rid] = (pid + 1) & 0x7FFF
            self.tl0[rid] = (self.tl0[rid] + 1) & 0xFF
        self.frame_no += 1


Got = tuple[int, int, int, int, int, str, bool]


def received(sink: FakeSink) -> list[Got]:
    """(ssrc, seq, ts, picture id, tl0picidx, rid, keyframe start) of what the viewer got."""
    out = []
    for data in sink.sent:
        h = parse_rtp(data)
        payload = data[h.payload_offset :]
        d = parse_vp8_descriptor(payload)
        assert d.picture_id is not None and d.tl0_pic_idx is not None
        key = d.start_of_partition and not payload[d.header_size] & 1
        out.append((h.ssrc, h.sequence, h.timestamp, d.picture_id, d.tl0_pic_idx, payload[-1:].decode(), key))
    return out


def assert_continuous(got: list[Got]) -> None:
    """One stream: one SSRC, sequence +1 per packet, timestamps never back, picture id +1 and
    TL0PICIDX +1 per new frame (a keyframe may follow a gap: the replayed cached keyframe
    and the live one after it, the frames between them never sent)."""
    assert len({g[0] for g in got}) <= 1
    for a, b in zip(got, got[1:]):
        assert (b[1] - a[1]) & 0xFFFF == 1, (a, b)
        step = (b[2] - a[2]) & 0xFFFFFFFF
        assert step < 0x80000000, (a, b)
        if step:
            gap = (b[3] - a[3]) & 0x7FFF
            assert gap == 1 or (b[6] and 0 < gap < 0x4000), (a, b)
            assert (b[4] - a[4]) & 0xFF == gap, (a, b)
        else:
            assert b[3] == a[3] and b[4] == a[4], (a, b)


def test_layers_are_ranked_by_the_keyframes_picture_size_not_the_offer_order() -> None:
    """Protects Producer.layers: spatial 0 is the smallest picture whatever order the offer
    named the RIDs in, with each layer's SSRC and size."""
    p, _, _ = make(("f", "q", "h"))
    Publisher(p).frame(keys=frozenset("qhf"))
    layers = p.layers
    assert [(i.spatial, i.rid, i.ssrc, i.height) for i in layers] == [
        (0, "q", 0x1000, 180),
        (1, "h", 0x2000, 360),
        (2, "f", 0x3000, 720),
    ]


def test_a_switch_waits_for_the_target_keyframe_and_asks_for_it_on_its_ssrc() -> None:
    """Protects the switch rule: the current layer goes on until the target layer's keyframe
    (the viewer's decoder never gets a delta frame of a stream it has not started), and the
    keyframe request names the target layer's SSRC."""
    p, stats, rtcp = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))  # ranks the layers
    c, sink = viewer(p, stats)
    c.set_target_layer(2)
    pub.frame(keys=frozenset("f"))
    pub.frame()
    assert {g[5] for g in received(sink)} == {"f"}
    rtcp.clear()
    c.set_target_layer(0)
    assert any(isinstance(x, Pli) and x.media_ssrc == SSRCS["q"] for b in rtcp for x in parse_rtcp(b))
    pub.frame()
    pub.frame(keys=frozenset("h"))  # not the target's keyframe
    assert received(sink)[-1][5] == "f"
    pub.frame(keys=frozenset("q"))
    pub.frame()
    got = received(sink)
    assert [g[5] for g in got[-4:]] == ["q"] * 4
    assert c.current_layer is not None and c.current_layer.spatial == 0
    assert stats.layer_switches >= 1
    assert_continuous(got)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 2, None]), st.integers(0, 4), st.sets(st.sampled_from("qhf"))),
        min_size=1,
        max_size=25,
    )
)
def test_any_switch_sequence_yields_one_continuous_stream(steps: list[tuple[int | None, int, set[str]]]) -> None:
    """Protects continuity across switches (property): whatever the targets, pauses and
    keyframes, between pauses the viewer's packets have one SSRC, sequence numbers +1,
    timestamps that never go back, and VP8 picture ids/TL0PICIDX +1 per frame; across a
    pause (video paused below the lowest layer) the sequence still continues."""
    p, stats, _ = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    c, sink = viewer(p, stats)
    segments: list[int] = [0]
    for target, frames, keys in steps:
        was_paused = c.layer_paused
        c.set_target_layer(target)
        if target is None and not was_paused:
            segments.append(len(sink.sent))
        for i in range(frames):
            pub.frame(keys=frozenset(keys) if i == 0 else frozenset())
    got = received(sink)
    bounds = segments + [len(got)]
    for a, b in zip(bounds, bounds[1:]):
        assert_continuous(got[a:b])
    for a, b in zip(got, got[1:]):
        assert (b[1] - a[1]) & 0xFFFF == 1


def test_h264_layers_switch_on_the_c_eligible_path_without_payload_rewrite() -> None:
    """Protects the C lanes for simulcast: an H264 simulcast viewer is not munged (no picture
    ids in H264), so it may stay in a layer's C fan-out; its sequence stays continuous."""
    p, stats, _ = make(mime="video/H264")
    c, sink = viewer(p, stats)
    assert not c.vp8
    idr = bytes([0x65, 0x88])  # an IDR slice: a keyframe
    non = bytes([0x41, 0x9A])
    seq = {"q": 10, "h": 20, "f": 30}
    for n in range(6):
        for rid in ("q", "h", "f"):
            layer = p.layer_by_rid(rid)
            key = n in (0, 4) and rid == "q" or n == 0
            p.on_rtp(
                pkt(
                    seq[rid],
                    1000 * n,
                    (idr if key else non) + rid.encode(),
                    pt=96,
                    ssrc=SSRCS[rid],
                    exts=[],
                    marker=True,
                ),
                0,
                layer,
            )
            seq[rid] += 1
        if n == 2:
            q = p.layer_by_rid("q")
            assert q is not None and q is not c.layer
            c.set_target_layer(p.rank_of(q))
    rids = [d[-1:] for d in sink.sent]
    seqs = [parse_rtp(d).sequence for d in sink.sent]
    assert rids[-1] == b"q" and b"q" in rids and rids[0] != b"q"
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))


def test_a_blocked_viewer_gets_nothing_of_any_layer_and_every_keyframe_cache_is_cleared() -> None:
    """Protects exclusivity for every layer: after set_audience excludes a viewer, no packet of
    any layer reaches it (live, a switch's keyframe, or a NACK answer), and no layer's cached
    keyframe of the old audience survives to be replayed."""
    p, stats, _ = make()
    pub = Publisher(p)
    member, msink = viewer(p, stats, "m", key="member")
    guest, gsink = viewer(p, stats, "g", key="guest")
    pub.frame(keys=frozenset("qhf"))
    pub.frame()
    assert gsink.sent and msink.sent
    assert all(layer.keyframe_cache and layer.keyframe_cache.frame for layer in p.all_layers)
    p.set_audience(frozenset({"member"}))
    assert all(layer.keyframe_cache is not None and not layer.keyframe_cache.frame for layer in p.all_layers)
    before = len(gsink.sent)
    guest.set_target_layer(0)
    guest.on_nack(tuple(parse_rtp(d).sequence for d in gsink.sent))
    for _ in range(3):
        pub.frame(keys=frozenset("qhf"))
    guest.send_padding(1000)
    assert len(gsink.sent) == before
    assert len(msink.sent) > 2


def test_padding_continues_the_viewers_sequence_and_nacks_still_find_their_packets() -> None:
    """Protects send_padding for probing: padding-only packets (P bit, no payload) in the
    viewer's SSRC and sequence space, the next media packet right after them, a NACK of a
    packet sent before the padding answered with that packet, and a NACK of a padding
    packet answered with nothing."""
    p, stats, _ = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    c, sink = viewer(p, stats)
    pub.frame(keys=frozenset("qhf"))
    pub.frame()
    media = list(sink.sent)
    n = c.send_padding(600)
    assert n > 0
    pads = sink.sent[len(media) :]
    for d in pads:
        h = parse_rtp(d)
        assert h.padding and h.ssrc == 0x33333333 and h.payload_type == 100
        assert h.payload_end == h.payload_offset  # padding only
    pub.frame()
    seqs = [parse_rtp(d).sequence for d in sink.sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    before = len(sink.sent)
    old = parse_rtp(media[1])
    c.on_nack((old.sequence, parse_rtp(pads[0]).sequence))
    resent = sink.sent[before:]
    assert len(resent) == 1 and resent[0] == media[1]


def test_below_the_lowest_layer_video_pauses_and_comes_back_on_a_keyframe() -> None:
    """Protects set_target_layer(None): nothing of the video is forwarded, and a later target
    resumes on that layer's keyframe, the sequence continuing."""
    p, stats, _ = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    c, sink = viewer(p, stats)
    pub.frame(keys=frozenset("qhf"))
    c.set_target_layer(None)
    assert c.current_layer is None
    n = len(sink.sent)
    pub.frame(keys=frozenset("qhf"))
    assert len(sink.sent) == n
    c.set_target_layer(1)
    pub.frame()
    pub.frame(keys=frozenset("h"))
    got = received(sink)
    assert got[-1][5] == "h"
    seqs = [g[1] for g in got]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))


def test_the_viewers_cap_bounds_the_default_choice() -> None:
    """Protects consumer caps (signaling consumer.set_layers): with max_spatial 0 the viewer
    moves to the lowest layer and the tick's default choice (highest active) stays under it."""
    p, stats, _ = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    c, sink = viewer(p, stats)
    pub.frame(keys=frozenset("qhf"))
    c.set_layer_caps(0)
    pub.frame(keys=frozenset("q"))
    p.tick(1.0)
    pub.frame()
    p.tick(2.0)
    assert c.current_layer is not None and c.current_layer.spatial == 0
    assert received(sink)[-1][5] == "q"
    c.set_layer_caps(None)
    pub.frame(keys=frozenset("qhf"))
    assert received(sink)[-1][5] == "f"


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 2, None]), st.integers(0, 3), st.sets(st.sampled_from("qhf"))),
        min_size=1,
        max_size=12,
    )
)
def test_the_c_lane_sends_the_python_paths_bytes_across_switches(steps: list[tuple[int | None, int, set[str]]]) -> None:
    """Protects "lanes per layer" for VP8 simulcast: a viewer in a layer's C fan-out (its
    PictureID/TL0PICIDX offsets patched by _fastpath.c) gets byte for byte what the Python
    path sends an identical viewer, through any sequence of switches and pauses."""
    require_fastpath()
    p, stats, _ = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    fake = FakeSink()
    csink = CSink()
    try:
        pair = []
        for cid, sink in (("py", fake), ("c", csink)):
            c = Consumer(
                consumer_id=cid,
                producer=p,
                ssrc=0x33333333,
                payload_type=100,
                sink=sink,  # type: ignore[arg-type]
                stats=stats,
                clock=Clock(),
            )
            c.profile = p.profile_for({}, {})
            p.add_consumer(c)
            pair.append(c)
        py, cc = pair
        for c in pair:  # the same random start of both streams
            c._last_out = (1000, 5000, 100.0)
        for target, frames, keys in steps:
            for c in pair:
                c.set_target_layer(target)
            for i in range(frames):
                pub.frame(keys=frozenset(keys) if i == 0 else frozenset())
                assert cc.paused or not cc._anchored or cc.fast
        assert not py.fast
        assert csink.received(len(fake.sent)) == fake.sent
        assert csink.nothing_received()
    finally:
        csink.close()


def test_receiver_reports_cover_every_layer_and_a_viewers_pli_asks_its_own_layer() -> None:
    """Protects per-layer RTCP toward the performer: one report block per layer's SSRC (the
    publisher stops sending RIDs only once its streams are reported), the REMB names every
    layer's SSRC, and a viewer's PLI becomes a PLI for the layer that viewer is on."""
    from jasmin_codecs.rtcp import ReceiverReport, Remb

    p, stats, rtcp = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    c, _ = viewer(p, stats)
    c.set_target_layer(0)
    pub.frame(keys=frozenset("q"))
    out = p.receiver_report(1.0, 150_000, 3_000_000)
    assert out is not None
    pkts = parse_rtcp(out)
    rr = next(x for x in pkts if isinstance(x, ReceiverReport))
    remb = next(x for x in pkts if isinstance(x, Remb))
    assert {b.ssrc for b in rr.reports} == set(SSRCS.values()) == set(remb.ssrcs)
    rtcp.clear()
    c.on_keyframe_request()
    plis = [x for b in rtcp for x in parse_rtcp(b) if isinstance(x, Pli)]
    assert [x.media_ssrc for x in plis] == [SSRCS["q"]]


def test_a_switch_maps_the_new_layers_timestamps_through_the_senders_reports() -> None:
    """Protects timestamp continuity: each simulcast stream has its own random RTP timestamp
    base; with both layers' SRs the new layer's keyframe lands on the viewer's clock where its
    capture time belongs (here one frame, 3000 ticks, after the last one forwarded)."""
    p, stats, _ = make()
    pub = Publisher(p)
    pub.frame(keys=frozenset("qhf"))
    c, sink = viewer(p, stats)
    c.set_target_layer(2)
    pub.frame(keys=frozenset("f"))
    pub.frame()
    # SRs of one instant, NTP 1000 s: f's next frame would be at it, q's next frame is one
    # frame (3000 ticks) after it. So q's frame is two frames after f's last one: 6000 ticks,
    # not the 3000 (one frame at 30 fps) used without SRs.
    ntp = 1000 << 32
    for rid, rtp in (("q", pub.ts["q"] - 3000), ("f", pub.ts["f"])):
        layer = p.layer_by_rid(rid)
        assert layer is not None
        p.on_sender_report(ntp, rtp & 0xFFFFFFFF, 5.0, layer)
    c.set_target_layer(0)
    last_ts = parse_rtp(sink.sent[-1]).timestamp
    pub.frame(keys=frozenset("q"))
    first_q = next(d for d in sink.sent if d.endswith(b"q"))
    assert (parse_rtp(first_q).timestamp - last_ts) & 0xFFFFFFFF == 6000


def test_the_real_consumer_and_producer_are_what_the_adaptation_reads() -> None:
    """Protects the seam with media/adaptation.py (written against protocols, in parallel):
    every member its AdaptableConsumer, LayeredProducer and LayerView protocols name exists on
    the real Consumer, Producer and LayerInfo, and a ViewerAdaptation takes the real pair."""
    from jasmin_sfu.media.adaptation import AdaptableConsumer, LayeredProducer, LayerView, ViewerAdaptation
    from jasmin_sfu.media.layer import LayerInfo

    for cls, proto in ((Consumer, AdaptableConsumer), (Producer, LayeredProducer), (LayerInfo, LayerView)):
        wanted = [n for n in vars(proto) if not n.startswith("_")]
        assert wanted and not [n for n in wanted if not hasattr(cls, n)], (cls, proto)
    p, stats, _ = make()
    c, _ = viewer(p, stats)
    a = ViewerAdaptation(c, p, stats)
    assert a.consumer is c


def test_a_c_build_without_the_vp8_lane_fields_is_refused_as_stale(monkeypatch: Any) -> None:
    """Protects the hot path from an old build: a _fastpath whose Lane lacks vp8/pid_off/tl0_off
    (built before simulcast) is reported stale at start, naming them, instead of raising
    AttributeError when a consumer goes fast."""
    import sys
    import types

    from jasmin_sfu.media import fastpath

    real = fastpath.fastpath_ext
    assert real is not None or fastpath.unavailable_reason

    class OldLane:
        ssrc = payload_type = seq_off = ts_off = profile = target = 0

    old = types.ModuleType("old_fastpath")
    for name in fastpath.REQUIRED_NAMES:
        setattr(old, name, object())
    old.Lane = OldLane  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "old_fastpath", old)
    ext, reason = fastpath.load("old_fastpath")
    assert ext is None and reason is not None and "Lane.vp8, Lane.pid_off, Lane.tl0_off" in reason
