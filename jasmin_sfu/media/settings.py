"""The ``[media]`` section: what the media core needs to know, declared once.

The config loader (jasmin_sfu/config.py) reads this dataclass as the ``[media]`` section
(TOML keys and ``JASMIN_MEDIA_<KEY>`` variables are its field names; ``MediaConfig`` there
is this class) and validates it; the daemon hands it to the :class:`~.worker.Worker` as is.
The media package knows no accounts, prices or config files: it never imports the loader.
Values the core needs in another unit (seconds, a port range, the adaptation policy) are
derived here, in properties, not restated in a second struct.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .adaptation_policy import AdaptationPolicy


# The SRTP profiles media.srtp_profiles may name (RFC 7714's AEAD ones, RFC 5764's AES-CM/SHA1-80).
SRTP_PROFILE_NAMES = ("aead_aes_128_gcm", "aead_aes_256_gcm", "aes128_cm_sha1_80")


@dataclass(frozen=True)
class MediaSettings:
    """The forwarding core and its ICE/RTCP behaviour (config section ``[media]``)."""

    # Host candidates are gathered only on these addresses.
    listen_ips: tuple[str, ...] = ("127.0.0.1",)
    # Written into candidates instead of the listen address (1:1 NAT, Docker).
    announced_ip: str = ""
    # UDP port range for ICE: the worker's shared socket takes its first free port (or,
    # with rtc_socket_per_peer, each peer connection one of its own); 0/0 lets the kernel choose.
    rtc_min_port: int = 0
    rtc_max_port: int = 0
    # Every peer connection of the worker (ICE host candidates of every publish and
    # subscribe) on one UDP socket per listen address, demultiplexed by ICE ufrag and
    # remote address; the C fan-out then sends a packet's copies with sendmmsg
    # (docs/media.md, "One UDP port per worker"). The default: rtc_udp_port = 0 binds that
    # socket at start on the first free port of rtc_min_port..rtc_max_port (the worker's
    # slice of it under a supervisor; 0/0: a port the kernel chooses). rtc_udp_port = N
    # binds port N instead (outside the range; worker i on N + i, docs/workers.md).
    rtc_udp_port: int = 0
    # true: a UDP socket of its own per peer connection, in rtc_min_port..rtc_max_port
    # (the behaviour before the shared socket became the default); not with rtc_udp_port.
    rtc_socket_per_peer: bool = False
    video_codecs: tuple[str, ...] = ("VP8", "H264")
    audio_codecs: tuple[str, ...] = ("opus",)
    # Packets kept per video producer to answer viewer NACKs. At 1.5 Mbit/s
    # (~150 packets/s) 1024 packets are ~7 s, well over any useful RTT.
    packet_cache_size: int = 1024
    # Minimum gap between keyframe requests sent to one producer. mediasoup
    # uses 1 s, LiveKit 0.5-1 s, Jitsi 200 ms; a deferred request is sent at
    # the end of the window so no viewer's request is ever lost.
    keyframe_request_interval_ms: int = 300
    # Replay each video producer's last complete keyframe to a starting
    # viewer, so its first picture does not wait for the publisher's answer
    # to a PLI (jasmin_sfu/media/keyframe_cache.py).
    keyframe_cache: bool = True
    rtcp_interval_ms: int = 1000
    # REMB toward the performer, sent with each receiver report: the highest
    # estimate of the viewers that watch (not paused, blocked by a private's
    # audience, or paused by audio first), clamped to [remb_min_bps,
    # remb_max_bps]; remb_min_bps when every watching viewer's video is paused
    # by audio first; remb_max_bps while none sent one (docs/media.md). A weak
    # viewer never pulls the others' picture down.
    remb_max_bps: int = 3_000_000
    remb_min_bps: int = 150_000
    # Audio/video m-sections (producers) one publish may carry; more is `bad_sdp`.
    # A camera is two (video, audio); the rest is room for a second source.
    max_producers_per_publisher: int = 4
    # SDP negotiations (publish, subscribe, answer, WHIP/WHEP) and keyframe replays that
    # run at once on a worker; the others wait their turn, each in a later turn of the
    # event loop, so the viewers already watching wait for a few joins' work, not a storm
    # batch's (negotiation_gate.py, docs/media.md "Join storms"). 1 bounds the loop's
    # turns tighter but, on a node short of CPU, let far fewer joins finish (bench/README.md).
    negotiations_at_once: int = 4
    # DTLS-SRTP profiles the node's connections offer, most preferred first (names in
    # SRTP_PROFILE_NAMES). The DTLS server's order decides (OpenSSL, BoringSSL): the node's
    # when it offers (a websocket viewer's subscribe), the peer's when the node answers (a
    # publisher, a WHEP viewer; there this list only limits what is accepted). 128-GCM
    # first: ~5 % less CPU per video protect than 256-GCM, aiortc's and mediasoup's first
    # (docs/media.md, "SRTP profile"; bench/srtp_profiles.py).
    srtp_profiles: tuple[str, ...] = ("aead_aes_128_gcm", "aead_aes_256_gcm", "aes128_cm_sha1_80")
    # Retransmissions to a viewer (docs/media.md): one packet at most
    # nack_max_retries times, at most once per the viewer's round trip
    # (nack_default_rtt_ms until its RTCP measured one), never when it would
    # arrive later than nack_max_delay_ms after the original, and in all at
    # most nack_budget_fraction of the viewer's REMB (remb_min_bps before it
    # sent one), in a bucket of half a second of that budget but at least
    # nack_budget_min_burst_bytes (a burst of resends the viewer always gets,
    # whatever its estimate; 1500: one full packet).
    nack_max_retries: int = 3
    nack_default_rtt_ms: int = 100
    nack_max_delay_ms: int = 1000
    nack_budget_fraction: float = 0.25
    nack_budget_min_burst_bytes: int = 1500
    # Audio first: pause the video of a viewer whose link cannot carry it
    # (REMB under half the forwarded rate and >= 10 % loss, 3 reports in a
    # row) and try it again after 10 s, doubling up to 60 s (docs/media.md).
    pause_video_on_congestion: bool = True
    # Per-viewer layers (docs/media.md, "Per-viewer layers"): each viewer's
    # estimate is its own REMB, clamped to [bwe_min_bps, bwe_max_bps], moved at
    # most bwe_max_jump times per report, bwe_start_bps before its first, less
    # bwe_audio_reserve_bps for its audio. Its layer goes down at once below
    # layer_keep_ratio of the layer's rate, up after layer_up_hold_ms above the
    # next layer's rate times layer_headroom and layer_min_dwell_ms after the
    # last switch; an up-switch undone within layer_failed_up_ms doubles the
    # hold, up to layer_backoff_max_ms. A viewer held below its best layer is
    # probed with padding every probe_interval_ms, doubling after each failed
    # probe up to probe_max_interval_ms, each probe lasting at most
    # probe_duration_ms. pause_video_on_congestion pauses video below the
    # lowest layer (false: the lowest layer is the floor).
    bwe_start_bps: int = 600_000
    bwe_min_bps: int = 30_000
    bwe_max_bps: int = 50_000_000
    bwe_max_jump: float = 10.0
    bwe_audio_reserve_bps: int = 40_000
    layer_headroom: float = 1.2
    layer_keep_ratio: float = 0.9
    layer_up_hold_ms: int = 4000
    layer_min_dwell_ms: int = 2000
    layer_failed_up_ms: int = 30000
    layer_backoff_max_ms: int = 60000
    probe_interval_ms: int = 5000
    probe_max_interval_ms: int = 30000
    probe_duration_ms: int = 30000
    # Accept simulcast publishers (a=simulcast + a=rid, up to 3 spatial layers,
    # VP8 or H264); each viewer then gets the layer it can take (docs/media.md,
    # "Layers"). false: a simulcast offer is refused with bad_sdp.
    simulcast: bool = True
    # Run each simulcast viewer's estimate, layer selector and probing (the
    # bwe_/layer_/probe_ keys) from the router (docs/media.md, "Per-viewer
    # layers", measured with shaped Chromium viewers). false: each viewer gets
    # the highest active layer within its cap.
    layer_adaptation: bool = True

    # -- derived values ------------------------------------------------------------

    @property
    def port_range(self) -> tuple[int, int]:
        """UDP ports for ICE host candidates; (0, 0) lets the kernel choose."""
        return (self.rtc_min_port, self.rtc_max_port)

    @property
    def shared_udp_port(self) -> bool:
        """Every peer connection of the worker on one shared socket (the default), not one each."""
        return not self.rtc_socket_per_peer

    @property
    def keyframe_request_interval_s(self) -> float:
        return self.keyframe_request_interval_ms / 1000.0

    @property
    def rtcp_interval_s(self) -> float:
        return self.rtcp_interval_ms / 1000.0

    @property
    def nack_default_rtt_s(self) -> float:
        return self.nack_default_rtt_ms / 1000.0

    @property
    def nack_max_delay_s(self) -> float:
        return self.nack_max_delay_ms / 1000.0

    @cached_property
    def adaptation(self) -> AdaptationPolicy:
        """The bwe_*, layer_* and probe_* keys as the per-viewer adaptation policy (ms become
        seconds; audio first is the selector's pause); the policy's other numbers keep their defaults."""
        return AdaptationPolicy(
            start_bps=self.bwe_start_bps,
            min_bps=self.bwe_min_bps,
            max_bps=self.bwe_max_bps,
            max_jump=self.bwe_max_jump,
            audio_reserve_bps=self.bwe_audio_reserve_bps,
            headroom=self.layer_headroom,
            keep_ratio=self.layer_keep_ratio,
            up_hold_s=self.layer_up_hold_ms / 1000.0,
            min_dwell_s=self.layer_min_dwell_ms / 1000.0,
            failed_up_s=self.layer_failed_up_ms / 1000.0,
            backoff_max_s=self.layer_backoff_max_ms / 1000.0,
            pause_video=self.pause_video_on_congestion,
            probe_interval_s=self.probe_interval_ms / 1000.0,
            probe_max_interval_s=self.probe_max_interval_ms / 1000.0,
            probe_duration_s=self.probe_duration_ms / 1000.0,
        )
