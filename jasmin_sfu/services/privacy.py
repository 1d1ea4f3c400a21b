"""Privacy rights (docs/product.md, "Privacy rules"): the member profile and its visibility, the one
view of a member shown to others, the data download and "forget my data".

* **Profile**: every field is optional (display name, gender, age range,
  country, languages, about). ``profile_visibility`` says which performers see
  it: ``all_performers`` / ``performers_with_private`` (performers the member
  had a paid private with) / ``nobody``. The loyalty rank, the **mask**, comes
  from the member's VIP points in the ledger; ``mask_visibility`` is
  ``private`` / ``performers_with_private`` / ``public``. The defaults are the
  most private ones (``nobody``, ``private``).
* **member_view(member_id, viewer)** is the only way a member is shown to
  someone else. A performer always sees the username, the site, whether the
  member favourites it and the member's spending with *that* performer
  (docs/product.md); the profile and the mask only as the member allows. The member
  itself and support see everything. Signaling never carries more than the
  opaque member id (docs/privacy.md).
* **Data download**: every registered ``PersonalDataSource``'s export, one key
  per source, one list of rows per table, as JSON.
* **Forget my data**: the erasure is recorded first, in the same transaction
  that closes the account, revokes its sessions and blacklists the username
  (``username_blacklist_days``); then live websockets are ended and waited for
  (``LiveSessions``, in every worker process of the node: a running private ends
  and is billed before anything is erased); then every source erases; then the erasure is marked done. A crash in between leaves an
  open erasure that ``resume_erasures`` (start-up, every retention run)
  finishes; every step is idempotent.

Pseudonym: the member id (``u_`` + 80 random bits) is opaque and already names
the ledger accounts (``wallet:u_…``), whose journal is append-only by law and
by trigger. Once the username, password, profile, sessions and card digits are
gone, nothing kept links the id to a person, so the id itself is the pseudonym
under which the financial records stay for their 10 years.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Protocol

from jasmin_sfu.services.accounts import (
    ADMIN,
    MEMBER,
    PERFORMER,
    US,
    USERNAME_RE,
    AccountsService,
    Principal,
    username_key,
)
from jasmin_sfu.services.errors import (
    AccountNotFoundError,
    AccountValidationError,
    ErasureError,
    NotPermittedError,
)
from jasmin_sfu.services.ledger import units_to_credits
from jasmin_sfu.services.personal_data import PersonalDataRegistry, RetentionPolicy
from jasmin_sfu.store.accounts_repo import (
    MASK_VISIBILITIES,
    PROFILE_VISIBILITIES,
    AccountsStore,
    ErasureRow,
    MemberProfileRow,
)
from jasmin_sfu.store.privacy_ledger import SpendingEntry
from jasmin_signaling.text import unstorable

log = logging.getLogger(__name__)

DAY_S = 86400
GENDERS = ("female", "male", "couple", "transgender", "nonbinary", "other")
AGE_RANGES = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
MAX_DISPLAY_NAME = 64
MAX_ABOUT = 1000
MAX_LANGUAGES = 8
_COUNTRY = re.compile(r"^[A-Z]{2}\Z")  # ISO 3166-1 alpha-2
_LANGUAGE = re.compile(r"^[a-z]{2}\Z")  # ISO 639-1
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Anything an account id can be ("u_" + hex today): other input is "not found" before any query
# (PostgreSQL refuses a NUL in text, a lone surrogate cannot be encoded at all).
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
PROFILE_FIELDS = ("display_name", "gender", "age_range", "country", "languages", "about")

# The mask: a rank by VIP points (1 point per 29.99 package ... 10 per 159.99,
# docs/product.md). The thresholds are this project's; the site's top-500 free-credit
# rule is relative and not a rank. Below 1 point a member has no mask.
MASK_RANKS: tuple[tuple[int, str], ...] = (
    (250, "diamond"),
    (100, "platinum"),
    (50, "gold"),
    (10, "silver"),
    (1, "bronze"),
)
SPENDING_LIMIT = 50

# Retention report categories (docs/product.md, "Privacy rules"; ``retention.RetentionReport``).
USAGE = "chat logs and usage"
GUEST = "guest data"
IDENTITY = "identity data"
INACTIVE = "inactive accounts"
SESSIONS = "expired sessions"
BLACKLIST = "username blacklist"
RESUMED = "erasures resumed"
FINANCIAL = "financial records"


def mask_rank(points: int) -> str | None:
    """The rank for a number of VIP points (None: no rank yet)."""
    for threshold, rank in MASK_RANKS:
        if points >= threshold:
            return rank
    return None


@dataclass(frozen=True)
class PrivacySettings:
    """Privacy rights and retention (docs/privacy.md): the config section ``[privacy]``.

    The limits are docs/product.md's maximums. Declared once, here: jasmin_sfu/config.py loads
    this class as the section (``PrivacyConfig`` there) and validates it; the privacy service
    and the retention job (services/retention.py) are handed it as is.
    """

    # Shown to performers with a member ("username, site, ...").
    site: str = "jasmin"
    # A former username stays unavailable this long after "forget my data".
    username_blacklist_days: int = 180
    usage_retention_days: int = 120  # chat logs and usage: after the member's last purchase
    guest_retention_days: int = 15
    identity_retention_days: int = 5
    inactive_account_days: int = 365  # "inactive for over a year": closed and erased
    # How often the retention job runs in the daemon (also: `jasmin-sfu retention`).
    retention_interval_s: float = 3600.0


class MemberHistory(Protocol):
    """What the ledger knows about a member (``jasmin_sfu.store.privacy_ledger.LedgerReads``)."""

    async def spending(self, member_id: str, performer_id: str, limit: int = SPENDING_LIMIT) -> list[SpendingEntry]:
        """Paid privates and tips of the member with the performer, newest first."""
        ...

    async def vip_points(self, member_id: str) -> int:
        """The member's VIP points."""
        ...

    async def export_member(self, member_id: str) -> dict[str, list[dict[str, Any]]]:
        """The ledger's rows about the member, by table."""
        ...


# (member_id, performer_id) -> whether the member has the performer among its favourites.
FavouriteCheck = Callable[[str, str], Awaitable[bool]]


class LiveSessions(Protocol):
    """A person's live connections, ended before an erasure (app.py: the signaling websockets).

    Services never import media or shows: this seam is how an erasure reaches a
    private that is running (``retention.SignalingLiveSessions``).
    """

    async def end_user(self, user_id: str) -> int:
        """End every live session of ``user_id`` and return once each has left its show (a private
        it was in has ended and been billed exactly as when the member leaves); how many."""
        ...


@dataclass(frozen=True)
class ErasureResult:
    """What one erasure did: rows touched per source; ``completed`` False: resumed later."""

    user_id: str
    completed: bool
    rows: dict[str, int]


def _text(field: str, value: Any, max_len: int, *, newlines: bool = False) -> str | None:
    if not isinstance(value, str):
        raise AccountValidationError(field, "a string")
    value = value.strip()
    if not value:
        return None  # "" clears the field
    if len(value) > max_len:
        raise AccountValidationError(field, f"at most {max_len} characters")
    # unstorable: a lone surrogate has no UTF-8 (the edge's own rule, jasmin_signaling.text),
    # refused here too so a caller past the REST edge cannot store one either.
    if _CONTROL.search(value) or unstorable(value) or (not newlines and "\n" in value):
        raise AccountValidationError(field, "no control characters")
    return value


def _choice(field: str, value: Any, allowed: tuple[str, ...], *, clearable: bool = True) -> str | None:
    if clearable and value == "":
        return None
    if not isinstance(value, str) or value not in allowed:
        raise AccountValidationError(field, f"one of {', '.join(allowed)}" + (' or ""' if clearable else ""))
    return value


def _languages(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AccountValidationError("languages", "a list of ISO 639-1 codes")
    if len(value) > MAX_LANGUAGES or len(set(value)) != len(value):
        raise AccountValidationError("languages", f"at most {MAX_LANGUAGES} distinct codes")
    if not all(_LANGUAGE.match(v) for v in value):
        raise AccountValidationError("languages", "ISO 639-1 codes, e.g. 'en'")
    return tuple(value)


def profile_dict(row: MemberProfileRow) -> dict[str, Any]:
    """The profile fields of a row, as the API shows them."""
    return {
        "display_name": row.display_name,
        "gender": row.gender,
        "age_range": row.age_range,
        "country": row.country,
        "languages": list(row.languages),
        "about": row.about,
    }


def spending_dict(entries: list[SpendingEntry]) -> dict[str, Any]:
    """A member's spending with one performer, in credits (rounded down, as balances are)."""
    privates = [e for e in entries if e.kind == "private"]
    tips = [e for e in entries if e.kind == "tip"]
    return {
        "privates": len(privates),
        "private_seconds": sum(e.seconds for e in privates),
        "private_credits": units_to_credits(sum(e.units for e in privates)),
        "tip_credits": units_to_credits(sum(e.units for e in tips)),
        "total_credits": units_to_credits(sum(e.units for e in entries)),
        "entries": [
            {"kind": e.kind, "at": e.at / US, "credits": units_to_credits(e.units), "seconds": e.seconds}
            for e in entries
        ],
    }


class PrivacyService:
    """Profile, visibility, member views, download and erasure over the accounts store and the registry."""

    def __init__(
        self,
        accounts: AccountsService,
        registry: PersonalDataRegistry,
        settings: PrivacySettings = PrivacySettings(),
        history: MemberHistory | None = None,
        favourites: FavouriteCheck | None = None,
        live: LiveSessions | None = None,
    ) -> None:
        self.accounts = accounts
        self.registry = registry
        self.settings = settings
        # None when billing is off on this node: no spending, no points.
        self.history = history
        # Set by the favourites service when it runs (None: "favourite" shows as unknown).
        self.favourites = favourites
        # None: no live connections on this node (the command line's retention run).
        self.live = live

    @property
    def store(self) -> AccountsStore:
        return self.accounts.store

    # -- profile and settings ------------------------------------------------------------

    @staticmethod
    def _member(principal: Principal) -> str:
        if principal.kind != MEMBER:
            raise NotPermittedError("only member accounts have a member profile")
        return principal.id

    async def _row(self, member_id: str) -> MemberProfileRow:
        return await self.store.member_profile(member_id) or MemberProfileRow(member_id)

    async def profile(self, principal: Principal) -> MemberProfileRow:
        """The caller's profile row (empty fields and the private defaults when never set)."""
        return await self._row(self._member(principal))

    async def update_profile(self, principal: Principal, changes: dict[str, Any]) -> MemberProfileRow:
        """Change some profile fields; ``""`` (``[]`` for languages) clears one."""
        row = await self._row(self._member(principal))
        new: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "display_name":
                new[name] = _text(name, value, MAX_DISPLAY_NAME)
            elif name == "about":
                new[name] = _text(name, value, MAX_ABOUT, newlines=True)
            elif name == "gender":
                new[name] = _choice(name, value, GENDERS)
            elif name == "age_range":
                new[name] = _choice(name, value, AGE_RANGES)
            elif name == "country":
                if value != "" and (not isinstance(value, str) or not _COUNTRY.match(value)):
                    raise AccountValidationError("country", "an ISO 3166-1 alpha-2 code, e.g. 'DE', or \"\"")
                new[name] = value or None
            elif name == "languages":
                new[name] = _languages(value)
            else:
                raise AccountValidationError(name[:64], "unknown field")
        row = replace(row, **new, updated_at=self.accounts.now_us())
        await self.store.put_member_profile(row)
        return row

    async def update_settings(
        self, principal: Principal, *, profile_visibility: Any = None, mask_visibility: Any = None
    ) -> MemberProfileRow:
        """Change who sees the profile and who sees the mask."""
        row = await self._row(self._member(principal))
        if profile_visibility is not None:
            row = replace(
                row,
                profile_visibility=str(
                    _choice("profile_visibility", profile_visibility, PROFILE_VISIBILITIES, clearable=False)
                ),
            )
        if mask_visibility is not None:
            row = replace(
                row,
                mask_visibility=str(_choice("mask_visibility", mask_visibility, MASK_VISIBILITIES, clearable=False)),
            )
        row = replace(row, updated_at=self.accounts.now_us())
        await self.store.put_member_profile(row)
        return row

    async def mask(self, member_id: str) -> dict[str, Any]:
        """The member's loyalty rank and VIP points."""
        points = await self.history.vip_points(member_id) if self.history is not None else 0
        return {"rank": mask_rank(points), "vip_points": points}

    # -- the one view of a member ----------------------------------------------------------

    async def member_view(self, member_id: str, viewer: Principal) -> dict[str, Any]:
        """A member as ``viewer`` may see it (docs/product.md: what performers see; nothing to others)."""
        if not isinstance(member_id, str) or not _ACCOUNT_ID.fullmatch(member_id):
            raise AccountNotFoundError("no such member")
        user = await self.store.user_by_id(member_id)
        if user is None or user.role != MEMBER or user.closed_at is not None:
            raise AccountNotFoundError("no such member")
        row = await self._row(member_id)
        if viewer.kind == ADMIN or (viewer.kind == MEMBER and viewer.id == member_id):
            return {
                "member_id": member_id,
                "username": user.username,
                "site": self.settings.site,
                "profile": profile_dict(row),
                "profile_visibility": row.profile_visibility,
                "mask": await self.mask(member_id),
                "mask_visibility": row.mask_visibility,
            }
        if viewer.kind != PERFORMER:
            raise NotPermittedError("only performers and support see other members")
        entries = await self.history.spending(member_id, viewer.id) if self.history is not None else []
        had_private = any(e.kind == "private" for e in entries)
        out: dict[str, Any] = {
            "username": user.username,
            "site": self.settings.site,
            "favourite": await self.favourites(member_id, viewer.id) if self.favourites is not None else None,
            "spending": spending_dict(entries),
        }
        pv = row.profile_visibility
        if pv == "all_performers" or (pv == "performers_with_private" and had_private):
            out["profile"] = profile_dict(row)
        mv = row.mask_visibility
        if mv == "public" or (mv == "performers_with_private" and had_private):
            out["mask"] = await self.mask(member_id)
        return out

    async def member_view_by_username(self, username: Any, viewer: Principal) -> dict[str, Any]:
        """``member_view`` of the member with that username."""
        user = None
        if isinstance(username, str) and USERNAME_RE.fullmatch(username):
            user = await self.store.user_by_username(username_key(username))
        if user is None:
            raise AccountNotFoundError("no such member")
        return await self.member_view(user.id, viewer)

    # -- data download -------------------------------------------------------------------------

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything every source holds about ``user_id``."""
        sources: dict[str, Any] = {}
        for source in self.registry.sources:
            sources[source.name] = await source.export(user_id)
        return {
            "format": "jasmin-data-download/1",
            "member_id": user_id,
            "generated_at": self.accounts.clock(),
            "sources": sources,
        }

    async def download(self, principal: Principal) -> dict[str, Any]:
        """The caller's data download (members; performers and admins ask support)."""
        return await self.export_user(self._member(principal))

    # -- forget my data ------------------------------------------------------------------------

    async def request_erasure(self, principal: Principal, password: Any, *, client: str | None = None) -> ErasureResult:
        """ "Forget my data" for the signed-in member, after re-checking its password."""
        if principal.kind != MEMBER:
            raise ErasureError("only member accounts can be erased here; performers ask support")
        await self.accounts.confirm_password(principal, password, client=client)
        return await self.erase(principal.id, "member_request")

    async def erase(self, user_id: str, reason: str) -> ErasureResult:
        """Record, close, revoke, blacklist (one transaction), then erase everywhere; idempotent."""
        user = await self.store.user_by_id(user_id)
        if user is None:
            raise AccountNotFoundError("no such account")
        now = self.accounts.now_us()
        days = self.settings.username_blacklist_days
        until = now + days * DAY_S * US
        await self.store.begin_erasure(ErasureRow(user_id, reason, now), until)
        return await self._finish(user_id)

    async def _finish(self, user_id: str) -> ErasureResult:
        # Sessions were revoked with the record: end the websockets that used them, and wait until
        # the member has left every show. A running private ends and is billed here, as at a
        # disconnect, and its record is written now, so the sources below erase it; a writer
        # still later finds the account closed (docs/privacy.md, "Forget my data").
        self.accounts.account_revoked(user_id)
        if self.live is not None:
            await self.live.end_user(user_id)
        rows: dict[str, int] = {}
        try:
            for source in self.registry.sources:
                rows[source.name] = await source.erase(user_id, user_id)
        except Exception:  # noqa: BLE001 - left open; resume_erasures finishes it
            log.exception("erasure interrupted; it will be resumed", extra={"user_id": user_id})
            return ErasureResult(user_id, False, rows)
        await self.store.complete_erasure(user_id, self.accounts.now_us())
        log.info("erased", extra={"user_id": user_id, "rows": rows})
        return ErasureResult(user_id, True, rows)

    async def resume_erasures(self) -> list[ErasureResult]:
        """Finish erasures a crash (or a failing source) left open."""
        return [await self._finish(e.user_id) for e in await self.store.open_erasures()]


# -- the sources of this module ---------------------------------------------------------------


class AccountsDataSource:
    """The accounts tables: users, sessions, performer rows, member profiles, payments, erasures.

    Erase wipes the personal fields and keeps the payments (financial records)
    under the user id, without the card digits. Purge deletes guest sessions
    after the guest limit and lapsed username-blacklist entries. This store
    holds no identity-check data (performers' checks happen outside it), so
    the 5-day identity limit has nothing to delete here.
    """

    name = "accounts"

    def __init__(self, accounts: AccountsService) -> None:
        self.accounts = accounts

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The accounts rows about the user."""
        return await self.accounts.store.export_user(user_id)

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Wipe the account's personal fields (the user id is the pseudonym: nothing to re-key)."""
        return await self.accounts.store.erase_user(user_id, self.accounts.now_us())

    async def purge_report(self, policy: RetentionPolicy, *, dry_run: bool = False) -> dict[str, int | None]:
        """Rows deleted (``dry_run``: that would be) per retention category.

        Guest data: guest sessions created before the guest limit. Expired
        sessions: expired or revoked tokens of anyone (not counted in a dry
        run: None). Username blacklist: entries whose period has lapsed.
        """
        store = self.accounts.store
        guests = await store.purge_guest_sessions(policy.guest_before_us, dry_run=dry_run)
        sessions = None if dry_run else await store.purge_sessions(policy.now_us)
        blacklist = await store.purge_blacklist(policy.now_us, dry_run=dry_run)
        return {GUEST: guests, SESSIONS: sessions, BLACKLIST: blacklist}

    async def purge(self, policy: RetentionPolicy) -> int:
        """Guest sessions past the guest limit, expired/revoked sessions, lapsed blacklist entries."""
        return sum(n or 0 for n in (await self.purge_report(policy)).values())

    async def preview(self, policy: RetentionPolicy) -> int:
        """What ``purge`` would delete (dry run; expired sessions are not counted)."""
        return sum(n or 0 for n in (await self.purge_report(policy, dry_run=True)).values())


class LedgerDataSource:
    """The ledger: accounts, transfers, holds and credit-control sessions naming the member's accounts.

    All of it is financial record (10 years, docs/product.md), kept whole under the
    member id, which erasure turns into a pseudonym: ``erase`` and ``purge``
    touch nothing (the journal is append-only). Deleting entries older than 10
    years would break ``replay()``; an archive job for that is not built yet.
    """

    name = "ledger"

    def __init__(self, history: MemberHistory) -> None:
        self.history = history

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The ledger rows about the member."""
        return await self.history.export_member(user_id)

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Financial records are kept: nothing erased."""
        return 0

    async def purge(self, policy: RetentionPolicy) -> int:
        """Financial records are kept 10 years: nothing purged."""
        return 0

    async def preview(self, policy: RetentionPolicy) -> int:
        """Nothing would be purged."""
        return 0
