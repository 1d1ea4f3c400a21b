"""Repository protocol of accounts, sessions, performers, the username blacklist and payments.

The service (``jasmin_sfu.services.accounts`` / ``payments``) holds the rules; a
store keeps rows and makes each method one atomic transaction:

* ``acc_users.username_key`` (the case-folded username) is UNIQUE, and
  ``create_user`` checks the blacklist inside the same transaction as the
  insert: a taken or blacklisted name raises ``DuplicateKeyError``.
* Sessions are found by the SHA-256 of their token; the token itself is never
  stored, so a leaked database yields no usable token.
* ``put_performer`` writes a profile, its categories and a group's members as
  one unit.
* ``insert_payment`` is idempotent on (user, idempotency key): it returns the
  row already stored for the key, if any, instead of inserting.

All times are integer microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class UserRow:
    """An account: a member, a performer (or a group account) or an admin."""

    id: str
    username: str
    username_key: str
    role: str  # member | performer | admin
    password_hash: str
    created_at: int
    adult_confirmed_at: int | None = None
    last_login_at: int | None = None
    closed_at: int | None = None


@dataclass(frozen=True)
class SessionRow:
    """A signed-in session (``kind='user'``) or a guest session (``kind='guest'``, no user)."""

    id: str
    token_hash: str
    kind: str  # user | guest
    user_id: str | None
    created_at: int
    expires_at: int
    adult_confirmed_at: int | None = None
    revoked_at: int | None = None


@dataclass(frozen=True)
class PerformerRow:
    """A performer's profile; ``group_members`` are performer user ids (group accounts only)."""

    user_id: str
    display_name: str
    bio: str
    price_per_minute: int  # hundredths of a credit per minute
    is_group: bool
    updated_at: int
    categories: tuple[str, ...] = ()
    group_members: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlacklistRow:
    """A username nobody may register, until ``until_at`` (None: for ever)."""

    username_key: str
    reason: str
    created_at: int
    until_at: int | None = None


@dataclass(frozen=True)
class PaymentRow:
    """One credit purchase. Only a card's last four digits and expiry (MM/YY) are ever kept."""

    id: str  # the processor's payment id; the ledger transfer id of the top-up
    user_id: str
    idempotency_key: str
    package_code: str
    amount_cents: int
    provider: str
    status: str  # approved | credited
    created_at: int
    card_last4: str | None = None
    card_expiry: str | None = None
    credited_at: int | None = None


class AccountsStore(Protocol):
    """A database holding accounts; each method is one transaction."""

    async def create_user(self, user: UserRow, performer: PerformerRow | None = None) -> None:
        """Insert a user (and its performer profile); ``DuplicateKeyError`` when the name is
        taken, or blacklisted at ``user.created_at``."""
        ...

    async def user_by_id(self, user_id: str) -> UserRow | None:
        """A user by id."""
        ...

    async def user_by_username(self, username_key: str) -> UserRow | None:
        """A user by case-folded username."""
        ...

    async def set_adult_confirmed(self, user_id: str, at: int) -> None:
        """Record the user's 18+ confirmation."""
        ...

    async def record_login(self, user_id: str, at: int, password_hash: str | None = None) -> None:
        """Note a login; a new ``password_hash`` replaces the stored one (rehash)."""
        ...

    async def blacklist_username(self, row: BlacklistRow) -> None:
        """Insert or replace a blacklist entry."""
        ...

    async def blacklisted(self, username_key: str, now: int) -> BlacklistRow | None:
        """The entry in force for this name at ``now``, if any."""
        ...

    async def create_session(self, row: SessionRow) -> None:
        """Insert a session."""
        ...

    async def session_by_token_hash(self, token_hash: str) -> SessionRow | None:
        """A session by the SHA-256 of its token (expired and revoked ones included)."""
        ...

    async def confirm_session_adult(self, session_id: str, at: int) -> None:
        """Record a guest session's 18+ confirmation."""
        ...

    async def revoke_session(self, session_id: str, at: int) -> bool:
        """Revoke one session; False when it was unknown or already revoked."""
        ...

    async def revoke_user_sessions(self, user_id: str, at: int) -> int:
        """Revoke every live session of a user; returns how many."""
        ...

    async def purge_sessions(self, now: int) -> int:
        """Delete expired and revoked sessions; returns how many."""
        ...

    async def performer(self, user_id: str) -> PerformerRow | None:
        """A performer's profile with its categories and group members."""
        ...

    async def put_performer(self, row: PerformerRow) -> None:
        """Insert or replace a profile, its categories and its group members."""
        ...

    async def payment(self, user_id: str, idempotency_key: str) -> PaymentRow | None:
        """The payment recorded for this key."""
        ...

    async def insert_payment(self, row: PaymentRow) -> PaymentRow:
        """Insert, or return the row already stored for (user, idempotency key)."""
        ...

    async def mark_payment_credited(self, payment_id: str, at: int) -> None:
        """The top-up reached the ledger."""
        ...

    async def schema_version(self) -> int:
        """The applied accounts migration version."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
