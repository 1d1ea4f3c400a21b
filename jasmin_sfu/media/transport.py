"""One WebRTC connection: aiortc terminates ICE/DTLS/SRTP, we forward RTP."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid
from typing import TYPE_CHECKING, Any, Callable, Protocol

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError

from jasmin_codecs.errors import MalformedPacket
from jasmin_codecs.rtcp import Fir, Nack, Pli, ReceiverReport, Remb, SenderReport, parse_rtcp
from jasmin_codecs.rtp import parse_extensions, split_rtp
from jasmin_codecs.rtp import ABS_SEND_TIME_URI
from jasmin_codecs.simulcast import REPAIRED_RID_URI, RID_URI

from . import aiortc_adapter as adapter
from .consumer import Consumer
from .errors import InvalidStateError, NoMediaPortError, NotFoundError, SdpError, UnsupportedCodecError
from .layer import Layer, LayerChoice
from .producer import Producer
from .sdp_info import MID_URI, SectionInfo, answer_simulcast, sections

if TYPE_CHECKING:
    from .router import Router

log = logging.getLogger(__name__)


def _codec_key(mime: str, params: dict[str, Any]) -> tuple[str, ...]:
    mime = mime.lower()
    if mime == "video/h264":
        return (
            mime,
            str(params.get("packetization-mode", "0")),
            str(params.get("profile-level-id", "42001f"))[:4].lower(),
        )
    return (mime,)


def _forwarded(settings: Any, kind: str) -> list[str]:
    """Lower-case codec names a publisher may send: media.video_codecs, and Opus for audio."""
    return [c.lower() for c in (settings.video_codecs if kind == "video" else ("opus",))]


def _cname(sdp: str, ssrc: int) -> str:
    """The CNAME our description gives ``ssrc`` (``a=ssrc:<ssrc> cname:<name>``; aiortc uses
    one per peer connection), for the SDES beside its SRs; "" when it names none."""
    match = re.search(rf"^a=ssrc:{ssrc} cname:(\S+)", sdp, re.MULTILINE)
    return match.group(1) if match else ""


def _keyframe_when_ready(c: Consumer) -> Callable[[], None]:
    def fire() -> None:
        if not c.paused and not c.closed:
            c.start()

    return fire


class TransportListener(Protocol):
    """What a transport tells its parent, the router (mediasoup's ``Transport::Listener``).

    Each is called once per child: a producer or consumer of this transport
    closed (for any reason: its own close, the transport's, the router's), or
    the transport itself closed. The router drops them from its dicts.
    """

    def on_transport_producer_closed(self, transport: "WebRtcTransport", producer: Producer) -> None: ...

    def on_transport_consumer_closed(self, transport: "WebRtcTransport", consumer: Consumer) -> None: ...

    def on_transport_closed(self, transport: "WebRtcTransport") -> None: ...


class WebRtcTransport:
    """A peer connection in one direction: ``recv`` (publisher) or ``send`` (viewer).

    A recv transport turns each audio/video m-section of the publisher's offer
    into a :class:`Producer`. A send transport offers one sendonly m-section
    per consumed producer; aiortc's sender for it never encodes, we send the
    forwarded packets under its SSRC.
    """

    def __init__(self, router: "Router", direction: str, app_data: dict[str, Any] | None = None) -> None:
        if direction not in ("recv", "send"):
            raise ValueError("direction must be recv or send")
        self.id = uuid.uuid4().hex
        self.router = router  # read for settings, stats and clock
        self.listener: TransportListener = router
        self.direction = direction
        self.app_data = app_data or {}
        self.closed = False
        # max-bundle: one ICE/DTLS transport for every m-section, as browsers do;
        # aiortc's default (balanced) opens one per media kind.
        self.pc = adapter.PeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
            router.shared_ports,
            router.settings.srtp_profiles,
        )
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self._by_ssrc: dict[int, Callable[[bytes, int], None]] = {}
        # Simulcast producers with a layer (or its RTX) whose SSRC is not known
        # yet, and the offer's (MID, RID, repaired-RID) extension ids to learn it.
        self._learning: list[tuple[Producer, tuple[int | None, int, int | None]]] = []
        self._consumer_by_ssrc: dict[int, Consumer] = {}
        self._sinks: list[adapter.SrtpSink] = []
        self._sink: adapter.SrtpSink | None = None
        self.rtcp_ssrc = random.randint(1, 0xFFFFFFFF)
        self._pending: list[tuple[Consumer, Any]] = []
        self.on_close: list[Callable[["WebRtcTransport"], None]] = []
        # Told (by the router, once per RTCP interval) when one of this
        # transport's adapted video consumers forwards another layer, or pauses:
        # the consumer and its ``current_layer`` (None: video paused).
        self.on_layer: list[Callable[[Consumer, LayerChoice | None], None]] = []

        @self.pc.on("connectionstatechange")
        async def _on_state() -> None:
            if self.pc.connectionState in ("failed", "closed") and not self.closed:
                log.info("transport %s connection %s", self.id, self.pc.connectionState)
                await self.close()

    # -- helpers -------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"transport {self.id} is closed")

    def _install(self) -> None:
        seen: set[int] = set()
        for t in self.pc.getTransceivers():
            dtls = t.receiver.transport if self.direction == "recv" else t.sender.transport
            if dtls is None or id(dtls) in seen:
                continue
            seen.add(id(dtls))
            adapter.install_taps(dtls, self._on_rtp, self._on_rtcp)
            sink = adapter.SrtpSink(dtls)
            self._sinks.append(sink)
            if self._sink is None:
                self._sink = sink

    def send_rtcp(self, data: bytes) -> bool:
        """Protect and send one compound RTCP packet on this leg; False when not sent."""
        return self._sink is not None and self._sink.send_rtcp(data)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    # -- taps (synchronous, never raise) ---------------------------------------

    def _on_rtp(self, data: bytes, arrival_ms: int) -> bool:
        if len(data) < 12:
            self.router.stats.drop("too_short")
            return True
        ssrc = int.from_bytes(data[8:12], "big")
        handler = self._by_ssrc.get(ssrc)
        if handler is None:
            if self._learning:
                handler = self._learn(data, ssrc)
            if handler is None:
                self.router.stats.drop("unknown_ssrc")
                return True
        handler(data, arrival_ms)
        return True

    def _learn(self, data: bytes, ssrc: int) -> Callable[[bytes, int], None] | None:
        """Tie a new SSRC to a simulcast layer by the RID (or, for RTX, the
        repaired RID) and MID its packet carries; None when it names none that
        is still unknown (the caller drops and counts the packet)."""
        try:
            _, b1, _, _, _, off, profile, payload_off, _ = split_rtp(data)
            if profile is None:
                return None
            values = dict(parse_extensions(profile, data[off + 4 : payload_off]))
        except MalformedPacket:
            return None
        pt = b1 & 0x7F
        for prod, (mid_id, rid_id, rrid_id) in self._learning:
            if mid_id is not None and mid_id in values and values[mid_id] != str(prod.app_data.get("mid")).encode():
                continue
            rid = values.get(rid_id)
            if rid is not None and pt == prod.payload_type:
                layer = prod.layer_by_rid(rid.decode("ascii", "replace"))
                if layer is not None and layer.ssrc is None:
                    return self._bind(prod, layer, ssrc, rtx=False)
            rrid = values.get(rrid_id) if rrid_id is not None else None
            if rrid is not None and pt == prod.rtx_payload_type:
                layer = prod.layer_by_rid(rrid.decode("ascii", "replace"))
                if layer is not None and layer.rtx_ssrc is None:
                    return self._bind(prod, layer, ssrc, rtx=True)
        return None

    def _bind(self, prod: Producer, layer: Layer, ssrc: int, rtx: bool) -> Callable[[bytes, int], None]:
        """Route ``ssrc`` to ``layer`` (its media or its RTX) from now on."""
        handler: Callable[[bytes, int], None]
        if rtx:
            layer.rtx_ssrc = ssrc
            rtx_fn = prod.on_rtx

            def handler(data: bytes, arrival_ms: int) -> None:
                rtx_fn(data, arrival_ms, layer)

        else:
            layer.ssrc = ssrc
            rtp_fn = prod.on_rtp

            def handler(data: bytes, arrival_ms: int) -> None:
                rtp_fn(data, arrival_ms, layer)

        self._by_ssrc[ssrc] = handler
        self.router.stats.simulcast_ssrcs_learned += 1
        if all(
            lay.ssrc is not None and (lay.rtx_ssrc is not None or prod.rtx_payload_type is None)
            for lay in prod.all_layers
        ):
            self._learning = [x for x in self._learning if x[0] is not prod]
        return handler

    def _on_rtcp(self, data: bytes) -> None:
        stats = self.router.stats
        try:
            packets = parse_rtcp(data)
        except MalformedPacket as exc:
            stats.drop("rtcp_" + exc.reason)
            return
        stats.rtcp_packets_in += 1
        now = self.router.clock()
        for pkt in packets:
            if isinstance(pkt, SenderReport):
                found = self._layer_by_ssrc(pkt.ssrc)
                if found is not None:
                    found[0].on_sender_report(pkt.ntp_timestamp, pkt.rtp_timestamp, now, found[1])
            elif isinstance(pkt, Nack):
                c = self._consumer_by_ssrc.get(pkt.media_ssrc)
                if c is not None:
                    c.on_nack(pkt.lost)
            elif isinstance(pkt, Pli):
                c = self._consumer_by_ssrc.get(pkt.media_ssrc)
                if c is not None:
                    c.on_keyframe_request()
            elif isinstance(pkt, Fir):
                for ssrc, _seqnr in pkt.entries:
                    c = self._consumer_by_ssrc.get(ssrc)
                    if c is not None:
                        c.on_keyframe_request()
            elif isinstance(pkt, Remb):
                for ssrc in pkt.ssrcs:
                    c = self._consumer_by_ssrc.get(ssrc)
                    if c is not None:
                        c.remb = pkt.bitrate
            elif isinstance(pkt, ReceiverReport):
                for block in pkt.reports:
                    c = self._consumer_by_ssrc.get(block.ssrc)
                    if c is not None:
                        c.on_receiver_report(
                            block.fraction_lost, block.lsr, block.dlsr, block.cumulative_lost, block.highest_seq
                        )

    def _layer_by_ssrc(self, ssrc: int) -> tuple[Producer, Layer] | None:
        """The producer and layer whose media stream has ``ssrc``."""
        for p in self.producers.values():
            layer = p.layer_by_ssrc(ssrc)
            if layer is not None:
                return p, layer
        return None

    # -- publisher side ------------------------------------------------------

    async def _set_remote_offer(self, offer_sdp: str) -> None:
        """Apply a peer's offer (a publisher's, or a WHEP viewer's); errors as the media core's."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as exc:  # aiortc's "no codec in common" for a section
            raise UnsupportedCodecError(f"no codec in common: {exc}") from None
        except Exception as exc:
            raise SdpError(f"offer rejected: {exc}") from None

    async def publish(self, offer_sdp: str, app_data: dict[str, Any] | None = None) -> tuple[str, list[Producer]]:
        """Answer a publisher's offer; one producer per sending m-section."""
        self._check_open()
        if self.direction != "recv":
            raise InvalidStateError("publish needs a recv transport")
        if self.producers:
            raise InvalidStateError("transport already publishing")
        offered = sections(offer_sdp)
        if not offered:
            raise SdpError("the offer has no audio or video section")
        limit = self.router.settings.max_producers_per_publisher
        if len(offered) > limit:
            raise SdpError(
                f"the offer has {len(offered)} audio/video sections; a publisher may send at most {limit}"
                " (media.max_producers_per_publisher)"
            )
        settings = self.router.settings
        for s in offered:
            if s.direction not in ("sendonly", "sendrecv", None):
                raise SdpError(f"m-section {s.mid} is {s.direction}: a publisher must send")
            if s.simulcast is not None:
                if not settings.simulcast:
                    raise SdpError(f"m-section {s.mid}: simulcast is disabled on this node (media.simulcast)")
                if s.kind != "video":
                    raise SdpError(f"m-section {s.mid}: simulcast on {s.kind}; only video has layers")
                if RID_URI not in s.extensions:
                    raise SdpError(
                        f"m-section {s.mid}: a=simulcast without the a=extmap of {RID_URI}:"
                        " the layers could not be told apart"
                    )
        await self._set_remote_offer(offer_sdp)
        for t in self.pc.getTransceivers():
            caps = RTCRtpSender.getCapabilities(t.kind).codecs
            wanted = _forwarded(settings, t.kind)
            prefs = []
            for name in wanted:
                prefs += [c for c in caps if c.mimeType.lower() == f"{t.kind}/{name}"]
            prefs += [c for c in caps if c.mimeType.lower().endswith("/rtx")]
            t.setCodecPreferences(prefs)
        try:
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise UnsupportedCodecError(f"cannot answer the offer: {exc}") from None
        self._check_gathered()
        local = sections(self.pc.localDescription.sdp)
        producers = []
        for off, loc in zip(offered, local):
            codec = loc.media_codec
            # aiortc answers with any codec it knows when none of the preferred
            # ones is offered (PCMU, G722...): only what we forward may pass.
            if (
                codec is None
                or loc.direction == "inactive"
                or codec.mimeType.split("/")[-1].lower() not in _forwarded(settings, off.kind)
            ):
                raise UnsupportedCodecError(
                    f"no supported {off.kind} codec in m-section {off.mid}"
                    f" (we forward {', '.join(settings.video_codecs) if off.kind == 'video' else 'opus'})"
                )
            producers.append(self._make_producer(off, loc, codec, app_data))
        self._install()
        sdp = answer_simulcast(self.pc.localDescription.sdp, offered)
        sdp = adapter.announce_address(sdp, settings.announced_ip)
        return sdp, producers

    def _make_producer(
        self, off: SectionInfo, loc: SectionInfo, codec: Any, app_data: dict[str, Any] | None
    ) -> Producer:
        router = self.router
        prod = Producer(
            producer_id=uuid.uuid4().hex,
            kind=off.kind,
            mime=codec.mimeType,
            clock_rate=codec.clockRate,
            payload_type=codec.payloadType,
            ssrc=off.ssrc,
            rtx_ssrc=off.rtx_ssrc,
            rtx_payload_type=loc.rtx_payload_type(codec.payloadType),
            codec_parameters=dict(codec.parameters),
            extensions=loc.extensions,
            send_rtcp=self.send_rtcp,
            rtcp_ssrc=self.rtcp_ssrc,
            stats=router.stats,
            cache_size=router.settings.packet_cache_size,
            cache_ms=router.settings.nack_max_delay_ms,
            keyframe_cache=router.settings.keyframe_cache,
            keyframes=router.keyframe_requester,
            app_data=dict(app_data or {}, mid=off.mid),
            listener=self,
            rids=off.simulcast.rids if off.simulcast is not None else (),
        )
        if off.simulcast is not None:
            # The SSRCs come with the first packets (a=ssrc lines, if any, are not trusted).
            rid_id = off.extensions[RID_URI]
            self._learning.append((prod, (off.extensions.get(MID_URI), rid_id, off.extensions.get(REPAIRED_RID_URI))))
        elif off.ssrc is None:
            raise SdpError(f"m-section {off.mid} signals no a=ssrc and no a=simulcast: its stream cannot be told apart")
        else:
            self._by_ssrc[off.ssrc] = prod.on_rtp
            if off.rtx_ssrc is not None:
                self._by_ssrc[off.rtx_ssrc] = prod.on_rtx
        self.producers[prod.id] = prod
        return prod

    # -- viewer side -------------------------------------------------------------

    def _add_sender(self, p: Producer) -> Any:
        """A sendonly transceiver for ``p``, offering exactly its codec (and RTX for video)."""
        if p.closed:
            raise InvalidStateError(f"producer {p.id} is closed")
        t = self.pc.addTransceiver(adapter.SilentTrack(p.kind), direction="sendonly")
        # Its SRs come from the worker's one timer (router.sender_reports), not an aiortc task.
        adapter.quiet_sender_rtcp(t.sender)
        want = _codec_key(p.mime, p.codec_parameters)
        caps = RTCRtpSender.getCapabilities(p.kind).codecs
        prefs = [c for c in caps if _codec_key(c.mimeType, c.parameters or {}) == want]
        if not prefs:
            raise UnsupportedCodecError(f"cannot offer {p.mime}")
        prefs += [c for c in caps if c.mimeType.lower().endswith("/rtx")]
        t.setCodecPreferences(prefs[:1] + prefs[-1:] if p.kind == "video" else prefs[:1])
        return t

    def _new_consumer(self, p: Producer, t: Any, paused: bool) -> Consumer:
        router = self.router
        key = str(self.app_data.get("audience_key", ""))
        return Consumer(
            consumer_id=uuid.uuid4().hex,
            producer=p,
            ssrc=adapter.sender_ssrc(t.sender),
            payload_type=0,
            sink=None,  # type: ignore[arg-type]  # set once the answer arrives
            stats=router.stats,
            clock=router.clock,
            policy=router.retransmit,
            paused=paused,
            blocked=not p.admits(key),
            audience_key=key,
            app_data=dict(self.app_data),
        )

    async def consume(self, producers: list[Producer], paused: bool = False) -> tuple[str, list[Consumer]]:
        """Offer one sendonly m-section per producer; consumers start on answer."""
        self._check_open()
        if self.direction != "send":
            raise InvalidStateError("consume needs a send transport")
        if self._pending or self.consumers:
            raise InvalidStateError("transport already consuming; create another")
        if not producers:
            raise NotFoundError("nothing to consume")
        transceivers = [self._add_sender(p) for p in producers]
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        self._check_gathered()
        router = self.router
        for p, t in zip(producers, transceivers):
            self._pending.append((self._new_consumer(p, t, paused), t))
        sdp = adapter.announce_address(self.pc.localDescription.sdp, router.settings.announced_ip)
        return sdp, [c for c, _ in self._pending]

    async def accept_answer(self, answer_sdp: str) -> list[Consumer]:
        """Apply the viewer's answer and start forwarding."""
        self._check_open()
        if not self._pending:
            raise InvalidStateError("no offer is waiting for an answer")
        answered = sections(answer_sdp)
        if len(answered) != len(self._pending):
            raise SdpError(f"answer has {len(answered)} media sections, offer had {len(self._pending)}")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except OperationError as exc:
            raise UnsupportedCodecError(f"no codec in common: {exc}") from None
        except Exception as exc:
            raise SdpError(f"answer rejected: {exc}") from None
        local = sections(self.pc.localDescription.sdp)
        self._install()
        started = []
        for (c, t), loc, ans in zip(self._pending, local, answered):
            if self._start_consumer(c, t, loc, ans):
                started.append(c)
        self._pending.clear()
        return started

    async def answer_offer(
        self, offer_sdp: str, producers: list[Producer], paused: bool = False
    ) -> tuple[str, list[Consumer]]:
        """Viewer-offers mode (WHEP): answer a receiving offer, one producer per
        offered m-section of its kind, in order; forwarding starts at once.

        m-sections left without a producer of their kind are answered inactive.
        """
        self._check_open()
        if self.direction != "send":
            raise InvalidStateError("answer_offer needs a send transport")
        if self._pending or self.consumers or self.pc.remoteDescription is not None:
            raise InvalidStateError("transport already consuming; create another")
        offered = sections(offer_sdp)
        if not offered:
            raise SdpError("the offer has no audio or video section")
        left = [p for p in producers if not p.closed]
        pairs: list[tuple[Producer, Any]] = []
        for s in offered:
            p = next((p for p in left if p.kind == s.kind), None)
            if p is not None:
                left.remove(p)
                # aiortc gives an offered m-section the first unassigned transceiver of its kind.
                pairs.append((p, self._add_sender(p)))
        if not pairs:
            raise SdpError("the offer asks for no kind of media this show has")
        await self._set_remote_offer(offer_sdp)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise UnsupportedCodecError(f"cannot answer the offer: {exc}") from None
        self._check_gathered()
        local = {s.mid: s for s in sections(self.pc.localDescription.sdp)}
        self._install()
        started = []
        for p, t in pairs:
            c = self._new_consumer(p, t, paused)
            sec = local.get(t.mid)
            if sec is not None and self._start_consumer(c, t, sec, sec):
                started.append(c)
            else:
                c.closed = True
        sdp = adapter.announce_address(self.pc.localDescription.sdp, self.router.settings.announced_ip)
        return sdp, started

    def _check_gathered(self) -> None:
        """Raise :class:`NoMediaPortError` when ICE gathered no candidate for our description:
        every port of the configured range is taken, and a description without a candidate
        would leave the peer waiting for a connection that cannot come."""
        if "a=candidate:" not in self.pc.localDescription.sdp:
            raise NoMediaPortError("no free media port on this node; try again later (or another node)")

    def _start_consumer(self, c: Consumer, t: Any, loc: SectionInfo, ans: SectionInfo) -> bool:
        """Bind ``c`` to its negotiated m-section and start forwarding (False: not started)."""
        codec = ans.media_codec or loc.media_codec
        if codec is None or ans.direction == "inactive":
            return False
        c.payload_type = int(codec.payloadType or 0)
        c.sink = self._sink  # type: ignore[assignment]
        # Map the publisher leg's extension ids to the ids this viewer accepted.
        accepted = ans.extensions or loc.extensions
        p = c.producer
        id_map = {pid: accepted[uri] for uri, pid in p.extensions.items() if uri in accepted}
        replace = {}
        if MID_URI in accepted and t.mid is not None:
            # The viewer's MID, not the publisher's: Chrome's demuxer drops
            # a packet whose MID names no m-section of its own.
            replace[accepted[MID_URI]] = t.mid.encode()
        c.profile = p.profile_for(id_map, replace)
        # Padding probes carry the send time the media carries (Producer.ast_id).
        c.ast_id = (
            accepted.get(ABS_SEND_TIME_URI, 0) if p.ast_id and 1 <= accepted.get(ABS_SEND_TIME_URI, 0) <= 14 else 0
        )
        if p.closed or (p.exclusive and not p.admits(c.audience_key)):
            c.closed = True
            return False
        # The audience may have changed between offer and answer.
        c.blocked = not p.admits(c.audience_key)
        c.paused = c.user_paused or c.blocked
        p.add_consumer(c)
        c.on_close = self.on_consumer_closed
        self.consumers[c.id] = c
        self._consumer_by_ssrc[c.ssrc] = c
        self.router.sender_reports.add(c, _cname(self.pc.localDescription.sdp, c.ssrc))
        if p.is_video:
            if not c.sink.ready:
                # Also when paused: one unblocked before DTLS is up replays then. The replay
                # takes its turn like a negotiation: in a storm many handshakes complete in
                # one turn of the loop, and their replays would all run in it.
                fire = _keyframe_when_ready(c)
                gate = self.router.gate
                c.sink.on_ready.append(lambda: gate.call_in_turn(fire))
            elif not c.paused:
                c.start()
        return True

    # -- children closing (ProducerListener, ConsumerListener) ----------------

    def on_producer_closed(self, p: Producer) -> None:
        """ProducerListener: forget the producer's SSRCs, tell the router."""
        if self.producers.pop(p.id, None) is None:
            return
        for layer in p.all_layers:
            for ssrc in (layer.ssrc, layer.rtx_ssrc):
                if ssrc is not None:
                    self._by_ssrc.pop(ssrc, None)
        self._learning = [x for x in self._learning if x[0] is not p]
        self.listener.on_transport_producer_closed(self, p)

    def on_consumer_closed(self, c: Consumer) -> None:
        """ConsumerListener: forget the consumer, tell the router."""
        self.consumers.pop(c.id, None)
        self._consumer_by_ssrc.pop(c.ssrc, None)
        self.router.sender_reports.remove(c)
        self.listener.on_transport_consumer_closed(self, c)

    # -- lifecycle -------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection, its producers and consumers, once."""
        if self.closed:
            return
        self.closed = True
        for p in list(self.producers.values()):
            p.close()  # each tells us (on_producer_closed), we tell the router
        self.producers.clear()
        for c in list(self.consumers.values()):
            c.close()
        for c, _t in self._pending:
            c.closed = True
        self._pending.clear()
        for cb in list(self.on_close):
            try:
                cb(self)
            except Exception:  # pragma: no cover
                log.exception("transport close callback failed")
        self.listener.on_transport_closed(self)
        try:
            await asyncio.wait_for(self.pc.close(), timeout=5)
        except Exception:  # pragma: no cover - best effort on teardown
            log.debug("peer connection close failed", exc_info=True)
