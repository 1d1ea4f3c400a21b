"""One viewer's bandwidth estimate, from that viewer's own feedback.

The node's answers negotiate ``goog-remb`` (and the abs-send-time header
extension that Chromium's receive-side estimator times packets by) and no
transport-cc, so a browser viewer estimates its own downlink and tells us in a
REMB about once a second, sooner when it drops. That REMB, clamped, is the
estimate; the loss in the viewer's receiver reports caps it (GCC's loss-based
controller): the node is the sender, so it knows what it sent. docs/media.md
("Per-viewer layers") says why REMB and not transport-cc with a send-side
estimator.

Nothing a viewer sends is trusted as is: a REMB of zero or below, above
``max_bps``, or an order of magnitude away from the current estimate is
clamped and counted (``MediaStats.bwe_clamped``). The estimator is pure: the
time and the rate the viewer was sent are passed in, no clock is read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .adaptation_policy import DEFAULT_ADAPTATION, AdaptationPolicy

if TYPE_CHECKING:
    from .stats import MediaStats


# carried_bps is the highest rate of this many delivered intervals in a row.
_CARRIED_REPORTS = 3


class BandwidthEstimator:
    """REMB plus receiver-report loss for one viewer; ``estimate_bps`` is what its link takes."""

    __slots__ = (
        "_policy",
        "_stats",
        "remb_bps",
        "loss",
        "_loss_cap",
        "_lost",
        "_high",
        "_fraction",
        "_fresh",
        "delivered",
        "reported",
        "_carried",
    )

    def __init__(self, stats: "MediaStats", policy: AdaptationPolicy = DEFAULT_ADAPTATION) -> None:
        self._policy = policy
        self._stats = stats
        # The viewer's REMB after the clamps, 0 until its first one.
        self.remb_bps = 0
        # The loss measured at the last update (0..1).
        self.loss = 0.0
        # The loss-based cap (bits/s), 0 while none applies.
        self._loss_cap = 0.0
        # Cumulative lost and extended highest sequence number at the last update
        # (-1: none yet), the latest report's values, and its fraction lost.
        self._lost = 0
        self._high = -1
        self._fraction = 0
        self._fresh: tuple[int, int] | None = None
        # Whether the last update took a report that the viewer received new packets of
        # this stream with loss under loss_low: evidence its link carries what it is sent,
        # whatever its REMB says (layer_selector.py, "pause only on evidence").
        self.delivered = False
        # Whether the last update took a report of new packets of this stream at all: its
        # loss is then new evidence, not the last report's again.
        self.reported = False
        # The rates sent over the last _CARRIED_REPORTS intervals whose updates took a delivered
        # report, newest last; emptied by a lossy one (carried_bps).
        self._carried: list[int] = []

    # -- feedback ------------------------------------------------------------------

    def on_remb(self, bps: int) -> int:
        """One REMB from the viewer; returns the value taken after the clamps."""
        pol = self._policy
        stats = self._stats
        stats.bwe_estimates += 1
        value = float(bps)
        if value < pol.min_bps:
            stats.bwe_clamped["low"] += 1
            value = pol.min_bps
        elif value > pol.max_bps:
            stats.bwe_clamped["high"] += 1
            value = pol.max_bps
        old = self.remb_bps
        if old:
            # An order of magnitude in one report is not a link changing.
            if value > old * pol.max_jump:
                stats.bwe_clamped["jump"] += 1
                value = old * pol.max_jump
            elif value * pol.max_jump < old:
                stats.bwe_clamped["jump"] += 1
                value = math.ceil(old / pol.max_jump)
        self.remb_bps = max(pol.min_bps, min(pol.max_bps, int(value)))
        return self.remb_bps

    def on_report(self, fraction_lost: int, cumulative_lost: int, highest_seq: int) -> None:
        """One receiver report block of the viewer about its video stream (RFC 3550 6.4.1)."""
        self._fraction = min(255, max(0, fraction_lost))
        self._fresh = (cumulative_lost, highest_seq & 0xFFFFFFFF)

    # -- once per RTCP interval ----------------------------------------------------

    def update(self, sent_bps: float) -> int:
        """Take the reports since the last update; returns the estimate (bits/s).

        ``sent_bps`` is what the viewer was sent of this track (media, resends
        and padding) since the last update: the loss-based cap is a share of it.
        Chromium reports a fraction lost of 0 in most reports of a starved
        stream (each covers the few packets since the last one), so the loss is
        measured from the cumulative count and the highest sequence number
        between updates, and the fraction only counts when it says more.
        """
        pol = self._policy
        fresh, self._fresh = self._fresh, None
        self.delivered = self.reported = False
        if fresh is not None:
            lost, high = fresh
            loss = self._fraction / 256.0
            if self._high >= 0:
                expected = (high - self._high) & 0xFFFFFFFF
                if 0 < expected < 0x80000000:
                    loss = max(loss, min(1.0, max(0, lost - self._lost) / expected))
                    self.reported = True
                    self.delivered = loss < pol.loss_low
                elif expected == 0:
                    # Nothing sent since the last report (a paused video): no evidence.
                    loss = 0.0
            self._lost, self._high = lost, high
            self.loss = loss
            if self.delivered:
                self._carried.append(int(sent_bps))
                del self._carried[:-_CARRIED_REPORTS]
            elif self.reported:
                self._carried.clear()
            if loss >= pol.loss_high and sent_bps > 0:
                cap = sent_bps * (1.0 - 0.5 * loss)
                self._loss_cap = cap if not self._loss_cap else min(self._loss_cap, cap)
            elif loss < pol.loss_low:
                self._loss_cap = 0.0
        return self.estimate_bps

    @property
    def estimate_bps(self) -> int:
        """The REMB (``start_bps`` before the first), under the loss cap while one holds."""
        pol = self._policy
        est = float(self.remb_bps or pol.start_bps)
        if self._loss_cap:
            est = min(est, self._loss_cap)
        return int(max(pol.min_bps, est))

    @property
    def carried_bps(self) -> int:
        """What the viewer's link was shown to carry of this track (media, resends, padding;
        bits/s): the highest rate it was sent over the last _CARRIED_REPORTS intervals whose
        reports showed new packets without loss (one interval a report covers only in part,
        the probe just stopped or the tick came early on a loaded loop, does not make the
        evidence vanish); 0 after a lossy report; unchanged while no report comes. Firmer than
        a REMB where it says more (a browser's REMB, a delay-based guess, collapses with every
        packet arriving and climbs slowly, or not at all while little reaches the viewer): the
        layer selector sizes probes and resumes a paused video by it."""
        return max(self._carried, default=0)

    @property
    def has_remb(self) -> bool:
        return self.remb_bps > 0
