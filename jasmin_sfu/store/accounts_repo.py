"""Repository protocol of accounts, sessions, performers, the username blacklist and payments.

The service (``jasmin_sfu.services.accounts`` / ``payments``) holds the rules; a
store keeps rows and makes each method one atomic transaction:

* ``acc_users.username_key`` (the case-folded username) is UNIQUE, and
  ``create_user`` checks the blacklist inside the same transaction as the
  insert: a taken or blacklisted name raises ``DuplicateKeyError``. The
  blacklist holds a keyed hash of each name, never the name (docs/privacy.md).
* Sessions are found by the SHA-256 of their token; the token itself is never
  stored, so a leaked database yields no usable token.
* ``put_performer`` writes a profile, its categories and a group's members as
  one unit.
* ``insert_payment`` is idempotent on (user, idempotency key): it returns the
  row already stored for the key, if any, instead of inserting, and says whether
  this call was the one that inserted.
* Privacy (docs/privacy.md): ``export_user`` returns every row of every
  accounts table that references the user; ``begin_erasure`` records an
  erasure, closes the account, revokes its sessions and blacklists the name in
  one transaction; ``erase_user`` then wipes the personal fields and keeps the
  payments (financial records) under the opaque user id, which is the pseudonym.

All times are integer microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# Who may see a member's profile fields, and who the loyalty rank ("mask").
PROFILE_VISIBILITIES = ("all_performers", "performers_with_private", "nobody")
MASK_VISIBILITIES = ("private", "performers_with_private", "public")
ERASURE_REASONS = ("member_request", "inactive", "support")
# An erased account's username_key: '#' is outside the username alphabet, so it
# can never collide with a real name, and the UNIQUE index stays satisfied.
ERASED_KEY_PREFIX = "#erased:"


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
    """A username nobody may register, until ``until_at`` (None: for ever).

    Written with the case-folded name; a store keeps only its keyed hash (accounts migration 3,
    ``accounts_migrations.blacklist_hash``), so a row read back holds the hash."""

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


@dataclass(frozen=True)
class MemberProfileRow:
    """A member's optional profile and its visibility settings (docs/product.md, "Privacy rules")."""

    user_id: str
    display_name: str | None = None
    gender: str | None = None
    age_range: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    languages: tuple[str, ...] = ()  # ISO 639-1 codes
    about: str | None = None
    profile_visibility: str = "nobody"
    mask_visibility: str = "private"
    updated_at: int = 0


@dataclass(frozen=True)
class ErasureRow:
    """One "forget my data" (or inactivity closure); ``completed_at`` None: still to finish."""

    user_id: str
    reason: str
    requested_at: int
    completed_at: int | None = None


# What ``export_user`` reads: (table, columns, condition on the user id ``{p}``).
# Secrets are not personal data worth handing out and would weaken the account
# if a download leaked: the password hash and token hashes are left out.
EXPORT_TABLES: tuple[tuple[str, str, str], ...] = (
    (
        "acc_users",
        "id, username, username_key, role, created_at, adult_confirmed_at, last_login_at, closed_at",
        "id = {p}",
    ),
    ("acc_sessions", "id, kind, user_id, created_at, expires_at, adult_confirmed_at, revoked_at", "user_id = {p}"),
    ("acc_member_profiles", "*", "user_id = {p}"),
    ("acc_performers", "*", "user_id = {p}"),
    ("acc_performer_categories", "*", "performer_id = {p}"),
    ("acc_group_members", "*", "group_id = {p} OR performer_id = {p}"),
    ("acc_payments", "*", "user_id = {p}"),
    ("acc_erasures", "*", "user_id = {p}"),
)
ERASED_NAME = "[erased]"

# ``erase_user``'s statements, the user id as ``{p}``; the sum of their row counts
# is the answer, and every WHERE skips what is already erased, so a rerun says 0.
ERASE_STATEMENTS: tuple[str, ...] = (
    "UPDATE acc_users SET username = '" + ERASED_NAME + "', username_key = '" + ERASED_KEY_PREFIX + "' || id,"
    " password_hash = '!', adult_confirmed_at = NULL, last_login_at = NULL, closed_at = coalesce(closed_at, {at})"
    " WHERE id = {p} AND username_key NOT LIKE '#%'",
    "DELETE FROM acc_sessions WHERE user_id = {p}",
    "DELETE FROM acc_member_profiles WHERE user_id = {p}",
    # Payments are financial records (10 years, docs/product.md) and stay; the card's
    # digits identify the card holder and are not needed to account for the money.
    "UPDATE acc_payments SET card_last4 = NULL, card_expiry = NULL WHERE user_id = {p}"
    " AND (card_last4 IS NOT NULL OR card_expiry IS NOT NULL)",
    "UPDATE acc_performers SET display_name = '" + ERASED_NAME + "', bio = '' WHERE user_id = {p}"
    " AND (display_name <> '" + ERASED_NAME + "' OR bio <> '')",
    "DELETE FROM acc_performer_categories WHERE performer_id = {p}",
    "DELETE FROM acc_group_members WHERE group_id = {p} OR performer_id = {p}",
)

LAST_PURCHASES_SQL = (
    "SELECT u.id, coalesce(max(p.created_at), u.created_at) FROM acc_users u"
    " LEFT JOIN acc_payments p ON p.user_id = u.id WHERE u.role = 'member' GROUP BY u.id, u.created_at"
)
INACTIVE_SQL = (
    "SELECT u.id FROM acc_users u WHERE u.role = 'member' AND u.closed_at IS NULL AND u.created_at < {p}"
    " AND coalesce(u.last_login_at, 0) < {p}"
    " AND NOT EXISTS (SELECT 1 FROM acc_payments p WHERE p.user_id = u.id AND p.created_at >= {p}) ORDER BY u.id"
)


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

    async def insert_payment(self, row: PaymentRow) -> tuple[PaymentRow, bool]:
        """Insert, or return the row already stored for (user, idempotency key); True when this
        call stored ``row`` (exactly one of racing twins)."""
        ...

    async def mark_payment_credited(self, payment_id: str, at: int) -> bool:
        """The top-up reached the ledger; True for the one call that moved it to ``credited``."""
        ...

    # -- privacy (migration 2) --------------------------------------------------------

    async def member_profile(self, user_id: str) -> MemberProfileRow | None:
        """A member's profile row (None: never set, so every field empty and the defaults apply)."""
        ...

    async def put_member_profile(self, row: MemberProfileRow) -> None:
        """Insert or replace a member's profile row."""
        ...

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row of every accounts table referencing ``user_id``, by table name, column by column
        (secrets excepted: the password hash and session token hashes are left out)."""
        ...

    async def begin_erasure(self, row: ErasureRow, blacklist_until: int | None) -> bool:
        """Record an erasure, close the account, revoke its sessions and blacklist its username until
        ``blacklist_until`` (None: for ever), all in one transaction. False when already recorded."""
        ...

    async def erase_user(self, user_id: str, at: int) -> int:
        """Wipe the personal fields of the account (username, password, profile, sessions, card digits),
        keeping the payment rows under the user id; rows touched (0 on a second run)."""
        ...

    async def open_erasures(self) -> list[ErasureRow]:
        """Erasures recorded but not completed (a crash in between): resume them."""
        ...

    async def complete_erasure(self, user_id: str, at: int) -> None:
        """Mark an erasure done."""
        ...

    async def last_purchases(self) -> dict[str, int]:
        """For every open member account: its last purchase time, or its creation time if it never bought."""
        ...

    async def inactive_members(self, before: int) -> list[str]:
        """Open member accounts with no login, purchase or creation at or after ``before``."""
        ...

    async def purge_guest_sessions(self, before: int, *, dry_run: bool = False) -> int:
        """Delete guest sessions created before ``before`` (guest data: 15 days); how many."""
        ...

    async def purge_blacklist(self, now: int, *, dry_run: bool = False) -> int:
        """Delete blacklist entries that lapsed at or before ``now``; how many."""
        ...

    async def schema_version(self) -> int:
        """The applied accounts migration version."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
