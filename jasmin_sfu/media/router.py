"""One show's media: its transports, producers and consumers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Protocol

from .adaptation import ViewerAdaptation
from .adaptation_policy import AdaptationPolicy
from .aiortc_adapter import SharedPorts
from .consumer import Consumer
from .errors import InvalidStateError, NotFoundError
from .keyframe_requester import KeyframeRequester
from .layer import LayerChoice
from .negotiation_gate import NegotiationGate
from .producer import Producer
from .retransmit import RetransmitPolicy
from .sender_report_timer import SenderReportTimer
from .settings import MediaSettings
from .stats import MediaStats
from .transport import WebRtcTransport

log = logging.getLogger(__name__)

ProducerObserver = Callable[[str, Producer], None]

# A viewer not yet told of any layer (None means "told: video paused").
_UNTOLD = object()


class RouterListener(Protocol):
    """What a router tells its parent, the worker: that it closed (once)."""

    def on_router_closed(self, router: "Router") -> None: ...


class Router:
    """Owns ``dict[id, child]`` of transports, producers and consumers.

    Closing the router closes every child once; use after close raises
    :class:`InvalidStateError`. Observers registered with :meth:`observe` hear
    ``("added", producer)`` and ``("removed", producer)``. Children tell it
    they closed through :class:`~.transport.TransportListener`; it tells its
    ``listener`` (the worker) through :class:`RouterListener`.
    """

    def __init__(
        self,
        router_id: str,
        listener: RouterListener,
        settings: MediaSettings,
        stats: MediaStats,
        clock: Callable[[], float],
        app_data: dict[str, Any] | None = None,
        adaptation: AdaptationPolicy | None = None,
        gate: NegotiationGate | None = None,
        sender_reports: SenderReportTimer | None = None,
        shared_ports: SharedPorts | None = None,
    ) -> None:
        """``gate``: the worker's, shared by its routers (one loop); a router alone makes its own.
        ``sender_reports``: the worker's one SR timer (a router made alone gets its own)."""
        self.id = router_id
        # SDP negotiations take turns on the loop (negotiation_gate.py): a join storm's
        # batch no longer runs in one turn while the watchers' packets wait.
        self.gate = gate if gate is not None else NegotiationGate(settings.negotiations_at_once)
        # The worker's shared UDP port (media.rtc_udp_port), given to its transports; None: a socket each.
        self.shared_ports = shared_ports
        self.listener = listener
        self.settings = settings
        self.adaptation = adaptation if adaptation is not None else settings.adaptation
        self.stats = stats
        self.clock = clock
        # Read by transports: every viewer SR of the worker goes out from this one timer.
        self.sender_reports = sender_reports if sender_reports is not None else SenderReportTimer(stats, clock)
        self.retransmit = RetransmitPolicy(
            max_retries=settings.nack_max_retries,
            default_rtt_s=settings.nack_default_rtt_s,
            max_delay_s=settings.nack_max_delay_s,
            budget_fraction=settings.nack_budget_fraction,
            min_burst_bytes=settings.nack_budget_min_burst_bytes,
            fallback_bps=settings.remb_min_bps,
            pause_video=settings.pause_video_on_congestion,
        )
        self.app_data = app_data or {}
        self.closed = False
        self.transports: dict[str, WebRtcTransport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self._observers: list[ProducerObserver] = []
        self._rtcp_task: asyncio.Task[None] | None = None
        # Per-viewer layer choice (adaptation.py), one per video consumer of a
        # simulcast producer, by consumer id; paced by ``_pace_loop``.
        self.adaptations: dict[str, ViewerAdaptation] = {}
        # Per adapted consumer: its transport, and the layer its viewer was last
        # told of (``WebRtcTransport.on_layer``; _UNTOLD before the first).
        self._layer_told: dict[str, tuple[WebRtcTransport, LayerChoice | None | object]] = {}
        self._pace_task: asyncio.Task[None] | None = None

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"router {self.id} is closed")

    def observe(self, observer: ProducerObserver) -> Callable[[], None]:
        """Register a producer observer; returns a function that removes it."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def _emit(self, what: str, producer: Producer) -> None:
        for fn in list(self._observers):
            try:
                fn(what, producer)
            except Exception:  # pragma: no cover - an observer must not break media
                log.exception("producer observer failed")

    def keyframe_requester(self, producer: Producer) -> KeyframeRequester:
        loop = asyncio.get_running_loop()
        return KeyframeRequester(
            self.settings.keyframe_request_interval_s,
            self.clock,
            producer.send_pli,
            lambda delay, fn: loop.call_later(delay, fn),
        )

    # -- transports --------------------------------------------------------

    def create_transport(self, direction: str, app_data: dict[str, Any] | None = None) -> WebRtcTransport:
        self._check_open()
        t = WebRtcTransport(self, direction, app_data)
        self.transports[t.id] = t
        if self._rtcp_task is None:
            loop = asyncio.get_running_loop()
            self._rtcp_task = loop.create_task(self._rtcp_loop())
            self._pace_task = loop.create_task(self._pace_loop())
        return t

    async def publish(
        self,
        transport: WebRtcTransport,
        offer_sdp: str,
        app_data: dict[str, Any] | None = None,
        exclusive_to: frozenset[str] | None = None,
    ) -> tuple[str, list[Producer]]:
        """Answer a publisher; ``exclusive_to`` makes its producers exclusive
        (hidden from, and never consumable by, anyone outside that audience)."""
        self._check_open()
        async with self.gate.turn():
            answer, producers = await transport.publish(offer_sdp, app_data)
        if self.closed or transport.closed:
            raise InvalidStateError("closed while publishing")
        for p in producers:
            if exclusive_to is not None:
                p.exclusive = True
                p.audience = exclusive_to
            self.producers[p.id] = p
            self._emit("added", p)
        return answer, producers

    async def consume(
        self, transport: WebRtcTransport, producer_ids: list[str] | None = None, paused: bool = False
    ) -> tuple[str, list[Consumer]]:
        self._check_open()
        key = str(transport.app_data.get("audience_key", ""))
        if producer_ids is None:
            producers = self.visible_producers(key)
        else:
            producers = []
            for pid in producer_ids:
                p = self.producers.get(pid)
                # An exclusive producer outside its audience is indistinguishable
                # from one that does not exist: a guessed id learns nothing.
                if p is None or not p.visible_to(key):
                    raise NotFoundError(f"no producer {pid} in this show")
                producers.append(p)
        if not producers:
            raise NotFoundError("the show has no producers yet")
        async with self.gate.turn():
            return await transport.consume(producers, paused=paused)

    async def consume_offer(self, transport: WebRtcTransport, offer_sdp: str) -> tuple[str, list[Consumer]]:
        """Viewer-offers mode (WHEP): answer ``offer_sdp`` with the producers the transport's audience key may see."""
        self._check_open()
        producers = self.visible_producers(str(transport.app_data.get("audience_key", "")))
        if not producers:
            raise NotFoundError("the show has no producers yet")
        async with self.gate.turn():
            answer, consumers = await transport.answer_offer(offer_sdp, producers)
        for c in consumers:
            self._add_consumer(transport, c)
        return answer, consumers

    async def accept_answer(self, transport: WebRtcTransport, answer_sdp: str) -> list[Consumer]:
        self._check_open()
        async with self.gate.turn(finishing=True):
            consumers = await transport.accept_answer(answer_sdp)
        for c in consumers:
            self._add_consumer(transport, c)
        return consumers

    def _add_consumer(self, transport: WebRtcTransport, c: Consumer) -> None:
        """Register ``c``; with ``settings.layer_adaptation``, a video consumer of a simulcast producer gets its
        :class:`ViewerAdaptation` (its layer follows its own link, not the
        producer's default). A single-layer producer's viewers keep audio first
        (``Consumer.check_link``): one layer leaves the selector nothing to choose
        but the pause, which ``check_link`` already does."""
        self.consumers[c.id] = c
        if not self.settings.layer_adaptation:
            return
        if c.closed or c.id in self.adaptations or not c.producer.is_video or not c.producer.simulcast:
            return
        c.follow_default = False
        self.adaptations[c.id] = ViewerAdaptation(c, c.producer, self.stats, self.adaptation)
        self._layer_told[c.id] = (transport, _UNTOLD)

    def _tell_layer(self, c: Consumer) -> None:
        """Tell the consumer's transport listeners its layer, when it changed since last told."""
        told = self._layer_told.get(c.id)
        if told is None:
            return
        transport, last = told
        now = c.current_layer
        if now == last:
            return
        self._layer_told[c.id] = (transport, now)
        for fn in list(transport.on_layer):
            try:
                fn(c, now)
            except Exception:  # pragma: no cover - a listener must not break media
                log.exception("layer listener failed")

    def adopt(self, producer: Producer) -> None:
        """Hold a replica producer (a relayed stream, ``media/pipe_transport.py``): viewers
        consume it like a local one; its pipe tells :meth:`on_transport_producer_closed`."""
        self._check_open()
        self.producers[producer.id] = producer
        self._emit("added", producer)

    def visible_producers(self, key: str) -> list[Producer]:
        """Producers ``key`` may know of (exclusive ones only for their audience)."""
        return [p for p in self.producers.values() if p.visible_to(key)]

    # -- children closing (TransportListener) ---------------------------------

    def on_transport_producer_closed(self, transport: object, producer: Producer) -> None:
        if self.producers.pop(producer.id, None) is not None:
            self._emit("removed", producer)

    def on_transport_consumer_closed(self, transport: WebRtcTransport, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        self._layer_told.pop(consumer.id, None)
        a = self.adaptations.pop(consumer.id, None)
        if a is not None:
            a.close()

    def on_transport_closed(self, transport: WebRtcTransport) -> None:
        self.transports.pop(transport.id, None)

    # -- periodic RTCP -------------------------------------------------------

    async def _rtcp_loop(self) -> None:
        """Receiver reports and REMB to every publisher, once per interval."""
        s = self.settings
        while not self.closed:
            await asyncio.sleep(s.rtcp_interval_s)
            now = self.clock()
            for t in list(self.transports.values()):
                if t.direction != "recv" or t.closed:
                    continue
                for p in list(t.producers.values()):
                    try:
                        p.tick(now)  # layer bitrates and activity, the default layer choice
                        pkt = p.receiver_report(now, s.remb_min_bps, s.remb_max_bps)
                        if pkt is not None and t.send_rtcp(pkt):
                            self.stats.rtcp_packets_out += 1
                    except Exception:  # pragma: no cover
                        log.exception("receiver report failed")
            for c in list(self.consumers.values()):
                try:
                    a = self.adaptations.get(c.id)
                    if a is not None:
                        # The selector is this viewer's one home for its layer
                        # and for "pause video below the lowest layer".
                        a.tick(now)
                        self._tell_layer(c)
                    else:
                        c.check_link(now)
                except Exception:  # pragma: no cover
                    log.exception("link check failed")

    async def _pace_loop(self) -> None:
        """Probe padding, in pieces of ``probe_burst_s`` (50 ms), for each probing viewer."""
        burst = self.adaptation.probe_burst_s
        while not self.closed:
            await asyncio.sleep(burst)
            now = self.clock()
            for a in list(self.adaptations.values()):
                if not a.probing:
                    continue
                try:
                    a.pace(now)
                except Exception:  # pragma: no cover
                    log.exception("probe pacing failed")

    # -- lifecycle -------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
        if self._pace_task is not None:
            self._pace_task.cancel()
        for a in self.adaptations.values():
            a.close()
        self.adaptations.clear()
        self._layer_told.clear()
        await asyncio.gather(*(t.close() for t in list(self.transports.values())), return_exceptions=True)
        for p in list(self.producers.values()):
            # Left by no transport (none today); closed and forgotten once.
            if self.producers.pop(p.id, None) is not None:
                p.close()
                self._emit("removed", p)
        self.consumers.clear()
        self.listener.on_router_closed(self)

    def describe(self) -> dict[str, Any]:
        return {
            "router_id": self.id,
            "transports": len(self.transports),
            "producers": [p.describe() for p in self.producers.values()],
            "consumers": len(self.consumers),
        }
