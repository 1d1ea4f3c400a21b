"""One spatial layer of a producer: one RTP stream of the publisher (a simulcast RID).

A single-stream producer has exactly one layer; a simulcast producer has one
per RID of its offer (at most 3). Each layer is its own RTP stream with its own
SSRC, sequence and timestamp space, so everything that depends on those lives
here: the packet cache answering NACKs, the last keyframe replayed to new
viewers, the receive statistics for the receiver reports, and the fan-out
snapshots (the C lanes and the Python consumers that forward *this* stream).
A viewer switching layers moves from one layer's fan-out to another's.

The producer's hot path reads and writes these attributes directly (no method
call per packet); the bitrate is measured once per RTCP interval from the
octet counter (:meth:`tick`), not per packet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from jasmin_codecs.rtcp import ReportBlock, ntp_to_compact
from jasmin_codecs.seq import seq_unwrap

from .keyframe_cache import KeyframeCache
from .packet_cache import PacketCache

if TYPE_CHECKING:
    from .consumer import Consumer


class LayerInfo(NamedTuple):
    """What a producer says about one of its spatial layers (``Producer.layers``).

    ``spatial`` is the quality rank, 0 the lowest; ``rid`` is None for a
    producer without simulcast; ``ssrc`` is None until the publisher's first
    packet of the layer named it; ``width``/``height`` are 0 until a keyframe
    of a codec whose header carries them (VP8) was seen; ``active`` says the
    layer carried packets during the last measurement interval.
    """

    spatial: int
    rid: str | None
    ssrc: int | None
    bitrate_bps: int
    active: bool
    width: int = 0
    height: int = 0
    # VP8 temporal layers seen in the layer's payload descriptors (1: none, 3:
    # L1T3), and the measured rate up to each of them but the top one
    # (cumulative: T0, T0+T1, ...; bits/s), for the layer selector.
    temporal_layers: int = 1
    temporal_bps: tuple[int, ...] = ()


class LayerChoice(NamedTuple):
    """The layer a consumer forwards now (``Consumer.current_layer``).

    ``temporal`` is None when every temporal layer is forwarded.
    """

    spatial: int
    temporal: int | None


class Layer:
    """The per-stream state of one spatial layer (see the module docstring)."""

    __slots__ = (
        "index",
        "rid",
        "ssrc",
        "rtx_ssrc",
        "cache",
        "keyframe_cache",
        "packets",
        "octets",
        "keyframes_seen",
        "base_seq",
        "ext_max",
        "max_seq",
        "expected_prior",
        "received_prior",
        "last_ts",
        "last_arrival_ms",
        "last_sr_ntp",
        "last_sr_arrival",
        "sr",
        "lanes",
        "py",
        "switchers",
        "tfast",
        "tframe",
        "tdesc",
        "bitrate_bps",
        "active",
        "width",
        "height",
        "temporal_layers",
        "tid_octets",
        "temporal_bps",
        "_tid_rate_octets",
        "_rate_octets",
        "_rate_packets",
        "_rate_at",
    )

    def __init__(
        self,
        index: int,
        rid: str | None,
        ssrc: int | None,
        rtx_ssrc: int | None,
        *,
        video: bool,
        cache_size: int,
        keyframe_cache: bool,
        cache_age_ticks: int = 0,
    ) -> None:
        # The layer's position in the publisher's offer (a=simulcast order), fixed.
        self.index = index
        self.rid = rid
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.cache: PacketCache | None = PacketCache(cache_size, cache_age_ticks) if video else None
        # The last complete keyframe of this layer, replayed to a viewer starting on it.
        self.keyframe_cache: KeyframeCache | None = KeyframeCache() if video and keyframe_cache else None
        # Receive statistics (RFC 3550 A.3) for our receiver reports.
        self.packets = 0
        self.octets = 0
        self.keyframes_seen = 0
        self.base_seq: int | None = None
        # The highest extended (unwrapped) sequence number; max_seq is its low 16 bits.
        self.ext_max = 0
        self.max_seq = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.last_ts = 0
        self.last_arrival_ms = 0
        self.last_sr_ntp = 0
        self.last_sr_arrival = 0.0
        self.sr: tuple[int, int] | None = None  # (ntp, rtp_ts) of the publisher's last SR of this stream
        # The fan-out snapshots, rebuilt by the producer on a consumer's state
        # change (never per packet): C lanes; unpaused Python-path consumers;
        # consumers waiting for this layer's keyframe to switch to it.
        self.lanes: tuple[Any, ...] = ()
        self.py: tuple["Consumer", ...] = ()
        self.switchers: tuple["Consumer", ...] = ()
        # C lane consumers dropping VP8 temporal layers: the producer asks each
        # (Consumer.lane_admit) whether its lane sends the packet.
        self.tfast: tuple["Consumer", ...] = ()
        # The descriptor of the newest frame (RTP timestamp) asked about, parsed once.
        self.tframe: int | None = None
        self.tdesc: Any = None
        # Measured once per RTCP interval (tick).
        self.bitrate_bps = 0
        self.active = False
        self.width = 0
        self.height = 0
        # VP8 temporal layers (jasmin_codecs.vp8_temporal_id of each packet, counted
        # by the producer once a descriptor with a T bit was seen): how many, the
        # octets per TID, and per tick the cumulative rates below the top layer.
        self.temporal_layers = 1
        self.tid_octets = [0, 0, 0, 0]
        self.temporal_bps: tuple[int, ...] = ()
        self._tid_rate_octets = (0, 0, 0, 0)
        self._rate_octets = 0
        self._rate_packets = 0
        self._rate_at = -1.0

    def extend(self, seq: int) -> int:
        """``seq`` as an extended sequence number (cycles * 2^16 + seq): the one
        nearest the newest received, as RFC 3550 A.1 counts them."""
        return seq_unwrap(self.ext_max, seq)

    def tick(self, now: float) -> None:
        """Measure the bitrate since the last tick and whether packets came (once per RTCP interval)."""
        if self._rate_at >= 0 and now > self._rate_at:
            self.bitrate_bps = int((self.octets - self._rate_octets) * 8 / (now - self._rate_at))
            self.active = self.packets > self._rate_packets
            if self.temporal_layers > 1:
                dt = now - self._rate_at
                per = [(a - b) * 8 / dt for a, b in zip(self.tid_octets, self._tid_rate_octets)]
                self.temporal_bps = tuple(int(sum(per[: t + 1])) for t in range(self.temporal_layers - 1))
        self._tid_rate_octets = (self.tid_octets[0], self.tid_octets[1], self.tid_octets[2], self.tid_octets[3])
        self._rate_at = now
        self._rate_octets = self.octets
        self._rate_packets = self.packets

    def report_block(self, now: float) -> ReportBlock | None:
        """An RFC 3550 report block for this stream, or None before its first packet."""
        if self.base_seq is None or self.ssrc is None:
            return None
        ext_max = self.ext_max
        expected = ext_max - self.base_seq + 1
        lost = max(0, min(expected - self.packets, 0x7FFFFF))
        exp_int = expected - self.expected_prior
        rec_int = self.packets - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.packets
        lost_int = exp_int - rec_int
        fraction = (lost_int << 8) // exp_int if exp_int > 0 and lost_int > 0 else 0
        lsr = ntp_to_compact(self.last_sr_ntp) if self.last_sr_ntp else 0
        dlsr = int((now - self.last_sr_arrival) * 65536) if self.last_sr_ntp else 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=lost,
            highest_seq=ext_max & 0xFFFFFFFF,
            jitter=0,
            lsr=lsr,
            dlsr=dlsr & 0xFFFFFFFF,
        )

    def clear(self) -> None:
        """Forget the cached packets and keyframe (the producer closed)."""
        if self.cache is not None:
            self.cache.clear()
        if self.keyframe_cache is not None:
            self.keyframe_cache.clear()
