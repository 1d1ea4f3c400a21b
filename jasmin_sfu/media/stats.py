"""Plain counters of the media core, read by /metrics.

The hot path increments integer attributes only: no locks, no label lookups,
no prometheus calls per packet. The API layer exports them through a custom
collector at scrape time.
"""

from __future__ import annotations

from collections import Counter


class MediaStats:
    __slots__ = (
        "rtp_packets_in",
        "rtp_bytes_in",
        "rtp_packets_out",
        "rtp_bytes_out",
        "rtcp_packets_in",
        "rtcp_packets_out",
        "sender_reports_sent",
        "nacks_received",
        "nack_packets_served",
        "nack_packets_missed",
        "nack_packets_refused",
        "nack_resends",
        "nack_suppressed_rtt",
        "nack_suppressed_retries",
        "nack_suppressed_budget",
        "nack_suppressed_age",
        "nack_keyframe_requests",
        "video_congestion_pauses",
        "video_congestion_probes",
        "bwe_estimates",
        "bwe_clamped",
        "layer_decisions",
        "layer_probes",
        "keyframe_packets_replayed",
        "plis_received",
        "keyframe_requests_sent",
        "keyframe_requests_coalesced",
        "layer_switches",
        "padding_packets_sent",
        "simulcast_ssrcs_learned",
        "temporal_packets_dropped",
        "nack_temporal_refused",
        "drops",
    )

    def __init__(self) -> None:
        self.rtp_packets_in = 0
        self.rtp_bytes_in = 0
        self.rtp_packets_out = 0
        self.rtp_bytes_out = 0
        self.rtcp_packets_in = 0
        self.rtcp_packets_out = 0
        # RTCP SRs sent to viewers (one per forwarded stream per report; several share
        # a compound packet), by the worker's SenderReportTimer.
        self.sender_reports_sent = 0
        self.nacks_received = 0
        self.nack_packets_served = 0
        self.nack_packets_missed = 0
        # NACKs for packets from before the viewer's stream began (another
        # audience's media: never served).
        self.nack_packets_refused = 0
        # The retransmission policy (jasmin_sfu/media/retransmit.py): resends
        # by the kind of the viewer's track, and NACKed packets not resent
        # because one went out within the viewer's RTT, after max_retries,
        # past the viewer's budget, or too old to be of use (older than the
        # cache, or than the RTT leaves time for); keyframe requests made
        # instead of resends past the budget.
        self.nack_resends: Counter[str] = Counter({"audio": 0, "video": 0})
        self.nack_suppressed_rtt = 0
        self.nack_suppressed_retries = 0
        self.nack_suppressed_budget = 0
        self.nack_suppressed_age = 0
        self.nack_keyframe_requests = 0
        # Audio first: viewers' video paused because their link could not
        # carry it, and the tries of it again afterwards.
        self.video_congestion_pauses = 0
        self.video_congestion_probes = 0
        # Per-viewer adaptation (bandwidth.py, layer_selector.py, adaptation.py):
        # REMBs taken, and those clamped by reason ("low": zero or below the
        # floor, "high": above the ceiling, "jump": an order of magnitude from
        # the estimate); the selector's decisions by kind ("start", "up",
        # "down", "pause", "resume", "gone": the consumer carries them out, a
        # switch up on the target's keyframe); probes by event ("start",
        # "success", "fail"). The switches made, the padding sent and the
        # viewers per layer are the consumer's and the producer's counts.
        self.bwe_estimates = 0
        self.bwe_clamped: Counter[str] = Counter({"low": 0, "high": 0, "jump": 0})
        self.layer_decisions: Counter[str] = Counter()
        self.layer_probes: Counter[str] = Counter({"start": 0, "success": 0, "fail": 0})
        # Cached keyframe packets sent to viewers at start (TTFF).
        self.keyframe_packets_replayed = 0
        self.plis_received = 0
        self.keyframe_requests_sent = 0
        self.keyframe_requests_coalesced = 0
        # Simulcast (docs/media.md, "Layers"): viewers moved from one spatial
        # layer to another, padding-only packets sent for bandwidth probes, and
        # publisher streams whose SSRC was learnt from their RID.
        self.layer_switches = 0
        self.padding_packets_sent = 0
        self.simulcast_ssrcs_learned = 0
        # VP8 temporal layers (docs/media.md, "Temporal layers"): packets of
        # frames above a viewer's temporal layer not sent to it; NACKed
        # packets refused because the viewer was not sent their frame.
        self.temporal_packets_dropped = 0
        self.nack_temporal_refused = 0
        # Dropped packets by reason ("too_short", "unknown_pt", "send_failed" ...).
        self.drops: Counter[str] = Counter()

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n
