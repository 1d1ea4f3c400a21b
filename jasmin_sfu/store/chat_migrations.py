"""Versioned schema migrations of the chat store: its own track, beside the ledger's and the accounts'.

The version lives in ``chat_schema_version`` and every table is prefixed
``chat_``, so the chat store may share one SQLite file or one PostgreSQL
schema with the other stores without either refusing the other's version.
Same rules as ``jasmin_sfu.store.accounts_migrations``: one row per applied
version, each migration in its own transaction, a database newer than the
code is refused (``MigrationError``), a released migration is never edited.

Times are integer microseconds since the epoch. Message ids are sortable
strings (``<16-digit microseconds>-<8 hex>``), so ``ORDER BY id`` is time order.
"""

from __future__ import annotations

VERSION_TABLE = "chat_schema_version"

# The same SQL runs on both dialects (TEXT, INTEGER, BIGINT, CHECK; booleans as 0/1).
_V1_COMMON = """
CREATE TABLE chat_messages (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    author_id TEXT NOT NULL,
    author_username TEXT NOT NULL,
    author_kind TEXT NOT NULL CHECK (author_kind IN ('guest', 'member', 'performer', 'admin')),
    top_member INTEGER NOT NULL CHECK (top_member IN (0, 1)),
    color TEXT,
    text TEXT NOT NULL,
    emoticons TEXT NOT NULL,
    private_to TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX chat_messages_room ON chat_messages (room, id);
CREATE INDEX chat_messages_author ON chat_messages (author_id);
CREATE TABLE chat_sanctions (
    room TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('ban', 'mute')),
    until_at BIGINT,
    actor_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, user_id, kind)
);
CREATE INDEX chat_sanctions_user ON chat_sanctions (user_id);
CREATE TABLE chat_moderation_log (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_username TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    action TEXT NOT NULL,
    target_id TEXT,
    reason TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_moderation_log_room ON chat_moderation_log (room, id);
CREATE TABLE chat_reports (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reporter_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    message_text TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (message_id, reporter_id)
);
CREATE INDEX chat_reports_room ON chat_reports (room, id);
CREATE TABLE chat_tips (
    transfer_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    show_session TEXT NOT NULL,
    member_id TEXT NOT NULL,
    member_username TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    units BIGINT NOT NULL CHECK (units > 0),
    counted INTEGER NOT NULL CHECK (counted IN (0, 1)),
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_tips_session ON chat_tips (room, show_session);
CREATE INDEX chat_tips_member ON chat_tips (member_id);
CREATE TABLE chat_rooms (
    room TEXT PRIMARY KEY,
    slow_s INTEGER NOT NULL CHECK (slow_s >= 0),
    updated_at BIGINT NOT NULL
);
"""

SQLITE: list[tuple[int, str]] = [(1, _V1_COMMON)]
POSTGRES: list[tuple[int, str]] = [(1, _V1_COMMON)]

LATEST = max(v for v, _ in SQLITE)
assert LATEST == max(v for v, _ in POSTGRES), "dialects must stay at the same version"
