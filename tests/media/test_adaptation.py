"""ViewerAdaptation (jasmin_sfu/media/adaptation.py) driving a scripted consumer and producer.

Pure-logic tests: the consumer and producer here are small scripted
implementations of the glue's own protocols (AdaptableConsumer,
LayeredProducer), standing in for simulcast's Consumer.set_target_layer /
send_padding and Producer.layers until those land; they record what the glue
tells them and report what a viewer's browser would. The per-viewer
counters are read back through the real /metrics collector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from jasmin_sfu.api.metrics import MediaCollector, make_registry, render
from jasmin_sfu.media.adaptation import AdaptableConsumer, LayeredProducer, ViewerAdaptation
from jasmin_sfu.media.adaptation_policy import AdaptationPolicy
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.stats import MediaStats
from jasmin_sfu.media.worker import Worker

POL = AdaptationPolicy()


@dataclass(frozen=True)
class LayerInfo:
    """The shape simulcast's Producer.layers carries."""

    spatial: int
    rid: str
    ssrc: int
    bitrate_bps: int
    active: bool = True
    temporal_layers: int = 1
    temporal_bps: tuple[int, ...] = ()


@dataclass
class ScriptedProducer:
    layers: tuple[LayerInfo, ...] = (
        LayerInfo(0, "l", 1, 150_000),
        LayerInfo(1, "m", 2, 500_000),
        LayerInfo(2, "h", 3, 1_200_000),
    )


@dataclass
class ScriptedConsumer:
    """Records set_target_layer and send_padding; its feedback fields are set by the test."""

    closed: bool = False
    user_paused: bool = False
    blocked: bool = False
    remb: int = 0
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_seq: int = 0
    delivered_link_bps: int = 0
    packets: int = 0
    octets: int = 0
    max_spatial: int | None = None
    max_temporal: int | None = None
    targets: list[tuple[int | None, int | None]] = field(default_factory=list)
    padding: list[int] = field(default_factory=list)
    padding_ok: bool = True

    def set_target_layer(self, spatial: int | None, temporal: int | None = None) -> None:
        self.targets.append((spatial, temporal))

    def send_padding(self, nbytes: int) -> int:
        if not self.padding_ok:
            return 0
        self.padding.append(nbytes)
        return nbytes

    def receive(self, bps: int, seconds: float = 1.0, lost: int = 0) -> None:
        """The viewer was sent ``bps`` for ``seconds`` (1000-byte packets) and lost ``lost`` of them."""
        n = int(bps * seconds / 8 / 1000)
        self.packets += n
        self.octets += n * 1000
        self.highest_seq += n
        self.cumulative_lost += lost


def make(temporal_layers: int = 1) -> tuple[ViewerAdaptation, ScriptedConsumer, ScriptedProducer, MediaStats]:
    stats = MediaStats()
    c, p = ScriptedConsumer(), ScriptedProducer()
    a = ViewerAdaptation(c, p, stats, POL, temporal_layers=temporal_layers)
    return a, c, p, stats


def test_the_scripted_parts_satisfy_the_protocols() -> None:
    """Protects the seam: the shapes simulcast promised (LayerInfo fields, set_target_layer,
    send_padding) are all the glue needs (mypy checks these assignments)."""
    c: AdaptableConsumer = ScriptedConsumer()
    p: LayeredProducer = ScriptedProducer()
    assert c.remb == 0 and len(p.layers) == 3


def test_start_sets_the_best_layer_for_the_start_estimate_and_counts_it() -> None:
    """Protects the first tick: before any REMB the viewer gets the best layer under
    bwe_start_bps (600 kbit/s: the 500 kbit/s layer), once, counted as a "start" decision."""
    a, c, _, stats = make()
    ch = a.tick(0.0)
    assert ch is not None and ch.switch == "start"
    assert c.targets == [(1, None)]
    assert stats.layer_decisions["start"] == 1
    a.tick(1.0)
    assert c.targets == [(1, None)]  # no switch, no call


def test_a_rembs_drop_takes_the_layer_down_at_the_next_tick() -> None:
    """Protects down-at-once through the glue: the consumer's REMB falling to 300 kbit/s is
    read at the next tick and the consumer is told the lowest layer."""
    a, c, _, stats = make()
    c.remb = 3_000_000
    a.tick(0.0)
    assert c.targets == [(2, None)]
    c.remb = 300_000
    c.receive(1_200_000)
    a.tick(1.0)
    assert c.targets[-1] == (0, None)
    assert stats.layer_decisions["down"] == 1
    assert stats.bwe_estimates == 2


def test_below_the_lowest_layer_video_pauses_and_audio_is_not_touched() -> None:
    """Protects audio first through the glue: a REMB under the lowest layer with the loss of
    the viewer's receiver reports (their cumulative count, as Chromium reports a starved
    stream) in two reports in a row pauses it: the consumer is told set_target_layer(None)
    (video only: the audio consumer has no adaptation), counted as a pause. The same REMB without loss takes it to
    the lowest layer and keeps it there (a browser's REMB under-reports the lowest layer)."""
    a, c, _, stats = make()
    c.remb = 600_000
    a.tick(0.0)
    c.remb = 80_000
    c.receive(500_000)
    a.tick(1.0)
    assert c.targets[-1] == (0, None)
    c.receive(150_000, lost=1)
    a.tick(2.0)
    assert c.targets[-1] == (0, None)
    c.receive(150_000, lost=10)
    a.tick(3.0)
    assert c.targets[-1] == (0, None)
    c.receive(150_000, lost=10)
    a.tick(4.0)
    assert c.targets[-1] == (None, None)
    assert stats.layer_decisions["pause"] == 1


def test_the_viewers_cap_is_applied_at_the_next_tick() -> None:
    """Protects the signaling cap, read off the consumer (which also enforces it): a cap of 0
    on a viewer of the top layer makes the selector target the lowest at the next tick
    whatever its estimate, and nothing above the cap is probed for."""
    a, c, _, _ = make()
    c.remb = 5_000_000
    a.tick(0.0)
    c.max_spatial = 0
    a.tick(1.0)
    assert c.targets == [(2, None), (0, None)]
    for t in range(2, 30):
        a.tick(float(t))
    assert c.targets[-1] == (0, None) and not a.probing


def test_temporal_layers_are_offered_below_the_lowest_spatial_layer() -> None:
    """Protects the frame-rate step: with L1T3 layers, a viewer whose estimate fits only 40 %
    of the lowest layer gets its temporal layer 0 (a third of the frame rate) instead of a pause."""
    a, c, _, _ = make(temporal_layers=3)
    c.remb = 40_000 + 70_000  # 70 kbit/s for video: 0.4 x 150 kbit/s fits
    a.tick(0.0)
    assert c.targets == [(0, 0)]


def test_inactive_layers_are_not_chosen() -> None:
    """Protects against a layer the publisher stopped sending: it is never a target."""
    a, c, p, _ = make()
    p.layers = (p.layers[0], p.layers[1], LayerInfo(2, "h", 3, 1_200_000, active=False))
    c.remb = 5_000_000
    a.tick(0.0)
    assert c.targets == [(1, None)]


def test_a_probe_sends_paced_padding() -> None:
    """Protects probing through the glue: a viewer held on the lowest layer is probed after
    probe_interval_s; pace() every 50 ms sends the probe's rate in pieces of at most 50 ms;
    every 75 ms (a loaded loop) still the whole rate, in pieces of at most two; a late pace()
    makes no burst beyond two pieces; the probe is counted and its padding is part of what the
    viewer was sent (the base of the loss cap)."""
    a, c, _, stats = make()
    c.remb = 260_000
    for t in range(6):
        c.receive(190_000)
        a.tick(float(t))
    assert stats.layer_probes["start"] == 1 and a.probing
    rate = a.probe_bps
    assert rate == int((260_000 - POL.audio_reserve_bps) * POL.probe_ramp) - 150_000
    c.padding.clear()
    for i in range(1, 21):
        a.pace(5.0 + i * 0.05)
    piece = rate * 0.05 / 8
    assert all(n <= piece + 200 for n in c.padding)
    assert abs(sum(c.padding) - rate * 1.0 / 8) < piece + 200
    c.padding.clear()
    for i in range(1, 21):
        a.pace(6.0 + i * 0.075)
    assert all(n <= 2 * piece + 200 for n in c.padding)
    assert abs(sum(c.padding) - rate * 1.5 / 8) < piece + 200
    c.padding.clear()
    a.pace(9.0)  # about two seconds late: two pieces, not two seconds' worth
    assert sum(c.padding) <= 2 * piece + 200
    a.tick(10.0)  # no media sent since t=5: the padding alone is what the viewer was sent
    assert a.sent_bps > 0


def test_padding_the_consumer_cannot_send_is_not_owed() -> None:
    """Protects against a padding debt: when send_padding sends nothing, nothing accumulates."""
    a, c, _, _ = make()
    c.remb = 260_000
    for t in range(6):
        a.tick(float(t))
    assert a.probing
    c.padding.clear()
    c.padding_ok = False
    for i in range(1, 40):
        a.pace(5.0 + i * 0.05)
    c.padding_ok = True
    a.pace(7.0)
    assert sum(c.padding) <= a.probe_bps * POL.probe_burst_s / 8 + 200


def test_a_paused_or_blocked_viewer_is_neither_switched_nor_probed() -> None:
    """Protects exclusivity and the viewer's own pause: a blocked (private) or user-paused
    consumer gets no target change and no padding."""
    a, c, _, _ = make()
    c.remb = 260_000
    a.tick(0.0)
    c.blocked = True
    for t in range(1, 30):
        assert a.tick(float(t)) is None
        a.pace(float(t) + 0.5)
    assert c.targets == [(0, None)] and c.padding == [] and not a.probing
    c.blocked, c.user_paused = False, True
    assert a.tick(31.0) is None


def test_loss_in_the_viewers_reports_takes_the_layer_down() -> None:
    """Protects the loss cap through the glue: a viewer whose REMB stays high but whose
    reports count 30 % loss of a 1.2 Mbit/s layer drops below it."""
    a, c, _, _ = make()
    c.remb = 3_000_000
    c.receive(1_200_000)
    a.tick(0.0)
    assert c.targets == [(2, None)]
    c.receive(1_200_000, lost=45)  # 150 packets sent, 45 lost, fraction lost 0 (Chromium)
    a.tick(1.0)
    assert c.targets[-1] == (1, None)
    assert a.estimator.loss == pytest.approx(0.3)


def test_a_zero_remb_after_a_real_one_is_clamped_and_counted() -> None:
    """Protects against trusting a REMB of 0: it is the floor, counted, and the viewer's video
    pauses rather than the node dividing by or forwarding at zero."""
    a, c, _, stats = make()
    c.remb = 600_000
    a.tick(0.0)
    c.remb = 0
    a.tick(1.0)
    assert stats.bwe_clamped["jump"] == 1  # 600k -> 0 is also more than 10x in one report
    assert stats.bwe_clamped["low"] == 1
    assert a.estimate_bps == 60_000


def test_a_closed_consumer_ends_the_adaptation() -> None:
    """Protects against ticking a dead consumer: once the consumer closed (or close() was
    called), tick decides nothing, tells it nothing and pace sends no padding."""
    a, c, _, _ = make()
    c.remb = 260_000
    for t in range(6):
        a.tick(float(t))
    assert a.probing
    c.closed = True
    n = len(c.targets)
    c.padding.clear()
    assert a.tick(6.0) is None and a.closed
    a.pace(6.05)
    a.pace(6.1)
    assert len(c.targets) == n and c.padding == []


def test_metrics_export_the_adaptation_counters() -> None:
    """Protects /metrics: estimates, clamps, the selector's decisions and probes are exported
    by the real collector (switches made, padding sent and viewers per layer are the
    consumer's own counters)."""
    w = Worker(MediaSettings())
    s = w.stats
    a = ViewerAdaptation(ScriptedConsumer(remb=1 << 70), ScriptedProducer(), s, POL)
    a.tick(0.0)
    text = render(make_registry(MediaCollector(w, lambda: 0))).decode()
    assert 'jasmin_bwe_clamped_total{reason="high"} 1.0' in text
    assert "jasmin_bwe_estimates_total 1.0" in text
    assert 'jasmin_layer_decisions_total{kind="start"} 1.0' in text
    assert 'jasmin_layer_probes_total{event="fail"} 0.0' in text
