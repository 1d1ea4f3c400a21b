"""The C fan-out (jasmin_sfu/media/_fastpath.c) against the Python path, over real SRTP and UDP.

Every byte the C path sends is unprotected by a receiving pylibsrtp Session
and compared with what the pure-Python path produces for the same consumer
state, so a rewrite bug, a protect on the wrong session or a bad length shows
up as a byte difference.
"""

from __future__ import annotations

import os
import random
import socket
import struct
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jasmin_codecs.errors import MalformedPacket
from jasmin_codecs.rtp import build_extensions, build_rtp, extension_section, parse_rtp, split_rtp
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media import fastpath
from tests.realparts import require_fastpath
from tests.support import VP8_CONT, VP8_DELTA, VP8_KEY, CSink, FakeSink, make_consumer, make_producer, pkt, srtp_pair

fp = fastpath.fastpath_ext


@pytest.fixture(autouse=True)
def c_extension_built() -> None:
    """Every test here needs the extension: skipped by name without it, failed under CI."""
    require_fastpath()


@pytest.fixture
def csinks() -> Iterator[list[CSink]]:
    made: list[CSink] = []
    yield made
    for s in made:
        s.close()


def fixed_anchor(monkeypatch: pytest.MonkeyPatch, seq: int, ts: int) -> None:
    """Make every consumer anchor at the same out seq/ts, so two paths can be compared byte for byte."""
    values = iter([seq, ts] * 100)
    monkeypatch.setattr(random, "randint", lambda a, b: next(values))


# -- the header rewrite, table-driven -------------------------------------------

REWRITE_CASES = [
    # name, b0 of the tail, b1 in, seq, ts, seq_off, ts_off, ssrc, pt, tail
    ("plain", 0x80, 0x60, 1000, 5000, 7, 9, 0x33333333, 100, b"payload"),
    ("marker kept", 0x80, 0xE0, 1, 2, 0, 0, 1, 111, b"x"),
    ("marker cleared pt replaced", 0x80, 0x7F, 1, 2, 0, 0, 1, 0, b"x"),
    ("seq wraps", 0x80, 0x60, 0xFFFE, 0, 5, 0, 2, 96, b"y"),
    ("seq offset wraps", 0x80, 0x60, 0x8000, 0, 0xFFFF, 0, 2, 96, b"y"),
    ("ts wraps", 0x80, 0x60, 0, 0xFFFFFFF0, 0, 0x20, 3, 96, b"z"),
    ("ts offset max", 0x80, 0x60, 0, 0xFFFFFFFF, 0, 0xFFFFFFFF, 3, 96, b"z"),
    (
        "extension bit + one-byte section",
        0x90,
        0x60,
        10,
        10,
        1,
        1,
        4,
        100,
        struct.pack("!HH", 0xBEDE, 1) + b"\x10v0\x00" + b"body",
    ),
    ("padding bit + padding", 0xA0, 0x60, 10, 10, 1, 1, 4, 100, b"body\x00\x00\x03"),
    ("csrc count 2", 0x82, 0x60, 10, 10, 1, 1, 4, 100, struct.pack("!II", 7, 8) + b"body"),
    ("max ssrc", 0x80, 0x60, 10, 10, 1, 1, 0xFFFFFFFF, 127, b"q"),
    ("empty tail", 0x80, 0x60, 10, 10, 1, 1, 5, 100, b""),
]


@pytest.mark.parametrize("case", REWRITE_CASES, ids=[c[0] for c in REWRITE_CASES])
def test_c_rewrite_equals_the_python_rewrite(case: tuple[Any, ...]) -> None:
    """Protects byte-identical output: C writes exactly the header Consumer._rewrite writes."""
    _, b0, b1, seq, ts, seq_off, ts_off, ssrc, pt, tail = case
    p, stats = make_producer()
    c, _ = make_consumer(p, stats, ssrc=ssrc, pt=pt)
    c._seq_off, c._ts_off = seq_off, ts_off
    lane = fp.Lane(ssrc, pt)
    lane.seq_off, lane.ts_off = seq_off, ts_off
    got = fp.rewrite(lane, (b0, tail), b1, seq, ts)
    assert got == c._rewrite(b1, seq, ts, (b0, tail))
    assert got[0] == b0
    assert got[1] == (b1 & 0x80) | pt
    assert struct.unpack("!HII", got[2:12]) == ((seq + seq_off) & 0xFFFF, (ts + ts_off) & 0xFFFFFFFF, ssrc)
    assert got[12:] == tail


def test_lane_fields_are_range_checked() -> None:
    """Protects the C state: a bad payload type or profile is refused, offsets wrap like the Python ones."""
    lane = fp.Lane(1, 96)
    with pytest.raises(ValueError):
        lane.payload_type = 128
    with pytest.raises(ValueError):
        lane.profile = fp.MAX_PROFILES
    with pytest.raises(TypeError):
        lane.target = "not a target"  # type: ignore[assignment]
    lane.seq_off = 0x1FFFF
    lane.ts_off = 0x1FFFFFFFF
    assert (lane.seq_off, lane.ts_off) == (0xFFFF, 0xFFFFFFFF)


# -- the whole path: producer -> C lane -> libsrtp -> UDP -> unprotect ----------


def stream() -> list[bytes]:
    """A keyframe start, continuations, a marker, a padded packet, deltas, crossing seq 65535 -> 0."""
    out = []
    seq, ts = 0xFFFA, 0xFFFFF000
    for i in range(12):
        payload = VP8_KEY if i == 0 else VP8_DELTA if i % 4 == 0 else VP8_CONT
        data = pkt(seq & 0xFFFF, ts & 0xFFFFFFFF, payload + bytes([i]) * 50, marker=i % 3 == 2)
        if i == 5:  # P bit with 4 bytes of padding
            data = bytes([data[0] | 0x20]) + data[1:] + b"\x00\x00\x00\x04"
        out.append(data)
        seq += 1
        if i % 3 == 2:
            ts += 3000
    return out


def test_c_and_python_paths_send_identical_rtp_and_the_c_output_decrypts(
    monkeypatch: pytest.MonkeyPatch, csinks: list[CSink]
) -> None:
    """Protects the fast path end to end: after SRTP unprotect by a receiving session,
    every datagram the C lane sent equals what the Python path sent for the same
    consumer state (seq wrap, ts wrap, marker, padding, extension ids and MID)."""
    fixed_anchor(monkeypatch, 0x7FF0, 0xFFFFFF00)
    p, stats = make_producer()
    slow, py_sink = make_consumer(p, stats, cid="py")
    cs = CSink()
    csinks.append(cs)
    fast, _ = make_consumer(p, stats, cid="c", sink=cs)  # type: ignore[arg-type]
    packets = stream()
    for data in packets:
        p.on_rtp(data, 0)
    assert fast.fast and not slow.fast
    assert p._lanes == (fast.lane,)
    got = cs.received(len(packets))
    assert got == py_sink.sent
    assert [parse_rtp(b).sequence for b in got][5:8] == [0x7FF5, 0x7FF6, 0x7FF7]
    # The anchor packet went through Python (sink.send -> C send), the rest through the lane.
    assert fast.lane.packets == len(packets) - 1
    assert fast.packets == slow.packets == len(packets)
    assert fast.octets == slow.octets
    assert stats.rtp_packets_out == 2 * len(packets)
    assert stats.drops.get("send_failed", 0) == 0
    assert cs.target.sent == len(packets)


def test_many_lanes_each_get_their_own_ssrc_and_session(csinks: list[CSink]) -> None:
    """Protects per-viewer state: 20 C lanes, each packet decrypts with its own viewer's session."""
    p, stats = make_producer()
    consumers = []
    for i in range(20):
        cs = CSink()
        csinks.append(cs)
        c, _ = make_consumer(p, stats, cid=f"c{i}", ssrc=0x40000000 + i, sink=cs)  # type: ignore[arg-type]
        consumers.append((c, cs))
    for data in stream()[:6]:
        p.on_rtp(data, 0)
    for c, cs in consumers:
        got = cs.received(6)
        assert {parse_rtp(b).ssrc for b in got} == {c.ssrc}
        assert c.fast and c.packets == 6
    assert stats.rtp_packets_out == 120


def test_nack_replies_go_through_the_c_send(csinks: list[CSink]) -> None:
    """Protects retransmissions on a fast consumer: served from the cache, protected, decryptable."""
    p, stats = make_producer()
    cs = CSink()
    csinks.append(cs)
    c, _ = make_consumer(p, stats, sink=cs)  # type: ignore[arg-type]
    packets = stream()[:4]
    for data in packets:
        p.on_rtp(data, 0)
    first = cs.received(4)
    c.on_nack((parse_rtp(first[2]).sequence,))
    cs.rx = srtp_pair()[1]  # a fresh receiver: the first one's replay window has seen this index
    (again,) = cs.received(1)
    assert again == first[2]
    assert stats.nack_packets_served == 1


# -- what is skipped, and errors counted not raised -------------------------------


def test_a_closed_target_is_skipped_and_counted(csinks: list[CSink]) -> None:
    """Protects a leaving viewer: once its DTLS closed (target closed), nothing goes to its fd."""
    p, stats = make_producer()
    cs = CSink()
    csinks.append(cs)
    c, _ = make_consumer(p, stats, sink=cs)  # type: ignore[arg-type]
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    cs.received(1)
    cs.target.close()
    assert cs.target.fd == -1 and not cs.target.open
    p.on_rtp(pkt(2, 0, VP8_CONT), 0)
    p.on_rtp(pkt(3, 0, VP8_CONT), 0)
    assert cs.nothing_received()
    assert stats.drops["send_failed"] == 2
    assert c.packets == 1


def test_an_unready_or_paused_consumer_is_not_in_the_c_fanout(csinks: list[CSink]) -> None:
    """Protects the keyframe start and pause: an unready leg stays on the Python path
    (never anchored), a paused consumer leaves the C tuple and gets nothing."""
    p, stats = make_producer()
    unready = CSink()
    unready.ready = False
    paused = CSink()
    csinks += [unready, paused]
    cu, _ = make_consumer(p, stats, cid="u", sink=unready)  # type: ignore[arg-type]
    cp, _ = make_consumer(p, stats, cid="p", sink=paused)  # type: ignore[arg-type]
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    assert not cu.fast and cp.fast
    assert p._py == (cu,) and p._lanes == (cp.lane,)
    paused.received(1)
    cp.pause()
    assert not cp.fast and p._lanes == () and p._py == (cu,)
    p.on_rtp(pkt(2, 0, VP8_KEY), 0)
    assert unready.nothing_received() and paused.nothing_received()
    cp.resume()
    p.on_rtp(pkt(3, 3000, VP8_DELTA), 0)
    assert paused.nothing_received()  # resumes only on a keyframe
    p.on_rtp(pkt(4, 6000, VP8_KEY), 0)
    assert cp.fast and len(paused.received(1)) == 1
    cu.close()
    assert p._py == ()


def test_a_blocked_consumer_gets_nothing_through_c(csinks: list[CSink]) -> None:
    """Protects exclusivity on the fast path: set_audience removes the lane in the same call."""
    p, stats = make_producer()
    a, b = CSink(), CSink()
    csinks += [a, b]
    ca, _ = make_consumer(p, stats, cid="a", sink=a)  # type: ignore[arg-type]
    ca.audience_key = "member"
    cb, _ = make_consumer(p, stats, cid="b", sink=b)  # type: ignore[arg-type]
    cb.audience_key = "other"
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    a.received(1), b.received(1)
    p.set_audience(frozenset({"member"}))
    assert p._lanes == (ca.lane,)
    for i in range(2, 6):
        p.on_rtp(pkt(i, 0, VP8_KEY if i == 4 else VP8_CONT), 0)
    assert len(a.received(4)) == 4
    assert b.nothing_received()


def test_send_errors_are_counted_never_raised(csinks: list[CSink]) -> None:
    """Protects the publisher's receive loop: ECONNREFUSED and a bad fd count as drops."""
    tx, _rx = srtp_pair()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nobody listens there: the kernel answers with ICMP port unreachable
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))  # connected, so the ICMP error is reported on the next send
    s.setblocking(False)
    r, w = os.pipe()
    try:
        refused = fp.Target(
            adapter.srtp_protect_address(), adapter.srtp_session_address(tx), tx, s.fileno(), "127.0.0.1", port
        )
        notsock = fp.Target(adapter.srtp_protect_address(), adapter.srtp_session_address(tx), tx, r, "127.0.0.1", port)
        p, stats = make_producer()
        lanes = []
        for t in (refused, notsock):
            lane = fp.Lane(0x50000000, 100)
            lane.target = t
            lanes.append(lane)
        tails = [(0x80, b"x" * 100)]
        results = [fp.fanout(tuple(lanes), tails, 0x60, i, i) for i in range(3)]
        assert results[0][0] == 1  # the first send to the dead port succeeds
        assert all(r_[2] >= 1 for r_ in results)
        assert refused.refused >= 1
        assert notsock.send_errors == 3 and notsock.sent == 0
        assert sum(r_[0] for r_ in results) + sum(r_[2] for r_ in results) == 6
    finally:
        s.close()
        os.close(r)
        os.close(w)


def test_fanout_rejects_a_wrong_call_but_not_a_wrong_lane() -> None:
    """Protects robustness: a bad tails argument raises TypeError at the call (a bug),
    a lane with no target or an out-of-range profile is skipped and counted."""
    lane = fp.Lane(1, 96)
    with pytest.raises(TypeError):
        fp.fanout((lane,), [(0x80, "str")], 0, 0, 0)  # type: ignore[list-item]
    assert fp.fanout((lane,), [(0x80, b"x")], 0, 0, 0) == (0, 0, 1)
    lane.profile = 3
    assert fp.fanout((lane,), [(0x80, b"x")], 0, 0, 0) == (0, 0, 1)


def test_python_only_sink_keeps_the_python_path() -> None:
    """Protects the fallback: a sink with no C target (extension missing, FakeSink) is served by Python."""
    p, stats = make_producer()
    c, sink = make_consumer(p, stats, sink=FakeSink())
    for i, payload in enumerate((VP8_KEY, VP8_CONT, VP8_DELTA)):
        p.on_rtp(pkt(i, 0, payload), 0)
    assert not c.fast and p._lanes == () and len(sink.sent) == 3
    assert c.lane is None or c.lane.packets == 0


# -- one corpus, one split/drop decision: split_rtp, the Python consumer, the C lane ----

corpus_fields = st.fixed_dictionaries(
    {
        "marker": st.booleans(),
        "payload_type": st.sampled_from([96, 96, 96, 97]),
        "sequence": st.integers(0, 0xFFFF),
        "timestamp": st.integers(0, 0xFFFFFFFF),
        "payload": st.binary(min_size=0, max_size=60).map(lambda b: VP8_DELTA + b),
        "csrcs": st.lists(st.integers(0, 0xFFFFFFFF), max_size=3).map(tuple),
        "padding": st.sampled_from([0, 0, 1, 4, 17]),
    }
)
corpus_elements = st.lists(
    st.tuples(st.sampled_from([2, 4, 7]), st.binary(min_size=1, max_size=4)), max_size=3, unique_by=lambda e: e[0]
)


def corpus_cases(fields: dict[str, Any], elements: list[tuple[int, bytes]]) -> list[bytes]:
    """A valid packet and its malformed neighbours (truncated, header bits flipped, bad padding count)."""
    profile, body = build_extensions(elements)
    data = build_rtp(ssrc=0x11111111, ext_section=extension_section(profile, body) if elements else b"", **fields)
    out = [data]
    out += [data[:k] for k in (0, 11, 12, 13, 16, len(data) - 1) if k < len(data)]
    out += [bytes([data[0] ^ bit]) + data[1:] for bit in (0x10, 0x20, 0x01, 0x0F, 0xC0)]
    out += [data[:-1] + bytes([v]) for v in (0, 255)]
    return out


def expected_decision(p: Any, profile: int, data: bytes) -> str | None:
    """The drop reason Producer.on_rtp must count for ``data``, or None to forward it."""
    try:
        b1 = split_rtp(data)[1]
    except MalformedPacket as exc:
        return exc.reason
    if b1 & 0x7F != p.payload_type:
        return "unknown_pt"
    if p.tail_for(data, profile) is None:
        return "bad_extension"  # an element runs past its block: the rewrite refuses it
    return None


def same_but_offsets(a: bytes, b: bytes) -> bool:
    """Equal but for sequence number and timestamp (each consumer anchors at its own random offsets)."""
    return a[:2] == b[:2] and a[8:] == b[8:]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus_fields, corpus_elements)
def test_corpus_gets_the_same_split_and_drop_decision_from_split_rtp_python_and_c(
    fields: dict[str, Any], elements: list[tuple[int, bytes]]
) -> None:
    """Protects the one-parser rule of the hot path (the C file has no RTP parser of its own: it
    writes the 12-byte header in front of the tail Producer.on_rtp split with
    jasmin_codecs.rtp.split_rtp). For every packet of a corpus of valid and malformed ones, the drop
    counted is split_rtp's reason (or unknown_pt), and a packet is forwarded by both the Python
    consumer and the C lane or by neither; forwarded, the C datagram decrypts to the Python bytes and
    re-parses to the input's CSRCs, payload and padding."""
    p, stats = make_producer()
    slow, py_sink = make_consumer(p, stats, cid="py")
    cs = CSink()
    try:
        fast, _ = make_consumer(p, stats, cid="c", sink=cs)  # type: ignore[arg-type]
        p.on_rtp(stream()[0], 0)  # a keyframe anchors both consumers
        (first,) = cs.received(1)
        assert fast.fast and same_but_offsets(first, py_sink.sent[-1])
        for i, data in enumerate(corpus_cases(fields, elements)):
            if len(data) >= 4:  # a fresh sequence number: the viewer's SRTP replay window refuses repeats
                data = data[:2] + ((0xFFFB + i) & 0xFFFF).to_bytes(2, "big") + data[4:]
            reason = expected_decision(p, slow.profile, data)
            drops_before, py_before, c_before = dict(stats.drops), len(py_sink.sent), cs.target.sent
            p.on_rtp(data, 0)
            if reason is not None:
                assert stats.drops.get(reason, 0) == drops_before.get(reason, 0) + 1, (reason, data.hex())
                assert len(py_sink.sent) == py_before
                assert cs.target.sent == c_before, data.hex()
                continue
            assert stats.drops == drops_before
            assert len(py_sink.sent) == py_before + 1
            assert cs.target.sent == c_before + 1
            (got,) = cs.received(1)
            assert same_but_offsets(got, py_sink.sent[-1])
            h_in, h_out = parse_rtp(data), parse_rtp(got)
            assert h_out.csrcs == h_in.csrcs and h_out.padding == h_in.padding
            assert got[h_out.payload_offset :] == data[h_in.payload_offset :]
    finally:
        cs.close()
