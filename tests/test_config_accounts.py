"""Config of accounts and payments: safe defaults, and the rules that keep a node usable."""

from __future__ import annotations

import pytest

from jasmin_sfu.config import ConfigError, load_config


def test_defaults_trust_no_client_ids_and_charge_nothing_for_free() -> None:
    """Protects production: by default joins need tokens and no test processor gives credits away."""
    cfg = load_config(None, env={})
    assert cfg.accounts.enabled and not cfg.accounts.trust_client_ids
    assert cfg.payments.provider == "none"
    env = load_config(None, env={"JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true", "JASMIN_PAYMENTS_PROVIDER": "test"})
    assert env.accounts.trust_client_ids and env.payments.provider == "test"


@pytest.mark.parametrize("env,needle", [
    ({"JASMIN_ACCOUNTS_ENABLED": "false"}, "trust_client_ids"),
    ({"JASMIN_ACCOUNTS_GUEST_SESSION_TTL_S": str(16 * 86400)}, "guest_session_ttl_s"),
    ({"JASMIN_ACCOUNTS_ADULT_CONFIRMATION_TTL_S": "0"}, "adult_confirmation_ttl_s"),
    ({"JASMIN_ACCOUNTS_PASSWORD_MEMORY_KIB": "8"}, "password_memory_kib"),
    ({"JASMIN_PAYMENTS_PROVIDER": "stripe"}, "payments.provider"),
    ({"JASMIN_ACCOUNTS_TOKEN": "x"}, "JASMIN_ACCOUNTS_TOKEN"),
])
def test_bad_accounts_config_is_a_clear_error(env: dict[str, str], needle: str) -> None:
    """Protects operators: a node that could admit nobody, keep guest data too long or hash
    with an invalid argon2 cost does not start."""
    with pytest.raises(ConfigError, match=needle):
        load_config(None, env=env)
