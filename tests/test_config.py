"""Config: defaults -> TOML (unknown keys are errors) -> JASMIN_* env -> validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from jasmin_sfu.config import Config, ConfigError, load_config


def test_defaults_are_loopback_and_valid() -> None:
    """Protects `make run`: the embedded defaults start a local daemon with no file or env."""
    cfg = load_config(None, env={})
    assert cfg == Config()
    assert cfg.server.host == "127.0.0.1" and cfg.media.listen_ips == ("127.0.0.1",)


def test_file_then_env_precedence(tmp_path: Path) -> None:
    """Protects precedence: the environment overrides the file, which overrides defaults."""
    f = tmp_path / "j.toml"
    f.write_text(
        '[server]\nport = 9000\nhost = "0.0.0.0"\n[media]\nlisten_ips = ["10.0.0.5"]\nannounced_ip = "203.0.113.7"\n'
    )
    cfg = load_config(f, env={"JASMIN_SERVER_PORT": "9100", "JASMIN_MEDIA_VIDEO_CODECS": "H264,VP8"})
    assert cfg.server.port == 9100
    assert cfg.server.host == "0.0.0.0"
    assert cfg.media.listen_ips == ("10.0.0.5",)
    assert cfg.media.announced_ip == "203.0.113.7"
    assert cfg.media.video_codecs == ("H264", "VP8")


@pytest.mark.parametrize(
    "toml,needle",
    [
        ("[server]\nprot = 1\n", "unknown key server.prot"),
        ("[servr]\nport = 1\n", "unknown section [servr]"),
        ('[server]\nport = "x"\n', "expected an integer"),
        ("[server]\nport = 70000\n", "server.port"),
        ('[media]\nlisten_ips = ["localhost"]\n', "not an IP address"),
        ('[media]\nvideo_codecs = ["VP9"]\n', "video_codecs"),
        ("[media]\npacket_cache_size = 1000\n", "power of two"),
        ("[media]\nrtc_min_port = 50000\nrtc_max_port = 40000\n", "rtc_min_port"),
        ("[server]\nport = \n", "j.toml"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, toml: str, needle: str) -> None:
    """Protects operators from silent typos: every bad key or value names itself."""
    f = tmp_path / "j.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert needle in str(e.value)


def test_unknown_environment_variable_is_an_error() -> None:
    """Protects against JASMIN_* typos being ignored."""
    with pytest.raises(ConfigError, match="JASMIN_SERVER_PROT"):
        load_config(None, env={"JASMIN_SERVER_PROT": "1"})
    with pytest.raises(ConfigError, match="expected a boolean"):
        load_config(None, env={"JASMIN_SERVER_DEMO_PAGE": "maybe"})


async def test_the_shows_section_reaches_each_show_unchanged() -> None:
    """Protects "declared once": [shows] is handed to the show registry as is (no second struct
    restating sneak_peek_s and auto_accept), so the values of the environment reach the machine
    of every show it opens."""
    from jasmin_sfu.media.worker import Worker
    from jasmin_sfu.shows.registry import ShowRegistry

    cfg = load_config(None, env={"JASMIN_SHOWS_SNEAK_PEEK_S": "7.5", "JASMIN_SHOWS_AUTO_ACCEPT": "true"})
    worker = Worker(cfg.media)
    try:
        shows = ShowRegistry(worker, settings=cfg.shows)
        machine = shows.open("s1").machine
        assert (machine.sneak_peek_s, machine.auto_accept) == (7.5, True)
        await shows.close("s1")
    finally:
        await worker.close()


def test_the_privacy_section_is_the_retention_jobs_settings() -> None:
    """Protects "declared once": [privacy] is the privacy service's own PrivacySettings, which the
    retention job reads as is (no RetentionSettings restating the limits under other names), so
    a limit set in the environment reaches both the cut-offs and the report's words."""
    from jasmin_sfu.config import PrivacyConfig
    from jasmin_sfu.services.privacy import BLACKLIST, USAGE, PrivacySettings
    from jasmin_sfu.services.retention import build_policy, category_rules

    assert PrivacyConfig is PrivacySettings
    pv = load_config(
        None, env={"JASMIN_PRIVACY_USAGE_RETENTION_DAYS": "90", "JASMIN_PRIVACY_USERNAME_BLACKLIST_DAYS": "30"}
    ).privacy
    day_us = 86400 * 1_000_000
    policy = build_policy(1000 * day_us, pv, {})
    assert policy.usage_before_us == 910 * day_us and policy.guest_before_us == 985 * day_us
    rules = category_rules(pv)
    assert rules[USAGE].startswith("90 days") and rules[BLACKLIST] == "30 days after an erasure"


async def test_the_billing_section_reaches_private_billing_as_is(tmp_path: Path) -> None:
    """Protects "declared once": [billing] is handed to the private billing unchanged (no
    BillingSettings restating node_id, default_price_per_minute and warn_at_s), so values of
    the file and the environment are the ones that bill."""
    from jasmin_sfu.shows.billing import open_billing

    f = tmp_path / "j.toml"
    f.write_text(f'[billing]\ndata_dir = {str(tmp_path)!r}\nnode_id = "n7"\nvip_check_interval_s = 0\n')
    cfg = load_config(f, env={"JASMIN_BILLING_DEFAULT_PRICE_PER_MINUTE": "350", "JASMIN_BILLING_WARN_AT_S": "30,5"})
    stack = await open_billing(cfg.billing, sinks={})
    try:
        s = stack.billing.settings
        assert s is cfg.billing
        assert (s.node_id, s.default_price_per_minute, s.warn_at_s) == ("n7", 350, (30, 5))
    finally:
        await stack.close()
