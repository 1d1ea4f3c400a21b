"""Accounts: guests, members, performers (and group accounts), admins; sessions and the 18+ gate.

Who is who (docs/product.md, "People"):

* a **guest** has no account: ``start_guest`` gives it a session token, and the
  token carries its 18+ confirmation (a guest session lives at most
  ``guest_session_ttl_s``, and docs/product.md keeps guest data 15 days at most);
* a **member** registers (username + password) and logs in; its 18+
  confirmation is stored on the account and remembered ``adult_confirmation_ttl_s``
  (a year, docs/product.md);
* a **performer** account is created by an admin with a profile: display name,
  bio, per-minute price in hundredths of a credit, categories. A **group
  account** is a performer account listing other performers: its show is theirs
  too. Performers and admins are identity-checked adults, so the 18+ gate never
  stops them;
* an **admin** (support) account is created from the command line.

Tokens: ``jas_`` + 32 random bytes (URL-safe base64), returned once. Only their
SHA-256 is stored (a random 256-bit secret needs no slow hash), so a copy of
the database yields no usable token. A token expires (``session_ttl_s``,
``guest_session_ttl_s``) and can be revoked (logout).

Passwords: argon2id (argon2-cffi) in a small thread pool: a hash costs about
50 ms of CPU and 64 MiB at the defaults, so it must never run on the event loop
that forwards media, and two threads bound both CPU and memory under a login
flood. A login for an unknown name verifies against a dummy hash, so the answer
time does not tell which names exist.

Time is injected (``clock``: epoch seconds); rows hold integer microseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Protocol, Sequence

from jasmin_sfu.services.errors import (
    AccountNotFoundError,
    AccountValidationError,
    AdultConfirmationRequiredError,
    InvalidCredentialsError,
    InvalidTokenError,
    LoginRateLimitedError,
    NotPermittedError,
    NotShowOwnerError,
    UsernameUnavailableError,
)
from jasmin_sfu.services.login_throttle import LoginThrottle, ThrottleSettings, Windows
from jasmin_sfu.store.accounts_repo import AccountsStore, BlacklistRow, PerformerRow, SessionRow, UserRow
from jasmin_sfu.store.errors import DuplicateKeyError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
US = 1_000_000

GUEST = "guest"
MEMBER = "member"
PERFORMER = "performer"
ADMIN = "admin"

# Usernames double as show ids (a performer's show is its username), so they use
# a subset of the signaling id alphabet.
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{3,32}\Z")
RESERVED_USERNAMES = frozenset(
    {"admin", "administrator", "support", "staff", "moderator", "system", "root", "jasmin", "guest", "api"}
)
MIN_PASSWORD = 8
# argon2 hashes any length, but a megabyte password per request is a cheap DoS.
MAX_PASSWORD = 256
TOKEN_PREFIX = "jas_"
TOKEN_RE = re.compile(r"^jas_[A-Za-z0-9_-]{43}\Z")

# docs/product.md, "Categories": the nude ones, then the two without nudity.
NUDE_CATEGORIES = ("girl", "mature_woman", "fetish", "boy", "gay", "transgender", "couple", "lesbian")
NON_NUDE_CATEGORIES = ("hot_flirt", "celebrity")
CATEGORIES = NUDE_CATEGORIES + NON_NUDE_CATEGORIES
# Same bounds as signaling's show.settings.
MIN_PRICE, MAX_PRICE = 1, 1_000_000
MAX_DISPLAY_NAME = 64
MAX_BIO = 2000
MAX_GROUP_MEMBERS = 16
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class AccountsSettings:
    """Accounts, sessions and signaling tokens (docs/accounts.md): the config section ``[accounts]``.

    Declared once, here: jasmin_sfu/config.py loads this class as the section (``AccountsConfig``
    there is this class), and the daemon hands it to :func:`open_accounts` as is.
    """

    enabled: bool = True
    # Embedded default: accounts.sqlite3 in this directory.
    data_dir: str = "var"
    # PostgreSQL instead of SQLite (empty: SQLite in data_dir). May be the ledger's database.
    dsn: str = ""
    # Legacy: trust `member_id` / `performer_id` in a token-less signaling `join`.
    # Never in production: anybody could then spend any member's credits.
    trust_client_ids: bool = False
    # `make run`'s demo accounts (jasmin_sfu/services/demo.py): seeded at start, with public
    # passwords, only while both dsn and billing.ledger_dsn are empty. Production on SQLite: false.
    seed_demo: bool = True
    session_ttl_s: int = 30 * 86400
    # docs/product.md: guest data is kept 15 days at most (config.py validates it).
    guest_session_ttl_s: int = 86400
    # docs/product.md: the 18+ confirmation is remembered for a year.
    adult_confirmation_ttl_s: int = 365 * 86400
    # argon2id cost (RFC 9106's second recommended option: t=3, 64 MiB, p=4).
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    password_parallelism: int = 4
    # How often expired and revoked sessions are deleted.
    purge_interval_s: float = 3600.0
    # Login throttling: failed logins per username / per client address within
    # the window before `rate_limited` (jasmin_sfu/services/login_throttle.py).
    login_window_s: float = 900.0
    login_max_failures_per_username: int = 10
    login_max_failures_per_address: int = 50


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for. ``id`` is the user id, or a guest's session id."""

    kind: str  # guest | member | performer | admin
    id: str
    session_id: str
    username: str | None
    adult_confirmed: bool
    expires_at: float  # the token's expiry, epoch seconds

    @property
    def is_guest(self) -> bool:
        """No account behind the token."""
        return self.kind == GUEST


@dataclass(frozen=True)
class IssuedToken:
    """A new session: the token (shown once) and who it is."""

    token: str
    principal: Principal


@dataclass(frozen=True)
class PerformerProfile:
    """A performer's public profile; ``group_members`` are usernames (group accounts only)."""

    user_id: str
    username: str
    display_name: str
    bio: str
    price_per_minute: int
    categories: tuple[str, ...]
    is_group: bool
    group_members: tuple[str, ...]


class PasswordHashing(Protocol):
    """Slow password hashing, off the event loop."""

    async def hash(self, password: str) -> str:
        """A new salted hash."""
        ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches (False for a malformed hash too)."""
        ...

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the current ones."""
        ...

    def close(self) -> None:
        """Stop the worker threads."""
        ...


class Argon2Hashing:
    """argon2id through argon2-cffi, in ``threads`` worker threads (CFFI drops the GIL)."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4, threads: int = 2) -> None:
        from argon2 import PasswordHasher

        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")

    async def hash(self, password: str) -> str:
        """A new salted argon2id hash."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._ph.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches."""
        from argon2.exceptions import InvalidHashError, VerificationError

        def go() -> bool:
            try:
                return bool(self._ph.verify(password_hash, password))
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(self._pool, go)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the stored hash used other parameters."""
        try:
            return bool(self._ph.check_needs_rehash(password_hash))
        except Exception:  # noqa: BLE001 - a malformed stored hash: replace it at the next login
            return True

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False)


def token_hash(token: str) -> str:
    """The stored form of a token: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def username_key(username: str) -> str:
    """Usernames are unique regardless of case."""
    return username.casefold()


def check_username(username: Any) -> str:
    """A valid username or ``AccountValidationError``."""
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise AccountValidationError("username", "3-32 characters of A-Z a-z 0-9 _")
    return username


def check_password(password: Any, username: str | None = None) -> str:
    """A password acceptable for a new account (NIST 800-63B: length, not composition rules)."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountValidationError("password", f"{MIN_PASSWORD}-{MAX_PASSWORD} characters")
    if username is not None and password.casefold() == username.casefold():
        raise AccountValidationError("password", "must not be the username")
    return password


def check_price(price: Any) -> int:
    """A per-minute price in hundredths of a credit."""
    if not isinstance(price, int) or isinstance(price, bool) or not MIN_PRICE <= price <= MAX_PRICE:
        raise AccountValidationError("price_per_minute", f"{MIN_PRICE}..{MAX_PRICE} hundredths of a credit")
    return price


def check_categories(categories: Any) -> tuple[str, ...]:
    """Known, distinct categories; nude and non-nude ones never mix (Celebrity: no nudity, even in private)."""
    if not isinstance(categories, (list, tuple)) or not all(isinstance(c, str) for c in categories):
        raise AccountValidationError("categories", "a list of category codes")
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise AccountValidationError("categories", f"unknown {unknown[0][:32]!r}; known: {', '.join(CATEGORIES)}")
    if len(set(categories)) != len(categories):
        raise AccountValidationError("categories", "listed twice")
    if set(categories) & set(NUDE_CATEGORIES) and set(categories) & set(NON_NUDE_CATEGORIES):
        raise AccountValidationError(
            "categories", "hot_flirt and celebrity (no nudity) cannot mix with nude categories"
        )
    return tuple(sorted(categories))


def check_text(field: str, value: Any, max_len: int, *, min_len: int = 0, newlines: bool = False) -> str:
    """Free text without control characters (newlines allowed where asked)."""
    if not isinstance(value, str):
        raise AccountValidationError(field, "a string")
    value = value.strip()
    if not min_len <= len(value) <= max_len:
        raise AccountValidationError(field, f"{min_len}-{max_len} characters")
    if _CONTROL.search(value) or (not newlines and "\n" in value):
        raise AccountValidationError(field, "no control characters")
    return value


class AccountsService:
    """The rules over an ``AccountsStore``; time from an injected clock."""

    def __init__(
        self,
        store: AccountsStore,
        clock: Clock,
        settings: AccountsSettings = AccountsSettings(),
        hashing: PasswordHashing | None = None,
        throttle_windows: Windows | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.hashing: PasswordHashing = hashing or Argon2Hashing(
            settings.password_time_cost,
            settings.password_memory_kib,
            settings.password_parallelism,
        )
        self._dummy_hash: str | None = None
        self.throttle = LoginThrottle(
            ThrottleSettings(
                settings.login_window_s,
                settings.login_max_failures_per_username,
                settings.login_max_failures_per_address,
            ),
            clock,
            # Shared by every node through Redis with [cluster]; this process's memory otherwise.
            throttle_windows,
        )
        # Called with (user_id, session_id) after a revocation: (None, sid) for one
        # token, (uid, None) for every token of an account. The daemon ends the
        # websockets that joined with a revoked token (docs/privacy.md).
        self.revocation_listeners: list[Callable[[str | None, str | None], None]] = []

    def _revoked(self, user_id: str | None, session_id: str | None) -> None:
        for listener in list(self.revocation_listeners):
            try:
                listener(user_id, session_id)
            except Exception:  # noqa: BLE001 - a listener's bug must not undo the revocation
                log.exception("revocation listener failed", extra={"user_id": user_id, "session_id": session_id})

    def now_us(self) -> int:
        """The injected clock in integer microseconds."""
        return round(self.clock() * US)

    async def close(self) -> None:
        """Close the store and the hashing threads."""
        self.hashing.close()
        await self.store.close()

    # -- sessions -----------------------------------------------------------------------

    async def _issue(self, kind: str, user: UserRow | None, ttl_s: int, adult_at: int | None = None) -> IssuedToken:
        now = self.now_us()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = SessionRow(
            id="s_" + secrets.token_hex(12),
            token_hash=token_hash(token),
            kind=kind,
            user_id=user.id if user else None,
            created_at=now,
            expires_at=now + ttl_s * US,
            adult_confirmed_at=adult_at,
        )
        await self.store.create_session(row)
        return IssuedToken(token, self._principal(row, user, now))

    def _adult(self, at: int | None, now: int) -> bool:
        return at is not None and now < at + self.settings.adult_confirmation_ttl_s * US

    def _principal(self, s: SessionRow, user: UserRow | None, now: int) -> Principal:
        expires = s.expires_at / US
        if user is None:
            return Principal(GUEST, s.id, s.id, None, self._adult(s.adult_confirmed_at, now), expires)
        adult = user.role in (PERFORMER, ADMIN) or self._adult(user.adult_confirmed_at, now)
        return Principal(user.role, user.id, s.id, user.username, adult, expires)

    async def start_guest(self, *, adult_confirmed: bool = False) -> IssuedToken:
        """A guest session; with ``adult_confirmed`` the token carries the 18+ confirmation."""
        return await self._issue(
            "guest", None, self.settings.guest_session_ttl_s, self.now_us() if adult_confirmed else None
        )

    async def authenticate(self, token: Any) -> Principal:
        """Who the token speaks for; ``InvalidTokenError`` if malformed, unknown, expired or revoked."""
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise InvalidTokenError("malformed token")
        s = await self.store.session_by_token_hash(token_hash(token))
        now = self.now_us()
        if s is None:
            raise InvalidTokenError("unknown token")
        if s.revoked_at is not None:
            raise InvalidTokenError("the token was revoked")
        if now >= s.expires_at:
            raise InvalidTokenError("the token expired")
        user = None
        if s.user_id is not None:
            user = await self.store.user_by_id(s.user_id)
            if user is None or user.closed_at is not None:
                raise InvalidTokenError("the account is closed")
        return self._principal(s, user, now)

    async def logout(self, principal: Principal) -> None:
        """Revoke the principal's session token."""
        await self.store.revoke_session(principal.session_id, self.now_us())
        self._revoked(None, principal.session_id)

    async def revoke_user_sessions(self, user_id: str) -> int:
        """Revoke every session of an account (password change, closure)."""
        n = await self.store.revoke_user_sessions(user_id, self.now_us())
        self._revoked(user_id, None)
        return n

    def account_revoked(self, user_id: str) -> None:
        """Tell the listeners that every token of ``user_id`` is void (the store already says so)."""
        self._revoked(user_id, None)

    def token_revoked(self, session_id: str) -> None:
        """Tell the listeners that the token of session ``session_id`` is void (another worker
        process of this node revoked it: docs/workers.md, "Revocations")."""
        self._revoked(None, session_id)

    async def confirm_adult(self, principal: Principal) -> Principal:
        """Record the 18+ confirmation: on the guest's session, or on the member's account."""
        now = self.now_us()
        if principal.is_guest:
            await self.store.confirm_session_adult(principal.session_id, now)
        elif principal.kind == MEMBER:
            await self.store.set_adult_confirmed(principal.id, now)
        return replace(principal, adult_confirmed=True)

    @staticmethod
    def require_adult(principal: Principal) -> None:
        """``AdultConfirmationRequiredError`` unless the 18+ confirmation is in force."""
        if not principal.adult_confirmed:
            raise AdultConfirmationRequiredError("confirm that you are 18 or older first")

    async def purge_expired(self) -> int:
        """Delete expired and revoked sessions (guest data retention); returns how many."""
        return await self.store.purge_sessions(self.now_us())

    async def housekeeping(self, interval_s: float) -> None:
        """Purge every ``interval_s`` seconds until cancelled."""
        while True:
            try:
                n = await self.purge_expired()
                if n:
                    log.info("purged sessions", extra={"count": n})
            except Exception:  # noqa: BLE001 - retried at the next interval
                log.exception("session purge failed")
            await asyncio.sleep(interval_s)

    # -- accounts -----------------------------------------------------------------------

    async def _new_user(
        self,
        username: Any,
        password: Any,
        role: str,
        *,
        adult_at: int | None = None,
        performer: Callable[[str, int], PerformerRow] | None = None,
    ) -> UserRow:
        username = check_username(username)
        password = check_password(password, username)
        key = username_key(username)
        now = self.now_us()
        if key in RESERVED_USERNAMES or await self.store.blacklisted(key, now) is not None:
            raise UsernameUnavailableError(f"username {username!r} is not available")
        if await self.store.user_by_username(key) is not None:
            raise UsernameUnavailableError(f"username {username!r} is not available")
        user = UserRow(
            id="u_" + secrets.token_hex(10),
            username=username,
            username_key=key,
            role=role,
            password_hash=await self.hashing.hash(password),
            created_at=now,
            adult_confirmed_at=adult_at,
        )
        try:
            await self.store.create_user(user, performer(user.id, now) if performer else None)
        except DuplicateKeyError:
            raise UsernameUnavailableError(f"username {username!r} is not available") from None
        return user

    async def register(self, username: Any, password: Any, *, adult_confirmed: bool = False) -> IssuedToken:
        """A new member account, signed in; ``UsernameUnavailableError`` when taken or blacklisted."""
        user = await self._new_user(username, password, MEMBER, adult_at=self.now_us() if adult_confirmed else None)
        return await self._issue("user", user, self.settings.session_ttl_s)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hashing.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def login(self, username: Any, password: Any, *, client: str | None = None) -> IssuedToken:
        """A new session for a username and password; ``InvalidCredentialsError`` otherwise.

        ``client`` is the caller's address: failures are counted per name and per
        address, and a throttled attempt is ``LoginRateLimitedError`` before any hashing.
        """
        key = username_key(username) if isinstance(username, str) and USERNAME_RE.match(username) else None
        # Per name: strict, from anywhere. Per address: failures only (docs/accounts.md) - over its
        # limit the address may still log a known name in with its right password, but nothing else.
        await self.throttle.check_name(key)
        await self.throttle.check_pair(key, client)
        address_wait = await self.throttle.address_retry_after(client)

        async def wrong() -> Exception:
            await self.throttle.failed(key, client)
            if address_wait is not None:
                return LoginRateLimitedError(
                    f"too many failed logins from this address; retry in {address_wait} s", address_wait
                )
            return InvalidCredentialsError("wrong username or password")

        if not isinstance(password, str) or not 1 <= len(password) <= MAX_PASSWORD:
            raise await wrong()
        user = None
        if key is not None:
            user = await self.store.user_by_username(key)
        if user is None or user.closed_at is not None:
            if address_wait is not None:  # a throttled address spraying names: no hashing at all
                raise LoginRateLimitedError(f"too many failed logins; retry in {address_wait} s", address_wait)
            await self.hashing.verify(await self._dummy(), password)  # same cost as a real check
            raise await wrong()
        if not await self.hashing.verify(user.password_hash, password):
            raise await wrong()
        await self.throttle.succeeded(user.username_key)
        rehash = await self.hashing.hash(password) if self.hashing.needs_rehash(user.password_hash) else None
        await self.store.record_login(user.id, self.now_us(), rehash)
        return await self._issue("user", user, self.settings.session_ttl_s)

    async def confirm_password(self, principal: Principal, password: Any, *, client: str | None = None) -> UserRow:
        """Re-check the password of a signed-in account (before "forget my data"); throttled as logins."""
        if principal.is_guest:
            raise NotPermittedError("guests have no password")
        user = await self.store.user_by_id(principal.id)
        if user is None or user.closed_at is not None:
            raise InvalidTokenError("the account is closed")
        # Its own counter: a wrong re-confirmation must not lock the member out of logging in.
        key = "confirm:" + user.username_key
        await self.throttle.check_name(key)  # a signed-in member: the address limit never blocks it
        if (
            not isinstance(password, str)
            or not 1 <= len(password) <= MAX_PASSWORD
            or not await self.hashing.verify(user.password_hash, password)
        ):
            await self.throttle.failed(key, client)
            raise InvalidCredentialsError("wrong password")
        return user

    async def create_admin(self, username: Any, password: Any) -> str:
        """A support/admin account (the command line makes the first one); returns its id."""
        return (await self._new_user(username, password, ADMIN)).id

    async def blacklist_username(self, username: str, reason: str, *, for_s: float | None = None) -> None:
        """Keep ``username`` from being registered, for ``for_s`` seconds (None: for ever)."""
        now = self.now_us()
        until = None if for_s is None else now + round(for_s * US)
        await self.store.blacklist_username(BlacklistRow(username_key(username), reason, now, until))

    # -- performers --------------------------------------------------------------------------

    @staticmethod
    def _require(actor: Principal | None, *kinds: str) -> Principal:
        if actor is None or actor.kind not in kinds:
            raise NotPermittedError(f"only {' or '.join(kinds)} accounts may do this")
        return actor

    async def _group_ids(self, usernames: Iterable[Any]) -> tuple[str, ...]:
        names = list(usernames)
        if not 1 <= len(names) <= MAX_GROUP_MEMBERS:
            raise AccountValidationError("group_members", f"1-{MAX_GROUP_MEMBERS} performer usernames")
        ids = set()
        for name in names:
            if not isinstance(name, str) or not USERNAME_RE.match(name):
                raise AccountValidationError("group_members", "performer usernames")
            user = await self.store.user_by_username(username_key(name))
            profile = await self.store.performer(user.id) if user and user.role == PERFORMER else None
            # A well-formed name that names no single performer (unknown, a group, the group itself)
            # is a missing resource, 404; a name given twice (in any case) counts once.
            if user is None or profile is None or profile.is_group:
                raise AccountNotFoundError(f"group_members: no single performer named {name!r}")
            ids.add(user.id)
        return tuple(sorted(ids))

    async def create_performer(
        self,
        actor: Principal | None,
        username: Any,
        password: Any,
        *,
        display_name: Any,
        price_per_minute: Any,
        categories: Any = (),
        bio: Any = "",
        group_members: Sequence[Any] | None = None,
    ) -> PerformerProfile:
        """A performer account (or, with ``group_members``, a group account); admins only."""
        self._require(actor, ADMIN)
        display = check_text("display_name", display_name, MAX_DISPLAY_NAME, min_len=1)
        bio_text = check_text("bio", bio, MAX_BIO, newlines=True)
        price = check_price(price_per_minute)
        cats = check_categories(list(categories))
        members = await self._group_ids(group_members) if group_members is not None else ()

        def profile(user_id: str, now: int) -> PerformerRow:
            return PerformerRow(user_id, display, bio_text, price, group_members is not None, now, cats, members)

        user = await self._new_user(username, password, PERFORMER, performer=profile)
        return await self.performer_profile(user.username)

    async def _profile(self, user: UserRow) -> PerformerProfile:
        row = await self.store.performer(user.id)
        if row is None:
            raise AccountNotFoundError(f"no performer {user.username!r}")
        names = []
        for mid in row.group_members:
            m = await self.store.user_by_id(mid)
            if m is not None and m.closed_at is None:
                names.append(m.username)
        return PerformerProfile(
            user.id,
            user.username,
            row.display_name,
            row.bio,
            row.price_per_minute,
            row.categories,
            row.is_group,
            tuple(sorted(names)),
        )

    async def _performer_user(self, username: Any) -> UserRow:
        user = None
        if isinstance(username, str) and USERNAME_RE.match(username):
            user = await self.store.user_by_username(username_key(username))
        if user is None or user.role != PERFORMER or user.closed_at is not None:
            raise AccountNotFoundError(f"no performer {str(username)[:64]!r}")
        return user

    async def performer_profile(self, username: Any) -> PerformerProfile:
        """A performer's public profile by username."""
        return await self._profile(await self._performer_user(username))

    async def update_performer_profile(
        self,
        actor: Principal | None,
        username: Any,
        *,
        display_name: Any = None,
        bio: Any = None,
        price_per_minute: Any = None,
        categories: Any = None,
    ) -> PerformerProfile:
        """Change a profile: the performer itself (a group: the group account) or an admin."""
        actor = self._require(actor, PERFORMER, ADMIN)
        user = await self._performer_user(username)
        if actor.kind != ADMIN and actor.id != user.id:
            raise NotPermittedError("a performer may change only its own profile")
        row = await self.store.performer(user.id)
        if row is None:  # pragma: no cover - created with the account
            raise AccountNotFoundError(f"no performer {username!r}")
        changes: dict[str, Any] = {"updated_at": self.now_us()}
        if display_name is not None:
            changes["display_name"] = check_text("display_name", display_name, MAX_DISPLAY_NAME, min_len=1)
        if bio is not None:
            changes["bio"] = check_text("bio", bio, MAX_BIO, newlines=True)
        if price_per_minute is not None:
            changes["price_per_minute"] = check_price(price_per_minute)
        if categories is not None:
            changes["categories"] = check_categories(categories)
        await self.store.put_performer(replace(row, **changes))
        return await self._profile(user)

    async def performer_for_show(self, principal: Principal, show_id: str) -> PerformerProfile:
        """The profile of the show ``principal`` may perform in: its own (show id = its username)
        or a group account's that lists it. ``NotShowOwnerError`` otherwise."""
        self._require(principal, PERFORMER)
        owner = await self.store.user_by_username(username_key(show_id))
        if owner is None or owner.username != show_id or owner.role != PERFORMER or owner.closed_at is not None:
            raise NotShowOwnerError(f"show {show_id!r} belongs to no performer account of yours")
        row = await self.store.performer(owner.id)
        if owner.id == principal.id or (row is not None and row.is_group and principal.id in row.group_members):
            return await self._profile(owner)
        raise NotShowOwnerError(f"show {show_id!r} belongs to another performer")


async def open_accounts(
    cfg: AccountsSettings, clock: Clock, throttle_windows: Windows | None = None
) -> AccountsService:
    """Open the store named by ``cfg`` (the ``[accounts]`` section) and the service over it; the login
    throttle counts in ``throttle_windows`` (None: this process's memory)."""
    import os

    store: Any
    if cfg.dsn:
        from jasmin_sfu.store.postgres_accounts import PostgresAccountsStore

        store = await PostgresAccountsStore.open(cfg.dsn)
    else:
        from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore

        store = await SqliteAccountsStore.open(os.path.join(cfg.data_dir, "accounts.sqlite3"))
    return AccountsService(store, clock, cfg, throttle_windows=throttle_windows)
