"""Versioned schema migrations of the accounts store: its own track, beside the ledger's.

The ledger keeps its version in ``schema_version``; accounts keep theirs in
``accounts_schema_version``, so both may live in one SQLite file or one
PostgreSQL schema without either refusing the other's version. Every table is
prefixed ``acc_`` for the same reason (the ledger already owns ``accounts``).

Same rules as ``jasmin_sfu.store.migrations``: one row per applied version,
each migration in its own transaction, a database newer than the code is
refused (``MigrationError``), and a released migration is never edited: add
the next one.

Times are integer microseconds since the epoch (as in the ledger). Only a
SHA-256 of a session token is stored, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from typing import Any, Awaitable, Callable

VERSION_TABLE = "accounts_schema_version"

# The same SQL runs on both dialects: TEXT, INTEGER, BIGINT and CHECK mean the
# same on SQLite and PostgreSQL, and booleans are INTEGER 0/1 on both.
_V1_COMMON = """
CREATE TABLE acc_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('member', 'performer', 'admin')),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    adult_confirmed_at BIGINT,
    last_login_at BIGINT,
    closed_at BIGINT
);
CREATE TABLE acc_sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('guest', 'user')),
    user_id TEXT REFERENCES acc_users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    adult_confirmed_at BIGINT,
    revoked_at BIGINT,
    CHECK ((kind = 'guest' AND user_id IS NULL) OR (kind = 'user' AND user_id IS NOT NULL))
);
CREATE INDEX acc_sessions_user ON acc_sessions (user_id);
CREATE INDEX acc_sessions_expiry ON acc_sessions (expires_at);
CREATE TABLE acc_performers (
    user_id TEXT PRIMARY KEY REFERENCES acc_users (id),
    display_name TEXT NOT NULL,
    bio TEXT NOT NULL,
    price_per_minute INTEGER NOT NULL CHECK (price_per_minute BETWEEN 1 AND 1000000),
    is_group INTEGER NOT NULL CHECK (is_group IN (0, 1)),
    updated_at BIGINT NOT NULL
);
CREATE TABLE acc_performer_categories (
    performer_id TEXT NOT NULL REFERENCES acc_performers (user_id),
    category TEXT NOT NULL,
    PRIMARY KEY (performer_id, category)
);
CREATE INDEX acc_performer_categories_category ON acc_performer_categories (category);
CREATE TABLE acc_group_members (
    group_id TEXT NOT NULL REFERENCES acc_performers (user_id),
    performer_id TEXT NOT NULL REFERENCES acc_performers (user_id),
    PRIMARY KEY (group_id, performer_id),
    CHECK (group_id <> performer_id)
);
CREATE INDEX acc_group_members_performer ON acc_group_members (performer_id);
CREATE TABLE acc_username_blacklist (
    username_key TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    until_at BIGINT
);
CREATE TABLE acc_payments (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES acc_users (id),
    idempotency_key TEXT NOT NULL,
    package_code TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    provider TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('approved', 'credited')),
    card_last4 TEXT CHECK (card_last4 IS NULL OR length(card_last4) = 4),
    card_expiry TEXT CHECK (card_expiry IS NULL OR length(card_expiry) = 5),
    created_at BIGINT NOT NULL,
    credited_at BIGINT,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX acc_payments_user ON acc_payments (user_id, created_at);
"""

# Version 2: privacy rights (docs/privacy.md). A member's optional profile with
# its two visibility settings, and the erasure journal: an erasure is recorded
# first (with the account closed, its sessions revoked and the username
# blacklisted, all in that one transaction), then carried out source by source,
# then marked done; a crash in between is resumed from the unfinished rows.
# The defaults are the most private choices (privacy by default, GDPR art. 25).
_V2_COMMON = """
CREATE TABLE acc_member_profiles (
    user_id TEXT PRIMARY KEY REFERENCES acc_users (id),
    display_name TEXT,
    gender TEXT,
    age_range TEXT,
    country TEXT,
    languages TEXT,
    about TEXT,
    profile_visibility TEXT NOT NULL DEFAULT 'nobody'
        CHECK (profile_visibility IN ('all_performers', 'performers_with_private', 'nobody')),
    mask_visibility TEXT NOT NULL DEFAULT 'private'
        CHECK (mask_visibility IN ('private', 'performers_with_private', 'public')),
    updated_at BIGINT NOT NULL
);
CREATE TABLE acc_erasures (
    user_id TEXT PRIMARY KEY REFERENCES acc_users (id),
    reason TEXT NOT NULL CHECK (reason IN ('member_request', 'inactive', 'support')),
    requested_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX acc_erasures_open ON acc_erasures (completed_at);
CREATE INDEX acc_sessions_created ON acc_sessions (kind, created_at)
"""

# Version 3: the username blacklist keeps a keyed hash of the name, never the name (docs/privacy.md,
# "Forget my data"). The key is a secret made at the first start and kept in acc_secrets, so every
# node sharing the store uses the same one and no config is needed; the hook below makes it and
# rewrites the plain rows of an older database, inside this version's transaction.
_V3_COMMON = """
CREATE TABLE acc_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
)
"""

BLACKLIST_SECRET = "username_blacklist"
# A hashed key: "h1:" + 64 hex digits (':' is outside the username alphabet, so no name looks like one).
BLACKLIST_HASH_PREFIX = "h1:"


def blacklist_hash(secret: str, username_key: str) -> str:
    """The blacklist's key for a case-folded username: HMAC-SHA256 under the node's secret."""
    if username_key.startswith(BLACKLIST_HASH_PREFIX):
        return username_key
    return BLACKLIST_HASH_PREFIX + hmac.new(bytes.fromhex(secret), username_key.encode(), hashlib.sha256).hexdigest()


def _new_secret() -> tuple[str, str, int]:
    return BLACKLIST_SECRET, secrets.token_hex(32), int(time.time() * 1_000_000)


def _v3_sqlite(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO acc_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", _new_secret()
    )
    secret = db.execute("SELECT value FROM acc_secrets WHERE name = ?", (BLACKLIST_SECRET,)).fetchone()[0]
    for (key,) in db.execute("SELECT username_key FROM acc_username_blacklist").fetchall():
        db.execute(
            "UPDATE acc_username_blacklist SET username_key = ? WHERE username_key = ?",
            (blacklist_hash(secret, key), key),
        )


async def _v3_postgres(con: Any) -> None:
    await con.execute(
        "INSERT INTO acc_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", *_new_secret()
    )
    secret = await con.fetchval("SELECT value FROM acc_secrets WHERE name = $1", BLACKLIST_SECRET)
    for r in await con.fetch("SELECT username_key FROM acc_username_blacklist"):
        await con.execute(
            "UPDATE acc_username_blacklist SET username_key = $1 WHERE username_key = $2",
            blacklist_hash(secret, r[0]),
            r[0],
        )


SQLITE: list[tuple[int, str]] = [(1, _V1_COMMON), (2, _V2_COMMON), (3, _V3_COMMON)]
POSTGRES: list[tuple[int, str]] = [(1, _V1_COMMON), (2, _V2_COMMON), (3, _V3_COMMON)]
SQLITE_HOOKS: dict[int, Callable[[sqlite3.Connection], None]] = {3: _v3_sqlite}
POSTGRES_HOOKS: dict[int, Callable[[Any], Awaitable[None]]] = {3: _v3_postgres}

LATEST = max(v for v, _ in SQLITE)
assert LATEST == max(v for v, _ in POSTGRES), "dialects must stay at the same version"
