"""A published track: receives the publisher's RTP and fans it out to consumers."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable, Protocol

from jasmin_codecs.errors import MalformedPacket
from jasmin_codecs.h264 import h264_is_keyframe
from jasmin_codecs.rtcp import Nack, Pli, ReceiverReport, Remb, ReportBlock, ntp_to_compact
from jasmin_codecs.rtp import ExtensionRewriter, split_rtp
from jasmin_codecs.seq import seq_unwrap
from jasmin_codecs.vp8 import vp8_is_keyframe

from .errors import InvalidStateError
from .fastpath import fastpath_ext
from .keyframe_cache import KeyframeCache
from .keyframe_requester import KeyframeRequester
from .packet_cache import PacketCache
from .stats import MediaStats

if TYPE_CHECKING:
    from .consumer import Consumer

_OSN = struct.Struct("!H")
_RTX_REBUILD = struct.Struct("!BBHII")

# (b0, tail): b0 is the first header byte for the outgoing packet, tail is
# CSRCs + rewritten extension section + payload (+ padding).
Tail = tuple[int, bytes]


class ProducerListener(Protocol):
    """What a producer tells its parent, the publisher's transport (mediasoup's
    ``Producer::Listener``); the transport tells the router in turn."""

    def on_producer_closed(self, producer: "Producer") -> None: ...


class Producer:
    """One incoming track of a publisher transport.

    ``on_rtp`` is the hot path: synchronous, no await, no logging, no
    allocation beyond the outgoing packets. It never raises: malformed
    packets are dropped and counted by reason.
    """

    def __init__(
        self,
        *,
        producer_id: str,
        kind: str,
        mime: str,
        clock_rate: int,
        payload_type: int,
        ssrc: int | None,
        rtx_ssrc: int | None,
        rtx_payload_type: int | None,
        codec_parameters: dict[str, Any],
        extensions: dict[str, int],
        send_rtcp: Callable[[bytes], bool],
        rtcp_ssrc: int,
        stats: MediaStats,
        cache_size: int,
        keyframes: Callable[["Producer"], KeyframeRequester],
        keyframe_cache: bool = True,
        app_data: dict[str, Any] | None = None,
        listener: ProducerListener | None = None,
    ) -> None:
        self.id = producer_id
        self.listener = listener
        self.kind = kind
        self.mime = mime
        self.clock_rate = clock_rate
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.codec_parameters = dict(codec_parameters)
        self.extensions = dict(extensions)  # uri -> id on the publisher leg
        self.app_data = app_data or {}
        # Who may receive this track: None = anyone in the router, else a set
        # of opaque audience keys (the show layer uses signaling session ids).
        # An exclusive producer (Cam2Cam) gets consumers only for its audience;
        # others get paused ("blocked") consumers for everyone else.
        self.audience: frozenset[str] | None = None
        self.exclusive = False
        self.closed = False
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self._stats = stats
        self.is_video = kind == "video"
        mime_l = mime.lower()
        self._is_kf: Callable[[Any, int], bool] | None = (
            vp8_is_keyframe if mime_l == "video/vp8" else h264_is_keyframe if mime_l == "video/h264" else None
        )
        self.cache: PacketCache | None = PacketCache(cache_size) if self.is_video else None
        self.keyframes = keyframes(self)
        # The last complete keyframe, replayed to each new viewer (TTFF).
        self.keyframe_cache: KeyframeCache | None = KeyframeCache() if self.is_video and keyframe_cache else None

        self._consumers: tuple["Consumer", ...] = ()
        self.consumers: dict[str, "Consumer"] = {}
        # The fan-out snapshots, rebuilt on subscribe/unsubscribe/pause/anchor
        # (never per packet): C lanes of consumers forwarded in C, and the
        # unpaused consumers the Python path still handles (not anchored yet,
        # or not C-eligible).
        self._lanes: tuple[Any, ...] = ()
        self._py: tuple["Consumer", ...] = ()
        self._batching = False
        # Extension profiles: one rewriter per distinct consumer leg layout.
        self._profiles: list[ExtensionRewriter] = []
        self._profile_keys: dict[tuple[Any, ...], int] = {}

        # Receive statistics (RFC 3550 A.3) for our receiver reports.
        self.packets = 0
        self.octets = 0
        self.keyframes_seen = 0
        self._base_seq: int | None = None
        # The highest extended (unwrapped) sequence number; max_seq is its low 16 bits.
        self._ext_max = 0
        self.max_seq = 0
        self._expected_prior = 0
        self._received_prior = 0
        self.last_ts = 0
        self.last_arrival_ms = 0
        self._last_sr_ntp = 0
        self._last_sr_arrival = 0.0
        self.sr: tuple[int, int] | None = None  # (ntp, rtp_ts) of the publisher's last SR

    @property
    def extended_max_seq(self) -> int:
        """The highest sequence number received, with its wrap count (RFC 3550 A.1)."""
        return self._ext_max

    # -- consumers ---------------------------------------------------------

    def profile_for(self, id_map: dict[int, int], replace: dict[int, bytes]) -> int:
        """Index of the extension rewriter for one consumer leg's layout."""
        key = (tuple(sorted(id_map.items())), tuple(sorted(replace.items())))
        idx = self._profile_keys.get(key)
        if idx is None:
            idx = len(self._profiles)
            self._profiles.append(ExtensionRewriter(id_map, replace))
            self._profile_keys[key] = idx
        return idx

    def admits(self, key: str) -> bool:
        """Whether a consumer with audience ``key`` may receive media now."""
        return self.audience is None or key in self.audience

    def visible_to(self, key: str) -> bool:
        """Whether ``key`` may know this producer exists (exclusive ones are hidden)."""
        return not self.exclusive or self.admits(key)

    def set_audience(self, audience: frozenset[str] | None) -> None:
        """Block every consumer outside ``audience`` and unblock those inside,
        synchronously: no packet of this producer reaches an excluded viewer
        after this call returns."""
        self.audience = audience
        # A keyframe captured for the old audience must never be replayed to
        # the new one (the last frame of a private to a free-chat viewer).
        if self.keyframe_cache is not None:
            self.keyframe_cache.clear()
        # One snapshot rebuild for the whole audience change, not one per
        # consumer (400 viewers: 400 rebuilds of 400 would stall the loop ~30 ms).
        self._batching = True
        try:
            for c in self._consumers:
                if self.admits(c.audience_key):
                    if c.blocked:
                        c.unblock()
                elif not c.blocked:
                    c.block()
        finally:
            self._batching = False
            self.refresh_fanout()

    def add_consumer(self, consumer: "Consumer") -> None:
        if self.closed:
            raise InvalidStateError(f"producer {self.id} is closed")
        self.consumers[consumer.id] = consumer
        self._consumers = tuple(self.consumers.values())
        self.refresh_fanout()

    def on_consumer_closed(self, consumer: "Consumer") -> None:
        """ConsumerListener: a consumer closed; drop it from the fan-out."""
        if self.consumers.pop(consumer.id, None) is not None:
            self._consumers = tuple(self.consumers.values())
            self.refresh_fanout()

    def refresh_fanout(self) -> None:
        """Rebuild the C and Python fan-out tuples (a consumer changed state)."""
        if self._batching:
            return
        self._lanes = tuple(c.lane for c in self._consumers if c.fast and not c.paused)
        self._py = tuple(c for c in self._consumers if not c.paused and not c.fast)

    # -- the hot path ------------------------------------------------------

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        """Forward one plain RTP packet of this producer to every consumer."""
        stats = self._stats
        try:
            b0, b1, seq, ts, _, off, ext_profile, payload_off, _ = split_rtp(data)
        except MalformedPacket as exc:
            stats.drop(exc.reason)
            return
        if (b1 & 0x7F) != self.payload_type:
            stats.drop("unknown_pt")
            return
        ext_data = data[off + 4 : payload_off] if ext_profile is not None else b""

        n = len(data)
        self.packets += 1
        self.octets += n
        stats.rtp_packets_in += 1
        stats.rtp_bytes_in += n
        # Sequence tracking for receiver reports.
        late = False
        if self._base_seq is None:
            self._base_seq = self._ext_max = self.max_seq = seq
            self.last_ts = ts
        else:
            # In order (the common case) the unwrap is the highest plus one;
            # anything else asks seq_unwrap. Saves a call per packet.
            ext = self._ext_max + 1 if seq == (self.max_seq + 1) & 0xFFFF else seq_unwrap(self._ext_max, seq)
            if ext >= self._ext_max:
                self._ext_max = ext
                self.max_seq = seq
                self.last_ts = ts
            else:
                late = True  # reordered, or a retransmission (RTX)
        self.last_arrival_ms = arrival_ms

        keyframe = False
        if self._is_kf is not None:
            keyframe = self._is_kf(data, payload_off)
            if keyframe:
                self.keyframes_seen += 1
        if self.cache is not None:
            self.cache.put(seq, data)
        kc = self.keyframe_cache
        if kc is not None and (keyframe or kc.assembling is not None):
            kc.put(data, seq, ts, keyframe, b1 & 0x80 != 0)

        lanes = self._lanes
        consumers = self._py
        if late and (lanes or consumers):
            # Older than the newest packet: only for viewers whose stream began
            # at or before it. It never starts a stream, and never reaches one
            # that (re)started later: it would reuse a sequence number of the
            # viewer's earlier stream and may be another audience's media (a
            # private's retransmission arriving after the private ended).
            ext = self.extend(seq)
            lanes = tuple(c.lane for c in self._consumers if c.fast and not c.paused and c._anchor_ext <= ext)
            consumers = tuple(c for c in consumers if c._anchored and c._anchor_ext <= ext)
        if not consumers and not lanes:
            return
        csrc = data[12:off]
        body = data[payload_off:]
        pad_bit = b0 & 0x20
        tails: list[Tail] = []
        try:
            for rw in self._profiles:
                section = rw.rewrite(ext_profile, ext_data)
                tails.append((0x80 | pad_bit | (0x10 if section else 0) | (b0 & 0x0F), csrc + section + body))
        except MalformedPacket:
            stats.drop("bad_extension")
            return
        sent = 0
        sent_bytes = 0
        if lanes:
            sent, sent_bytes, failed = fastpath_ext.fanout(lanes, tails, b1, seq, ts)
            if failed:
                stats.drop("send_failed", failed)
        for c in consumers:
            k = c.forward(b1, seq, ts, tails[c.profile], keyframe)
            if k:
                sent += 1
                sent_bytes += k
        stats.rtp_packets_out += sent
        stats.rtp_bytes_out += sent_bytes

    def on_rtx(self, data: bytes, arrival_ms: int) -> None:
        """Unwrap an RFC 4588 retransmission and process it as the original."""
        n = len(data)
        if n < 14:
            self._stats.drop("too_short")
            return
        try:
            b0, b1, _, ts, _, _, _, off, pad = split_rtp(data)
        except MalformedPacket as exc:
            self._stats.drop(exc.reason)
            return
        if pad and pad >= n - off - 2:
            # A bandwidth probe: padding only, with or without an OSN
            # (libwebrtc sends 255 padding bytes and no OSN). Nothing to forward.
            return
        if off + 2 > n:
            self._stats.drop("too_short")
            return
        (osn,) = _OSN.unpack_from(data, off)
        header = _RTX_REBUILD.pack(b0, (b1 & 0x80) | self.payload_type, osn, ts, self.ssrc or 0)
        self.on_rtp(header + data[12:off] + data[off + 2 :], arrival_ms)

    def extend(self, seq: int) -> int:
        """``seq`` as an extended sequence number (cycles * 2^16 + seq): the one
        nearest the newest received, as RFC 3550 A.1 counts them."""
        return seq_unwrap(self._ext_max, seq)

    def tail_for(self, data: bytes, profile: int) -> tuple[int, int, int, int, Tail] | None:
        """Split a cached packet for one consumer's profile (retransmissions)."""
        try:
            b0, b1, seq, ts, _, off, ext_profile, payload_off, _ = split_rtp(data)
        except MalformedPacket:
            return None
        ext_data = data[off + 4 : payload_off] if ext_profile is not None else b""
        try:
            section = self._profiles[profile].rewrite(ext_profile, ext_data)
        except MalformedPacket:
            return None
        b0_out = 0x80 | (b0 & 0x20) | (0x10 if section else 0) | (b0 & 0x0F)
        return b1, seq, ts, 0, (b0_out, data[12:off] + section + data[payload_off:])

    # -- RTCP toward the publisher -----------------------------------------

    def request_keyframe(self) -> None:
        """A viewer needs a keyframe; throttled per producer."""
        if self.is_video and not self.closed:
            if not self.keyframes.request():
                self._stats.keyframe_requests_coalesced += 1

    def send_pli(self) -> None:
        if self.closed or self.ssrc is None:
            return
        self._stats.keyframe_requests_sent += 1
        if self._send_rtcp(Pli(sender_ssrc=self._rtcp_ssrc, media_ssrc=self.ssrc).to_bytes()):
            self._stats.rtcp_packets_out += 1

    def nack_upstream(self, seqs: list[int]) -> None:
        """Ask the publisher for packets the cache does not hold."""
        if self.closed or self.ssrc is None or not seqs:
            return
        pkt = Nack(sender_ssrc=self._rtcp_ssrc, media_ssrc=self.ssrc, lost=tuple(sorted(set(seqs))))
        if self._send_rtcp(pkt.to_bytes()):
            self._stats.rtcp_packets_out += 1

    def on_sender_report(self, ntp: int, rtp_ts: int, now: float) -> None:
        """The publisher's SR: remember it for LSR/DLSR and pass it to consumers."""
        self._last_sr_ntp = ntp
        self._last_sr_arrival = now
        self.sr = (ntp, rtp_ts)
        for c in self._consumers:
            c.on_producer_sr(ntp, rtp_ts)

    def report_block(self, now: float) -> ReportBlock | None:
        """An RFC 3550 report block for this producer, or None before any packet."""
        if self._base_seq is None or self.ssrc is None:
            return None
        ext_max = self._ext_max
        expected = ext_max - self._base_seq + 1
        lost = max(0, min(expected - self.packets, 0x7FFFFF))
        exp_int = expected - self._expected_prior
        rec_int = self.packets - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.packets
        lost_int = exp_int - rec_int
        fraction = (lost_int << 8) // exp_int if exp_int > 0 and lost_int > 0 else 0
        lsr = ntp_to_compact(self._last_sr_ntp) if self._last_sr_ntp else 0
        dlsr = int((now - self._last_sr_arrival) * 65536) if self._last_sr_ntp else 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=lost,
            highest_seq=ext_max & 0xFFFFFFFF,
            jitter=0,
            lsr=lsr,
            dlsr=dlsr & 0xFFFFFFFF,
        )

    def remb(self, min_bps: int, max_bps: int) -> Remb | None:
        """REMB toward the publisher: what its best-served viewer can take, bounded.

        aiortc negotiates no transport-cc, so without this a browser publisher
        stays at its starting bitrate (~300 kbit/s). A weak viewer is handled on
        its own leg (audio first, docs/media.md) and never pulls the others'
        picture down, so the rule (docs/media.md, "REMB toward the performer") is:

        - only viewers that want the video and may get it count: a consumer
          paused by its viewer, blocked by the audience (a private: its member
          is then the only one that counts) or paused by audio first does not;
        - the highest estimate among those that sent one;
        - none sent one but at least one counting viewer's video is paused by
          audio first: ``min_bps`` (the picture was too heavy for all of them,
          and its next try should fit);
        - no viewer counts or sent an estimate: ``max_bps``;
        - always clamped to ``[min_bps, max_bps]`` (an estimate of 0 is none,
          a huge one is the ceiling).
        """
        if not self.is_video or self.ssrc is None:
            return None
        best = 0
        congested = False
        for c in self._consumers:
            if c.closed or c.user_paused or c.blocked:
                continue
            if c.congested:
                congested = True
            elif c.remb > best:
                best = c.remb
        bitrate = best if best > 0 else (min_bps if congested else max_bps)
        bitrate = max(min_bps, min(max_bps, bitrate))
        return Remb(sender_ssrc=self._rtcp_ssrc, bitrate=bitrate, ssrcs=(self.ssrc,))

    def receiver_report(self, now: float, min_bps: int, max_bps: int) -> bytes | None:
        block = self.report_block(now)
        if block is None:
            return None
        out = ReceiverReport(ssrc=self._rtcp_ssrc, reports=(block,)).to_bytes()
        remb = self.remb(min_bps, max_bps)
        if remb is not None:
            out += remb.to_bytes()
        return out

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> list["Consumer"]:
        """Close the producer and its consumers, and tell the listener, once;
        returns the consumers closed."""
        if self.closed:
            return []
        self.closed = True
        self.keyframes.cancel()
        closed = list(self._consumers)
        for c in closed:
            c.close()
        self.consumers.clear()
        self._consumers = ()
        if self.cache is not None:
            self.cache.clear()
        if self.keyframe_cache is not None:
            self.keyframe_cache.clear()
        if self.listener is not None:
            self.listener.on_producer_closed(self)
        return closed

    def describe(self) -> dict[str, Any]:
        return {
            "producer_id": self.id,
            "kind": self.kind,
            "codec": self.mime.split("/")[-1],
            "app_data": dict(self.app_data),
        }
