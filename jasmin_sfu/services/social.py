"""Around the show: TopMembership, favourites, online notifications and feeds, mailing lists,
My Rating, votes, messages to performers, performer search attributes and advanced search.

The rules, with docs/product.md's numbers (docs/social.md has the whole list):

* **TopMembership** costs 15 credits per 14 days, taken from the wallet by a
  ledger transfer to house revenue. Period n of a membership anchored at
  ``started_at`` has the transfer id ``topmember:<member>:<started_at>:<n>``,
  so a retried, concurrent or repeated renewal charges once. Renewals run from
  ``housekeeping`` ``renew_lead_s`` before the paid period ends; a wallet that
  cannot pay lapses the membership. Cancelling stops renewal and keeps the
  benefits to the end of the paid period.
* **Favourites**: at most 24 (96 for TopMembers). A member with no purchase for
  over 30 days (counted from the account's creation when it never bought) loses
  access to the list until its next purchase: the rows stay, every read and
  change answers ``FavouritesLapsedError``, and no online notification goes out.
* **Privates** are learnt from the show event bus: ``private.started`` and
  ``private.ended`` of one (show, member) give the whole seconds the member was
  in private (the same instants billing meters between). They are recorded for
  the show's owner account and every performer account in the show.
* **Mailing list**: a member may subscribe after a private with the performer;
  the performer sends at most one mailing per 24 hours; every delivered copy
  carries its subscription's unsubscribe token (a URL that works without login).
* **My Rating** (1-5 stars) is seen only by the member who gave it (and used by
  its own searches). **Votes**: one per performer per award period (the calendar
  month, UTC), after a private of at least 300 s, by TopMembers (docs/product.md lists
  "TopMember Awards votes" among the TopMember benefits; ``votes_need_top_membership``).
* **Messages to performers**: TopMembers only, to performers they had a private with.

Time is injected (``clock``: epoch seconds); rows hold integer microseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Mapping, Protocol, Sequence

from jasmin_signaling.events import FavouriteOnline

from jasmin_sfu.services.accounts import (
    ADMIN,
    CATEGORIES,
    MEMBER,
    PERFORMER,
    AccountsService,
    PerformerProfile,
    Principal,
)
from jasmin_sfu.services.errors import (
    AccountNotFoundError,
    AlreadyVotedError,
    FavouritesFullError,
    FavouritesLapsedError,
    InsufficientFundsError,
    MailingRateLimitedError,
    NotPermittedError,
    PaymentsUnavailableError,
    PrivateRequiredError,
    SocialConflictError,
    SocialNotFoundError,
    SocialValidationError,
    TopMemberFeeUnpaidError,
    TopMembershipRequiredError,
    VoteNotEligibleError,
)
from jasmin_sfu.services.ledger import CREDIT, HOUSE_REVENUE, Ledger, Transfer, credits_to_units, wallet_account
from jasmin_sfu.services.personal_data import RetentionPolicy
from jasmin_sfu.services.search import (
    Attributes,
    Candidate,
    SearchFilters,
    SearchPage,
    parse_filters,
    preset_filters,
    preset_query,
    search,
    update_attributes,
)
from jasmin_sfu.services.social_notify import FeedItem, OnlineNotifier
from jasmin_sfu.store.social_repo import (
    AttributesRow,
    FavouriteRow,
    FeedRow,
    InboxRow,
    MailingRow,
    MessageRow,
    OnlineEventRow,
    PresetRow,
    PrivateRow,
    RatingRow,
    SocialStore,
    SubscriptionRow,
    SystemMessageRow,
    TopMemberRow,
    VoteRow,
)
from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)

Clock = Callable[[], float]
US = 1_000_000
DAY = 86400

FEED_TOKEN_RE = re.compile(r"^jasf_[A-Za-z0-9_-]{43}\Z")
UNSUBSCRIBE_TOKEN_RE = re.compile(r"^jasu_[A-Za-z0-9_-]{32}\Z")
PRESET_ID_RE = re.compile(r"^sp_[0-9a-f]{20}\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class SocialSettings:
    """docs/product.md's numbers (config section ``[social]`` overrides the operational ones)."""

    top_member_fee_credits: int = 15
    top_member_period_s: int = 14 * DAY
    # Renew this long before the paid period ends, so the benefits never gap
    # while the housekeeping loop waits for its next turn.
    renew_lead_s: int = 3600
    favourites_limit: int = 24
    top_member_favourites_limit: int = 96
    favourites_lapse_s: int = 30 * DAY
    vote_min_private_s: int = 300
    votes_need_top_membership: bool = True
    mailing_interval_s: int = DAY
    max_subject: int = 200
    max_mail_body: int = 10_000
    max_message: int = 2000
    max_presets: int = 20
    max_feed_performers: int = 96
    feed_window_s: int = 7 * DAY
    feed_items: int = 50
    online_log_retention_s: int = 30 * DAY
    housekeeping_interval_s: float = 60.0


@dataclass(frozen=True)
class TopMembership:
    """A member's TopMembership as the member sees it."""

    status: str  # none | active | cancelled | lapsed | expired
    active: bool
    auto_renew: bool
    started_at: float | None
    paid_until: float | None
    period: int
    fee_credits: int
    period_days: int


@dataclass(frozen=True)
class Favourite:
    """A favourite with its performer's profile and whether it is live."""

    profile: PerformerProfile
    created_at: float
    online: bool


@dataclass(frozen=True)
class InboxMessage:
    """A delivered mailing."""

    row: InboxRow
    performer: str  # username


@dataclass(frozen=True)
class Message:
    """A message to a performer, with both usernames."""

    row: MessageRow
    member: str
    performer: str


@dataclass(frozen=True)
class Feed:
    """A member's feed settings (performers as usernames)."""

    performers: tuple[str, ...]
    categories: tuple[str, ...]
    favourites: bool
    system_messages: bool
    has_token: bool


class ShowEventLike(Protocol):
    """What the social service reads of ``jasmin_sfu.shows.events.ShowEvent``."""

    @property
    def name(self) -> str: ...

    @property
    def show_id(self) -> str: ...

    @property
    def at(self) -> float: ...

    @property
    def member_id(self) -> str | None: ...

    @property
    def performer_ids(self) -> tuple[str, ...]: ...

    @property
    def state(self) -> str | None: ...


def _text(field: str, value: Any, max_len: int, *, newlines: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SocialValidationError(field, "required text")
    if len(value) > max_len:
        raise SocialValidationError(field, f"at most {max_len} characters")
    if _CONTROL.search(value) or (not newlines and "\n" in value):
        raise SocialValidationError(field, "no control characters")
    return value


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SocialService:
    """The rules over a ``SocialStore``; accounts, ledger, live shows and sessions injected."""

    def __init__(
        self,
        store: SocialStore,
        accounts: AccountsService,
        ledger: Ledger | None,
        clock: Clock = time.time,
        *,
        notifier: OnlineNotifier | None = None,
        is_online: Callable[[str], bool] = lambda _username: False,
        settings: SocialSettings = SocialSettings(),
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.ledger = ledger
        self.clock = clock
        self.notifier = notifier or OnlineNotifier()
        self.is_online = is_online
        self.settings = settings
        self._started: dict[tuple[str, str], float] = {}
        self._online: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def now_us(self) -> int:
        """The injected clock in integer microseconds."""
        return round(self.clock() * US)

    async def close(self) -> None:
        """Finish background work, then close the store."""
        await self.drain()
        await self.store.close()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _member(p: Principal) -> str:
        if p.kind != MEMBER:
            raise NotPermittedError("only members may do this")
        return p.id

    async def performer(self, username: Any) -> PerformerProfile:
        """A performer's profile by username (``AccountNotFoundError``)."""
        return await self.accounts.performer_profile(username)

    async def _username(self, user_id: str) -> str:
        user = await self.accounts.store.user_by_id(user_id)
        return user.username if user is not None else user_id

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        spawn_tracked(self._tasks, coro, f"social task {getattr(coro, '__qualname__', '')}", log)

    async def drain(self) -> None:
        """Wait for the background work started by show events (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- TopMembership -----------------------------------------------------------------

    def _fee(self) -> int:
        return credits_to_units(self.settings.top_member_fee_credits)

    def _transfer(self, user_id: str, started_at: int, period: int) -> Transfer:
        return Transfer(
            f"topmember:{user_id}:{started_at}:{period}",
            wallet_account(user_id),
            HOUSE_REVENUE,
            self._fee(),
            CREDIT,
            "top_member_fee",
            user_data=f"period {period}",
        )

    async def _charge(self, user_id: str, started_at: int, period: int) -> None:
        if self.ledger is None:
            raise PaymentsUnavailableError("billing is not enabled on this node: no wallet to charge")
        await self.ledger.open_member(user_id)
        await self.ledger.submit([self._transfer(user_id, started_at, period)])

    def _view(self, row: TopMemberRow | None, now: int) -> TopMembership:
        s = self.settings
        if row is None or row.status == "pending":
            return TopMembership(
                "none", False, False, None, None, -1, s.top_member_fee_credits, s.top_member_period_s // DAY
            )
        active = now < row.paid_until
        if row.status == "lapsed":
            status = "lapsed"
        elif not active:
            status = "expired"
        else:
            status = "active" if row.auto_renew else "cancelled"
        return TopMembership(
            status,
            active,
            row.auto_renew and row.status == "active",
            row.started_at / US,
            row.paid_until / US,
            row.period,
            s.top_member_fee_credits,
            s.top_member_period_s // DAY,
        )

    async def is_top_member(self, user_id: str) -> bool:
        """Whether the member has TopMember benefits now (the chat service calls this)."""
        row = await self.store.top_member(user_id)
        return row is not None and row.status != "pending" and self.now_us() < row.paid_until

    async def top_membership(self, p: Principal) -> TopMembership:
        """The caller's TopMembership."""
        uid = self._member(p)
        return self._view(await self.store.top_member(uid), self.now_us())

    async def subscribe_top(self, p: Principal) -> tuple[TopMembership, bool]:
        """Start (charging the first 15 credits) or resume renewal; (membership, charged now)."""
        uid = self._member(p)
        now = self.now_us()
        period_us = self.settings.top_member_period_s * US
        row = await self.store.begin_top_membership(uid, now)
        if row.status == "pending" and now - row.started_at > 3600 * US and self.ledger is not None:
            # A pending row left by a crash long ago: if its first fee never reached the
            # ledger, start afresh instead of selling a period that is mostly over.
            t = self._transfer(uid, row.started_at, 0)
            if t.id not in await self.ledger.lookup_transfers([t.id]):
                await self.store.end_top_membership(uid, row.started_at, now, abandon=True)
                row = await self.store.begin_top_membership(uid, now)
        if row.status != "pending":
            if not row.auto_renew:
                row = await self.store.set_top_auto_renew(uid, True, now) or row
            return self._view(row, now), False
        try:
            await self._charge(uid, row.started_at, 0)
        except InsufficientFundsError:
            await self.store.end_top_membership(uid, row.started_at, now, abandon=True)
            raise TopMemberFeeUnpaidError(
                f"TopMembership costs {self.settings.top_member_fee_credits} credits; buy credits first"
            ) from None
        # Twin requests share the pending row's anchor, so they charge one transfer id (the
        # ledger applies it once); the one whose update moves period -1 -> 0 answers "charged",
        # the others "already" (the row update is atomic on both stores).
        charged = await self.store.mark_top_paid(uid, row.started_at, 0, row.started_at + period_us, now)
        if charged:
            log.info("top membership started", extra={"member": uid})
        return self._view(await self.store.top_member(uid), now), charged

    async def cancel_top(self, p: Principal) -> TopMembership:
        """Stop renewal; the benefits last to the end of the paid period."""
        uid = self._member(p)
        now = self.now_us()
        row = await self.store.set_top_auto_renew(uid, False, now)
        if row is None:
            raise SocialNotFoundError("no TopMembership to cancel")
        return self._view(row, now)

    async def renew_due(self) -> int:
        """Charge every membership whose paid period ends within ``renew_lead_s``; returns how many
        were renewed. Running it twice (or on two nodes) charges once: the transfer id is the period's."""
        now = self.now_us()
        period_us = self.settings.top_member_period_s * US
        renewed = 0
        for row in await self.store.top_members_due(now + self.settings.renew_lead_s * US, 500):
            # After downtime, sell the period running now, not the ones already missed.
            n = max(row.period + 1, (now - row.started_at) // period_us)
            try:
                await self._charge(row.user_id, row.started_at, n)
            except InsufficientFundsError:
                await self.store.end_top_membership(row.user_id, row.started_at, now, abandon=False)
                log.info("top membership lapsed: the wallet could not pay", extra={"member": row.user_id})
                continue
            if await self.store.mark_top_paid(
                row.user_id, row.started_at, n, row.started_at + (n + 1) * period_us, now
            ):
                renewed += 1
        return renewed

    async def housekeeping(self, interval_s: float | None = None) -> None:
        """Renew memberships and trim the online log every ``interval_s`` until cancelled."""
        every = interval_s if interval_s is not None else self.settings.housekeeping_interval_s
        while True:
            try:
                await self.renew_due()
                cutoff = self.now_us() - self.settings.online_log_retention_s * US
                await self.store.delete_online_events_before(cutoff)
            except Exception:  # noqa: BLE001 - retried at the next interval
                log.exception("social housekeeping failed")
            await asyncio.sleep(every)

    # -- favourites ------------------------------------------------------------------------

    async def favourites_lapsed(self, member_id: str) -> bool:
        """docs/product.md: no purchase for over 30 days (creation counts when it never bought)."""
        act = await self.store.member_activity(member_id)
        if act is None:
            return False
        last = max(act.created_at, act.last_purchase_at or 0)
        return self.now_us() - last > self.settings.favourites_lapse_s * US

    async def _require_favourites(self, member_id: str) -> None:
        if await self.favourites_lapsed(member_id):
            raise FavouritesLapsedError(
                "no purchase for over 30 days: the favourites list is back with your next purchase"
            )

    async def favourites_limit(self, member_id: str) -> int:
        """24, or 96 for a TopMember."""
        s = self.settings
        return s.top_member_favourites_limit if await self.is_top_member(member_id) else s.favourites_limit

    async def add_favourite(self, p: Principal, username: Any) -> tuple[PerformerProfile, bool]:
        """Add a favourite; (profile, added now). ``FavouritesFullError`` at the limit."""
        uid = self._member(p)
        await self._require_favourites(uid)
        profile = await self.performer(username)
        limit = await self.favourites_limit(uid)
        result = await self.store.add_favourite(FavouriteRow(uid, profile.user_id, self.now_us()), limit)
        if result == "full":
            raise FavouritesFullError(limit)
        return profile, result == "added"

    async def remove_favourite(self, p: Principal, username: Any) -> None:
        """Remove a favourite (``SocialNotFoundError`` when it was none)."""
        uid = self._member(p)
        await self._require_favourites(uid)
        profile = await self.performer(username)
        if not await self.store.remove_favourite(uid, profile.user_id):
            raise SocialNotFoundError(f"{profile.username} is not a favourite")

    async def list_favourites(self, p: Principal) -> tuple[list[Favourite], int]:
        """The favourites (closed performer accounts left out) and the caller's limit."""
        uid = self._member(p)
        await self._require_favourites(uid)
        out = []
        for row in await self.store.favourites(uid):
            user = await self.accounts.store.user_by_id(row.performer_id)
            if user is None or user.closed_at is not None:
                continue
            try:
                profile = await self.accounts.performer_profile(user.username)
            except AccountNotFoundError:
                continue
            out.append(Favourite(profile, row.created_at / US, self.is_online(profile.username)))
        return out, await self.favourites_limit(uid)

    # -- show events: privates and online notifications -------------------------------------

    def on_show_event(self, ev: ShowEventLike) -> None:
        """The show event bus subscriber (synchronous; store work runs in tasks)."""
        if ev.name == "show.state_changed":
            if ev.state == "offline":
                self._online.discard(ev.show_id)
            elif ev.show_id not in self._online:
                self._online.add(ev.show_id)
                self._spawn(self._came_online(ev.show_id, ev.performer_ids, ev.at))
        elif ev.name == "show.offline":
            self._online.discard(ev.show_id)
        elif ev.name == "private.started" and ev.member_id is not None:
            self._started[(ev.show_id, ev.member_id)] = ev.at
        elif ev.name == "private.ended" and ev.member_id is not None:
            started = self._started.pop((ev.show_id, ev.member_id), None)
            if started is not None:
                seconds = max(0, int(ev.at - started))
                self._spawn(self._record_private(ev.show_id, ev.member_id, ev.performer_ids, seconds, ev.at))

    async def _performer_accounts(self, show_id: str, performer_ids: Sequence[str]) -> dict[str, str]:
        """performer user id -> username: the show's owner account and the performers in it."""
        out: dict[str, str] = {}
        try:
            owner = await self.accounts.performer_profile(show_id)
            out[owner.user_id] = owner.username
        except AccountNotFoundError:
            pass
        for pid in performer_ids:
            user = await self.accounts.store.user_by_id(pid)
            if user is not None and user.role == PERFORMER and user.closed_at is None:
                out[user.id] = user.username
        return out

    async def _record_private(
        self, show_id: str, member_id: str, performer_ids: Sequence[str], seconds: int, at: float
    ) -> None:
        member = await self.accounts.store.user_by_id(member_id)
        if member is not None and member.closed_at is not None:
            return  # closed or being erased ("forget my data"): nothing new is recorded about it
        ended = self.now_us()
        for pid in await self._performer_accounts(show_id, performer_ids):
            await self.store.record_private(
                PrivateRow(f"{show_id}:{member_id}:{pid}:{round(at * US)}", member_id, pid, show_id, seconds, ended)
            )

    async def record_private(self, member_id: str, performer_id: str, seconds: int, show_id: str = "") -> None:
        """Record a completed private directly (admin tools, tests of the rules)."""
        now = self.now_us()
        await self.store.record_private(
            PrivateRow(f"{show_id}:{member_id}:{performer_id}:{now}", member_id, performer_id, show_id, seconds, now)
        )

    async def _came_online(self, show_id: str, performer_ids: Sequence[str], at: float) -> None:
        performers = await self._performer_accounts(show_id, performer_ids)
        if not performers:
            return
        now = self.now_us()
        await self.store.add_online_events(
            [OnlineEventRow(f"{pid}:{round(at * US)}", pid, show_id, now) for pid in performers]
        )
        for member_id in await self.store.fans_of(list(performers)):
            if not self.notifier.connected(member_id) or await self.favourites_lapsed(member_id):
                continue
            self.notifier.notify(
                member_id, "favourite.online", FavouriteOnline(performer=show_id, show_id=show_id, at=at).to_wire()
            )

    # -- My Rating ----------------------------------------------------------------------------

    async def set_rating(self, p: Principal, username: Any, stars: Any) -> int:
        """Give 1-5 stars; seen only by the caller."""
        uid = self._member(p)
        if not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 5:
            raise SocialValidationError("stars", "an integer 1..5")
        profile = await self.performer(username)
        await self.store.set_rating(RatingRow(uid, profile.user_id, stars, self.now_us()))
        return stars

    async def rating(self, p: Principal, username: Any) -> int | None:
        """The caller's own rating of the performer (None: not rated)."""
        uid = self._member(p)
        profile = await self.performer(username)
        return (await self.store.ratings_by(uid)).get(profile.user_id)

    async def delete_rating(self, p: Principal, username: Any) -> None:
        """Take a rating back."""
        uid = self._member(p)
        profile = await self.performer(username)
        if not await self.store.delete_rating(uid, profile.user_id):
            raise SocialNotFoundError(f"no rating of {profile.username}")

    # -- votes ----------------------------------------------------------------------------------

    def award_period(self) -> str:
        """The award period now: the calendar month in UTC, ``YYYY-MM``."""
        return time.strftime("%Y-%m", time.gmtime(self.clock()))

    async def vote(self, p: Principal, username: Any) -> str:
        """Vote once per performer per award period after a private of at least 300 s."""
        uid = self._member(p)
        profile = await self.performer(username)
        if self.settings.votes_need_top_membership and not await self.is_top_member(uid):
            raise TopMembershipRequiredError("TopMember Awards votes are a TopMember benefit")
        _count, longest = await self.store.private_stats(uid, profile.user_id)
        if longest < self.settings.vote_min_private_s:
            raise VoteNotEligibleError(
                f"voting needs a private of at least {self.settings.vote_min_private_s} s with {profile.username}"
            )
        period = self.award_period()
        if not await self.store.add_vote(VoteRow(uid, profile.user_id, period, self.now_us())):
            raise AlreadyVotedError(f"already voted for {profile.username} in {period}")
        return period

    # -- mailing lists --------------------------------------------------------------------------

    async def _require_private(self, member_id: str, profile: PerformerProfile, what: str) -> None:
        count, _longest = await self.store.private_stats(member_id, profile.user_id)
        if count == 0:
            raise PrivateRequiredError(f"{what} needs a private with {profile.username} first")

    async def subscribe_mailing(self, p: Principal, username: Any) -> tuple[SubscriptionRow, bool]:
        """Join the performer's mailing list (after a private with it); (subscription, new)."""
        uid = self._member(p)
        profile = await self.performer(username)
        await self._require_private(uid, profile, "the mailing list")
        token = "jasu_" + secrets.token_urlsafe(24)
        row = await self.store.subscribe_mailing(SubscriptionRow(uid, profile.user_id, token, self.now_us()))
        return row, row.token == token

    async def unsubscribe_mailing(self, p: Principal, username: Any) -> None:
        """Leave a mailing list (logged in)."""
        uid = self._member(p)
        profile = await self.performer(username)
        if not await self.store.unsubscribe_mailing(uid, profile.user_id):
            raise SocialNotFoundError(f"not on {profile.username}'s mailing list")

    async def unsubscribe_link_performer(self, token: Any) -> str:
        """The performer whose list an unsubscribe link leaves, changing nothing (the GET of the link:
        mail scanners follow links, so only the POST unsubscribes, RFC 8058)."""
        return await self._by_unsubscribe_link(token, consume=False)

    async def unsubscribe_token(self, token: Any) -> str:
        """Leave a mailing list by the link of a mailing (no login; the one-click POST of RFC 8058);
        returns the performer's username."""
        return await self._by_unsubscribe_link(token, consume=True)

    async def _by_unsubscribe_link(self, token: Any, *, consume: bool) -> str:
        if not isinstance(token, str) or not UNSUBSCRIBE_TOKEN_RE.match(token):
            raise SocialNotFoundError("unknown unsubscribe link")
        find = self.store.unsubscribe_by_token if consume else self.store.subscription_by_token
        row = await find(token)
        if row is None:
            raise SocialNotFoundError("unknown or already used unsubscribe link")
        return await self._username(row.performer_id)

    async def send_mailing(self, p: Principal, subject: Any, body: Any) -> MailingRow:
        """A performer's mailing to its list: at most one per 24 h (``MailingRateLimitedError``)."""
        if p.kind != PERFORMER:
            raise NotPermittedError("only performers send mailings")
        s = self.settings
        subj = _text("subject", subject, s.max_subject)
        text = _text("body", body, s.max_mail_body, newlines=True)
        now = self.now_us()
        row = MailingRow("ml_" + secrets.token_hex(10), p.id, subj, text, now)
        sent, last = await self.store.send_mailing(row, now - s.mailing_interval_s * US)
        if sent is None:
            assert last is not None
            raise MailingRateLimitedError((last + s.mailing_interval_s * US) / US)
        return sent

    async def inbox(self, p: Principal, limit: int = 50) -> list[InboxMessage]:
        """The member's delivered mailings, newest first."""
        uid = self._member(p)
        names: dict[str, str] = {}
        out = []
        for row in await self.store.inbox(uid, limit):
            if row.performer_id not in names:
                names[row.performer_id] = await self._username(row.performer_id)
            out.append(InboxMessage(row, names[row.performer_id]))
        return out

    # -- messages to performers -------------------------------------------------------------------

    async def send_message(self, p: Principal, username: Any, body: Any) -> Message:
        """A TopMember's message to a performer it had a private with."""
        uid = self._member(p)
        text = _text("body", body, self.settings.max_message, newlines=True)
        profile = await self.performer(username)
        if not await self.is_top_member(uid):
            raise TopMembershipRequiredError("messages to performers are for TopMembers")
        await self._require_private(uid, profile, "a message")
        row = MessageRow("msg_" + secrets.token_hex(10), uid, profile.user_id, text, self.now_us())
        await self.store.add_message(row)
        return Message(row, p.username or uid, profile.username)

    async def messages(self, p: Principal, limit: int = 50) -> list[Message]:
        """A performer's inbox, or the messages a member sent; newest first."""
        if p.kind == PERFORMER:
            rows = await self.store.messages_to(p.id, limit)
        elif p.kind == MEMBER:
            rows = await self.store.messages_from(p.id, limit)
        else:
            raise NotPermittedError("only members and performers have messages")
        names: dict[str, str] = {}
        out = []
        for r in rows:
            for uid in (r.member_id, r.performer_id):
                if uid not in names:
                    names[uid] = await self._username(uid)
            out.append(Message(r, names[r.member_id], names[r.performer_id]))
        return out

    # -- performer attributes and search ----------------------------------------------------------

    @staticmethod
    def _attributes(row: AttributesRow | None) -> Attributes:
        if row is None:
            return Attributes()
        return Attributes(
            row.hair_colour, row.build, row.age, row.sexual_preference, row.ethnicity, row.camera_quality, row.languages
        )

    async def attributes(self, username: Any) -> tuple[PerformerProfile, Attributes]:
        """A performer's search attributes."""
        profile = await self.performer(username)
        return profile, self._attributes(await self.store.performer_attributes(profile.user_id))

    async def update_attributes(
        self, p: Principal, username: Any, changes: Mapping[str, Any]
    ) -> tuple[PerformerProfile, Attributes]:
        """Change search attributes: the performer itself (a group: the group account) or an admin."""
        if p.kind not in (PERFORMER, ADMIN):
            raise NotPermittedError("only the performer itself or an admin may change its attributes")
        profile = await self.performer(username)
        if p.kind != ADMIN and p.id != profile.user_id:
            raise NotPermittedError("a performer may change only its own attributes")
        current = self._attributes(await self.store.performer_attributes(profile.user_id))
        new = update_attributes(current, changes)
        await self.store.put_performer_attributes(
            AttributesRow(
                profile.user_id,
                new.hair_colour,
                new.build,
                new.age,
                new.sexual_preference,
                new.ethnicity,
                new.camera_quality,
                new.languages,
                self.now_us(),
            )
        )
        return profile, new

    async def search(self, p: Principal, params: Mapping[str, Sequence[str]]) -> SearchPage:
        """Advanced search (needs the 18+ confirmation); ``preset`` applies a saved search first."""
        self.accounts.require_adult(p)
        params = dict(params)
        base = SearchFilters()
        preset_values = params.pop("preset", None)
        if preset_values is not None:
            if len(preset_values) != 1:
                raise SocialValidationError("preset", "give it once")
            base = parse_filters(preset_filters((await self._preset(p, preset_values[0])).query))
        f = parse_filters(params, base)
        ratings: dict[str, int] = {}
        favourites: set[str] = set()
        if p.kind == MEMBER:
            ratings = await self.store.ratings_by(p.id)
            if await self.favourites_lapsed(p.id):
                if f.favourites_only:
                    await self._require_favourites(p.id)
            else:
                favourites = {r.performer_id for r in await self.store.favourites(p.id)}
        elif f.favourites_only or f.min_rating is not None:
            raise NotPermittedError("favourites_only and min_rating are a member's own filters")
        attrs = await self.store.all_performer_attributes()
        candidates = [
            Candidate(
                c.user_id,
                c.username,
                c.display_name,
                c.price_per_minute,
                c.categories,
                self._attributes(attrs.get(c.user_id)),
                self.is_online(c.username),
                ratings.get(c.user_id),
                c.user_id in favourites,
            )
            for c in await self.store.performer_catalog()
        ]
        return search(candidates, f)

    # -- presets ------------------------------------------------------------------------------------

    async def _preset(self, p: Principal, preset_id: Any) -> PresetRow:
        uid = self._member(p)
        if isinstance(preset_id, str) and PRESET_ID_RE.match(preset_id):
            for row in await self.store.presets(uid):
                if row.id == preset_id:
                    return row
        raise SocialNotFoundError("no such search preset")

    async def presets(self, p: Principal) -> list[PresetRow]:
        """The caller's saved searches."""
        return await self.store.presets(self._member(p))

    async def add_preset(self, p: Principal, name: Any, query: Any) -> PresetRow:
        """Save a search under a name (at most ``max_presets``)."""
        uid = self._member(p)
        label = _text("name", name, 64)
        row = PresetRow("sp_" + secrets.token_hex(10), uid, label, preset_query(query), self.now_us())
        result = await self.store.add_preset(row, self.settings.max_presets)
        if result == "exists":
            raise SocialConflictError("preset_exists", f"a preset named {label!r} exists")
        if result == "full":
            raise SocialConflictError("presets_full", f"at most {self.settings.max_presets} presets")
        return row

    async def delete_preset(self, p: Principal, preset_id: Any) -> None:
        """Delete a saved search."""
        row = await self._preset(p, preset_id)
        await self.store.delete_preset(row.member_id, row.id)

    # -- feeds -----------------------------------------------------------------------------------------

    def _default_feed(self, member_id: str) -> FeedRow:
        return FeedRow(member_id, None, (), (), True, True, self.now_us())

    async def _feed_view(self, row: FeedRow) -> Feed:
        names = [await self._username(pid) for pid in row.performers]
        return Feed(tuple(names), row.categories, row.favourites, row.system_messages, row.token_hash is not None)

    async def feed_settings(self, p: Principal) -> Feed:
        """What the caller's feed carries."""
        uid = self._member(p)
        return await self._feed_view(await self.store.feed(uid) or self._default_feed(uid))

    async def update_feed(
        self,
        p: Principal,
        *,
        performers: Any = None,
        categories: Any = None,
        favourites: Any = None,
        system_messages: Any = None,
    ) -> Feed:
        """Choose the feed's performers (usernames), characteristics (categories), favourites and
        system messages."""
        uid = self._member(p)
        row = await self.store.feed(uid) or self._default_feed(uid)
        changes: dict[str, Any] = {"updated_at": self.now_us()}
        if performers is not None:
            if not isinstance(performers, list) or len(performers) > self.settings.max_feed_performers:
                raise SocialValidationError("performers", f"at most {self.settings.max_feed_performers} usernames")
            ids = []
            for name in performers:
                ids.append((await self.performer(name)).user_id)
            changes["performers"] = tuple(dict.fromkeys(ids))
        if categories is not None:
            if (
                not isinstance(categories, list)
                or len(categories) > len(CATEGORIES)
                or any(c not in CATEGORIES for c in categories)
            ):
                raise SocialValidationError("categories", f"from {', '.join(CATEGORIES)}")
            changes["categories"] = tuple(sorted(set(categories)))
        if favourites is not None:
            changes["favourites"] = bool(favourites)
        if system_messages is not None:
            changes["system_messages"] = bool(system_messages)
        new = FeedRow(**{**row.__dict__, **changes})
        await self.store.put_feed(new)
        return await self._feed_view(new)

    async def rotate_feed_token(self, p: Principal) -> str:
        """A new private feed URL token (the old one stops working); shown once."""
        uid = self._member(p)
        row = await self.store.feed(uid) or self._default_feed(uid)
        token = "jasf_" + secrets.token_urlsafe(32)
        await self.store.put_feed(
            FeedRow(
                uid,
                _token_hash(token),
                row.performers,
                row.categories,
                row.favourites,
                row.system_messages,
                self.now_us(),
            )
        )
        return token

    async def feed_items(self, token: Any) -> list[FeedItem]:
        """The items of the feed behind ``token`` (no login: the token is the key), newest first."""
        if not isinstance(token, str) or not FEED_TOKEN_RE.match(token):
            raise SocialNotFoundError("unknown feed")
        row = await self.store.feed_by_token_hash(_token_hash(token))
        if row is None:
            raise SocialNotFoundError("unknown feed")
        s = self.settings
        now = self.now_us()
        wanted = set(row.performers)
        if row.favourites and not await self.favourites_lapsed(row.member_id):
            wanted |= {f.performer_id for f in await self.store.favourites(row.member_id)}
        catalog = {c.user_id: c for c in await self.store.performer_catalog()}
        cats = set(row.categories)
        items: list[FeedItem] = []
        for ev in await self.store.online_events(now - s.feed_window_s * US, 500):
            perf = catalog.get(ev.performer_id)
            if perf is None or not (ev.performer_id in wanted or cats & set(perf.categories)):
                continue
            items.append(
                FeedItem(
                    ev.id,
                    f"{perf.display_name} is online",
                    f"{perf.display_name} ({perf.username}) came online.",
                    f"/?show={ev.show_id}",
                    ev.occurred_at / US,
                )
            )
        if row.system_messages:
            for m in await self.store.system_messages(s.feed_items):
                items.append(FeedItem(m.id, m.title, m.body, "/", m.created_at / US))
        items.sort(key=lambda i: (-i.at, i.guid))
        return items[: s.feed_items]

    async def post_system_message(self, p: Principal, title: Any, body: Any) -> SystemMessageRow:
        """A message of the site for every feed with system messages on (admins)."""
        if p.kind != ADMIN:
            raise NotPermittedError("only admins post system messages")
        row = SystemMessageRow(
            "sys_" + secrets.token_hex(10),
            _text("title", title, 200),
            _text("body", body, 5000, newlines=True),
            self.now_us(),
        )
        await self.store.add_system_message(row)
        return row

    # -- personal data ------------------------------------------------------------------------------------

    def personal_data_source(self) -> "SocialPersonalData":
        """The ``PersonalDataSource`` named ``social`` (app.py registers it)."""
        return SocialPersonalData(self)


class SocialPersonalData:
    """Download, erasure and retention of every social row about a person."""

    name = "social"

    def __init__(self, service: SocialService) -> None:
        self.service = service

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row naming ``user_id``, by table (no token and no token hash: docs/privacy.md)."""
        return await self.service.store.export_user(user_id)

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Delete the person's rows; votes stay, under ``pseudonym``, so award tallies do not change.

        Writes already under way (the record of a private that just ended) finish first, so none
        lands after the delete."""
        await asyncio.gather(*list(self.service._tasks), return_exceptions=True)
        return await self.service.store.erase_user(user_id, pseudonym)

    async def purge(self, policy: RetentionPolicy) -> int:
        """Usage data (the record of privates) of members whose last purchase is older than the
        cut-off; the online log past its 30 days."""
        store = self.service.store
        expired = []
        for member_id in await store.private_members():
            last = policy.last_purchase_us.get(member_id)
            if last is None:
                act = await store.member_activity(member_id)
                last = act.created_at if act is not None else 0
            if last < policy.usage_before_us:
                expired.append(member_id)
        n = await store.delete_privates_of(expired)
        n += await store.delete_online_events_before(policy.now_us - self.service.settings.online_log_retention_s * US)
        return n


async def open_social(
    cfg: Any,
    accounts: AccountsService,
    ledger: Ledger | None,
    clock: Clock,
    *,
    notifier: OnlineNotifier | None = None,
    is_online: Callable[[str], bool] = lambda _username: False,
) -> SocialService:
    """Open the store beside the accounts' (``cfg`` is the ``AccountsConfig``: same data_dir or dsn)."""
    import os

    store: Any
    if cfg.dsn:
        from jasmin_sfu.store.postgres_social import PostgresSocialStore

        store = await PostgresSocialStore.open(cfg.dsn)
    else:
        from jasmin_sfu.store.sqlite_social import SqliteSocialStore

        store = await SqliteSocialStore.open(
            os.path.join(cfg.data_dir, "social.sqlite3"), os.path.join(cfg.data_dir, "accounts.sqlite3")
        )
    return SocialService(store, accounts, ledger, clock, notifier=notifier, is_online=is_online)
