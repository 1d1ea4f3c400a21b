"""Versioned schema migrations of the social store: its own track, beside the ledger's and the accounts'.

TopMemberships, favourites, completed privates, My Rating, votes, the performer
mailing lists and the members' inboxes, messages to performers, performer search
attributes, saved search presets, RSS feed settings, performers' online events
and system messages. The version lives in ``social_schema_version`` and every
table is prefixed ``soc_``, so the store may share a PostgreSQL schema with the
ledger and the accounts (it reads ``acc_`` tables there, never writes them).

Same rules as ``jasmin_sfu.store.accounts_migrations``: one row per applied
version, each migration in its own transaction, a database newer than the code
is refused (``MigrationError``), and a released migration is never edited.

Times are integer microseconds since the epoch. Booleans are INTEGER 0/1 on both
dialects. Only a SHA-256 of a feed token is stored (the token is a capability to
read the feed, like a session token); an unsubscribe token is stored as is,
because it is written into every later mailing and can only unsubscribe.
"""

from __future__ import annotations

VERSION_TABLE = "social_schema_version"

_V1_COMMON = """
CREATE TABLE soc_top_members (
    user_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'lapsed')),
    started_at BIGINT NOT NULL,
    period INTEGER NOT NULL CHECK (period >= -1),
    paid_until BIGINT NOT NULL,
    auto_renew INTEGER NOT NULL CHECK (auto_renew IN (0, 1)),
    updated_at BIGINT NOT NULL,
    cancelled_at BIGINT,
    lapsed_at BIGINT
);
CREATE INDEX soc_top_members_due ON soc_top_members (status, auto_renew, paid_until);
CREATE TABLE soc_favourites (
    member_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, performer_id)
);
CREATE INDEX soc_favourites_performer ON soc_favourites (performer_id);
CREATE TABLE soc_privates (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    show_id TEXT NOT NULL,
    seconds INTEGER NOT NULL CHECK (seconds >= 0),
    ended_at BIGINT NOT NULL
);
CREATE INDEX soc_privates_pair ON soc_privates (member_id, performer_id);
CREATE TABLE soc_ratings (
    member_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    stars INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, performer_id)
);
CREATE TABLE soc_votes (
    member_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    period TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, performer_id, period)
);
CREATE INDEX soc_votes_period ON soc_votes (period, performer_id);
CREATE TABLE soc_mail_subscriptions (
    member_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, performer_id)
);
CREATE INDEX soc_mail_subscriptions_performer ON soc_mail_subscriptions (performer_id);
CREATE TABLE soc_mail_quota (
    performer_id TEXT PRIMARY KEY,
    last_sent_at BIGINT NOT NULL
);
CREATE TABLE soc_mailings (
    id TEXT PRIMARY KEY,
    performer_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    recipients INTEGER NOT NULL
);
CREATE INDEX soc_mailings_performer ON soc_mailings (performer_id, sent_at);
CREATE TABLE soc_inbox (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    mailing_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    unsubscribe_token TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX soc_inbox_member ON soc_inbox (member_id, created_at);
CREATE TABLE soc_messages (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX soc_messages_performer ON soc_messages (performer_id, created_at);
CREATE INDEX soc_messages_member ON soc_messages (member_id, created_at);
CREATE TABLE soc_performer_attrs (
    performer_id TEXT PRIMARY KEY,
    hair_colour TEXT,
    build TEXT,
    age INTEGER CHECK (age IS NULL OR age BETWEEN 18 AND 99),
    sexual_preference TEXT,
    ethnicity TEXT,
    camera_quality TEXT,
    languages TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE soc_presets (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    name TEXT NOT NULL,
    query TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (member_id, name)
);
CREATE TABLE soc_feeds (
    member_id TEXT PRIMARY KEY,
    token_hash TEXT UNIQUE,
    performers TEXT NOT NULL,
    categories TEXT NOT NULL,
    favourites INTEGER NOT NULL CHECK (favourites IN (0, 1)),
    system_messages INTEGER NOT NULL CHECK (system_messages IN (0, 1)),
    updated_at BIGINT NOT NULL
);
CREATE TABLE soc_online_events (
    id TEXT PRIMARY KEY,
    performer_id TEXT NOT NULL,
    show_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX soc_online_events_at ON soc_online_events (occurred_at);
CREATE TABLE soc_system_messages (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX soc_system_messages_at ON soc_system_messages (created_at);
"""

SQLITE: list[tuple[int, str]] = [(1, _V1_COMMON)]
POSTGRES: list[tuple[int, str]] = [(1, _V1_COMMON)]

LATEST = max(v for v, _ in SQLITE)
assert LATEST == max(v for v, _ in POSTGRES), "dialects must stay at the same version"
