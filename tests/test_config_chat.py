"""The [chat] config section: defaults, file and environment, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from jasmin_sfu.config import ConfigError, load_config


def test_chat_defaults_match_the_documented_limits() -> None:
    """Protects the numbers docs/chat.md promises: members 5 / 10 s, guests 1 / 10 s, no Redis."""
    c = load_config(env={}).chat
    assert (c.member_messages, c.member_window_s, c.guest_messages, c.guest_window_s) == (5, 10.0, 1, 10.0)
    assert (c.redis_url, c.redis_prefix, c.tip_performer_share_bp) == ("", "jasmin", 5000)


def test_chat_settings_from_file_and_env_and_bad_values_are_refused(tmp_path: Path) -> None:
    """Protects operators from typos: the file and JASMIN_CHAT_* set the section, and a zero
    limit, a share above 100 %, a glob in the prefix or a non-Redis URL name the key."""
    f = tmp_path / "j.toml"
    f.write_text('[chat]\nredis_url = "redis://127.0.0.1:6379/0"\nguest_messages = 2\n')
    c = load_config(f, env={"JASMIN_CHAT_REDIS_PREFIX": "site1"}).chat
    assert (c.redis_url, c.guest_messages, c.redis_prefix) == ("redis://127.0.0.1:6379/0", 2, "site1")
    for key, value, word in [
        ("MEMBER_MESSAGES", "0", "_messages"),
        ("TIP_PERFORMER_SHARE_BP", "10001", "tip_performer_share_bp"),
        ("REDIS_PREFIX", "a*", "redis_prefix"),
        ("REDIS_URL", "http://x", "redis_url"),
        ("GUEST_WINDOW_S", "0", "_window_s"),
    ]:
        with pytest.raises(ConfigError, match=word):
            load_config(env={f"JASMIN_CHAT_{key}": value})
    with pytest.raises(ConfigError, match="unknown key chat.colour"):
        f.write_text('[chat]\ncolour = "red"\n')
        load_config(f, env={})


async def test_the_chat_section_is_handed_to_the_service_as_is(tmp_path: Path) -> None:
    """Protects "declared once": [chat] is the chat service's own ChatSettings, handed to it
    unchanged by open_chat (no ChatLimits restating the limits field by field), so a limit set
    in the environment is the one the rooms apply."""
    import time

    from jasmin_sfu.config import ChatConfig
    from jasmin_sfu.services.chat import ChatSettings, open_chat

    assert ChatConfig is ChatSettings
    cfg = load_config(
        env={
            "JASMIN_CHAT_STAFF_MESSAGES": "7",
            "JASMIN_CHAT_HISTORY_ON_JOIN": "12",
            "JASMIN_ACCOUNTS_DATA_DIR": str(tmp_path),
        }
    )
    chat = await open_chat(cfg.chat, cfg.accounts, time.time)
    try:
        assert chat.limits is cfg.chat
        assert (chat.limits.staff_messages, chat.limits.history_on_join) == (7, 12)
    finally:
        await chat.close()
