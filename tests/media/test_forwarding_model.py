"""Producer/Consumer through the real forwarding code: a stateful property test, and the
named cases it found (a late packet older than a viewer's anchor; NACKs 2^15 packets
into a stream).

Hypothesis drives one producer (video VP8 or audio Opus) and three consumers with
an upstream that loses packets, reorders them (a packet held back and delivered
late, as itself or as an RFC 4588 retransmission), crosses sequence 65535 -> 0,
and with viewers that pause, resume, are blocked and unblocked by the producer's
audience (a private show), and NACK sequence numbers around their stream.

Every upstream packet carries a unique id in its payload, so each packet a
viewer's sink gets is traced to the upstream packet it copies. The invariants are
stated from the viewer's side:

* a viewer's stream is one sequence: inside one run (from a (re)start to the next
  pause) every packet's out seq and ts are the upstream ones plus one fixed offset
  (no gap the upstream did not have), a new run (or a replayed keyframe) continues
  right after where the stream stopped (the newest upstream packet's out seq when
  it stopped: no gap for the pause, never backwards), and no out seq is used for two
  different packets (no duplicates; a NACK resend repeats a packet the mapping
  already gives);
* nothing reaches a viewer while it is paused or blocked;
* a video run starts on a keyframe (a replayed keyframe from the cache counts);
* a packet the producer received while the viewer was blocked (a private's
  packets) never reaches that viewer, live or resent, and no packet from before
  the run's anchor (in extended sequence numbers) is sent in the run, live or resent;
* a packet still in the producer's cache, NACKed for the first time by a viewer
  whose run contains it, is resent (at least once).

The viewers NACK up to the whole 64-packet cache back, at one packet a frame
(30 fps) more than a second of media: the retransmission policy's age rule
(retransmit.py, rule 1: media age plus RTT over ``max_delay_s``) rightly refuses
the oldest of them. It has its own tests (test_retransmit.py); here the consumers
get a ``max_delay_s`` no model stream reaches (MODEL_POLICY), so the last
invariant holds exactly. The budget, retries and RTT rules keep their defaults.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field, replace

import pytest

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jasmin_codecs.rtp import parse_rtp
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.retransmit import DEFAULT_POLICY, RetransmitPolicy
from tests.support import VP8_DELTA, VP8_KEY, Clock, FakeSink, make_consumer, make_producer, pkt

CACHE = 64  # make_producer's packet cache
AUDIO_PREFIX = b"\xfc"
ID = struct.Struct("!I")
NVIEWERS = 3
# A model stream is at most stateful_step_count (60) packets, 2 s of media: an hour
# of delay never lets the age rule refuse a cached packet.
MODEL_POLICY = replace(DEFAULT_POLICY, max_delay_s=3600.0)


def serial_lt(a: int, b: int) -> bool:
    """RFC 1982 ordering of 16-bit sequence numbers: a comes before b."""
    return a != b and (b - a) & 0xFFFF < 0x8000


@dataclass
class Upstream:
    """One packet the publisher sent."""

    pid: int
    ext: int  # extended sequence number: the true order, without 16-bit wraparound
    ts: int
    key: bool

    @property
    def seq(self) -> int:
        return self.ext & 0xFFFF


@dataclass
class Viewer:
    """What the model knows of one consumer, from what its sink received."""

    consumer: Consumer
    sink: FakeSink
    key: str
    user_paused: bool = False
    blocked: bool = False
    # The current run: (anchor's extended in-seq, seq offset, ts offset), None before its first packet.
    run: tuple[int, int, int] | None = None
    highest_out: int | None = None  # highest out seq this viewer got (serial order)
    # Where the viewer's stream stopped: the out seq of the newest upstream packet when its
    # last run ended, or of the last replayed packet; a (re)start continues right after it.
    stream_end: int | None = None
    used: dict[int, int] = field(default_factory=dict)  # out seq -> packet id
    hidden: set[int] = field(default_factory=set)  # ids the producer received while this viewer was blocked
    nacked: set[int] = field(default_factory=set)  # extended in-seqs NACKed in the current run
    seen: int = 0  # sink.sent entries already checked

    @property
    def stopped(self) -> bool:
        return self.user_paused or self.blocked


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
    free_payloads = [b[parse_rtp(b).payload_offset :] for b in f_sink.sent]
    assert free_payloads == [VP8_KEY, VP8_KEY]
    assert [parse_rtp(b).sequence - parse_rtp(f_sink.sent[0]).sequence for b in f_sink.sent] == [0, 1]
    assert VP8_DELTA + b"late" in [b[parse_rtp(b).payload_offset :] for b in m_sink.sent]


def _nack_the_runs_keyframe_28_frames_later(m: ForwardingModel) -> None:
    """The stored example that failed the model: a run anchored on a keyframe, 28
    frames (at 30 fps, 84,000 ticks: 0.93 s) and 38 sequence numbers across 65535 -> 0
    later, its viewer NACKs that keyframe: still in the 64-packet cache."""
    m.setup(video=True, start=65495, ts0=4_294_947_295)
    for key in (False, False, False, True):
        m.send(key=key, gap=0)
    v = m.viewers[0]
    assert v.run is not None and v.run[0] == 65498 and v.highest_out is not None
    keyframe_out = v.highest_out
    for i in range(28):
        m.send(key=False, gap=1 if i < 10 else 0)
    m._nack(v, [-((v.highest_out - keyframe_out) & 0xFFFF)])


def test_the_model_expects_no_resend_its_policy_refuses_for_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the model's resend invariant from the age rule (retransmit.py, rule 1):
    the model NACKs packets up to its cache's 64 back, at one packet a frame more media
    than ``max_delay_s`` allows. Under the default policy (1 s, less the 0.1 s default
    RTT) the stored example's keyframe, 0.93 s of media old, is rightly refused for its
    age; the model's consumers get a ``max_delay_s`` no model stream reaches, so every
    cached packet of a run is resent on its first NACK."""
    monkeypatch.setattr(sys.modules[__name__], "event", lambda *_: None)  # outside a hypothesis test
    m = ForwardingModel()
    _nack_the_runs_keyframe_28_frames_later(m)
    assert m.stats.nack_packets_served == 1 and m.stats.nack_suppressed_age == 0
    m.teardown()

    class DefaultPolicyModel(ForwardingModel):
        policy = DEFAULT_POLICY

    d = DefaultPolicyModel()
    with pytest.raises(AssertionError, match="NACKed once, was not resent"):
        _nack_the_runs_keyframe_28_frames_later(d)
    assert d.stats.nack_packets_served == 0 and d.stats.nack_suppressed_age == 1
    d.teardown()


class ForwardingModel(RuleBasedStateMachine):
    """Protects what each viewer of a producer is sent, whatever the upstream and the
    viewers do: one gapless, duplicate-free sequence per viewer, nothing while paused
    or blocked, keyframe starts for video, no private packet to a blocked viewer,
    nothing from before a run's anchor, and cached packets resent on a first NACK
    (the invariants in the module docstring)."""

    policy: RetransmitPolicy = MODEL_POLICY  # the viewers' retransmission policy

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.sent: dict[int, Upstream] = {}
        self.held: list[Upstream] = []
        self.viewers: list[Viewer] = []
        self.cache_slots: dict[int, int] = {}  # slot -> in-seq, mirrors the producer's ring
        self.next_id = 1
        self.rtx_seq = 0
        self.top: int | None = None  # newest extended seq the producer received

    # -- setup ------------------------------------------------------------------

    @initialize(
        video=st.sampled_from([True, True, False]),
        start=st.one_of(st.integers(0xFFFF - 40, 0xFFFF), st.integers(0, 0xFFFF)),
        ts0=st.one_of(st.integers(0xFFFFFFFF - 20000, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
    )
    def setup(self, video: bool, start: int, ts0: int) -> None:
        kind, mime, pt = ("video", "video/VP8", 96) if video else ("audio", "audio/opus", 111)
        self.video = video
        self.pt = pt
        self.producer, self.stats = make_producer(kind=kind, mime=mime, pt=pt, clock=self.clock)
        self.next_ext = start
        self.ts = ts0
        for i in range(NVIEWERS):
            c, sink = make_consumer(
                self.producer, self.stats, cid=f"c{i}", ssrc=0x40000000 + i, clock=self.clock, policy=self.policy
            )
            c.audience_key = f"c{i}"
            self.viewers.append(Viewer(c, sink, f"c{i}"))

    # -- upstream -----------------------------------------------------------------

    def _new_packet(self, key: bool, gap: int) -> Upstream:
        self.next_ext += gap  # ``gap`` packets lost upstream
        up = Upstream(self.next_id, self.next_ext, self.ts, key if self.video else True)
        self.next_id += 1
        self.next_ext += 1
        self.ts = (self.ts + (3000 if self.video else 960)) & 0xFFFFFFFF
        self.sent[up.pid] = up
        return up

    def _payload(self, up: Upstream) -> bytes:
        if self.video:
            return (VP8_KEY if up.key else VP8_DELTA) + ID.pack(up.pid)
        return AUDIO_PREFIX + ID.pack(up.pid)

    def _exts(self) -> list[tuple[int, bytes]]:
        return [(4, b"0"), (2, b"\x01\x02\x03")] if self.video else [(4, b"1"), (1, b"\x90")]

    def _deliver(self, up: Upstream, as_rtx: bool = False) -> None:
        """The producer receives ``up``; then every viewer's new packets are checked."""
        for v in self.viewers:
            if v.blocked:
                v.hidden.add(up.pid)
        if as_rtx:
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            data = pkt(
                self.rtx_seq,
                up.ts,
                struct.pack("!H", up.seq) + self._payload(up),
                pt=97,
                marker=True,
                ssrc=0x22222222,
                exts=self._exts(),
            )
            self.producer.on_rtx(data, 0)
        else:
            self.producer.on_rtp(pkt(up.seq, up.ts, self._payload(up), pt=self.pt, marker=True, exts=self._exts()), 0)
        if self.video:
            self.cache_slots[up.seq % CACHE] = up.ext
        if self.top is None or up.ext > self.top:
            self.top = up.ext
        self._check_new("live")

    @rule(key=st.booleans(), gap=st.sampled_from([0, 0, 0, 1, 2]))
    def send(self, key: bool, gap: int) -> None:
        self._deliver(self._new_packet(key, gap))

    @rule(key=st.booleans())
    def long_time_later(self, key: bool) -> None:
        """20,000 sequence numbers later (a long-running stream; fewer than 2^15 at once,
        so the producer still orders it as newer): runs of more than 2^15 and 2^16
        packets past a viewer's anchor become reachable. Packets held back are lost."""
        self.held.clear()
        self._deliver(self._new_packet(key, 20000))

    @precondition(lambda self: len(self.held) < 3)
    @rule(key=st.booleans())
    def hold_back(self, key: bool) -> None:
        """The next packet is delayed in the network: later ones overtake it."""
        self.held.append(self._new_packet(key, 0))

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), as_rtx=st.booleans())
    def deliver_late(self, data: st.DataObject, as_rtx: bool) -> None:
        up = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self._deliver(up, as_rtx)

    # -- viewers --------------------------------------------------------------------

    @rule(i=st.integers(0, NVIEWERS - 1))
    def pause(self, i: int) -> None:
        v = self.viewers[i]
        v.consumer.pause()
        self._stopping(v)
        v.user_paused = True
        self._check_new("replay")

    @rule(i=st.integers(0, NVIEWERS - 1))
    def resume(self, i: int) -> None:
        v = self.viewers[i]
        v.consumer.resume()
        v.user_paused = False
        self._check_new("replay")

    @rule(members=st.one_of(st.none(), st.frozensets(st.sampled_from([f"c{i}" for i in range(NVIEWERS)]))))
    def set_audience(self, members: frozenset[str] | None) -> None:
        """A private starts (``members``), changes or ends (None): the real Producer.set_audience."""
        self.producer.set_audience(members)
        for v in self.viewers:
            blocked = members is not None and v.key not in members
            if blocked:
                self._stopping(v)
            v.blocked = blocked
        self._check_new("replay")

    @rule(dt=st.sampled_from([0.001, 0.02, 0.5, 3.0]))
    def advance_clock(self, dt: float) -> None:
        self.clock.t += dt

    @precondition(lambda self: any(v.highest_out is not None for v in self.viewers))
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        """A viewer NACKs out seqs around its stream: ones it got, ones before its run
        (where a private's packets map), and ones not sent yet."""
        v = data.draw(st.sampled_from([v for v in self.viewers if v.highest_out is not None]))
        deltas = data.draw(
            st.lists(st.one_of(st.integers(-6, 0), st.integers(-CACHE - 8, 3)), min_size=1, max_size=4, unique=True)
        )
        self._nack(v, deltas)

    def _nack(self, v: Viewer, deltas: list[int]) -> None:
        """``v`` NACKs the out seqs ``deltas`` from the newest it got."""
        assert v.highest_out is not None
        out_seqs = tuple((v.highest_out + d) & 0xFFFF for d in deltas)
        before = len(v.sink.sent)
        v.consumer.on_nack(out_seqs)
        resent = [parse_rtp(b) for b in v.sink.sent[before:]]
        self._check_new("resend")
        if v.run is None or v.stopped:
            return
        anchor, seq_off, _ = v.run
        got = {h.sequence for h in resent}
        for o in out_seqs:
            s = (o - seq_off) & 0xFFFF
            ext = self.cache_slots.get(s % CACHE) if self.video else None
            if ext is None or ext & 0xFFFF != s or ext < anchor or ext in v.nacked:
                continue  # not cached, from before the run, or NACKed before
            v.nacked.add(ext)
            event("a cached packet of the run NACKed once")
            assert o in got, f"cached packet {ext} (out {o}) of the run from {anchor}, NACKed once, was not resent"

    # -- checks ---------------------------------------------------------------------

    def _stopping(self, v: Viewer) -> None:
        """``v`` is about to stop: its run ends where the upstream stream is now."""
        if not v.stopped:
            if v.run is not None and self.top is not None:
                v.stream_end = (self.top + v.run[1]) & 0xFFFF
            v.run = None
            v.nacked.clear()

    def _check_new(self, how: str) -> None:
        for v in self.viewers:
            new = v.sink.sent[v.seen :]
            v.seen = len(v.sink.sent)
            for data in new:
                self._check_packet(v, data, how)

    def _check_packet(self, v: Viewer, data: bytes, how: str) -> None:
        assert not v.stopped, f"{v.key} got a packet ({how}) while paused or blocked"
        h = parse_rtp(data)
        payload = data[h.payload_offset : h.payload_end]
        (pid,) = ID.unpack(payload[-4:])
        up = self.sent[pid]
        assert pid not in v.hidden, (
            f"{v.key} got packet {up.seq} ({how}) that the producer received while {v.key} was blocked"
        )
        assert payload == self._payload(up), "payload not forwarded byte for byte"
        assert h.ssrc == v.consumer.ssrc and h.payload_type == v.consumer.payload_type
        out, ts_out = h.sequence, h.timestamp
        if how == "resend":
            assert v.run is not None, f"{v.key} got a resend outside a run"
            anchor, seq_off, ts_off = v.run
            assert up.ext >= anchor, f"{v.key} got a resend of {up.ext}, from before its anchor {anchor}"
            event("a resend")
            assert out == (up.seq + seq_off) & 0xFFFF and ts_out == (up.ts + ts_off) & 0xFFFFFFFF
            assert v.used.get(out, pid) == pid or not self._reused(v, out, up), (
                f"{v.key}: out seq {out} resent with another packet"
            )
            v.used[out] = pid
            return
        starting = how == "replay" or v.run is None
        if starting:
            # A replayed keyframe from the cache, or the live anchor of a new run: the
            # viewer's stream continues right after where it stopped, never backwards.
            if self.video:
                assert up.key, f"{v.key}: a video (re)start on a delta packet ({how})"
            if v.stream_end is not None:
                assert out == (v.stream_end + 1) & 0xFFFF, (
                    f"{v.key}: (re)start at out seq {out} ({how}), the stream stopped at {v.stream_end}"
                )
            if v.highest_out is not None:
                assert serial_lt(v.highest_out, out), f"{v.key}: stream went back from {v.highest_out} to {out}"
        if how == "replay":
            assert v.run is None, f"{v.key}: a replay inside a run"
            v.stream_end = out
        elif v.run is None:
            v.run = (up.ext, (out - up.seq) & 0xFFFF, (ts_out - up.ts) & 0xFFFFFFFF)
            if v.stream_end is not None:
                event("a run continued a stopped stream")
            if v.hidden:
                event("a run began after the viewer was blocked")
        else:
            anchor, seq_off, ts_off = v.run
            assert up.ext >= anchor, f"{v.key} got {up.ext} live, from before its anchor {anchor}"
            assert out == (up.seq + seq_off) & 0xFFFF, f"{v.key}: out seq {out} is not upstream {up.seq} + offset"
            assert ts_out == (up.ts + ts_off) & 0xFFFFFFFF, f"{v.key}: timestamp offset changed inside a run"
        assert not self._reused(v, out, up), f"{v.key}: out seq {out} used twice (packets {v.used[out]} and {pid})"
        v.used[out] = pid
        if v.highest_out is None or serial_lt(v.highest_out, out):
            v.highest_out = out

    def _reused(self, v: Viewer, out: int, up: Upstream) -> bool:
        """Whether ``out`` already carried another packet of this viewer's recent stream
        (a wrapped sequence space, 2^16 packets later, may use it again)."""
        old = v.used.get(out)
        return old is not None and old != up.pid and abs(self.sent[old].ext - up.ext) < 0x8000

    @invariant()
    def stopped_consumers_are_out_of_the_fanout(self) -> None:
        if not self.viewers:
            return
        for v in self.viewers:
            assert v.consumer.paused == v.stopped
            if v.stopped:
                assert v.consumer not in self.producer._py


TestForwardingModel = ForwardingModel.TestCase
TestForwardingModel.settings = settings(
    max_examples=400, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
