"""Config of accounts and payments: safe defaults, and the rules that keep a node usable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jasmin_sfu.config import AccountsConfig, ConfigError, load_config
from jasmin_sfu.services.accounts import AccountsSettings, open_accounts


def test_defaults_trust_no_client_ids_and_charge_nothing_for_free() -> None:
    """Protects production: by default joins need tokens and no test processor gives credits away."""
    cfg = load_config(None, env={})
    assert cfg.accounts.enabled and not cfg.accounts.trust_client_ids
    assert cfg.payments.provider == "none"
    env = load_config(None, env={"JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true", "JASMIN_PAYMENTS_PROVIDER": "test"})
    assert env.accounts.trust_client_ids and env.payments.provider == "test"


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"JASMIN_ACCOUNTS_ENABLED": "false"}, "trust_client_ids"),
        ({"JASMIN_ACCOUNTS_GUEST_SESSION_TTL_S": str(16 * 86400)}, "guest_session_ttl_s"),
        ({"JASMIN_ACCOUNTS_ADULT_CONFIRMATION_TTL_S": "0"}, "adult_confirmation_ttl_s"),
        ({"JASMIN_ACCOUNTS_PASSWORD_MEMORY_KIB": "8"}, "password_memory_kib"),
        ({"JASMIN_PAYMENTS_PROVIDER": "stripe"}, "payments.provider"),
        ({"JASMIN_ACCOUNTS_TOKEN": "x"}, "JASMIN_ACCOUNTS_TOKEN"),
    ],
)
def test_bad_accounts_config_is_a_clear_error(env: dict[str, str], needle: str) -> None:
    """Protects operators: a node that could admit nobody, keep guest data too long or hash
    with an invalid argon2 cost does not start."""
    with pytest.raises(ConfigError, match=needle):
        load_config(None, env=env)


async def test_the_accounts_section_is_handed_to_the_service_as_is(tmp_path: Path) -> None:
    """Protects "declared once": [accounts] is the service's own AccountsSettings, handed to it
    unchanged, so a key set in the file or the environment reaches the lifetimes and the login
    throttle (a field-by-field copy that forgot one would show here)."""
    f = tmp_path / "j.toml"
    f.write_text(f"[accounts]\ndata_dir = {str(tmp_path)!r}\nsession_ttl_s = 1234\n")
    cfg = load_config(
        f, env={"JASMIN_ACCOUNTS_LOGIN_MAX_FAILURES_PER_USERNAME": "3", "JASMIN_ACCOUNTS_LOGIN_WINDOW_S": "60"}
    )
    assert AccountsConfig is AccountsSettings
    service = await open_accounts(cfg.accounts, time.time)
    try:
        assert service.settings is cfg.accounts
        assert service.settings.session_ttl_s == 1234
        t = service.throttle.settings
        assert (t.window_s, t.max_per_username, t.max_per_address) == (60.0, 3, 50)
        assert (tmp_path / "accounts.sqlite3").exists()
    finally:
        await service.close()
