"""The per-viewer estimate (jasmin_sfu/media/bandwidth.py) on REMB and receiver-report sequences.

A viewer's REMB is its own link's estimate; it is never trusted as is (zero,
huge, an order of magnitude from the last: clamped and counted), and the loss
in its receiver reports caps it at a share of what it was sent. Pure: no
clock, no sockets.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jasmin_sfu.media.adaptation_policy import AdaptationPolicy
from jasmin_sfu.media.bandwidth import BandwidthEstimator
from jasmin_sfu.media.stats import MediaStats

POL = AdaptationPolicy()


def make() -> tuple[BandwidthEstimator, MediaStats]:
    stats = MediaStats()
    return BandwidthEstimator(stats, POL), stats


def test_start_estimate_then_the_viewers_remb() -> None:
    """Protects the start: before any REMB the estimate is start_bps; after one, the REMB."""
    e, stats = make()
    assert e.update(0.0) == POL.start_bps and not e.has_remb
    e.on_remb(850_000)
    assert e.update(0.0) == 850_000
    assert stats.bwe_estimates == 1 and sum(stats.bwe_clamped.values()) == 0


def test_zero_and_negative_remb_are_clamped_to_the_floor_and_counted() -> None:
    """Protects against a REMB of 0 (or below): the floor, counted as "low", never 0."""
    e, stats = make()
    assert e.on_remb(0) == POL.min_bps
    assert e.on_remb(-5) == POL.min_bps
    assert e.update(0.0) == POL.min_bps
    assert stats.bwe_clamped["low"] == 2


def test_huge_remb_is_clamped_to_the_ceiling_and_counted() -> None:
    """Protects against a REMB of 2^80 bits/s (a REMB's mantissa and exponent can say that)."""
    e, stats = make()
    assert e.on_remb(1 << 80) == POL.max_bps
    assert stats.bwe_clamped["high"] == 1


def test_an_order_of_magnitude_in_one_report_is_limited_and_counted() -> None:
    """Protects the estimate from one absurd report: a value 100x away from the last moves
    it at most max_jump (10x) per report, up or down, counted as "jump"."""
    e, stats = make()
    e.on_remb(500_000)
    assert e.on_remb(50_000_000) == 5_000_000
    assert e.on_remb(50_000_000) == 50_000_000  # repeated, it is followed a step later
    assert e.on_remb(40_000) == 5_000_000
    assert stats.bwe_clamped["jump"] == 2
    e.on_remb(4_000_000)  # within a factor 10: taken as is
    assert e.remb_bps == 4_000_000 and stats.bwe_clamped["jump"] == 2


@given(st.lists(st.integers(min_value=-(1 << 70), max_value=1 << 90), min_size=1, max_size=40))
def test_any_remb_sequence_stays_within_the_clamps(rembs: list[int]) -> None:
    """Protects every consumer of the estimate: whatever a viewer sends, the estimate is
    within [min_bps, max_bps], never moves more than max_jump per report, and every value
    not taken as sent is counted (low/high by which clamp)."""
    e, stats = make()
    last = 0
    for r in rembs:
        before = dict(stats.bwe_clamped)
        v = e.on_remb(r)
        assert POL.min_bps <= v <= POL.max_bps
        # Each value outside the clamps, or moved less than it asked, is counted once.
        counted = sum(stats.bwe_clamped.values()) - sum(before.values())
        outside = r < POL.min_bps or r > POL.max_bps
        assert counted >= (1 if outside or v != r else 0)
        if outside:
            assert (
                stats.bwe_clamped["low" if r < POL.min_bps else "high"]
                == before["low" if r < POL.min_bps else "high"] + 1
            )
        if last:
            assert v <= last * POL.max_jump + 1 and v * POL.max_jump + 1 >= last
        last = v
        assert POL.min_bps <= e.update(1e6) <= POL.max_bps


def test_loss_caps_the_estimate_at_a_share_of_what_was_sent() -> None:
    """Protects the loss-based cap (GCC): 20 % loss while sent 1 Mbit/s caps a 3 Mbit/s REMB
    at 900 kbit/s; loss under loss_low lifts the cap."""
    e, _ = make()
    e.on_remb(3_000_000)
    e.on_report(0, 0, 1000)
    assert e.update(1_000_000) == 3_000_000
    e.on_report(51, 20, 1100)  # 20 of 100 lost
    assert e.update(1_000_000) == 900_000
    assert abs(e.loss - 0.2) < 1e-9
    e.on_report(0, 21, 1200)  # 1 %: the cap goes
    assert e.update(900_000) == 3_000_000


def test_loss_between_the_thresholds_holds_the_cap() -> None:
    """Protects against a cap that flaps: between loss_low and loss_high the cap holds."""
    e, _ = make()
    e.on_remb(3_000_000)
    e.on_report(0, 0, 1000)
    e.update(1_000_000)
    e.on_report(0, 20, 1100)
    assert e.update(1_000_000) == 900_000
    e.on_report(0, 25, 1200)  # 5 %
    assert e.update(1_000_000) == 900_000


def test_chromium_fraction_lost_zero_while_starved_still_counts_the_loss() -> None:
    """Protects the starved viewer: Chromium's report says fraction lost 0 (each report covers
    the few packets since the last) while its cumulative count says half the stream is lost;
    the loss comes from the counts, and the estimate falls under what was sent."""
    e, _ = make()
    e.on_remb(2_000_000)  # Chromium raises its REMB while it gets nothing
    e.on_report(0, 0, 5000)
    e.update(600_000)
    e.on_report(0, 50, 5100)  # fraction 0, but 50 of the 100 sent are lost
    assert e.update(600_000) == 450_000
    assert e.loss == 0.5


def test_no_new_packets_is_no_evidence_of_loss() -> None:
    """Protects a paused video (or a report repeated): no packet expected since the last
    report is loss 0, not a division by zero or the old loss kept forever."""
    e, _ = make()
    e.on_remb(400_000)
    e.on_report(0, 10, 100)
    e.update(0.0)
    e.on_report(0, 10, 100)
    e.update(0.0)
    assert e.loss == 0.0 and e.estimate_bps == 400_000


def test_a_report_with_a_backwards_or_wrapped_count_is_ignored() -> None:
    """Protects against a report whose highest sequence went backwards (a reordered or bogus
    report): the loss is not computed from a negative or 2^32-sized count."""
    e, _ = make()
    e.on_remb(400_000)
    e.on_report(0, 10, 100_000)
    e.update(100_000)
    e.on_report(0, 5, 50_000)
    e.update(100_000)
    assert e.loss == 0.0 and e.estimate_bps == 400_000
    e.on_report(300, 4_000_000_000, 50_100)  # fraction above 255: read as 255
    e.update(100_000)
    assert e.loss == 1.0 and e.estimate_bps == 50_000  # half of what was sent


def test_delivered_only_for_a_fresh_report_of_new_packets_without_loss() -> None:
    """Protects the evidence the layer selector keeps a collapsed-REMB viewer's video on:
    ``delivered`` is set only by an update that took a report of new packets with loss under
    loss_low; not by the first report (nothing to compare), a repeated one (nothing new), a
    lossy one, or an update without a report. ``reported`` (the loss is new evidence, which
    the selector counts toward a pause) is set by every report of new packets, lossy or not."""
    e, _ = make()
    e.on_remb(50_000)
    e.on_report(0, 0, 1000)
    e.update(150_000)
    assert not e.delivered and not e.reported  # the first report: no count to compare with
    e.on_report(0, 0, 1100)
    e.update(150_000)
    assert e.delivered and e.reported and e.estimate_bps == 50_000  # the REMB stays what it is
    e.update(150_000)
    assert not e.delivered and not e.reported  # no report since the last update
    e.on_report(0, 0, 1100)
    e.update(150_000)
    assert not e.delivered and not e.reported  # nothing new
    e.on_report(0, 5, 1200)
    e.update(150_000)
    assert not e.delivered and e.reported  # 5 % lost: new evidence, of loss


def test_carried_is_what_was_sent_when_it_arrived_and_nothing_after_loss() -> None:
    """Protects the evidence a paused viewer resumes by (layer_selector.py): ``carried_bps`` is
    the highest rate sent over the last three intervals whose reports showed new packets without
    loss (one interval a report covers in part does not erase it); a lossy report clears it; an
    update without a new report leaves it as it was; the estimate itself stays the REMB."""
    e, _ = make()
    e.on_remb(43_000)
    e.on_report(0, 0, 1000)
    e.update(80_000)
    assert e.carried_bps == 0  # the first report: nothing to compare with
    e.on_report(0, 0, 1010)
    e.update(80_000)
    assert e.carried_bps == 80_000 and e.estimate_bps == 43_000
    e.on_report(0, 0, 1010)
    e.update(0)
    assert e.carried_bps == 80_000  # nothing new sent or reported: unchanged
    e.on_report(0, 0, 1020)
    e.update(20_000)  # an interval the report covers in part (the probe just stopped)
    assert e.carried_bps == 80_000  # the highest of the last three delivered intervals
    for seq in (1030, 1040):
        e.on_report(0, 0, seq)
        e.update(20_000)
    assert e.carried_bps == 20_000  # 80 kbit/s is three delivered intervals old
    e.on_report(0, 3, 1050)
    e.update(100_000)
    assert e.carried_bps == 0  # 30 % lost
    e.on_report(0, 3, 1060)
    e.update(30_000)
    assert e.carried_bps == 30_000  # the lossy one forgot what came before it
