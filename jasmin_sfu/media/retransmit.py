"""The retransmission policy: how often, how many times and how much a viewer is resent.

A viewer NACKs a missing packet again every round trip until it arrives
(Chromium up to many times), so resending every requested packet on every
NACK multiplies the node's output by the viewer's loss: one viewer on a
60 kbit/s link was sent ~1,500 packets a second (issue 19). Each consumer
applies, per NACKed packet and in this order:

1. **age**: a packet older than the cache, or so old that it would arrive
   later than ``max_delay_s`` after it was first sent (its media age plus the
   viewer's RTT), is of no use to the viewer's jitter buffer: nothing is sent
   and nothing is asked upstream;
2. **retries**: at most ``max_retries`` resends of one packet to one viewer;
3. **RTT**: at most one resend of one packet per viewer round trip (mediasoup's
   ``RtpStreamSend`` rule; a NACK repeated inside the RTT crossed our resend);
4. **budget**: a token bucket per viewer filled at ``budget_fraction`` of the
   viewer's own bandwidth estimate (its REMB), and never above what the
   estimate leaves after the stream it is forwarded. A viewer that runs out is
   owed packets; once it is owed a keyframe's worth it gets a keyframe request
   (at most one a second from one viewer, and through the producer's throttle)
   instead of more resends.

Only video is cached and resent (Opus carries its own FEC, and a late audio
packet is useless), so the budget is spent on video only, and a struggling
viewer's audio keeps the rest of its link.

Audio first goes one step further: when the video alone is far above what a
viewer's link takes (its REMB under half the forwarded rate, and heavy loss
in its receiver reports), forwarding that video only destroys the viewer's
audio without giving it a picture (measured: 0 frames decoded, 10-15 % of
the audio lost at 60 kbit/s). Such a viewer's video consumer is paused
(``Consumer.congested``) and tried again later (:meth:`Consumer.check_link`,
called once per RTCP interval by the router).

The values come from ``[media]`` (``nack_*`` keys, jasmin_sfu/config.py); the
consumer keeps the per-packet state (jasmin_sfu/media/consumer.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetransmitPolicy:
    # Resends of one packet to one viewer, at most (LiveKit's sequencer also
    # stops after a few; Chromium asks up to 10 times).
    max_retries: int = 3
    # Until the viewer's RTCP gave a round trip: mediasoup's default RTT.
    default_rtt_s: float = 0.1
    # A resend arriving later than this after the original is useless
    # (mediasoup: 2 s for video; a live show's jitter buffer is far shorter).
    max_delay_s: float = 1.0
    # Share of the viewer's REMB resends may use, and the estimate assumed
    # before the viewer sent one.
    budget_fraction: float = 0.25
    fallback_bps: int = 150_000
    # Bucket depth in seconds of budget (a burst of resends after a loss burst),
    # and at least this many bytes, whatever the estimate (default: one full packet).
    burst_s: float = 0.5
    min_burst_bytes: int = 1500
    # A keyframe's worth of packets when no keyframe was seen yet.
    keyframe_packets: int = 10
    # One viewer's keyframe requests instead of resends, at most one per this.
    keyframe_interval_s: float = 1.0
    # Overhead per packet on the wire beyond what the consumer counts (RTP
    # header 12, SRTP tag 10, UDP/IPv4 28), for the forwarded rate.
    packet_overhead: int = 50
    # The forwarded rate is measured over at least this long.
    rate_window_s: float = 0.5
    # Audio first: a viewer whose estimate is below ``pause_below`` of the video
    # it is forwarded and that lost >= ``pause_loss`` of it (or that lost
    # ``pause_loss_alone`` of it, whatever its estimate, which Chromium sends
    # late), at ``pause_after`` link checks (one a second) in a row, gets no video (its audio keeps
    # the link); video is tried again after ``probe_after_s``, doubling up to
    # ``probe_max_s`` while the link stays too weak.
    pause_video: bool = True
    pause_below: float = 0.5
    pause_loss: float = 0.1
    pause_loss_alone: float = 0.5
    pause_after: int = 3
    # Tried again, the video is paused again after this many checks with
    # ``pause_loss``, whatever the estimate.
    probe_pause_after: int = 2
    probe_after_s: float = 10.0
    probe_max_s: float = 60.0

    def budget_rate(self, remb_bps: int, sent_bps: float = 0.0) -> float:
        """Bytes per second of resends for a viewer with estimate ``remb_bps`` that is
        being forwarded ``sent_bps`` of this track: ``budget_fraction`` of the
        estimate, but never more than the estimate leaves after the forwarded
        stream (resends on a link already over its estimate only add loss, and
        take it from the viewer's audio). Before the viewer's first REMB: the
        fraction of what it is sent, or of ``fallback_bps``."""
        if not remb_bps:
            return self.budget_fraction * max(sent_bps, self.fallback_bps) / 8.0
        return max(0.0, min(self.budget_fraction * remb_bps, remb_bps - sent_bps)) / 8.0

    def budget_depth(self, rate: float) -> float:
        """The bucket's size in bytes: ``burst_s`` of budget, but at least ``min_burst_bytes``
        (one full packet by default)."""
        return max(rate * self.burst_s, float(self.min_burst_bytes))


DEFAULT_POLICY = RetransmitPolicy()
