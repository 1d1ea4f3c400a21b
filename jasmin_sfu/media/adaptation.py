"""Per-viewer adaptation: the glue between a video consumer, its estimate and its layer selector.

The router calls :meth:`ViewerAdaptation.tick` for each video consumer once per
RTCP interval: it reads the viewer's feedback off the consumer (its latest
REMB, its receiver report's loss counts), what it was sent, and the
producer's layers with their measured rates; asks the
:class:`~.layer_selector.LayerSelector`; and tells the consumer its target
layer. While a probe is on, :meth:`ViewerAdaptation.pace` (every
``probe_burst_s``, 50 ms) sends the probe's padding in small pieces.

Written against two small protocols, :class:`AdaptableConsumer` and
:class:`LayeredProducer`: only the members listed there are used, so the
glue runs against any consumer that has them (tests/media/test_adaptation.py
drives a scripted one). Not on the hot path: once a second per viewer, and
every 50 ms per probing viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

from .adaptation_policy import DEFAULT_ADAPTATION, AdaptationPolicy
from .bandwidth import BandwidthEstimator
from .layer_selector import Choice, LayerSelector, candidates

if TYPE_CHECKING:
    from .stats import MediaStats

# Padding is sent in pieces of at least this many bytes (one padding packet's worth).
_MIN_PADDING = 200
# A late pace() pays up to this many pieces of probe_burst_s at once. Capped at one, a probe
# on a loop whose 50-ms sleeps took 60-80 ms sent 60-80 % of its rate, and a paused viewer's
# probe, growing by what its link carried, shrank instead (tests/browser/test_shaped_viewers.py).
_LATE_PIECES = 2


class LayerView(Protocol):
    """What the adaptation reads of one of a producer's spatial layers."""

    @property
    def spatial(self) -> int: ...
    @property
    def bitrate_bps(self) -> int: ...
    @property
    def active(self) -> bool: ...
    # VP8 temporal layers measured in the layer (1: none) and the rates up to
    # each but the top one (cumulative, bits/s; empty until measured).
    @property
    def temporal_layers(self) -> int: ...
    @property
    def temporal_bps(self) -> tuple[int, ...]: ...


class LayeredProducer(Protocol):
    """A producer with its spatial layers (a single-layer producer has one)."""

    @property
    def layers(self) -> Sequence[LayerView]: ...


class AdaptableConsumer(Protocol):
    """What the adaptation reads of, and tells, one viewer's video consumer."""

    @property
    def closed(self) -> bool: ...
    @property
    def user_paused(self) -> bool: ...
    @property
    def blocked(self) -> bool: ...
    # The viewer's latest REMB (bits/s; 0 before its first) and its latest
    # receiver report about this stream: fraction lost (0..255), cumulative
    # lost, extended highest sequence number.
    @property
    def remb(self) -> int: ...
    @property
    def fraction_lost(self) -> int: ...
    @property
    def cumulative_lost(self) -> int: ...
    @property
    def highest_seq(self) -> int: ...

    # What the viewer's link was shown to carry (bits/s, its whole connection; 0: no
    # evidence), told by the adaptation: the consumer's resend budget follows it too.
    delivered_link_bps: int

    # RTP packets and payload-side octets sent to the viewer so far.
    @property
    def packets(self) -> int: ...
    @property
    def octets(self) -> int: ...
    # The viewer's own cap (signaling), which the consumer also enforces:
    # the best spatial and temporal layer it takes, None for no cap.
    @property
    def max_spatial(self) -> int | None: ...
    @property
    def max_temporal(self) -> int | None: ...

    def set_target_layer(self, spatial: int | None, temporal: int | None = None) -> None: ...

    def send_padding(self, nbytes: int) -> int: ...


class ViewerAdaptation:
    """One video consumer's estimate, layer choice and probe."""

    __slots__ = (
        "consumer",
        "producer",
        "estimator",
        "selector",
        "temporal_layers",
        "probe_bps",
        "estimate_bps",
        "sent_bps",
        "_policy",
        "_stats",
        "_rate_at",
        "_rate_bytes",
        "_padding_bytes",
        "_pace_at",
        "_owed",
        "_seen_remb",
        "closed",
    )

    def __init__(
        self,
        consumer: AdaptableConsumer,
        producer: LayeredProducer,
        stats: "MediaStats",
        policy: AdaptationPolicy = DEFAULT_ADAPTATION,
        *,
        temporal_layers: int = 1,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self._policy = policy
        self._stats = stats
        self.estimator = BandwidthEstimator(stats, policy)
        self.selector = LayerSelector(policy)
        # VP8 temporal layers offered at least (1: none, 3: L1T3); more when
        # the producer's layers measured more in their payload descriptors
        # (the consumer drops the layers above its target: docs/media.md).
        self.temporal_layers = temporal_layers
        # The probe's padding rate now (bits/s), the last estimate, what the viewer was sent.
        self.probe_bps = 0
        self.estimate_bps = 0
        self.sent_bps = 0.0
        self._rate_at = -1.0
        self._rate_bytes = 0
        self._padding_bytes = 0
        self._pace_at = -1.0
        self._owed = 0.0
        self._seen_remb = 0
        self.closed = False

    @property
    def probing(self) -> bool:
        """Whether :meth:`pace` has padding to send."""
        return self.probe_bps > 0

    # -- once per RTCP interval ------------------------------------------------------

    def tick(self, now: float) -> Choice | None:
        """Estimate, choose, tell the consumer; returns the choice (None: nothing decided,
        the consumer is closed, paused by its viewer or blocked from the audience)."""
        c = self.consumer
        if self.closed or c.closed:
            self.close()
            return None
        self._measure(now)
        if c.user_paused or c.blocked:
            # Nothing to adapt, and no padding to a viewer outside the audience.
            self.probe_bps = 0
            return None
        est = self.estimator
        remb = c.remb
        if remb or self._seen_remb:
            # 0 after a nonzero REMB is the viewer reporting 0: clamped, counted.
            est.on_remb(remb)
            self._seen_remb = remb
        est.on_report(c.fraction_lost, c.cumulative_lost, c.highest_seq)
        self.estimate_bps = est.update(self.sent_bps)
        c.delivered_link_bps = est.carried_bps + self._policy.audio_reserve_bps if est.carried_bps else 0
        active = [layer for layer in self.producer.layers if layer.active]
        layers = candidates(
            [(layer.spatial, layer.bitrate_bps) for layer in active],
            max([self.temporal_layers, *(layer.temporal_layers for layer in active)]),
            max_spatial=c.max_spatial,
            max_temporal=c.max_temporal,
            policy=self._policy,
            temporal_bps={layer.spatial: layer.temporal_bps for layer in active if layer.temporal_bps},
        )
        choice = self.selector.select(
            now,
            layers,
            self.estimate_bps,
            est.loss,
            delivered=est.delivered,
            reported=est.reported,
            carried_bps=est.carried_bps,
        )
        stats = self._stats
        if choice.switch:
            stats.layer_decisions[choice.switch] += 1
            t = choice.target
            if t is None:
                c.set_target_layer(None)
            else:
                c.set_target_layer(t.spatial, t.temporal)
        if choice.probe:
            stats.layer_probes[choice.probe] += 1
        self.probe_bps = choice.probe_bps
        if not self.probe_bps:
            self._owed = 0.0
        self.pace(now)
        return choice

    def _measure(self, now: float) -> None:
        """What the viewer was sent of this track since the last tick, bits/s on the wire."""
        c = self.consumer
        sent = c.octets + c.packets * self._policy.packet_overhead + self._padding_bytes
        if self._rate_at >= 0 and now > self._rate_at:
            self.sent_bps = max(0, sent - self._rate_bytes) * 8 / (now - self._rate_at)
        self._rate_at = now
        self._rate_bytes = sent

    # -- probing -----------------------------------------------------------------------

    def pace(self, now: float) -> int:
        """Send the padding the probe owes since the last call, at most
        ``_LATE_PIECES`` x ``probe_burst_s`` of it: a caller a piece late (a loaded loop's
        50-ms sleeps take 60-80 ms) pays the whole time, so the probe sends its rate; one
        that comes later does not make a burst. Returns the bytes sent."""
        rate = self.probe_bps
        last, self._pace_at = self._pace_at, now
        if rate <= 0 or self.closed:
            return 0
        most = _LATE_PIECES * self._policy.probe_burst_s
        dt = 0.0 if last < 0 else min(max(0.0, now - last), most)
        self._owed = min(self._owed + rate * dt / 8.0, rate * most / 8.0 + _MIN_PADDING)
        if self._owed < _MIN_PADDING:
            return 0
        sent = self.consumer.send_padding(int(self._owed))
        if sent <= 0:
            self._owed = 0.0
            return 0
        self._owed = max(0.0, self._owed - sent)
        self._padding_bytes += sent
        return sent

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """The consumer is gone: no more ticks, no more padding."""
        self.closed = True
        self.probe_bps = 0
