"""The per-viewer adaptation policy: the numbers of the estimate, the layer selector and probing.

One frozen value, built from ``[media]`` (``bwe_*``, ``layer_*``, ``probe_*`` keys,
jasmin_sfu/config.py) and read by :class:`~.bandwidth.BandwidthEstimator`,
:class:`~.layer_selector.LayerSelector` and :class:`~.adaptation.ViewerAdaptation`.
docs/media.md ("Per-viewer layers") says why each default is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdaptationPolicy:
    # -- the estimate (bandwidth.py) ------------------------------------------------
    # Assumed before the viewer's first REMB (mediasoup's initial available
    # outgoing bitrate is 600 kbit/s too): a viewer starts on the best layer
    # under it and is corrected within a report or two.
    start_bps: int = 600_000
    # A REMB is clamped into [min_bps, max_bps]: 0 or negative is not "no
    # bandwidth", and nothing a browser estimates is above 50 Mbit/s on a
    # live show's downlink.
    min_bps: int = 30_000
    max_bps: int = 50_000_000
    # One report may move the estimate by at most this factor either way: a
    # browser's REMB rises at most 1.5x the rate it receives and falls to
    # 0.85x of it, so an order of magnitude in one report is a bug or a lie.
    max_jump: float = 10.0
    # Loss in the viewer's receiver reports (GCC's loss controller, RFC draft
    # ietf-rmcat-gcc-02 5.4): from loss_high on, the estimate is capped at the
    # rate the viewer was sent times (1 - loss / 2); below loss_low the cap
    # is lifted and the REMB alone counts.
    loss_high: float = 0.1
    loss_low: float = 0.02
    # What the viewer's audio takes of its link (Opus at ~32 kbit/s plus
    # RTP/SRTP/UDP/IP overhead at 50 packets/s): a REMB covers every stream
    # of the viewer's connection, video gets the rest.
    audio_reserve_bps: int = 40_000
    # Bytes per packet on the wire beyond what the consumer counts (RTP
    # header, SRTP tag, UDP/IPv4), for the rate the viewer is sent.
    packet_overhead: int = 50

    # -- the selector (layer_selector.py) -------------------------------------------
    # Up only when the estimate leaves the next layer's need times headroom
    # (a layer's measured rate swings with keyframes); down at once when it
    # falls below the current layer's need times keep_ratio (a browser's first
    # REMB is just what it received, the layer's rate give or take a keyframe):
    # the band between is the hysteresis.
    headroom: float = 1.2
    keep_ratio: float = 0.9
    # The estimate must hold above the next layer's need (with headroom) this
    # long before an up-switch (LiveKit's allocator waits for a stable
    # estimate; mediasoup waits 10 s after a BWE downgrade).
    up_hold_s: float = 4.0
    # No up-switch sooner than this after any switch (mediasoup:
    # StreamMinActiveMs 2 s before a layer counts as usable).
    min_dwell_s: float = 2.0
    # A down-switch within this long after an up-switch means the up-switch
    # failed: the next hold is backoff_factor times longer, up to
    # backoff_max_s, and back to up_hold_s once an up-switch lasts that long.
    failed_up_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 60.0
    # Below the lowest layer video is paused (audio goes on) and probing
    # brings it back; False keeps every viewer on at least the lowest layer
    # (media.pause_video_on_congestion).
    pause_video: bool = True
    # ... but only on evidence that the link cannot carry even the lowest layer
    # (issue 12, measured with Chromium): the REMBs a browser sends while it
    # receives the lowest layer under-report it (its first ones are what it
    # received since the stream began, 143 kbit/s for a 207 kbit/s layer, and
    # fall again right after a resume), so a REMB alone below the lowest layer
    # moves a viewer to it, never off it. Evidence is loss in its receiver
    # reports of at least pause_loss, or a budget under pause_ratio times the
    # lowest layer's need held for pause_hold_s (a link that far below would
    # lose packets within a report or two; the hold covers a REMB's climb)
    # with no report in that time of new packets received with loss under
    # loss_low (Chromium's REMB also collapses to ~50 kbit/s after a delay
    # spike while every packet arrives: that link carries the layer).
    pause_loss: float = 0.1
    # ... in pause_loss_reports of the last pause_loss_window reports (each of new
    # packets): one report of a burst's loss is no evidence. A keyframe of the lowest
    # layer or a batch of resends sent at once overflows a small link's queue for an
    # instant (measured in tests/browser/test_shaped_viewers.py: a 300 kbit/s viewer on
    # the lowest layer, 34 packets in one second, 12 dropped by the link, one report at
    # 33 % loss between clean ones, and its video paused for 20 s until its REMB climbed
    # back), while a link too small for the lowest layer loses in most reports, if not in
    # every one (a 120 kbit/s link: 10-57 % in about every other report, measured there too).
    pause_loss_reports: int = 2
    pause_loss_window: int = 3
    pause_ratio: float = 0.4
    pause_hold_s: float = 10.0
    # VP8 temporal layers: the share of a spatial layer's rate its lower
    # temporal layers take (libwebrtc allocates 40/20/40 % to T0/T1/T2 of
    # three, 60/40 % of two), for layers whose own rates are not measured.
    temporal_shares_3: tuple[float, ...] = (0.4, 0.6)
    temporal_shares_2: tuple[float, ...] = (0.6,)

    # -- probing --------------------------------------------------------------------
    # A viewer held below the best layer it may get by its estimate is sent
    # padding on top of its layer, so that it receives the next layer's need
    # times headroom: a browser's REMB cannot rise above 1.5x what it
    # receives, so without this a viewer that dropped never climbs back
    # (mediasoup#316). A probe lasts at most probe_duration_s; the first
    # comes probe_interval_s after the viewer settled below, each failed one
    # multiplies the wait by backoff_factor up to probe_max_interval_s, a
    # successful one resets it. A probe stops at once when the viewer's loss
    # reaches probe_stop_loss, and when the estimate has not risen by
    # probe_stall_gain within probe_stall_s before it reached the goal.
    # Chromium's REMB rises about 8 % a second, so a probe from a low layer to
    # the next needs 10 s or more: probe_duration_s is only the bound of one
    # that keeps rising without getting there.
    probe_interval_s: float = 5.0
    probe_duration_s: float = 30.0
    probe_stall_s: float = 4.0
    probe_stall_gain: float = 1.05
    probe_max_interval_s: float = 30.0
    probe_stop_loss: float = 0.05
    # A probe sends at most probe_ramp times the estimate's video budget in
    # all: a REMB rises about 8 % a second whatever it receives (as long as it
    # receives 1/1.5 of it), so a probe that follows the estimate up climbs as
    # fast as one that jumps to the goal, and costs a link that cannot take
    # more a few percent of loss for one report instead of half its packets.
    probe_ramp: float = 1.25
    # Padding is paced in pieces of at most this long, so a probe is no burst.
    probe_burst_s: float = 0.05

    def temporal_shares(self, temporal_layers: int) -> tuple[float, ...]:
        """Cumulative rate shares of temporal layers 0..n-2 (the top one is 1.0)."""
        if temporal_layers >= 3:
            return self.temporal_shares_3
        if temporal_layers == 2:
            return self.temporal_shares_2
        return ()

    def validate(self) -> None:
        """Raise ValueError naming the first field out of range."""
        if not 0 < self.min_bps <= self.start_bps <= self.max_bps:
            raise ValueError("0 < min_bps <= start_bps <= max_bps")
        if self.max_jump < 1.0:
            raise ValueError("max_jump must be >= 1")
        if not 0.0 <= self.loss_low <= self.loss_high <= 1.0:
            raise ValueError("0 <= loss_low <= loss_high <= 1")
        if self.audio_reserve_bps < 0:
            raise ValueError("audio_reserve_bps must be >= 0")
        if not 1.0 <= self.headroom <= 4.0:
            raise ValueError("headroom must be in 1..4")
        if not 0.0 < self.pause_loss <= 1.0 or not 0.0 <= self.pause_ratio <= 1.0 or self.pause_hold_s < 0:
            raise ValueError("pause_loss in (0, 1], pause_ratio in [0, 1] and pause_hold_s >= 0")
        if not 1 <= self.pause_loss_reports <= self.pause_loss_window <= 16:
            raise ValueError("1 <= pause_loss_reports <= pause_loss_window <= 16")
        if not 0.5 <= self.keep_ratio <= 1.0:
            raise ValueError("keep_ratio must be in 0.5..1")
        if self.up_hold_s < 0 or self.min_dwell_s < 0 or self.failed_up_s < 0:
            raise ValueError("up_hold_s, min_dwell_s and failed_up_s must be >= 0")
        if self.backoff_factor < 1.0 or self.backoff_max_s < self.up_hold_s:
            raise ValueError("backoff_factor >= 1 and backoff_max_s >= up_hold_s")
        if not 0 < self.probe_interval_s <= self.probe_max_interval_s:
            raise ValueError("0 < probe_interval_s <= probe_max_interval_s")
        if self.probe_stall_s <= 0 or self.probe_stall_gain < 1.0:
            raise ValueError("probe_stall_s > 0 and probe_stall_gain >= 1")
        if not 1.0 < self.probe_ramp <= 4.0:
            raise ValueError("probe_ramp must be in (1, 4]")
        if self.probe_duration_s < self.up_hold_s or self.probe_duration_s <= 0:
            raise ValueError("probe_duration_s must be positive and >= up_hold_s (a probe must outlast the hold)")


DEFAULT_ADAPTATION = AdaptationPolicy()
