"""A published track: receives the publisher's RTP and fans it out to consumers."""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

from jasmin_codecs.errors import MalformedPacket
from jasmin_codecs.h264 import h264_is_keyframe
from jasmin_codecs.rtcp import Nack, Pli, ReceiverReport, Remb, ReportBlock
from jasmin_codecs.rtp import (
    ABS_SEND_TIME_URI,
    ONE_BYTE_PROFILE,
    ExtensionRewriter,
    abs_send_time,
    set_one_byte_extension,
    split_rtp,
)
from jasmin_codecs.seq import seq_unwrap
from jasmin_codecs.vp8 import (
    Vp8Descriptor,
    parse_vp8_descriptor,
    vp8_is_keyframe,
    vp8_keyframe_size,
    vp8_temporal_id,
)

from .errors import InvalidStateError
from .fastpath import fastpath_ext
from .keyframe_cache import KeyframeCache
from .keyframe_requester import KeyframeRequester
from .layer import Layer, LayerInfo
from .packet_cache import PacketCache
from .stats import MediaStats

if TYPE_CHECKING:
    from .consumer import Consumer

_OSN = struct.Struct("!H")
_RTX_REBUILD = struct.Struct("!BBHII")

# (b0, tail) or (b0, tail, payload offset): b0 is the first header byte for the
# outgoing packet, tail is CSRCs + rewritten extension section + payload (+
# padding); a VP8 simulcast producer adds where the payload starts in the tail,
# for the picture id rewrite (Consumer, and the C lanes' vp8 patch).
Tail = tuple[int, bytes] | tuple[int, bytes, int]


class RelaySink(Protocol):
    """What a producer forwards to a relay (``media/pipe_transport.py``): every
    packet of every layer, as received, and the publisher's sender reports.
    ``audience_key`` is the relay's key in the producer's audience (a private
    cuts every relay not admitted, in the same step as its local viewers);
    ``remb`` is the far node's best viewer estimate (0: none), counted in
    :meth:`Producer.remb` as a local viewer's."""

    audience_key: str
    remb: int

    def relay_rtp(self, data: bytes, layer: Layer) -> None: ...

    def relay_sr(self, layer: Layer, ntp: int, rtp_ts: int) -> None: ...

    def restart(self) -> None:
        """The relay is fed again from now on (attached, or admitted back by the audience):
        what the producer received meanwhile is another audience's and never for it."""


class ProducerListener(Protocol):
    """What a producer tells its parent, the publisher's transport (mediasoup's
    ``Producer::Listener``); the transport tells the router in turn."""

    def on_producer_closed(self, producer: "Producer") -> None: ...


class Producer:
    """One incoming track of a publisher transport.

    ``on_rtp`` is the hot path: synchronous, no await, no logging, no
    allocation beyond the outgoing packets. It never raises: malformed
    packets are dropped and counted by reason.

    A track has one or more spatial layers (:class:`~.layer.Layer`): one for a
    plain publisher, one per RID of a simulcast offer (``rids``), whose SSRCs
    the transport learns from the first packets (:meth:`bind_layer`).
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
        cache_ms: int = 0,
        app_data: dict[str, Any] | None = None,
        listener: ProducerListener | None = None,
        rids: tuple[str, ...] = (),
    ) -> None:
        self.id = producer_id
        self.listener = listener
        self.kind = kind
        self.mime = mime
        self.clock_rate = clock_rate
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.codec_parameters = dict(codec_parameters)
        self.extensions = dict(extensions)  # uri -> id on the publisher leg
        # The publisher's abs-send-time id (0: none). Its value is replaced by the
        # node's own send time in every video packet forwarded (media, resends,
        # replayed keyframes), the timeline the viewers' padding probes carry too:
        # a browser viewer's receive-side estimator times packets by it, and the
        # publisher's send times mixed with the node's would be no timeline at all
        # (docs/media.md, "Probing and pausing"). ``send_clock`` is that clock.
        self.ast_id = self.extensions.get(ABS_SEND_TIME_URI, 0) if kind == "video" else 0
        self.send_clock: Callable[[], float] = time.monotonic
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
        self.is_vp8 = mime_l == "video/vp8"
        self._is_kf: Callable[[Any, int], bool] | None = (
            vp8_is_keyframe if self.is_vp8 else h264_is_keyframe if mime_l == "video/h264" else None
        )
        video = self.is_video
        # The packet cache's age bound in RTP ticks (0: its packet count alone).
        age = cache_ms * clock_rate // 1000
        if rids:
            if not video:
                raise ValueError("only video has simulcast layers")
            self._layers: tuple[Layer, ...] = tuple(
                Layer(
                    i,
                    rid,
                    None,
                    None,
                    video=True,
                    cache_size=cache_size,
                    keyframe_cache=keyframe_cache,
                    cache_age_ticks=age,
                )
                for i, rid in enumerate(rids)
            )
        else:
            self._layers = (
                Layer(
                    0,
                    None,
                    ssrc,
                    rtx_ssrc,
                    video=video,
                    cache_size=cache_size,
                    keyframe_cache=keyframe_cache,
                    cache_age_ticks=age,
                ),
            )
        self.simulcast = bool(rids)
        # Viewers' VP8 PictureID/TL0PICIDX continue across layer switches: the
        # tails then say where the payload starts.
        self.vp8_ids = self.simulcast and self.is_vp8
        # The VP8 stream carries temporal layers (a keyframe's descriptor had
        # the T bit): each packet's TID is counted per layer, and the viewers'
        # VP8 ids are rewritten (vp8_ids) so a viewer can drop temporal layers.
        self.temporal = False
        # The first layer: the one plain publishers have, and the compatibility
        # view of this producer's stream (ssrc, cache, ... below).
        self._main = self._layers[0]
        # The layers by quality, lowest first (Producer.layers' spatial index).
        self._ranked: tuple[Layer, ...] = self._layers
        # Layers a keyframe was asked for since the last PLI went out.
        self._pli_for: set[Layer] = set()
        self.keyframes = keyframes(self)

        self._consumers: tuple["Consumer", ...] = ()
        self.consumers: dict[str, "Consumer"] = {}
        # Relays toward other nodes fed by this producer, and those the
        # audience admits (the ones the hot path feeds).
        self.relays: tuple[RelaySink, ...] = ()
        self._relays: tuple[RelaySink, ...] = ()
        # Told True when the first consumer arrives and False when the last
        # leaves: a replica producer's pipe asks its origin for the stream
        # only while someone here watches it.
        self.on_demand: Callable[[bool], None] | None = None
        self._batching = False
        # Extension profiles: one rewriter per distinct consumer leg layout.
        self._profiles: list[ExtensionRewriter] = []
        self._profile_keys: dict[tuple[Any, ...], int] = {}

    # -- the streams (layers) -------------------------------------------------

    @property
    def ssrc(self) -> int | None:
        """The first layer's SSRC (a plain publisher's one stream)."""
        return self._main.ssrc

    @property
    def rtx_ssrc(self) -> int | None:
        return self._main.rtx_ssrc

    @property
    def cache(self) -> PacketCache | None:
        return self._main.cache

    @property
    def keyframe_cache(self) -> KeyframeCache | None:
        return self._main.keyframe_cache

    @property
    def packets(self) -> int:
        """RTP packets received, every layer."""
        return sum(layer.packets for layer in self._layers)

    @property
    def octets(self) -> int:
        return sum(layer.octets for layer in self._layers)

    @property
    def keyframes_seen(self) -> int:
        return sum(layer.keyframes_seen for layer in self._layers)

    @property
    def max_seq(self) -> int:
        return self._main.max_seq

    @property
    def last_ts(self) -> int:
        return self._main.last_ts

    @property
    def last_arrival_ms(self) -> int:
        return max(layer.last_arrival_ms for layer in self._layers)

    @property
    def sr(self) -> tuple[int, int] | None:
        return self._main.sr

    @property
    def extended_max_seq(self) -> int:
        """The highest sequence number of the first layer, with its wrap count (RFC 3550 A.1)."""
        return self._main.ext_max

    @property
    def _lanes(self) -> tuple[Any, ...]:
        return self._main.lanes

    @property
    def _py(self) -> tuple["Consumer", ...]:
        return self._main.py

    def extend(self, seq: int) -> int:
        """``seq`` of the first layer as an extended sequence number (see :meth:`Layer.extend`)."""
        return self._main.extend(seq)

    @property
    def all_layers(self) -> tuple[Layer, ...]:
        """Every layer in the publisher's offer order (the streams themselves)."""
        return self._layers

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """The spatial layers by quality, lowest first; ``spatial`` is that rank."""
        return tuple(
            LayerInfo(
                i,
                lay.rid,
                lay.ssrc,
                lay.bitrate_bps,
                lay.active,
                lay.width,
                lay.height,
                lay.temporal_layers,
                lay.temporal_bps,
            )
            for i, lay in enumerate(self._ranked)
        )

    def rank_of(self, layer: Layer) -> int:
        """The quality rank of ``layer`` (its ``spatial`` in :attr:`layers`)."""
        return self._ranked.index(layer)

    def layer_at(self, spatial: int) -> Layer:
        """The layer of quality rank ``spatial``; a rank above the top is the top layer."""
        if spatial < 0:
            raise ValueError(f"spatial layer {spatial} is negative")
        ranked = self._ranked
        return ranked[min(spatial, len(ranked) - 1)]

    def best_layer(self, max_spatial: int | None = None) -> Layer:
        """The highest active layer within ``max_spatial`` (the highest one at all while none is active)."""
        ranked = self._ranked
        top = len(ranked) - 1 if max_spatial is None else max(0, min(max_spatial, len(ranked) - 1))
        for layer in reversed(ranked[: top + 1]):
            if layer.active:
                return layer
        return ranked[top]

    def layer_by_rid(self, rid: str) -> Layer | None:
        for layer in self._layers:
            if layer.rid == rid:
                return layer
        return None

    def layer_by_ssrc(self, ssrc: int) -> Layer | None:
        for layer in self._layers:
            if layer.ssrc == ssrc:
                return layer
        return None

    def _rerank(self) -> None:
        """Order the layers by quality: the picture height keyframes showed, then the measured bitrate."""
        ranked = tuple(sorted(self._layers, key=lambda lay: (lay.height, lay.bitrate_bps, lay.index)))
        if ranked != self._ranked:
            self._ranked = ranked

    def tick(self, now: float) -> None:
        """Once per RTCP interval: measure each layer's bitrate and activity, re-rank
        the layers, and move the consumers that follow the default choice."""
        for layer in self._layers:
            layer.tick(now)
        if not self.simulcast:
            return
        self._rerank()
        for c in self._consumers:
            if c.follow_default:
                c.apply_default_layer()

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
        synchronously: no packet of any layer of this producer reaches an
        excluded viewer after this call returns."""
        self.audience = audience
        # A keyframe captured for the old audience must never be replayed to
        # the new one (the last frame of a private to a free-chat viewer),
        # whichever layer it is of.
        for layer in self._layers:
            if layer.keyframe_cache is not None:
                layer.keyframe_cache.clear()
        # The relays to other nodes follow the audience as the viewers here do; one let
        # back in restarts (its edge never gets what was sent while it was cut).
        before = self._relays
        self._relays = tuple(r for r in self.relays if self.admits(r.audience_key))
        for relay in self._relays:
            if relay not in before:
                relay.restart()
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
        if len(self._consumers) == 1 and self.on_demand is not None:
            self.on_demand(True)

    def on_consumer_closed(self, consumer: "Consumer") -> None:
        """ConsumerListener: a consumer closed; drop it from the fan-out."""
        if self.consumers.pop(consumer.id, None) is not None:
            self._consumers = tuple(self.consumers.values())
            self.refresh_fanout()
            if not self._consumers and self.on_demand is not None:
                self.on_demand(False)

    def add_relay(self, relay: RelaySink) -> None:
        """Feed ``relay`` every packet of this producer from now on (while the audience admits it)."""
        if self.closed:
            raise InvalidStateError(f"producer {self.id} is closed")
        if relay not in self.relays:
            self.relays = self.relays + (relay,)
            self._relays = tuple(r for r in self.relays if self.admits(r.audience_key))
            if relay in self._relays:
                relay.restart()

    def remove_relay(self, relay: RelaySink) -> None:
        self.relays = tuple(r for r in self.relays if r is not relay)
        self._relays = tuple(r for r in self._relays if r is not relay)

    def refresh_fanout(self) -> None:
        """Rebuild every layer's C and Python fan-out tuples (a consumer changed state)."""
        if self._batching:
            return
        consumers = self._consumers
        for layer in self._layers:
            mine = [c for c in consumers if c.layer is layer]
            layer.lanes = tuple(c.lane for c in mine if c.fast and not c.paused and c._temporal is None)
            layer.tfast = tuple(c for c in mine if c.fast and not c.paused and c._temporal is not None)
            layer.py = tuple(c for c in mine if not c.paused and not c.fast)
            layer.switchers = tuple(c for c in consumers if c.pending is layer and not c.paused)

    # -- the hot path ------------------------------------------------------

    def on_rtp(self, data: bytes, arrival_ms: int, layer: Layer | None = None) -> None:
        """Forward one plain RTP packet of this producer (of ``layer``, the first
        one by default) to every consumer of that layer."""
        stats = self._stats
        try:
            b0, b1, seq, ts, _, off, ext_profile, payload_off, pad = split_rtp(data)
        except MalformedPacket as exc:
            stats.drop(exc.reason)
            return
        if (b1 & 0x7F) != self.payload_type:
            stats.drop("unknown_pt")
            return
        if layer is None:
            layer = self._main
        ext_data = data[off + 4 : payload_off] if ext_profile is not None else b""

        n = len(data)
        layer.packets += 1
        stats.rtp_packets_in += 1
        stats.rtp_bytes_in += n
        # Sequence tracking for receiver reports.
        late = False
        if layer.base_seq is None:
            layer.base_seq = layer.ext_max = layer.max_seq = seq
            layer.last_ts = ts
        else:
            # In order (the common case) the unwrap is the highest plus one;
            # anything else asks seq_unwrap. Saves a call per packet.
            ext = layer.ext_max + 1 if seq == (layer.max_seq + 1) & 0xFFFF else seq_unwrap(layer.ext_max, seq)
            if ext >= layer.ext_max:
                layer.ext_max = ext
                layer.max_seq = seq
                layer.last_ts = ts
            else:
                late = True  # reordered, or a retransmission (RTX)
                cache = layer.cache
                if cache is not None and cache.get(seq) is not None:
                    # Already received: the publisher probing its uplink with RTX
                    # resends of recent packets (Chromium pads its lowest simulcast
                    # layer this way up to the ceiling it is asked; measured: the
                    # 180p layer read 130-400 kbit/s). Every viewer of the layer has
                    # it or asks the cache for it: forwarding it again would only
                    # load their links, and counting it would misstate the layer.
                    stats.drop("duplicate")
                    return
        layer.last_arrival_ms = arrival_ms
        if not late and (not pad or payload_off + pad < n):
            # Media bytes: the layer's measured bitrate leaves out the publisher's
            # padding-only probes and its resends.
            layer.octets += n

        keyframe = False
        if self._is_kf is not None:
            keyframe = self._is_kf(data, payload_off)
            if keyframe:
                layer.keyframes_seen += 1
                if self.simulcast and self.is_vp8:
                    self._learn_size(layer, data, payload_off)
                if self.is_vp8 and not self.temporal:
                    self._learn_temporal(data, payload_off)
        if self.temporal:
            tid = vp8_temporal_id(data, payload_off)
            if tid >= 0:
                layer.tid_octets[tid] += n
                if tid >= layer.temporal_layers:
                    layer.temporal_layers = tid + 1
        if layer.cache is not None:
            layer.cache.put(seq, data, ts)
        kc = layer.keyframe_cache
        if kc is not None and (keyframe or kc.assembling is not None):
            kc.put(data, seq, ts, keyframe, b1 & 0x80 != 0)
        if keyframe and layer.switchers and not late:
            self._switch_to(layer, seq, ts, data, payload_off)
        for relay in self._relays:
            relay.relay_rtp(data, layer)

        lanes = layer.lanes
        consumers = layer.py
        tfast = layer.tfast
        if late and (lanes or consumers or tfast):
            # Older than the newest packet: only for viewers whose stream began
            # at or before it. It never starts a stream, and never reaches one
            # that (re)started later: it would reuse a sequence number of the
            # viewer's earlier stream and may be another audience's media (a
            # private's retransmission arriving after the private ended).
            ext = layer.extend(seq)
            lanes = tuple(
                c.lane
                for c in self._consumers
                if c.fast and not c.paused and c.layer is layer and c._anchor_ext <= ext and c._temporal is None
            )
            # A late packet for a viewer dropping temporal layers goes the Python
            # way: it is sent with the offsets its place in the stream had.
            consumers = tuple(c for c in consumers + tfast if c._anchored and c._anchor_ext <= ext)
            tfast = ()
        if not consumers and not lanes and not tfast:
            return
        csrc = data[12:off]
        body = data[payload_off:]
        pad_bit = b0 & 0x20
        if self.ast_id and ext_profile == ONE_BYTE_PROFILE:
            ext_data = set_one_byte_extension(ext_data, self.ast_id, abs_send_time(self.send_clock()))
        tails: list[Tail] = []
        try:
            if self.vp8_ids:
                for rw in self._profiles:
                    head = csrc + rw.rewrite(ext_profile, ext_data)
                    tails.append(
                        (0x80 | pad_bit | (0x10 if len(head) > len(csrc) else 0) | (b0 & 0x0F), head + body, len(head))
                    )
            else:
                for rw in self._profiles:
                    section = rw.rewrite(ext_profile, ext_data)
                    tails.append((0x80 | pad_bit | (0x10 if section else 0) | (b0 & 0x0F), csrc + section + body))
        except MalformedPacket:
            stats.drop("bad_extension")
            return
        if tfast:
            # The descriptor is parsed once per frame of the layer: the filter
            # reads only TID and Y, the same in every packet of a frame.
            if layer.tframe != ts:
                layer.tframe = ts
                try:
                    layer.tdesc = parse_vp8_descriptor(data, payload_off)
                except MalformedPacket:
                    layer.tdesc = None
            desc: Vp8Descriptor | None = layer.tdesc
            kept = tuple(c.lane for c in tfast if c.lane_admit(seq, ts, desc, keyframe))
            if kept:
                lanes = lanes + kept
        sent = 0
        sent_bytes = 0
        if lanes:
            sent, sent_bytes, failed = fastpath_ext.fanout(lanes, tails, b1, seq, ts)
            if failed:
                stats.drop("send_failed", failed)
        if self.vp8_ids:
            for c in consumers:
                k = c.forward_vp8(b1, seq, ts, tails[c.profile], keyframe)
                if k:
                    sent += 1
                    sent_bytes += k
        else:
            for c in consumers:
                k = c.forward(b1, seq, ts, tails[c.profile], keyframe)
                if k:
                    sent += 1
                    sent_bytes += k
        stats.rtp_packets_out += sent
        stats.rtp_bytes_out += sent_bytes

    def _learn_size(self, layer: Layer, data: bytes, payload_off: int) -> None:
        """A VP8 keyframe of ``layer``: its picture size, which ranks the layers."""
        size = vp8_keyframe_size(data, payload_off)
        if size is not None and (size[0], size[1]) != (layer.width, layer.height):
            layer.width, layer.height = size
            self._rerank()

    def _learn_temporal(self, data: bytes, payload_off: int) -> None:
        """A VP8 keyframe: when its descriptor has a T bit the stream has temporal
        layers, and from now on its packets' TIDs are counted and the viewers'
        VP8 ids rewritten (the tails say where the payload starts)."""
        try:
            desc = parse_vp8_descriptor(data, payload_off)
        except MalformedPacket:
            return
        if desc.temporal_id is None:
            return
        self.temporal = True
        self.vp8_ids = True
        for c in self._consumers:
            c.on_temporal_layers()

    def _switch_to(self, layer: Layer, seq: int, ts: int, data: bytes, payload_off: int) -> None:
        """A keyframe of ``layer`` arrived (``data``, its payload at ``payload_off``):
        the consumers waiting for it switch now, before this packet is fanned out
        (it is their first of the new layer)."""
        for c in layer.switchers:
            c.switch_layer(layer, seq, ts, data, payload_off)
        self.refresh_fanout()

    def on_rtx(self, data: bytes, arrival_ms: int, layer: Layer | None = None) -> None:
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
        if layer is None:
            layer = self._main
        (osn,) = _OSN.unpack_from(data, off)
        header = _RTX_REBUILD.pack(b0, (b1 & 0x80) | self.payload_type, osn, ts, layer.ssrc or 0)
        self.on_rtp(header + data[12:off] + data[off + 2 :], arrival_ms, layer)

    def tail_for(self, data: bytes, profile: int) -> tuple[int, int, int, int, Tail] | None:
        """Split a cached packet for one consumer's profile (retransmissions)."""
        try:
            b0, b1, seq, ts, _, off, ext_profile, payload_off, _ = split_rtp(data)
        except MalformedPacket:
            return None
        ext_data = data[off + 4 : payload_off] if ext_profile is not None else b""
        if self.ast_id and ext_profile == ONE_BYTE_PROFILE:
            ext_data = set_one_byte_extension(ext_data, self.ast_id, abs_send_time(self.send_clock()))
        try:
            section = self._profiles[profile].rewrite(ext_profile, ext_data)
        except MalformedPacket:
            return None
        b0_out = 0x80 | (b0 & 0x20) | (0x10 if section else 0) | (b0 & 0x0F)
        head = data[12:off] + section
        if self.vp8_ids:
            return b1, seq, ts, payload_off, (b0_out, head + data[payload_off:], len(head))
        return b1, seq, ts, payload_off, (b0_out, head + data[payload_off:])

    # -- RTCP toward the publisher -----------------------------------------

    def request_keyframe(self, layer: Layer | None = None) -> None:
        """A viewer needs a keyframe of ``layer`` (the first one by default);
        throttled per producer: one PLI per layer asked for goes out together."""
        if self.is_video and not self.closed:
            self._pli_for.add(layer or self._main)
            if not self.keyframes.request():
                self._stats.keyframe_requests_coalesced += 1

    def send_pli(self) -> None:
        """PLIs for the layers asked for since the last one (the first layer by default)."""
        if self.closed:
            return
        wanted = self._pli_for or {self._main}
        self._pli_for = set()
        out = b""
        for layer in self._layers:
            if layer in wanted and layer.ssrc is not None:
                self._stats.keyframe_requests_sent += 1
                out += Pli(sender_ssrc=self._rtcp_ssrc, media_ssrc=layer.ssrc).to_bytes()
        if out and self._send_rtcp(out):
            self._stats.rtcp_packets_out += 1

    def nack_upstream(self, seqs: list[int], layer: Layer | None = None) -> None:
        """Ask the publisher for packets of ``layer`` the cache does not hold."""
        ssrc = (layer or self._main).ssrc
        if self.closed or ssrc is None or not seqs:
            return
        pkt = Nack(sender_ssrc=self._rtcp_ssrc, media_ssrc=ssrc, lost=tuple(sorted(set(seqs))))
        if self._send_rtcp(pkt.to_bytes()):
            self._stats.rtcp_packets_out += 1

    def on_sender_report(self, ntp: int, rtp_ts: int, now: float, layer: Layer | None = None) -> None:
        """The publisher's SR of one stream: remember it for LSR/DLSR, the layer
        switch's timestamp mapping and the viewers' SRs (``Consumer.sender_info``,
        read when each is sent), and pass it to the relays."""
        if layer is None:
            layer = self._main
        layer.last_sr_ntp = ntp
        layer.last_sr_arrival = now
        layer.sr = (ntp, rtp_ts)
        for relay in self._relays:
            relay.relay_sr(layer, ntp, rtp_ts)

    def report_block(self, now: float) -> ReportBlock | None:
        """An RFC 3550 report block for the first layer, or None before any packet."""
        return self._main.report_block(now)

    def remb(self, min_bps: int, max_bps: int) -> Remb | None:
        """REMB toward the publisher: what its best-served viewer can take, bounded.

        aiortc negotiates no transport-cc, so without this a browser publisher
        stays at its starting bitrate (~300 kbit/s). A weak viewer is handled on
        its own leg (audio first, docs/media.md) and never pulls the others'
        picture down, so the rule (docs/media.md, "REMB toward the performer") is:

        - only viewers that want the video and may get it count: a consumer
          paused by its viewer, blocked by the audience (a private: its member
          is then the only one that counts) or paused for its link (audio first,
          or its layer selector below the lowest layer) does not;
        - the highest estimate among those that sent one;
        - none sent one but at least one counting viewer's video is paused by
          audio first: ``min_bps`` (the picture was too heavy for all of them,
          and its next try should fit);
        - no viewer counts or sent an estimate: ``max_bps``;
        - always clamped to ``[min_bps, max_bps]`` (an estimate of 0 is none,
          a huge one is the ceiling).

        A simulcast publisher gets it for every layer's SSRC (its encoder splits
        the estimate over them), and is always asked ``max_bps``: each viewer
        gets the layer its own link takes, so no viewer's estimate should stop
        a layer. Following the best viewer's, a lone viewer that dropped to a
        lower layer had the performer stop the top one, and then had nothing to
        climb back to (its selector probes only toward active layers).
        """
        ssrcs = tuple(layer.ssrc for layer in self._layers if layer.ssrc is not None)
        if not self.is_video or not ssrcs:
            return None
        if self.simulcast:
            return Remb(sender_ssrc=self._rtcp_ssrc, bitrate=max(min_bps, max_bps), ssrcs=ssrcs)
        best = 0
        congested = False
        for c in self._consumers:
            if c.closed or c.user_paused or c.blocked:
                continue
            if c.congested or c.layer_paused:
                # Paused for its link (audio first, or its layer selector below the lowest layer).
                congested = True
            elif c.remb > best:
                best = c.remb
        for relay in self._relays:
            # A relayed node's viewers, as one: its best estimate (its weak
            # viewers are handled on their own legs there).
            if relay.remb > best:
                best = relay.remb
        bitrate = best if best > 0 else (min_bps if congested else max_bps)
        bitrate = max(min_bps, min(max_bps, bitrate))
        return Remb(sender_ssrc=self._rtcp_ssrc, bitrate=bitrate, ssrcs=ssrcs)

    def receiver_report(self, now: float, min_bps: int, max_bps: int) -> bytes | None:
        """One RR with a report block per layer that has received packets, plus the REMB."""
        blocks = tuple(b for b in (layer.report_block(now) for layer in self._layers) if b is not None)
        if not blocks:
            return None
        out = ReceiverReport(ssrc=self._rtcp_ssrc, reports=blocks).to_bytes()
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
        self.relays = self._relays = ()
        for layer in self._layers:
            layer.clear()
        if self.listener is not None:
            self.listener.on_producer_closed(self)
        return closed

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "producer_id": self.id,
            "kind": self.kind,
            "codec": self.mime.split("/")[-1],
            "app_data": dict(self.app_data),
        }
        if self.is_video:
            out["simulcast"] = self.simulcast
            out["layers"] = [
                {
                    "spatial": info.spatial,
                    "rid": info.rid,
                    "active": info.active,
                    "bitrate_bps": info.bitrate_bps,
                    "width": info.width,
                    "height": info.height,
                    "temporal_layers": info.temporal_layers,
                }
                for info in self.layers
            ]
        return out
