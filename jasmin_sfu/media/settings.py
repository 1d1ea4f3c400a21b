"""What the media core needs to know, built from the daemon config by app.py.

The media package knows no accounts, prices or config files; it gets this
plain value object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .adaptation_policy import AdaptationPolicy


@dataclass(frozen=True)
class MediaSettings:
    listen_ips: tuple[str, ...] = ("127.0.0.1",)
    announced_ip: str = ""
    port_range: tuple[int, int] = (0, 0)
    video_codecs: tuple[str, ...] = ("VP8", "H264")
    packet_cache_size: int = 1024
    keyframe_request_interval_s: float = 0.3
    keyframe_cache: bool = True
    rtcp_interval_s: float = 1.0
    remb_max_bps: int = 3_000_000
    remb_min_bps: int = 150_000
    max_producers_per_publisher: int = 4
    nack_max_retries: int = 3
    nack_default_rtt_s: float = 0.1
    nack_max_delay_s: float = 1.0
    nack_budget_fraction: float = 0.25
    pause_video_on_congestion: bool = True
    # Per-viewer estimate, layer selector and probing (adaptation_policy.py).
    adaptation: AdaptationPolicy = field(default_factory=AdaptationPolicy)
    # Accept simulcast publishers (a=simulcast, up to 3 layers); False answers them bad_sdp.
    simulcast: bool = True
    # The router runs a ViewerAdaptation per simulcast video viewer (media.layer_adaptation).
    layer_adaptation: bool = False
