"""The [media] keys of the retransmission policy, audio first and the REMB rule, and
the page that documents them (docs/media.md, issue 11 item 15 and issue 19)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jasmin_sfu.media.adaptation_policy import AdaptationPolicy
from jasmin_sfu.config import ConfigError, MediaConfig, load_config

REPO = Path(__file__).resolve().parent.parent
KEYS = (
    "rtc_udp_port",
    "rtc_socket_per_peer",
    "remb_min_bps",
    "remb_max_bps",
    "nack_max_retries",
    "nack_default_rtt_ms",
    "nack_max_delay_ms",
    "nack_budget_fraction",
    "nack_budget_min_burst_bytes",
    "pause_video_on_congestion",
    "keyframe_request_interval_ms",
    "packet_cache_size",
    "rtcp_interval_ms",
    "simulcast",
    "layer_adaptation",
    "negotiations_at_once",
    "srtp_profiles",
)
# Per-viewer layers (docs/media.md, "Per-viewer layers"; issue 12).
ADAPT_KEYS = (
    "bwe_start_bps",
    "bwe_min_bps",
    "bwe_max_bps",
    "bwe_max_jump",
    "bwe_audio_reserve_bps",
    "layer_headroom",
    "layer_keep_ratio",
    "layer_up_hold_ms",
    "layer_min_dwell_ms",
    "layer_failed_up_ms",
    "layer_backoff_max_ms",
    "probe_interval_ms",
    "probe_max_interval_ms",
    "probe_duration_ms",
)


def documented_defaults() -> dict[str, str]:
    """The `| key | default |` rows of docs/media.md's configuration table."""
    text = (REPO / "docs" / "media.md").read_text()
    table = text[text.index("## Configuration") : text.index("## Metrics")]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| ([^|]+?) \|", table, re.M)}


def test_docs_media_states_every_key_with_its_default() -> None:
    """Protects docs/media.md (the REMB rule, the retransmission and the per-viewer layer keys): every key it
    lists exists in [media] with the default it states, and none of these keys is missing."""
    documented = documented_defaults()
    assert set(documented) == set(KEYS) | set(ADAPT_KEYS)
    m = MediaConfig()
    for key, text in documented.items():
        value = getattr(m, key)
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, tuple):  # as a TOML list
            shown = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        assert text == shown, (key, text, value)


def test_readme_config_block_shows_the_keys_and_links_the_page() -> None:
    """Protects the README: its [media] block names the new keys and links docs/media.md."""
    readme = (REPO / "README.md").read_text()
    for key in ("nack_max_retries", "nack_budget_fraction", "pause_video_on_congestion", "remb_min_bps"):
        assert re.search(rf"^{key} = ", readme, re.M), key
    assert "(docs/media.md)" in readme


def test_media_keys_reach_the_media_core_from_file_and_env(tmp_path: Path) -> None:
    """Protects the path config -> MediaSettings -> the routers' RetransmitPolicy inputs."""
    f = tmp_path / "j.toml"
    f.write_text("[media]\nnack_max_retries = 5\nnack_budget_fraction = 0.5\n")
    cfg = load_config(
        f, env={"JASMIN_MEDIA_NACK_MAX_DELAY_MS": "800", "JASMIN_MEDIA_PAUSE_VIDEO_ON_CONGESTION": "false"}
    )
    s = cfg.media
    assert (s.nack_max_retries, s.nack_budget_fraction, s.nack_max_delay_s, s.pause_video_on_congestion) == (
        5,
        0.5,
        0.8,
        False,
    )
    assert s.simulcast is True
    off = load_config(env={"JASMIN_MEDIA_SIMULCAST": "false"}).media
    assert off.simulcast is False
    assert s.layer_adaptation is True
    assert load_config(env={"JASMIN_MEDIA_LAYER_ADAPTATION": "false"}).media.layer_adaptation is False
    assert s.nack_default_rtt_s == 0.1
    assert s.negotiations_at_once == 4
    assert load_config(env={"JASMIN_MEDIA_NEGOTIATIONS_AT_ONCE": "1"}).media.negotiations_at_once == 1


@pytest.mark.parametrize(
    "key,value,word",
    [
        ("NACK_MAX_RETRIES", "11", "nack_max_retries"),
        ("NACK_BUDGET_FRACTION", "1.5", "nack_budget_fraction"),
        ("NACK_BUDGET_MIN_BURST_BYTES", "-1", "nack_budget_min_burst_bytes"),
        ("NACK_DEFAULT_RTT_MS", "0", "nack_default_rtt_ms"),
        ("NACK_MAX_DELAY_MS", "50", "nack_max_delay_ms"),
        ("NEGOTIATIONS_AT_ONCE", "0", "negotiations_at_once"),
        ("NEGOTIATIONS_AT_ONCE", "65", "negotiations_at_once"),
        ("RTC_UDP_PORT", "80", "rtc_udp_port"),
        ("RTC_UDP_PORT", "70000", "rtc_udp_port"),
        ("SRTP_PROFILES", "aead_aes_128_gcm,aes_256_cm_sha1_80", "srtp_profiles: 'aes_256_cm_sha1_80' is not one of"),
        ("SRTP_PROFILES", "", "srtp_profiles must name at least one"),
        ("SRTP_PROFILES", "aead_aes_128_gcm,aead_aes_128_gcm", "srtp_profiles names a profile twice"),
    ],
)
def test_bad_media_values_name_the_key(key: str, value: str, word: str) -> None:
    """Protects operators from typos: an out-of-range value is a config error naming the key."""
    with pytest.raises(ConfigError, match=word):
        load_config(env={f"JASMIN_MEDIA_{key}": value})


def test_adaptation_defaults_are_the_policy_defaults() -> None:
    """Protects the one home of the numbers: [media] defaults give exactly AdaptationPolicy()'s
    defaults (a default changed in one place and not the other would show here), and they
    pass the policy's own validation."""
    policy = load_config(env={}).media.adaptation
    assert policy == AdaptationPolicy()
    policy.validate()


def test_adaptation_keys_reach_the_policy_from_file_and_env(tmp_path: Path) -> None:
    """Protects the path config -> MediaSettings.adaptation (ms become seconds; the audio-first
    switch is the selector's pause)."""
    f = tmp_path / "j.toml"
    f.write_text("[media]\nlayer_headroom = 1.5\nlayer_up_hold_ms = 6000\nbwe_max_jump = 4.0\n")
    cfg = load_config(
        f, env={"JASMIN_MEDIA_PROBE_INTERVAL_MS": "2500", "JASMIN_MEDIA_PAUSE_VIDEO_ON_CONGESTION": "false"}
    )
    a = cfg.media.adaptation
    assert (a.headroom, a.up_hold_s, a.max_jump, a.probe_interval_s, a.pause_video) == (1.5, 6.0, 4.0, 2.5, False)
    a.validate()


@pytest.mark.parametrize(
    "key,value,word",
    [
        ("BWE_MIN_BPS", "0", "bwe_min_bps"),
        ("BWE_START_BPS", "10", "bwe_start_bps"),
        ("BWE_MAX_JUMP", "0.5", "bwe_max_jump"),
        ("BWE_AUDIO_RESERVE_BPS", "-1", "bwe_audio_reserve_bps"),
        ("LAYER_HEADROOM", "0.9", "layer_headroom"),
        ("LAYER_KEEP_RATIO", "1.1", "layer_keep_ratio"),
        ("LAYER_UP_HOLD_MS", "90000", "layer_up_hold_ms"),
        ("LAYER_MIN_DWELL_MS", "-5", "layer_min_dwell_ms"),
        ("PROBE_INTERVAL_MS", "50", "probe_interval_ms"),
        ("PROBE_MAX_INTERVAL_MS", "1000", "probe_max_interval_ms"),
        ("PROBE_DURATION_MS", "1000", "probe_duration_ms"),
    ],
)
def test_bad_adaptation_values_name_the_key(key: str, value: str, word: str) -> None:
    """Protects operators: an adaptation value out of range (or out of order with its
    neighbour) is a config error naming the key, never a selector that divides by zero."""
    with pytest.raises(ConfigError, match=word):
        load_config(env={f"JASMIN_MEDIA_{key}": value})


def test_the_media_section_is_the_media_cores_settings() -> None:
    """Protects "declared once": [media] is the media core's own MediaSettings (no second struct
    restating its fields), and its derived values (seconds, the port range, the policy) are no
    config keys: setting one by its derived name is an unknown variable, not a silent no-op."""
    from jasmin_sfu.media.settings import MediaSettings

    assert MediaConfig is MediaSettings
    m = load_config(
        env={
            "JASMIN_MEDIA_RTC_MIN_PORT": "40000",
            "JASMIN_MEDIA_RTC_MAX_PORT": "40100",
            "JASMIN_MEDIA_RTCP_INTERVAL_MS": "250",
        }
    ).media
    assert isinstance(m, MediaSettings)
    assert (m.port_range, m.rtcp_interval_s, m.keyframe_request_interval_s) == ((40000, 40100), 0.25, 0.3)
    for derived in ("RTCP_INTERVAL_S", "PORT_RANGE", "ADAPTATION"):
        with pytest.raises(ConfigError, match=f"unknown variable JASMIN_MEDIA_{derived}"):
            load_config(env={f"JASMIN_MEDIA_{derived}": "1"})


def test_the_shared_udp_port_is_the_default_and_a_fixed_one_must_lie_outside_the_range() -> None:
    """Protects media.rtc_udp_port and media.rtc_socket_per_peer: by default the worker's peer
    connections share one socket on a free port of the range (rtc_udp_port 0, no socket per
    peer); a fixed port is taken as given, from TOML or JASMIN_MEDIA_*; a fixed port inside
    rtc_min_port..rtc_max_port would collide with the range's sockets, so it is refused."""
    m = load_config(env={}).media
    assert (m.rtc_udp_port, m.rtc_socket_per_peer, m.shared_udp_port) == (0, False, True)
    assert load_config(env={"JASMIN_MEDIA_RTC_UDP_PORT": "41000"}).media.rtc_udp_port == 41000
    env = {"JASMIN_MEDIA_RTC_MIN_PORT": "40000", "JASMIN_MEDIA_RTC_MAX_PORT": "40999"}
    with pytest.raises(ConfigError, match="rtc_udp_port must lie outside"):
        load_config(env={**env, "JASMIN_MEDIA_RTC_UDP_PORT": "40500"})


def test_socket_per_peer_is_read_and_refused_with_a_fixed_port(tmp_path: Path) -> None:
    """Protects media.rtc_socket_per_peer: true from TOML or JASMIN_MEDIA_RTC_SOCKET_PER_PEER
    turns the shared socket off (with the range, or 0/0); together with a fixed rtc_udp_port it
    is a ConfigError naming both keys, from either layer."""
    path = tmp_path / "jasmin.toml"
    path.write_text("[media]\nrtc_socket_per_peer = true\nrtc_min_port = 40000\nrtc_max_port = 40999\n")
    m = load_config(str(path), env={}).media
    assert (m.rtc_socket_per_peer, m.shared_udp_port, m.port_range) == (True, False, (40000, 40999))
    assert load_config(env={"JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "true"}).media.rtc_socket_per_peer is True
    assert load_config(env={"JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "false"}).media.rtc_socket_per_peer is False
    both = "rtc_udp_port .* and media.rtc_socket_per_peer = true .* contradict each other"
    with pytest.raises(ConfigError, match=both):
        load_config(str(path), env={"JASMIN_MEDIA_RTC_UDP_PORT": "41000"})
    with pytest.raises(ConfigError, match=both):
        load_config(env={"JASMIN_MEDIA_RTC_UDP_PORT": "41000", "JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "1"})
    with pytest.raises(ConfigError, match="rtc_socket_per_peer"):
        load_config(env={"JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "sometimes"})


def test_srtp_profiles_reach_the_media_core_from_file_and_env(tmp_path: Path) -> None:
    """Protects media.srtp_profiles' path: a TOML list or a comma-separated variable gives the
    ordered tuple the node's peer connections offer (tests/integration/test_srtp_negotiation.py)."""
    f = tmp_path / "j.toml"
    f.write_text('[media]\nsrtp_profiles = ["aead_aes_256_gcm", "aes128_cm_sha1_80"]\n')
    assert load_config(f).media.srtp_profiles == ("aead_aes_256_gcm", "aes128_cm_sha1_80")
    env = {"JASMIN_MEDIA_SRTP_PROFILES": "aes128_cm_sha1_80, aead_aes_128_gcm"}
    assert load_config(f, env=env).media.srtp_profiles == ("aes128_cm_sha1_80", "aead_aes_128_gcm")
