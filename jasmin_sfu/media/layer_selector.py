"""Which spatial and temporal layer one viewer gets, and when to probe for a better one.

Pure and synchronous: the time, the layers with their measured rates, the
viewer's estimate and loss are passed in; nothing is read from a clock or a
socket, so every rule is tested on made-up time (tests/media/test_layer_selector.py).
The rules, with the numbers of :class:`~.adaptation_policy.AdaptationPolicy`:

- **fit**: the estimate less the viewer's audio (``audio_reserve_bps``) is the
  video budget; a layer fits when its measured rate is within it.
- **down at once** when the budget falls below the current layer's rate times
  ``keep_ratio``, to the best layer that fits, or to the lowest layer.
- **pause only on evidence**: below the lowest layer the video is paused
  (target None, the viewer keeps its audio) only when ``pause_loss_reports`` of
  its last ``pause_loss_window`` reports show ``pause_loss`` (one report of a
  burst's loss is none), or its budget stayed under ``pause_ratio`` times the lowest
  layer's need for ``pause_hold_s`` with no report in that time showing new
  packets received without loss (a starved viewer whose reports stop, or
  lose between ``loss_low`` and ``pause_loss``). A REMB alone does not pause: a browser's
  REMBs under-report while it receives the lowest layer (its first ones, and
  those right after a resume), and pausing on them paused real Chromium
  viewers in a loop (docs/media.md, "Per-viewer layers").
- **up after a hold**: only when the budget has stayed above a better layer's
  rate times ``headroom`` for ``up_hold_s``, and at least ``min_dwell_s`` after
  the last switch; then to the best layer that fits with headroom.
- **back-off**: a down-switch within ``failed_up_s`` of the up-switch into the
  layer it leaves is a failed up-switch; each makes the hold
  ``backoff_factor`` times longer, up to ``backoff_max_s``, and each
  ``backoff_max_s`` without one forgives one. So an estimate that oscillates
  cannot make layers flap (mediasoup#1462, PR #804).
- **probing**: a viewer held below the best layer it may get is sent padding
  so that it receives up to the next layer's rate times ``headroom``, and no
  more than ``probe_ramp`` times its estimate: its REMB can then rise to show
  whether the layer fits (a browser's REMB stays under 1.5x what it
  receives: without probing a viewer that dropped never climbs back,
  mediasoup#316). Probes come ``probe_interval_s`` after the viewer settled
  (at once after a successful one), fail on ``probe_stop_loss``, a
  down-switch, an estimate that stopped rising (``probe_stall_gain`` within
  ``probe_stall_s``) or after ``probe_duration_s``, and each failed one
  doubles the wait up to ``probe_max_interval_s``. A paused viewer is probed
  for the lowest layer: that is how its video comes back by itself. While paused,
  the rate its link was shown to carry of the padding without loss counts as its
  budget when the REMB says less (``carried_bps``): a browser's REMB barely moves
  while it gets audio and padding only.

A switch up is only a target: the consumer changes layer on the target
layer's next keyframe (and asks the publisher for one); down is at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .adaptation_policy import DEFAULT_ADAPTATION, AdaptationPolicy

_NEVER = -1e18


@dataclass(frozen=True, slots=True)
class Layer:
    """One choice for a viewer: a spatial layer up to a temporal layer, and its rate."""

    spatial: int
    # The highest temporal layer forwarded; None: all of them.
    temporal: int | None
    need_bps: int


@dataclass(frozen=True, slots=True)
class Choice:
    """What the selector decided at one tick."""

    # The layer the viewer should get; None: video paused (audio goes on).
    target: Layer | None
    # Padding to send on top of the target, bits/s (0: no probe).
    probe_bps: int
    # "" (no switch), "start", "up", "down", "pause", "resume", "gone" (the
    # current layer is no longer offered or allowed).
    switch: str = ""
    # "" or what happened to a probe at this tick: "start", "success", "fail".
    probe: str = ""


def candidates(
    spatial_rates: Sequence[tuple[int, int]],
    temporal_layers: int = 1,
    *,
    max_spatial: int | None = None,
    max_temporal: int | None = None,
    policy: AdaptationPolicy = DEFAULT_ADAPTATION,
    temporal_bps: Mapping[int, Sequence[int]] | None = None,
) -> tuple[Layer, ...]:
    """The layers a viewer may get, worst first, within its cap.

    ``spatial_rates`` are the producer's active spatial layers as (index, measured
    bits/s). Each spatial layer is offered whole and, when the stream has
    ``temporal_layers`` > 1 (VP8 L1T2/L1T3), with fewer temporal layers at the
    policy's share of its rate. Order is spatial first, then temporal (a
    bigger picture at a lower frame rate beats a smaller one at the full rate,
    as in LiveKit's allocator). Nothing above ``max_spatial`` or
    ``max_temporal`` is offered: the viewer's cap is never exceeded.
    ``temporal_bps``, by spatial index, the measured rates up to each temporal
    layer but the top one (cumulative, as ``LayerInfo.temporal_bps``): where
    given in full, they replace the policy's shares for that layer.
    """
    shares = policy.temporal_shares(temporal_layers)
    out: list[Layer] = []
    top_t = len(shares)
    for spatial, rate in sorted(spatial_rates):
        if max_spatial is not None and spatial > max_spatial:
            continue
        measured = temporal_bps.get(spatial, ()) if temporal_bps else ()
        for t, share in enumerate(shares):
            if max_temporal is not None and t > max_temporal:
                break
            sub = measured[t] if len(measured) == top_t else int(rate * share)
            out.append(Layer(spatial, t, max(1, min(sub, rate))))
        if max_temporal is None or max_temporal >= top_t:
            out.append(Layer(spatial, None, max(1, rate)))
    return tuple(out)


class LayerSelector:
    """One viewer's layer choice over time (see the module docstring for the rules)."""

    __slots__ = (
        "_policy",
        "_started",
        "target",
        "_since",
        "_above_since",
        "_up_at",
        "_up_into",
        "failures",
        "_forgive_at",
        "_probe_until",
        "_probe_next",
        "_probe_wait",
        "_probe_goal",
        "_probe_best",
        "_probe_best_at",
        "_low_since",
        "_probe_end",
        "_lossy",
    )

    def __init__(self, policy: AdaptationPolicy = DEFAULT_ADAPTATION) -> None:
        self._policy = policy
        self._started = False
        # The layer chosen (spatial, temporal); None: paused.
        self.target: tuple[int, int | None] | None = None
        # When the last switch happened; since when the budget stays above a
        # better layer's need with headroom (None: it does not).
        self._since = _NEVER
        self._above_since: float | None = None
        # The last up-switch: when, and into which layer.
        self._up_at = _NEVER
        self._up_into: tuple[int, int | None] | None = None
        # Failed up-switches not yet forgiven, and when the next is forgiven.
        self.failures = 0
        self._forgive_at = _NEVER
        # The probe under way (until when, for which layer), and the next one.
        self._probe_until = 0.0
        self._probe_next = _NEVER
        self._probe_wait = policy.probe_interval_s
        self._probe_goal: Layer | None = None
        # The best estimate seen in the probe, and when it last rose by probe_stall_gain.
        self._probe_best = 0
        self._probe_best_at = _NEVER
        # Since when the budget is under pause_ratio times the lowest layer's need (None: it is not).
        self._low_since: float | None = None
        # When the last probe ended: loss right after one is the probe's.
        self._probe_end = _NEVER
        # The last pause_loss_window reports on the lowest layer where they are evidence, newest
        # in bit 0: 1 where the report showed pause_loss.
        self._lossy = 0

    @property
    def probing(self) -> bool:
        return self._probe_goal is not None

    @property
    def hold_s(self) -> float:
        """The hold an up-switch needs now (grows with failed up-switches)."""
        pol = self._policy
        return float(min(pol.backoff_max_s, pol.up_hold_s * pol.backoff_factor**self.failures))

    def select(
        self,
        now: float,
        layers: Sequence[Layer],
        estimate_bps: int,
        loss: float = 0.0,
        *,
        delivered: bool = False,
        reported: bool = True,
        carried_bps: int = 0,
    ) -> Choice:
        """Decide at ``now`` from the viewer's allowed ``layers`` (worst first, as
        :func:`candidates` gives them), its estimate, its latest loss, whether a
        report since the last call showed new packets received with no loss to speak
        of (``delivered``: the link carries what it is sent, whatever the estimate),
        whether ``loss`` is from such a new report at all (``reported``; False: it
        is the last one's again, already counted), and the video rate its link was last
        shown to carry without loss (``carried_bps``, BandwidthEstimator.carried_bps: a
        paused viewer resumes and probes by it)."""
        pol = self._policy
        if self.failures and now >= self._forgive_at:
            self.failures -= 1
            self._forgive_at = now + pol.backoff_max_s
        budget = estimate_bps - pol.audio_reserve_bps
        fit = -1
        for i, layer in enumerate(layers):
            if layer.need_bps <= budget:
                fit = i
        if not layers:
            # Nothing to forward (no active layer): not the viewer's link.
            was = self.target
            self.target = None
            self._started = False  # when layers come back: the best that fits, at once
            probe = "fail" if self.probing else ""
            self._probe_stop(now, ok=False)
            self._low_since = None
            return Choice(None, 0, "gone" if was is not None else "", probe)
        floor = -1 if self._may_pause(now, layers[0], budget, loss, delivered, reported) else 0
        if not self._started:
            self._started = True
            self._probe_next = now + self._probe_wait
            return self._switch(now, layers, max(fit, floor), "start")
        cur = self._index(layers)
        if cur is None:
            # The layer went away (the publisher stopped it) or the cap went
            # below it: the best that fits now, at once.
            probe = "fail" if self.probing else ""
            self._probe_stop(now, ok=False)
            return self._switch(now, layers, max(fit, floor), "gone", probe)
        switch = ""
        probe = ""
        if cur >= 0 and budget < layers[cur].need_bps * pol.keep_ratio:
            new = max(fit, floor)
            if new < cur:
                # A failed up-switch: the layer it went into does not hold; or a pause
                # soon after any up-switch (the video went up, then off: two steps down
                # for one failed climb, so the next climb waits twice as long).
                if now - self._up_at < pol.failed_up_s and (self._up_into == self.target or new < 0):
                    self.failures += 1
                    self._forgive_at = now + pol.backoff_max_s
                self._above_since = None
                if self.probing:
                    probe = "fail"
                self._probe_stop(now, ok=False)
                if loss < pol.loss_low:
                    # The estimate fell with no loss reported: Chromium's REMB after a
                    # delay spike (on a loaded node, every 10-40 s, measured), not a
                    # link that lost capacity. Probe back as soon as the dwell allows,
                    # without the back-off: a link that did shrink fails the probe on
                    # its first lossy report.
                    self._probe_wait = pol.probe_interval_s
                    self._probe_next = now + pol.min_dwell_s
                else:
                    self._probe_next = max(self._probe_next, now + self._probe_wait)
                return self._switch(now, layers, new, "down", probe)
        resume_on_carried = cur < 0 and carried_bps * pol.headroom > budget
        if resume_on_carried:
            # Paused, the viewer gets audio and probe padding only, and a browser's REMB then
            # stays where it fell (Chromium: 43-74 kbit/s for 90 s after a 120 kbit/s cap was
            # lifted, the video never back; tests/browser/test_shaped_viewers.py). What its
            # link was shown to carry of the padding says more: the resume (after the same
            # hold) and the probe's size go by that. It arrived, so it needs no headroom (the
            # headroom is for a guess's noise): the lowest layer's need carried resumes it,
            # and the probe, aiming at the need with headroom, gets there with a pace that
            # sends 83 % of it. Once resumed, the lowest layer is kept without loss whatever
            # the REMB, and the climb above it waits for the REMB.
            budget = int(carried_bps * pol.headroom)
            estimate_bps = budget + pol.audio_reserve_bps
        up = -1
        for j in range(cur + 1, len(layers)):
            if layers[j].need_bps * pol.headroom <= budget:
                up = j
        if up < 0:
            self._above_since = None
        else:
            if self._above_since is None:
                self._above_since = now
            # A resume shown by what arrived waits the plain hold: the back-off is for climbs
            # on a guess (measured: with two failed climbs behind it, a paused viewer's 16-s
            # hold outlasted every probe, and its video stayed off 90 s after its link was back).
            hold = pol.up_hold_s if resume_on_carried else self.hold_s
            if now - self._above_since >= hold and now - self._since >= pol.min_dwell_s:
                if self.probing:
                    probe = "success"
                self._probe_stop(now, ok=True)
                self._up_at = now
                self._up_into = (layers[up].spatial, layers[up].temporal)
                self._above_since = None
                return self._switch(now, layers, up, "up", probe)
        # Probing: only while below the best layer the viewer may get.
        goal = layers[cur + 1] if cur + 1 < len(layers) else None
        if self._probe_goal is not None:
            if estimate_bps >= self._probe_best * pol.probe_stall_gain:
                self._probe_best, self._probe_best_at = estimate_bps, now
            # Stalled: the estimate stopped rising before it reached the goal.
            stalled = up < 0 and now - self._probe_best_at >= pol.probe_stall_s
            if goal is None or loss >= pol.probe_stop_loss or now >= self._probe_until or stalled:
                probe = "fail"
                self._probe_stop(now, ok=False)
            else:
                self._probe_goal = goal
        elif goal is not None and now >= self._probe_next and now - self._since >= pol.min_dwell_s:
            if loss < pol.probe_stop_loss:
                probe = "start"
                self._probe_goal = goal
                self._probe_until = now + pol.probe_duration_s
                self._probe_best, self._probe_best_at = estimate_bps, now
        return Choice(self._layer(layers, cur), self._probe_rate(layers, cur, budget), switch, probe)

    # -- helpers -----------------------------------------------------------------

    def _may_pause(self, now: float, lowest: Layer, budget: int, loss: float, delivered: bool, reported: bool) -> bool:
        """Whether there is evidence the viewer's link cannot carry even the lowest layer:
        loss in ``pause_loss_reports`` of its last ``pause_loss_window`` reports while it gets
        that layer, or a budget far under that layer for a sustained time with no report in
        between that it received what it was sent (Chromium's REMB collapses to ~50 kbit/s after a delay
        spike with every packet arriving: measured in tests/browser/test_shaped_viewers.py,
        a 300 kbit/s viewer paused on the lowest layer it was receiving whole)."""
        pol = self._policy
        if budget < lowest.need_bps * pol.pause_ratio and not delivered:
            if self._low_since is None:
                self._low_since = now
        else:
            # Back above, or a clean report: the hold starts again.
            self._low_since = None
        if not pol.pause_video:
            return False
        # The lowest layer's own loss: on it for the dwell, so not what the queue still
        # held of a higher layer (a viewer joining a 300 kbit/s link on a 370 kbit/s layer
        # loses for a second or two after its down-switch), and no probe on it within the
        # dwell (a probe's padding over a capped link is lost with the media: that fails the
        # probe, it does not pause).
        own = (
            self.target == (lowest.spatial, lowest.temporal)
            and now - self._since >= pol.min_dwell_s
            and not self.probing
            and now - self._probe_end >= pol.min_dwell_s
        )
        if not own:
            self._lossy = 0
        elif reported:
            window = (1 << pol.pause_loss_window) - 1
            self._lossy = ((self._lossy << 1) | (loss >= pol.pause_loss)) & window
            if self._lossy.bit_count() >= pol.pause_loss_reports:
                return True
        return self._low_since is not None and now - self._low_since >= pol.pause_hold_s

    def _index(self, layers: Sequence[Layer]) -> int | None:
        """The current target's index in ``layers``; -1 when paused; None when gone."""
        if self.target is None:
            return -1
        for i, layer in enumerate(layers):
            if (layer.spatial, layer.temporal) == self.target:
                return i
        return None

    @staticmethod
    def _layer(layers: Sequence[Layer], i: int) -> Layer | None:
        return layers[i] if i >= 0 else None

    def _probe_rate(self, layers: Sequence[Layer], cur: int, budget: int) -> int:
        """Padding on top of the current layer: up to the goal's need with headroom, but
        never more than ``probe_ramp`` times the video budget in all (a REMB rises about
        8 % a second whatever it is sent, so sending more only risks loss on a link that
        cannot take it)."""
        goal = self._probe_goal
        if goal is None:
            return 0
        pol = self._policy
        have = layers[cur].need_bps if cur >= 0 else 0
        total = min(goal.need_bps * pol.headroom, max(budget, pol.min_bps) * pol.probe_ramp)
        return max(0, int(total) - have)

    def _probe_stop(self, now: float, ok: bool) -> None:
        pol = self._policy
        if ok:
            # Climbing: the next layer is probed as soon as the dwell allows.
            self._probe_wait = pol.probe_interval_s
            self._probe_next = now
        elif self._probe_goal is not None:
            self._probe_wait = min(pol.probe_max_interval_s, self._probe_wait * pol.backoff_factor)
            self._probe_next = now + self._probe_wait
        if self._probe_goal is not None:
            self._probe_end = now
        self._probe_goal = None
        self._probe_until = 0.0

    def _switch(self, now: float, layers: Sequence[Layer], i: int, why: str, probe: str = "") -> Choice:
        layer = self._layer(layers, i)
        old = self.target
        self.target = None if layer is None else (layer.spatial, layer.temporal)
        if self.target == old and why != "start":
            why = ""
        elif why == "up" and old is None:
            why = "resume"
        elif why in ("down", "gone", "start") and self.target is None and layers:
            why = "pause"
        if why:
            self._since = now
        return Choice(layer, 0, why, probe)
