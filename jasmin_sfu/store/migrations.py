"""Versioned schema migrations, as ordered SQL per dialect.

``schema_version`` holds one row per applied version. A store applies, in order
and each in its own transaction, every migration above the stored version; a
database newer than the code is refused (``MigrationError``) rather than used.
Never edit a released migration: add the next one.
"""

from __future__ import annotations

# Flags, mirrored in jasmin_sfu.services.ledger: 1 = debits_must_not_exceed_credits,
# 2 = credits_must_not_exceed_debits. The CHECKs make the rule hold even if a bug
# above the store computed a wrong balance.
_V1_COMMON = """
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    ledger TEXT NOT NULL,
    code TEXT NOT NULL,
    flags INTEGER NOT NULL,
    user_data TEXT,
    debits_pending BIGINT NOT NULL DEFAULT 0,
    debits_posted BIGINT NOT NULL DEFAULT 0,
    credits_pending BIGINT NOT NULL DEFAULT 0,
    credits_posted BIGINT NOT NULL DEFAULT 0,
    timestamp BIGINT NOT NULL,
    CHECK (debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0),
    CHECK ((flags & 1) = 0 OR debits_pending + debits_posted <= credits_posted),
    CHECK ((flags & 2) = 0 OR credits_pending + credits_posted <= debits_posted)
);
CREATE TABLE pending_open (
    pending_id TEXT PRIMARY KEY,
    debit_account_id TEXT NOT NULL,
    credit_account_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX pending_open_expiry ON pending_open (expires_at);
CREATE INDEX pending_open_debit ON pending_open (debit_account_id);
CREATE INDEX pending_open_credit ON pending_open (credit_account_id);
"""

_V2_COMMON = """
CREATE TABLE cc_sessions (
    session_id TEXT PRIMARY KEY,
    wallet_id TEXT NOT NULL,
    payee_id TEXT NOT NULL,
    escrow_id TEXT NOT NULL,
    rate BIGINT NOT NULL,
    request_number INTEGER NOT NULL,
    reservation_id TEXT,
    granted_seconds INTEGER NOT NULL,
    final INTEGER NOT NULL,
    status TEXT NOT NULL,
    used_seconds BIGINT NOT NULL,
    charged BIGINT NOT NULL,
    payee_paid BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cc_sessions_wallet ON cc_sessions (wallet_id, status);
CREATE TABLE cc_requests (
    session_id TEXT NOT NULL,
    request_number INTEGER NOT NULL,
    kind TEXT NOT NULL,
    used_seconds BIGINT NOT NULL,
    answer TEXT NOT NULL,
    PRIMARY KEY (session_id, request_number)
);
"""

SQLITE: list[tuple[int, str]] = [
    (
        1,
        _V1_COMMON
        + """
CREATE TABLE transfers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    debit_account_id TEXT NOT NULL REFERENCES accounts (id),
    credit_account_id TEXT NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    ledger TEXT NOT NULL,
    code TEXT NOT NULL,
    flags INTEGER NOT NULL,
    pending_id TEXT UNIQUE,
    timeout_s INTEGER NOT NULL,
    user_data TEXT,
    body_hash TEXT NOT NULL,
    timestamp BIGINT NOT NULL
);
CREATE TRIGGER transfers_no_update BEFORE UPDATE ON transfers
BEGIN SELECT RAISE(ABORT, 'transfers are append-only'); END;
CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers
BEGIN SELECT RAISE(ABORT, 'transfers are append-only'); END;
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
BEGIN SELECT RAISE(ABORT, 'accounts cannot be deleted'); END;
""",
    ),
    (2, _V2_COMMON),
]

POSTGRES: list[tuple[int, str]] = [
    (
        1,
        _V1_COMMON
        + """
CREATE TABLE transfers (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    debit_account_id TEXT NOT NULL REFERENCES accounts (id),
    credit_account_id TEXT NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    ledger TEXT NOT NULL,
    code TEXT NOT NULL,
    flags INTEGER NOT NULL,
    pending_id TEXT UNIQUE,
    timeout_s INTEGER NOT NULL,
    user_data TEXT,
    body_hash TEXT NOT NULL,
    timestamp BIGINT NOT NULL
);
CREATE FUNCTION jasmin_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
FOR EACH ROW EXECUTE FUNCTION jasmin_append_only();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
FOR EACH ROW EXECUTE FUNCTION jasmin_append_only();
""",
    ),
    (2, _V2_COMMON),
]

LATEST = max(v for v, _ in SQLITE)
assert LATEST == max(v for v, _ in POSTGRES), "dialects must stay at the same version"
