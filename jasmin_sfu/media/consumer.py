"""One viewer's copy of a producer: rewrites SSRC, sequence, timestamp, PT."""

from __future__ import annotations

import random
import struct
from array import array
from typing import TYPE_CHECKING, Any, Callable, Protocol

from jasmin_codecs.errors import MalformedPacket
from jasmin_codecs.rtcp import NTP_UNIX_OFFSET, ntp_now
from jasmin_codecs.rtp import abs_send_time, split_rtp
from jasmin_codecs.seq import seq_unwrap
from jasmin_codecs.vp8 import MAX_TEMPORAL_ID, Vp8Descriptor, parse_vp8_descriptor, rewrite_vp8_descriptor
from jasmin_codecs.vp8_temporal import Vp8TemporalFilter

from .errors import InvalidStateError
from .fastpath import fastpath_ext
from .layer import LayerChoice
from .retransmit import DEFAULT_POLICY, RetransmitPolicy

if TYPE_CHECKING:
    from .aiortc_adapter import SrtpSink
    from .layer import Layer
    from .producer import Producer, Tail
    from .stats import MediaStats

_HDR = struct.Struct("!BBHII")
# The most padding one RTP packet carries (its last byte counts the padding).
_MAX_PADDING = 255
# Sequence-number shifts (padding sent, temporal-layer packets dropped)
# remembered for NACKs of older packets: at T0 of L1T3 one per forwarded
# frame, so 256 cover ~30 s, longer than any packet cache.
_MAX_SHIFTS = 256
# rs_at markers of a packet never resent: tracked, and tracked and owed.
_NEVER = -1e18
_OWED = -2e18


class ConsumerListener(Protocol):
    """What a consumer tells its parents (after mediasoup's ``Consumer::Listener``).

    A consumer has two: its producer (which fans packets out to it) and the
    viewer's transport (``on_close``, which tells the router in turn). Each is
    told once, when the consumer closes, and drops it from its own dict.
    """

    def on_consumer_closed(self, consumer: "Consumer") -> None: ...


class Consumer:
    """Per-viewer forwarding state.

    Sequence numbers and timestamps are offsets from the producer's, re-anchored
    whenever forwarding (re)starts so the viewer sees one continuous stream:
    no sequence gap on resume, and timestamps that advance by the wall-clock
    time the consumer was paused. A video consumer starts (and resumes) only
    on a keyframe, so the viewer's decoder never gets a delta frame first.
    """

    __slots__ = (
        "id",
        "producer",
        "kind",
        "ssrc",
        "payload_type",
        "profile",
        "sink",
        "paused",
        "user_paused",
        "blocked",
        "audience_key",
        "closed",
        "app_data",
        "remb",
        "delivered_link_bps",
        "fraction_lost",
        "lane",
        "fast",
        "_packets",
        "_octets",
        "_clock",
        "_stats",
        "_seq_off",
        "_ts_off",
        "_anchored",
        "_anchor_ext",
        "_last_out",
        "_sr_lsr",
        "_sr_at",
        "on_close",
        "rtt",
        "resent",
        "resent_bytes",
        "_policy",
        "_tokens",
        "_tokens_at",
        "_owed",
        "_owed_at",
        "_sent_bps",
        "_rate_at",
        "_rate_bytes",
        "congested",
        "_rr_fresh",
        "_strikes",
        "_healthy",
        "_probe_at",
        "_probe_wait",
        "_probing",
        "_rr_lost",
        "_rr_high",
        "_tick_lost",
        "_tick_high",
        "link_loss",
        "_rs_seq",
        "_rs_at",
        "_rs_n",
        "layer",
        "pending",
        "vp8",
        "_pid_off",
        "_tl0_off",
        "_last_ids",
        "layer_paused",
        "max_spatial",
        "max_temporal",
        "target_temporal",
        "follow_default",
        "_shifts",
        "_temporal",
        "_last_drop",
        "ast_id",
    )

    def __init__(
        self,
        *,
        consumer_id: str,
        producer: "Producer",
        ssrc: int,
        payload_type: int,
        sink: "SrtpSink",
        stats: "MediaStats",
        clock: Callable[[], float],
        policy: RetransmitPolicy = DEFAULT_POLICY,
        paused: bool = False,
        blocked: bool = False,
        audience_key: str = "",
        app_data: dict[str, Any] | None = None,
    ) -> None:
        self.id = consumer_id
        self.producer = producer
        self.kind = producer.kind
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.profile = 0
        # The viewer's abs-send-time id when its media carries the node's send time
        # (Producer.ast_id; 0: none): padding then carries it too.
        self.ast_id = 0
        self.sink = sink
        # Effective state read by the hot path: paused by the viewer's own
        # request, or blocked by the producer's audience (a private show).
        self.user_paused = paused
        self.blocked = blocked
        self.paused = paused or blocked
        self.audience_key = audience_key
        self.closed = False
        self.app_data = app_data or {}
        self.remb = 0
        # What the viewer's link was shown to carry (bits/s, its whole connection), set by its
        # layer adaptation from receiver reports without loss (bandwidth.py carried_bps); 0:
        # no such evidence. Where it says more than the REMB, the resend budget follows it.
        self.delivered_link_bps = 0
        self.fraction_lost = 0
        self._packets = 0
        self._octets = 0
        # The C fan-out state; ``fast`` is True while the producer sends this
        # consumer's copies through it.
        self.lane: Any = fastpath_ext.Lane(ssrc, 0) if fastpath_ext is not None else None
        self.fast = False
        self._clock = clock
        self._stats = stats
        self._seq_off = 0
        self._ts_off = 0
        self._anchored = False
        # The producer's extended sequence number forwarding (re)started at:
        # nothing older is sent (live or on a NACK), since it may be another
        # audience's media. Extended, so the comparison holds past 2^15 packets.
        self._anchor_ext = 0
        # (out_seq, out_ts, wall time) of the last forwarded packet, kept only
        # at pause time so a resume continues the sequence.
        self._last_out: tuple[int, int, float] | None = None
        # The compact NTP time (LSR) of the last SR sent to this viewer and when
        # (``clock``), for its round trip (RFC 3550 6.4.1); 0 before the first.
        self._sr_lsr = 0
        self._sr_at = 0.0
        # The viewer's transport: told once on close (ConsumerListener.on_consumer_closed).
        self.on_close: Callable[["Consumer"], None] | None = None
        # Retransmissions (jasmin_sfu/media/retransmit.py): the viewer's round
        # trip (0.0 until its RTCP gave one), what it was resent, its budget
        # bucket, the packets it is owed, and per cached packet (index
        # ``seq & mask``, allocated on the first NACK) the producer's extended
        # sequence number, the time of its last resend and the resends so far.
        self.rtt = 0.0
        self.resent = 0
        self.resent_bytes = 0
        self._policy = policy
        self._tokens = 0.0
        self._tokens_at = -1.0  # the bucket starts full on the first NACK
        self._owed = 0
        self._owed_at = -1e18
        # This track's forwarded rate (bits/s), measured between NACKs.
        self._sent_bps = 0.0
        self._rate_at = -1.0
        self._rate_bytes = 0
        # Audio first (retransmit.py): video paused because the viewer's link
        # cannot carry it; reports in a row that said so, or said otherwise;
        # when to try the video again and the wait after that.
        self.congested = False
        self._rr_fresh = False
        self._strikes = 0
        self._healthy = 0
        self._probe_at = 0.0
        self._probe_wait = policy.probe_after_s
        self._probing = False
        # The viewer's cumulative loss and extended highest sequence number, from
        # its last report and at the last link check; the loss between checks.
        self._rr_lost = 0
        self._rr_high = 0
        self._tick_lost = 0
        self._tick_high = -1
        self.link_loss = 0.0
        self._rs_seq: array[int] | None = None
        self._rs_at: array[float] | None = None
        self._rs_n: bytearray | None = None
        # Layers (jasmin_sfu/media/layer.py): the layer forwarded, the one waiting
        # for its keyframe to replace it, the VP8 picture id rewrite of a
        # simulcast producer, the viewer's caps (signaling consumer.set_layers),
        # and a pause for "below the lowest layer" (set_target_layer(None)).
        # ``follow_default``: the producer moves this consumer to the highest
        # active layer within its caps at each tick; an adaptation loop that
        # chooses layers itself sets it False.
        self.max_spatial: int | None = None
        self.max_temporal: int | None = None
        self.target_temporal: int | None = None
        self.follow_default = True
        self.layer_paused = False
        self.layer: "Layer" = producer.best_layer() if producer.simulcast else producer.all_layers[0]
        self.pending: "Layer | None" = None
        # VP8 simulcast: offsets added to the PictureID (mod 2^15) and TL0PICIDX
        # (mod 2^8) of every packet, re-chosen at each (re)start and switch so
        # the viewer's ids continue (RFC 7741 4.2; as LiveKit's VP8 munger keeps
        # them), and the out ids of the last frame before a pause or switch.
        self.vp8 = producer.vp8_ids
        self._pid_off = 0
        self._tl0_off = 0
        self._last_ids: tuple[int | None, int | None] | None = None
        # Padding (send_padding) and dropped temporal-layer packets moved the
        # sequence offset: (first out seq after the shift's old offset, padding
        # packets (0 for drops), offset before) per shift, newest last.
        self._shifts: list[tuple[int, int, int]] = []
        # VP8 temporal layers: the frame filter while this viewer gets fewer
        # temporal layers than the stream has (or climbs back to all of them);
        # None otherwise. In a C lane, the producer asks it about each packet
        # (lane_admit); on the Python path, forward_vp8 does.
        self._temporal: Vp8TemporalFilter | None = None
        self._last_drop = -1  # the producer sequence number of the last packet dropped by it

    @property
    def packets(self) -> int:
        """RTP packets sent to this viewer (both paths)."""
        lane = self.lane
        return self._packets + (lane.packets if lane is not None else 0)

    @property
    def octets(self) -> int:
        """Payload-side octets sent to this viewer (both paths), for its SRs."""
        lane = self.lane
        return self._octets + (lane.octets if lane is not None else 0)

    @property
    def cumulative_lost(self) -> int:
        """The viewer's cumulative loss of this stream, from its last receiver report."""
        return self._rr_lost

    @property
    def highest_seq(self) -> int:
        """The extended highest sequence number of the viewer's last receiver report."""
        return self._rr_high

    # -- hot path ----------------------------------------------------------

    def forward(self, b1: int, seq: int, ts: int, tail: "Tail", keyframe: bool) -> int:
        """Send one packet; returns the bytes sent (0 when skipped or failed)."""
        if self.paused:
            return 0
        if not self._anchored:
            # Start only on a keyframe, and only once the viewer's DTLS is up:
            # a keyframe sent into a half-open leg is lost and the viewer
            # would then wait for the next one.
            if (self.producer.is_video and not keyframe) or not self.sink.ready:
                return 0
            self._anchor(seq, ts)
        pkt = self._rewrite(b1, seq, ts, tail)
        if self.sink.send(pkt):
            self._packets += 1
            self._octets += len(tail[1])
            return len(pkt)
        self._stats.drop("send_failed")
        return 0

    def forward_vp8(self, b1: int, seq: int, ts: int, tail: "Tail", keyframe: bool) -> int:
        """:meth:`forward` for a VP8 simulcast producer (the producer picks it per
        packet, so a plain producer's copies pay nothing for it): the stream's
        VP8 ids continue from the last ones the viewer got."""
        if self.paused:
            return 0
        if not self._anchored:
            if not keyframe or not self.sink.ready:
                return 0
            self._vp8_start(tail)
            self._anchor(seq, ts)
        f = self._temporal
        if f is not None:
            return self._forward_temporal(f, b1, seq, ts, tail, keyframe)
        if self._pid_off or self._tl0_off:
            tail = self._vp8_patched(tail, self._pid_off)
        pkt = self._rewrite(b1, seq, ts, tail)
        if self.sink.send(pkt):
            self._packets += 1
            self._octets += len(tail[1])
            return len(pkt)
        self._stats.drop("send_failed")
        return 0

    def _forward_temporal(self, f: Vp8TemporalFilter, b1: int, seq: int, ts: int, tail: "Tail", keyframe: bool) -> int:
        """:meth:`forward_vp8` for a viewer dropping temporal layers: a packet of a frame
        above its layer is not sent and the sequence numbers and PictureIDs after it
        close up (the frame key is the RTP timestamp; docs/media.md "Temporal layers")."""
        newest = seq == self.layer.max_seq
        if newest and ts == f.frame and f.frame_shift_now < 0:
            self._drop_in_order(seq)  # a later packet of a dropped frame: nothing to parse
            return 0
        if newest and self._temporal_done(f, seq, ts):
            return self.forward_vp8(b1, seq, ts, tail, keyframe)
        desc: Vp8Descriptor | None = None
        if len(tail) == 3:
            try:
                desc = parse_vp8_descriptor(tail[1], tail[2])
            except MalformedPacket:
                desc = None
        k = self._temporal_admit(f, seq, ts, desc, keyframe, newest)
        if k is None:
            return 0
        pid_off = (self._pid_off - k) & 0x7FFF
        if pid_off or self._tl0_off:
            tail = self._vp8_patched(tail, pid_off, desc)
        if not newest and self._shifts:
            # A late packet: the offset its place in the stream had.
            seq = (seq + self._out_off(seq) - self._seq_off) & 0xFFFF
        pkt = self._rewrite(b1, seq, ts, tail)
        if self.sink.send(pkt):
            self._packets += 1
            self._octets += len(tail[1])
            return len(pkt)
        self._stats.drop("send_failed")
        return 0

    def lane_admit(self, seq: int, ts: int, desc: Vp8Descriptor | None, keyframe: bool) -> bool:
        """For a viewer in a C lane that drops temporal layers (``Layer.tfast``), the
        producer's question for each in-order packet: True when the lane is to send
        it, its offsets set for it; False when it is dropped (the offsets close up).
        ``desc`` is the packet's descriptor (None: unparsable, taken as TID 0)."""
        f = self._temporal
        lane = self.lane
        if f is None:
            return True
        if ts == f.frame:
            # A later packet of the newest frame: its decision stands, and a
            # kept frame's offsets are on the lane since its first packet.
            if f.frame_shift_now >= 0:
                return True
            self._drop_in_order(seq)
            lane.seq_off = self._seq_off
            return False
        if self._temporal_done(f, seq, ts):
            return True
        k = self._temporal_admit(f, seq, ts, desc, keyframe, True)
        if k is None:
            lane.seq_off = self._seq_off
            return False
        lane.pid_off = (self._pid_off - k) & 0x7FFF
        return True

    def _temporal_done(self, f: Vp8TemporalFilter, seq: int, ts: int) -> bool:
        """At the first packet (``seq``, newest) of a new frame: when the filter forwards
        every layer the stream has and none is capped, end the filter (True)."""
        if ts == f.frame or f.target != MAX_TEMPORAL_ID or f.temporal_id < self.layer.temporal_layers - 1:
            return False
        self._end_temporal(seq)
        return True

    def _temporal_admit(
        self, f: Vp8TemporalFilter, seq: int, ts: int, desc: Vp8Descriptor | None, keyframe: bool, newest: bool
    ) -> int | None:
        """The filter's answer for one packet (None: dropped, else its frame's drop
        count); an in-order packet dropped moves the sequence offset down by one."""
        if desc is None:
            k = f.admit(ts, 0, False, keyframe, newest)
        else:
            k = f.admit(ts, desc.temporal_id or 0, desc.layer_sync, keyframe, newest)
        if k is None:
            if newest:
                self._drop_in_order(seq)
            else:
                self._stats.temporal_packets_dropped += 1
        return k

    def _drop_in_order(self, seq: int) -> None:
        """Producer packet ``seq``, the newest, is not sent: the viewer's next packet
        takes its sequence number (a shift, merged with the run it continues)."""
        self._stats.temporal_packets_dropped += 1
        if seq == self._last_drop:
            return  # the same packet again
        self._last_drop = seq
        first = (seq + self._seq_off) & 0xFFFF
        shifts = self._shifts
        if not shifts or shifts[-1][0] != first or shifts[-1][1]:
            shifts.append((first, 0, self._seq_off))
            del shifts[:-_MAX_SHIFTS]
        self._seq_off = (self._seq_off - 1) & 0xFFFF

    def _out_off(self, in_seq: int) -> int:
        """The sequence offset producer ``in_seq`` was (or would have been) sent with,
        through the shifts (the inverse of :meth:`_in_seq`)."""
        off = self._seq_off
        for first, count, before in reversed(self._shifts):
            if ((in_seq + off) - (first + count)) & 0xFFFF < 0x8000:
                break  # at or after this shift
            off = before
        return off

    def _end_temporal(self, seq: int) -> None:
        """Every temporal layer is forwarded again: drop the filter at this frame
        boundary (packet ``seq``). Its picture id shift joins the offset; NACKs of
        packets before this one are refused (their shifts are forgotten)."""
        f = self._temporal
        if f is None:
            return
        self._temporal = None
        self._pid_off = (self._pid_off - f.dropped) & 0x7FFF
        self._shifts.clear()
        self._anchor_ext = self.layer.extend(seq)
        if self.fast:
            self.lane.pid_off = self._pid_off
            self.lane.seq_off = self._seq_off
        self.producer.refresh_fanout()

    def on_temporal_layers(self) -> None:
        """The producer's stream turned out to have VP8 temporal layers: rewrite this
        viewer's VP8 ids from now on, and apply its temporal layer."""
        self.vp8 = True
        if self.lane is not None:
            self.lane.vp8 = 1
        self._apply_temporal()

    def _apply_temporal(self) -> None:
        """Follow the temporal layer asked for (``target_temporal``, capped by
        ``max_temporal``): a filter while it is below the top. A C lane viewer
        stays in C; its lane moves to the layer's ``tfast`` (the producer asks
        :meth:`lane_admit` for each packet)."""
        p = self.producer
        if not p.temporal or not p.is_video:
            return
        caps = [t for t in (self.target_temporal, self.max_temporal) if t is not None]
        want = min(caps) if caps else MAX_TEMPORAL_ID
        f = self._temporal
        if f is not None:
            f.set_target(want)
            return
        if want >= MAX_TEMPORAL_ID:
            return
        f = self._temporal = Vp8TemporalFilter(MAX_TEMPORAL_ID)
        f.set_target(want)
        if self._anchored:
            # Mid-stream: the frame being forwarded is finished whole (the
            # drop starts at the next frame boundary), with the ids it began with.
            f.admit(self.layer.last_ts, 0, False, False, True)
        self.producer.refresh_fanout()

    @property
    def temporal_id(self) -> int | None:
        """The highest VP8 temporal layer forwarded now; None: every one the stream has."""
        f = self._temporal
        if f is None:
            return None
        top = max(1, self.layer.temporal_layers) - 1
        return None if f.temporal_id >= top else f.temporal_id

    # -- VP8 picture ids (simulcast) ------------------------------------------

    def _vp8_start(self, tail: "Tail") -> None:
        """The viewer's stream (re)starts on this keyframe packet (of ``self.layer``):
        offsets so its ids follow the last ones the viewer got (none: kept as sent)."""
        last = self._last_ids
        if last is None or len(tail) != 3:
            self._pid_off = self._tl0_off = 0
        else:
            try:
                desc = parse_vp8_descriptor(tail[1], tail[2])
            except MalformedPacket:
                desc = None
            if desc is not None and desc.picture_id is not None and last[0] is not None:
                self._pid_off = (last[0] + 1 - desc.picture_id) & 0x7FFF
            if desc is not None and desc.tl0_pic_idx is not None and last[1] is not None:
                self._tl0_off = (last[1] + 1 - desc.tl0_pic_idx) & 0xFF
        f = self._temporal
        if f is not None:
            f.reset()
            self._last_drop = -1
        lane = self.lane
        if lane is not None:
            lane.pid_off = self._pid_off
            lane.tl0_off = self._tl0_off

    def _vp8_patched(self, tail: "Tail", pid_off: int, desc: Vp8Descriptor | None = None) -> "Tail":
        """``tail`` with its descriptor's ids plus ``pid_off`` and this viewer's TL0PICIDX
        offset (the C lane's patch); ``desc``: the tail's descriptor, when parsed already."""
        if len(tail) != 3:
            return tail
        data, at = tail[1], tail[2]
        if desc is None:
            try:
                desc = parse_vp8_descriptor(data, at)
            except MalformedPacket:
                return tail
        pid = None if desc.picture_id is None else desc.picture_id + pid_off
        tl0 = None if desc.tl0_pic_idx is None else desc.tl0_pic_idx + self._tl0_off
        return (tail[0], rewrite_vp8_descriptor(data, pid, tl0, at, desc), at)

    def _vp8_last(self) -> tuple[int | None, int | None] | None:
        """The ids the viewer got with the newest packet of its layer (from the layer's cache)."""
        layer = self.layer
        cache = layer.cache
        data = cache.get(layer.max_seq) if cache is not None else None
        return self._last_ids if data is None else self._vp8_ids_of(data)

    def _vp8_ids_of(self, data: bytes) -> tuple[int | None, int | None] | None:
        """The ids the publisher's packet ``data`` carries on this viewer's stream."""
        try:
            desc = parse_vp8_descriptor(data, split_rtp(data)[7])
        except MalformedPacket:
            return self._last_ids
        shift = self._temporal.dropped if self._temporal is not None else 0
        return (
            None if desc.picture_id is None else (desc.picture_id + self._pid_off - shift) & 0x7FFF,
            None if desc.tl0_pic_idx is None else (desc.tl0_pic_idx + self._tl0_off) & 0xFF,
        )

    def _rewrite(self, b1: int, seq: int, ts: int, tail: "Tail") -> bytes:
        """The producer's packet in this viewer's SSRC, PT, sequence and timestamp space."""
        return (
            _HDR.pack(
                tail[0],
                (b1 & 0x80) | self.payload_type,
                (seq + self._seq_off) & 0xFFFF,
                (ts + self._ts_off) & 0xFFFFFFFF,
                self.ssrc,
            )
            + tail[1]
        )

    # -- anchoring, pause, resume -------------------------------------------

    def _set_offsets(self, seq: int, ts: int) -> None:
        """Map producer ``seq``/``ts`` to the next point of this viewer's stream."""
        last = self._last_out
        if last is None:
            out_seq = random.randint(0, 0x7FFF)
            out_ts = random.randint(0, 0xFFFFFFFF)
        else:
            gap = max(0.0, self._clock() - last[2])
            out_seq = (last[0] + 1) & 0xFFFF
            out_ts = (last[1] + max(1, int(gap * self.producer.clock_rate))) & 0xFFFFFFFF
        self._seq_off = (out_seq - seq) & 0xFFFF
        self._ts_off = (out_ts - ts) & 0xFFFFFFFF

    def _anchor(self, seq: int, ts: int) -> None:
        self._set_offsets(seq, ts)
        self._shifts.clear()
        self._anchor_ext = self.layer.extend(seq)
        self._anchored = True
        self._go_fast()

    def start(self) -> int:
        """The viewer can receive now: send it the producer's cached keyframe
        at once, and ask the publisher for a fresh one.

        The replayed frame gives the viewer's decoder a picture without waiting
        for the publisher; the live stream then starts on the fresh keyframe,
        continuing the replay's sequence numbers and timestamps. Nothing is
        replayed to a paused or blocked consumer, nor before DTLS is up.
        Returns the packets replayed.
        """
        p = self.producer
        if self.closed or self.paused or not p.is_video:
            return 0
        sent = 0
        kc = self.layer.keyframe_cache
        if kc is not None and kc.frame and not self._anchored and self.sink.ready:
            sent = self._replay(kc.frame)
        p.request_keyframe(self.layer)
        return sent

    def _replay(self, frame: tuple[bytes, ...]) -> int:
        p = self.producer
        head = p.tail_for(frame[0], self.profile)
        if head is None:
            return 0
        _, seq0, ts0, _, _ = head
        self._set_offsets(seq0, ts0)
        self._shifts.clear()
        if self.vp8:
            self._vp8_start(head[4])
        sent = sent_bytes = 0
        for data in frame:
            n = self._resend(data)
            if n:
                sent += 1
                sent_bytes += n
        if self.vp8:
            # The live stream's first keyframe follows the replayed one's ids.
            self._last_ids = self._vp8_ids_of(frame[0])
        last_seq = (seq0 + len(frame) - 1 + self._seq_off) & 0xFFFF
        # Not anchored: the live stream starts on the next keyframe and
        # continues from here (the same path as a resume).
        self._last_out = (last_seq, (ts0 + self._ts_off) & 0xFFFFFFFF, self._clock())
        stats = self._stats
        stats.keyframe_packets_replayed += sent
        stats.rtp_packets_out += sent
        stats.rtp_bytes_out += sent_bytes
        return sent

    def _resend(self, data: bytes, count: bool = True, out_seq: int | None = None, shift: int = 0) -> int:
        """Send a packet from the producer's caches in this viewer's space; the
        bytes sent (0: unusable or not sent). ``count`` adds it to the SR counts.
        A VP8 simulcast packet carries its ids plus the viewer's offsets (the
        PictureID's less ``shift``, the frames a temporal filter dropped before it)."""
        split = self.producer.tail_for(data, self.profile)
        if split is None:
            return 0
        b1, seq, ts, _, tail = split
        pid_off = (self._pid_off - shift) & 0x7FFF
        if self.vp8 and (pid_off or self._tl0_off):
            tail = self._vp8_patched(tail, pid_off)
        if out_seq is not None:
            seq = (out_seq - self._seq_off) & 0xFFFF  # sent before a padding shift: its own number
        pkt = self._rewrite(b1, seq, ts, tail)
        if not self.sink.send(pkt):
            return 0
        if count:
            self._packets += 1
            self._octets += len(tail[1])
        return len(pkt)

    def _go_fast(self) -> None:
        """Hand forwarding to the C lane when this consumer is C-eligible."""
        lane = self.lane
        target = getattr(self.sink, "target", None)
        if lane is None or target is None or not 0 <= self.payload_type <= 127 or self.profile >= 64:
            return
        lane.vp8 = 1 if self.vp8 else 0
        lane.pid_off = self._pid_off
        lane.tl0_off = self._tl0_off
        lane.ssrc = self.ssrc
        lane.payload_type = self.payload_type
        lane.profile = self.profile
        lane.seq_off = self._seq_off
        lane.ts_off = self._ts_off
        lane.target = target
        self.fast = True
        self.producer.refresh_fanout()

    def _go_slow(self) -> None:
        if self.fast:
            self.fast = False
            self.lane.target = None
        self.producer.refresh_fanout()

    def pause(self) -> None:
        """The viewer asks to stop receiving (cheap; the connection stays)."""
        self._check_open()
        self.user_paused = True
        self._update()

    def resume(self) -> None:
        """The viewer asks to receive again; forwarding restarts on a keyframe."""
        self._check_open()
        self.user_paused = False
        self._update()

    def block(self) -> None:
        """The producer's audience no longer includes this viewer: stop now."""
        self._check_open()
        self.blocked = True
        self._update()

    def unblock(self) -> None:
        """The viewer is in the producer's audience again."""
        self._check_open()
        self.blocked = False
        self._update()

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"consumer {self.id} is closed")

    def _update(self) -> None:
        paused = self.user_paused or self.blocked or self.congested or self.layer_paused
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            # Remember where the viewer's stream stopped, so the resume
            # continues its sequence numbers and timestamps without a gap.
            if self._anchored:
                layer = self.layer
                if self.vp8:
                    self._last_ids = self._vp8_last()
                self._last_out = (
                    (layer.max_seq + self._seq_off) & 0xFFFF,
                    (layer.last_ts + self._ts_off) & 0xFFFFFFFF,
                    self._clock(),
                )
                self._anchored = False
            self._go_slow()
        else:
            self.producer.refresh_fanout()
            self.start()

    # -- layers ------------------------------------------------------------

    @property
    def current_layer(self) -> LayerChoice | None:
        """The layer forwarded now (``spatial`` is its rank in ``Producer.layers``),
        or None while the video is paused for any reason."""
        if self.paused:
            return None
        return LayerChoice(self.producer.rank_of(self.layer), self.temporal_id)

    def set_target_layer(self, spatial: int | None, temporal: int | None = None) -> None:
        """Forward spatial layer ``spatial`` (a rank of ``Producer.layers``; above the
        top means the top), or pause the video with None (the viewer's audio is
        another consumer and goes on).

        While a layer is being forwarded, the switch waits for a keyframe of the
        target layer, asked for at once, so the viewer's decoder never gets a
        delta frame of a stream it has not started; sequence numbers, timestamps
        and VP8 picture ids continue without a gap. While nothing is forwarded
        (paused, or not started) the consumer moves at once and starts on the
        target's next keyframe (its cached one is replayed first). The viewer's
        cap (:meth:`set_layer_caps`) bounds ``spatial``. ``temporal`` (0-3, None:
        all) is the highest VP8 temporal layer forwarded, within ``max_temporal``:
        lower at the next frame, higher on a layer-sync frame or a keyframe
        (docs/media.md "Temporal layers"); it applies to a VP8 stream with
        temporal layers only. An audio consumer ignores this.
        """
        self._check_open()
        if temporal is not None and not 0 <= temporal <= MAX_TEMPORAL_ID:
            raise ValueError(f"temporal layer {temporal} out of range 0..{MAX_TEMPORAL_ID}")
        p = self.producer
        if not p.is_video:
            return
        if self.max_temporal is not None and temporal is not None:
            temporal = min(temporal, self.max_temporal)
        self.target_temporal = temporal
        self._apply_temporal()
        if spatial is None:
            self.pending = None
            self.layer_paused = True
            self._update()
            p.refresh_fanout()
            return
        if self.max_spatial is not None:
            spatial = min(spatial, self.max_spatial)
        layer = p.layer_at(spatial)
        was_paused = self.layer_paused
        self.layer_paused = False
        if layer is self.layer:
            if self.pending is not None:
                self.pending = None
                p.refresh_fanout()
            if was_paused:
                self._update()
            return
        if not self._anchored or self.paused:
            # Nothing is forwarded: move now, start on this layer's keyframe.
            self.pending = None
            self.layer = layer
            p.refresh_fanout()
            if was_paused:
                self._update()
            elif not self.paused:
                self.start()
            return
        if self.pending is not layer:
            self.pending = layer
            p.refresh_fanout()
        p.request_keyframe(layer)

    def set_layer_caps(self, max_spatial: int | None, max_temporal: int | None = None) -> None:
        """The viewer's own cap (signaling ``consumer.set_layers``): never above
        ``max_spatial``/``max_temporal`` (None: no cap). Applied at once: a
        consumer above the cap switches down on the lower layer's next keyframe."""
        self._check_open()
        if max_spatial is not None and max_spatial < 0:
            raise ValueError("max_spatial must be >= 0")
        if max_temporal is not None and not 0 <= max_temporal <= MAX_TEMPORAL_ID:
            raise ValueError(f"max_temporal must be in 0..{MAX_TEMPORAL_ID}")
        self.max_spatial = max_spatial
        self.max_temporal = max_temporal
        self._apply_temporal()
        if self.follow_default:
            self.apply_default_layer()
        else:
            want = self.pending or self.layer
            rank = self.producer.rank_of(want)
            if max_spatial is not None and rank > max_spatial and not self.layer_paused:
                self.set_target_layer(max_spatial, self.target_temporal)

    def apply_default_layer(self) -> None:
        """The choice without an adaptation loop: the highest active layer within the caps."""
        if self.closed or not self.producer.simulcast or self.layer_paused:
            return
        best = self.producer.best_layer(self.max_spatial)
        if best is not (self.pending or self.layer):
            self.set_target_layer(self.producer.rank_of(best), self.target_temporal)

    def switch_layer(self, layer: "Layer", seq: int, ts: int, data: bytes, payload_off: int) -> None:
        """The producer's call on the first packet of a keyframe of ``layer``
        (``data``, its payload at ``payload_off``), the layer this consumer waits
        for (in ``layer.switchers``): continue the viewer's sequence numbers,
        timestamps and VP8 ids from the old layer's last packet into the new
        layer's, from this packet on. Synchronous, no I/O."""
        old = self.layer
        self.pending = None
        if self.vp8 and self._anchored:
            self._last_ids = self._vp8_last()
        self.layer = layer
        self._stats.layer_switches += 1
        if not self._anchored:
            return  # starts on this keyframe through the usual anchoring
        if self.vp8:
            self._vp8_start((0, data, payload_off))
        last_seq = (old.max_seq + self._seq_off) & 0xFFFF
        last_ts = (old.last_ts + self._ts_off) & 0xFFFFFFFF
        self._seq_off = (last_seq + 1 - seq) & 0xFFFF
        self._ts_off = (last_ts + self._switch_step(old, layer, ts) - ts) & 0xFFFFFFFF
        self._shifts.clear()
        self._anchor_ext = layer.extend(seq)
        if self.fast:
            self.lane.seq_off = self._seq_off
            self.lane.ts_off = self._ts_off

    def _switch_step(self, old: "Layer", new: "Layer", ts: int) -> int:
        """RTP ticks from the old layer's last frame to the new layer's keyframe ``ts``.

        Each simulcast stream has its own random timestamp base: the publisher's
        SRs of both streams (NTP time and RTP time of one instant) map the
        keyframe's time onto the old stream's clock. Without both SRs, or when
        the mapping is not within 2 s ahead, one frame at 30 fps. Never 0: a
        frame with the previous frame's timestamp would be taken for a part of it.
        """
        rate = self.producer.clock_rate
        if old.sr is not None and new.sr is not None:
            (ntp_o, rtp_o), (ntp_n, rtp_n) = old.sr, new.sr
            since_sr = ((ts - rtp_n + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            in_old = rtp_o + since_sr + int((ntp_n - ntp_o) * rate / 2**32)
            step = ((in_old - old.last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if 0 < step <= 2 * rate:
                return step
            if -rate // 30 <= step <= 0:
                return 1
        return max(1, rate // 30)

    def send_padding(self, nbytes: int) -> int:
        """Send about ``nbytes`` of padding-only RTP (RFC 3550 P bit, no payload) in
        this viewer's SSRC and sequence space, for bandwidth probing; decoders
        ignore it. Returns the bytes sent. Nothing before the viewer's leg is up,
        nor to a viewer blocked from this producer. Works while the video is
        paused (a viewer below the lowest layer probes its way back)."""
        if self.closed or self.blocked or nbytes <= 0 or not self.sink.ready or not self.producer.is_video:
            return 0
        count = -(-nbytes // (12 + _MAX_PADDING))
        layer = self.layer
        if self._anchored:
            first = (layer.max_seq + self._seq_off + 1) & 0xFFFF
            ts = (layer.last_ts + self._ts_off) & 0xFFFFFFFF
        else:
            last = self._last_out
            if last is None:
                last = (random.randint(0, 0x7FFF), random.randint(0, 0xFFFFFFFF), self._clock())
            first = (last[0] + 1) & 0xFFFF
            ts = last[1]
        pad = bytes(_MAX_PADDING - 1) + bytes([_MAX_PADDING])
        ast = self.ast_id
        b0 = 0xB0 if ast else 0xA0  # P, and X for the abs-send-time element
        # The viewer's estimator counts only packets with the send time its media
        # has (the node's, Producer.ast_id): without it, padding lifts no REMB.
        ext = b"\xbe\xde\x00\x01" + bytes(((ast << 4) | 2,)) + abs_send_time(self.producer.send_clock()) if ast else b""
        sent = sent_bytes = 0
        for i in range(count):
            pkt = _HDR.pack(b0, self.payload_type, (first + i) & 0xFFFF, ts, self.ssrc) + ext + pad
            if not self.sink.send(pkt):
                break
            sent += 1
            sent_bytes += len(pkt)
        if not sent:
            return 0
        if self._anchored:
            # The next media packet follows the padding; NACKs of older packets
            # still map with the offset they were sent with.
            self._shifts.append((first, sent, self._seq_off))
            del self._shifts[:-_MAX_SHIFTS]
            self._seq_off = (self._seq_off + sent) & 0xFFFF
            if self.fast:
                self.lane.seq_off = self._seq_off
        else:
            self._last_out = ((first + sent - 1) & 0xFFFF, ts, self._last_out[2] if self._last_out else self._clock())
        stats = self._stats
        stats.padding_packets_sent += sent
        stats.rtp_packets_out += sent
        stats.rtp_bytes_out += sent_bytes
        return sent_bytes

    def _in_seq(self, out_seq: int) -> int:
        """The producer sequence number of viewer ``out_seq``, through the padding
        shifts; -1 for a padding packet."""
        off = self._seq_off
        for first, count, before in reversed(self._shifts):
            back = (first - out_seq) & 0xFFFF
            if (out_seq - first) & 0xFFFF < count:
                return -1
            if 0 < back < 0x8000:
                off = before  # sent before this padding
            else:
                break
        return (out_seq - off) & 0xFFFF

    # -- feedback from the viewer -------------------------------------------

    def on_nack(self, out_seqs: tuple[int, ...]) -> None:
        """Answer a viewer NACK from the producer's cache, within the retransmission
        policy (jasmin_sfu/media/retransmit.py); ask upstream for what the cache
        should hold but lost."""
        p = self.producer
        layer = self.layer
        stats = self._stats
        stats.nacks_received += 1
        cache = layer.cache
        if cache is None or not self._anchored:
            return
        pol = self._policy
        now = self._clock()
        rtt = self.rtt or pol.default_rtt_s
        # The budget bucket, refilled for the time since the last NACK.
        self._measure_rate(now)
        # A browser's REMB collapses (to ~30 kbit/s) with every packet arriving; a budget on
        # it then refuses the few resends that would repair a keyframe and asks the publisher
        # for a whole new one instead: a burst a small link drops again (measured: 8 keyframe
        # requests in 30 s for a 300 kbit/s viewer, its video paused on the loss they made).
        rate = pol.budget_rate(max(self.remb, self.delivered_link_bps), self._sent_bps)
        depth = pol.budget_depth(rate)
        tokens = depth if self._tokens_at < 0 else min(depth, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        rs_seq = self._rs_seq
        if rs_seq is None:
            size = cache.size
            rs_seq = self._rs_seq = array("l", [-1]) * size
            self._rs_at = array("d", [0.0]) * size
            self._rs_n = bytearray(size)
        rs_at = self._rs_at
        rs_n = self._rs_n
        assert rs_at is not None and rs_n is not None
        mask = cache.size - 1
        newest = layer.max_seq
        ext_newest = layer.ext_max
        newest_ts = layer.last_ts
        max_ticks = (pol.max_delay_s - rtt) * p.clock_rate
        missing = []
        anchor = self._anchor_ext
        owed = 0
        shifts = self._shifts
        for out_seq in out_seqs:
            in_seq = self._in_seq(out_seq) if shifts else (out_seq - self._seq_off) & 0xFFFF
            if in_seq < 0:
                continue  # a padding packet: nothing to resend
            if layer.extend(in_seq) < anchor:
                # Older than this viewer's stream: possibly a private's packet.
                stats.nack_packets_refused += 1
                continue
            if (newest - in_seq) & 0xFFFF > mask:
                # Older than the cache: the publisher has nothing useful left either.
                stats.nack_suppressed_age += 1
                continue
            data = cache.get(in_seq)
            if data is None:
                if cache.expired(in_seq):
                    # Let go for its age (nack_max_delay_ms): too late to be of use.
                    stats.nack_suppressed_age += 1
                    continue
                missing.append(in_seq)
                stats.nack_packets_missed += 1
                continue
            # Cached packets passed split_rtp on the way in: it cannot raise here.
            data_ts = split_rtp(data)[3]
            if ((newest_ts - data_ts) & 0xFFFFFFFF) > max_ticks:
                stats.nack_suppressed_age += 1
                continue
            shift = 0
            if self._temporal is not None:
                got = self._temporal.frame_shift(data_ts)
                if got is None:
                    # Its frame was dropped for this viewer (or is forgotten): never resent.
                    stats.nack_temporal_refused += 1
                    continue
                shift = got
            i = in_seq & mask
            # Tracked by the extended sequence number: the same 16-bit number
            # 65,536 packets later is another packet.
            key = seq_unwrap(ext_newest, in_seq)
            if rs_seq[i] == key:
                n = rs_n[i]
                if n >= pol.max_retries:
                    stats.nack_suppressed_retries += 1
                    continue
                if now - rs_at[i] < rtt:
                    stats.nack_suppressed_rtt += 1
                    continue
            else:
                n = 0
                rs_seq[i] = key
                rs_n[i] = 0
                rs_at[i] = _NEVER
            if tokens < len(data):
                stats.nack_suppressed_budget += 1
                if rs_at[i] == _NEVER:
                    # First time this packet is refused: the viewer is owed it.
                    rs_at[i] = _OWED
                    owed += 1
                continue
            sent = self._resend(data, count=False, out_seq=out_seq if shifts else None, shift=shift)
            if sent:
                tokens -= sent
                rs_at[i] = now
                rs_n[i] = n + 1
                self.resent += 1
                self.resent_bytes += sent
                stats.nack_resends[self.kind] += 1
                stats.nack_packets_served += 1
                stats.rtp_packets_out += 1
                stats.rtp_bytes_out += sent
        self._tokens = tokens
        if missing:
            p.nack_upstream(missing, layer)
        if owed:
            self._owe(owed, now)

    def _measure_rate(self, now: float) -> None:
        """This track's forwarded rate on the wire, over at least ``rate_window_s``."""
        pol = self._policy
        if now - self._rate_at >= pol.rate_window_s:
            sent = self.octets + self.packets * pol.packet_overhead
            if self._rate_at >= 0:
                self._sent_bps = (sent - self._rate_bytes) * 8 / (now - self._rate_at)
            self._rate_at = now
            self._rate_bytes = sent

    def check_link(self, now: float) -> None:
        """Audio first, once per RTCP interval: pause this video consumer while the
        viewer's link cannot carry it, and try it again later (retransmit.py)."""
        pol = self._policy
        if not pol.pause_video or self.closed or not self.producer.is_video:
            return
        self._measure_rate(now)
        if self.congested:
            if now >= self._probe_at:
                self.congested = False
                self._probing = True
                self._strikes = self._healthy = 0
                self._rr_fresh = False
                self._stats.video_congestion_probes += 1
                self._update()
            return
        if self.paused or not self._rr_fresh:
            return
        self._rr_fresh = False
        # Chromium's fraction lost is 0 in most reports of a starved stream (each
        # covers the few packets since the last one): the loss is measured here
        # from the cumulative count and the highest sequence number instead.
        expected = (self._rr_high - self._tick_high) & 0xFFFFFFFF
        lost = self._rr_lost - self._tick_lost
        loss = self.fraction_lost / 256.0
        if self._tick_high >= 0 and 0 < expected < 0x80000000:
            loss = max(loss, min(1.0, max(0, lost) / expected))
        self._tick_high, self._tick_lost = self._rr_high, self._rr_lost
        self.link_loss = loss
        # Tried again after a pause, the link has just proved too weak: loss alone
        # (whatever the estimate, which Chromium raises while it gets nothing)
        # and fewer checks pause it again.
        weak = loss >= pol.pause_loss_alone or bool(
            loss >= pol.pause_loss and (self._probing or (self.remb and self.remb < pol.pause_below * self._sent_bps))
        )
        if weak:
            self._healthy = 0
            self._strikes += 1
            if self._strikes >= (pol.probe_pause_after if self._probing else pol.pause_after):
                self.congested = True
                self._probing = False
                self._probe_at = now + self._probe_wait
                self._probe_wait = min(2 * self._probe_wait, pol.probe_max_s)
                self._stats.video_congestion_pauses += 1
                self._update()
        else:
            self._strikes = 0
            self._healthy += 1
            if self._healthy >= 10:
                self._probing = False
                self._probe_wait = pol.probe_after_s

    def _owe(self, n: int, now: float) -> None:
        """``n`` more packets were refused for the budget: past a keyframe's
        worth, a keyframe helps the viewer more than any resend could."""
        self._owed += n
        kc = self.layer.keyframe_cache
        pol = self._policy
        frame = len(kc.frame) if kc is not None and kc.frame else pol.keyframe_packets
        if self._owed >= frame and now - self._owed_at >= pol.keyframe_interval_s:
            self._owed = 0
            self._owed_at = now
            self._stats.nack_keyframe_requests += 1
            self.producer.request_keyframe(self.layer)

    def on_receiver_report(
        self, fraction_lost: int, lsr: int, dlsr: int, cumulative_lost: int = 0, highest_seq: int = 0
    ) -> None:
        """A report block of the viewer about this consumer: loss, and a round trip
        measured against the last SR we sent it (RFC 3550 6.4.1)."""
        self.fraction_lost = fraction_lost
        self._rr_lost = cumulative_lost
        self._rr_high = highest_seq
        self._rr_fresh = True
        # A block naming an older SR (or none yet: LSR 0) gives no sample.
        if lsr and dlsr and lsr == self._sr_lsr:
            self.on_rtt(self._clock() - self._sr_at - dlsr / 65536.0)

    def on_rtt(self, sample: float) -> None:
        """One round-trip sample in seconds, smoothed; nonsense samples are ignored."""
        if not 0.0 < sample < 10.0:
            return
        self.rtt = sample if not self.rtt else 0.875 * self.rtt + 0.125 * sample

    def on_keyframe_request(self) -> None:
        self._stats.plis_received += 1
        if not self.paused:
            self.producer.request_keyframe(self.layer)

    def sender_info(self, now: float, wall: float) -> tuple[int, int, int, int] | None:
        """(NTP time, RTP timestamp, packets, octets) of an SR to this viewer at ``now``
        (the router clock; ``wall``: ``time.time()``), or None while nothing is
        being forwarded (paused, not yet started on a keyframe, closed: RFC 3550
        6.4, a participant that does not send reports no SR). For the worker's
        :class:`~.sender_report_timer.SenderReportTimer`; remembers the SR's LSR.

        The RTP time is in this viewer's rewritten timeline. With the publisher's
        SR of the forwarded layer, the SR continues the publisher's own NTP/RTP
        line, extrapolated by the time since it arrived: audio and video keep the
        publisher's mapping, so lip sync survives forwarding (and a layer switch,
        whose timestamp step is mapped through both layers' SRs). Before it, the
        NTP time is the node's clock and the RTP time is the last forwarded
        packet's, advanced by the time since it arrived. The counts are what was
        actually sent: the C lane's counters plus the Python path's.
        """
        if self.closed or self.paused or not self._anchored:
            return None
        packets = self.packets
        if not packets:
            return None
        layer = self.layer
        rate = self.producer.clock_rate
        sr = layer.sr
        if sr is not None:
            elapsed = max(0.0, now - layer.last_sr_arrival)
            ntp = sr[0] + int(elapsed * 4294967296.0)
            rtp = sr[1] + self._ts_off + int(elapsed * rate)
        else:
            ntp = ntp_now(wall)
            # aiortc's arrival times are milliseconds since the NTP epoch.
            elapsed = wall + NTP_UNIX_OFFSET - layer.last_arrival_ms / 1000.0
            if not 0.0 <= elapsed < 60.0:
                elapsed = 0.0
            rtp = layer.last_ts + self._ts_off + int(elapsed * rate)
        ntp &= 0xFFFFFFFFFFFFFFFF
        self._sr_lsr = (ntp >> 16) & 0xFFFFFFFF
        self._sr_at = now
        return ntp, rtp & 0xFFFFFFFF, packets & 0xFFFFFFFF, self.octets & 0xFFFFFFFF

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        listener: ConsumerListener = self.producer
        listener.on_consumer_closed(self)
        if self.on_close is not None:
            cb, self.on_close = self.on_close, None
            cb(self)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "consumer_id": self.id,
            "producer_id": self.producer.id,
            "kind": self.kind,
            "paused": self.user_paused,
        }
        if self.producer.simulcast:
            cur = self.current_layer
            out["spatial_layer"] = None if cur is None else cur.spatial
            out["max_spatial"] = self.max_spatial
            out["max_temporal"] = self.max_temporal
        return out
