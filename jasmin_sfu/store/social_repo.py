"""Repository protocol of the social features: TopMembership, favourites, privates, ratings, votes,
mailing lists, inboxes, messages, performer search attributes, presets, feeds.

The service (``jasmin_sfu.services.social``) holds the rules; a store keeps
rows and makes each method one atomic transaction. The checks that must not
race are decided inside the store's transaction:

* ``begin_top_membership`` starts a pending period only when no membership is
  running (an upsert whose WHERE refuses a live row), so two concurrent
  subscriptions share one anchor, hence one ledger transfer id, hence one fee;
* ``add_favourite`` counts and inserts under one lock per member (PostgreSQL:
  an advisory transaction lock; SQLite: ``BEGIN IMMEDIATE``), so 24 stays 24;
* ``send_mailing`` moves the performer's quota row forward only when the last
  mailing is older than ``not_before`` (a conditional upsert), then fans the
  mailing out to every subscriber's inbox in the same transaction;
* votes are unique on (member, performer, period) in the database.

The accounts' tables (``acc_users``, ``acc_performers``, ``acc_payments``) are
read, never written: the accounts store owns them (see ``member_activity`` and
``performer_catalog``; the AccountsStore protocol has no such read yet).

All times are integer microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class TopMemberRow:
    """A TopMembership: ``period`` is the last paid period (0 = the first; -1 none yet).

    Period n covers ``[started_at + n * P, started_at + (n + 1) * P)``, P = 14 days;
    ``paid_until`` is the end of the last paid period.
    """

    user_id: str
    status: str  # pending | active | lapsed
    started_at: int
    period: int
    paid_until: int
    auto_renew: bool
    updated_at: int
    cancelled_at: int | None = None
    lapsed_at: int | None = None


@dataclass(frozen=True)
class FavouriteRow:
    member_id: str
    performer_id: str
    created_at: int


@dataclass(frozen=True)
class PrivateRow:
    """A completed private: who, with whom, how long (whole seconds)."""

    id: str
    member_id: str
    performer_id: str
    show_id: str
    seconds: int
    ended_at: int


@dataclass(frozen=True)
class RatingRow:
    """My Rating: stars a member gives a performer, seen by that member only."""

    member_id: str
    performer_id: str
    stars: int
    updated_at: int


@dataclass(frozen=True)
class VoteRow:
    """A TopMember Awards vote; ``period`` is the award period (``YYYY-MM``, UTC)."""

    member_id: str
    performer_id: str
    period: str
    created_at: int


@dataclass(frozen=True)
class SubscriptionRow:
    """A member on a performer's mailing list; ``token`` unsubscribes without login."""

    member_id: str
    performer_id: str
    token: str
    created_at: int


@dataclass(frozen=True)
class MailingRow:
    """One message a performer sent to its mailing list."""

    id: str
    performer_id: str
    subject: str
    body: str
    sent_at: int
    recipients: int = 0


@dataclass(frozen=True)
class InboxRow:
    """A mailing as delivered to one member, with that subscription's unsubscribe token."""

    id: str
    member_id: str
    mailing_id: str
    performer_id: str
    subject: str
    body: str
    unsubscribe_token: str
    created_at: int


@dataclass(frozen=True)
class MessageRow:
    """A TopMember's message to a performer."""

    id: str
    member_id: str
    performer_id: str
    body: str
    created_at: int


@dataclass(frozen=True)
class AttributesRow:
    """A performer's search attributes (None: not given)."""

    performer_id: str
    hair_colour: str | None
    build: str | None
    age: int | None
    sexual_preference: str | None
    ethnicity: str | None
    camera_quality: str | None
    languages: tuple[str, ...]
    updated_at: int


@dataclass(frozen=True)
class PresetRow:
    """A saved search; ``query`` is the filters as a JSON object."""

    id: str
    member_id: str
    name: str
    query: str
    created_at: int


@dataclass(frozen=True)
class FeedRow:
    """A member's RSS feed: what it carries, and the SHA-256 of its URL token."""

    member_id: str
    token_hash: str | None
    performers: tuple[str, ...]
    categories: tuple[str, ...]
    favourites: bool
    system_messages: bool
    updated_at: int


@dataclass(frozen=True)
class OnlineEventRow:
    """A performer came online (the show left ``offline``)."""

    id: str
    performer_id: str
    show_id: str
    occurred_at: int


@dataclass(frozen=True)
class SystemMessageRow:
    """A message of the site to everyone (RSS feeds with system messages on)."""

    id: str
    title: str
    body: str
    created_at: int


@dataclass(frozen=True)
class PerformerCatalogRow:
    """An open performer account, as read from the accounts' tables."""

    user_id: str
    username: str
    display_name: str
    price_per_minute: int
    categories: tuple[str, ...]


@dataclass(frozen=True)
class MemberActivity:
    """When the account was made and when it last bought credits (None: never)."""

    created_at: int
    last_purchase_at: int | None


class SocialStore(Protocol):
    """A database holding the social rows; each method is one transaction."""

    # -- TopMembership
    async def top_member(self, user_id: str) -> TopMemberRow | None:
        """The member's TopMembership row, if any."""
        ...

    async def begin_top_membership(self, user_id: str, now: int) -> TopMemberRow:
        """The running membership (active and paid past ``now``, or pending), or a new pending one
        anchored at ``now``."""
        ...

    async def mark_top_paid(self, user_id: str, started_at: int, period: int, paid_until: int, now: int) -> bool:
        """Period ``period`` of the membership anchored at ``started_at`` is paid; False when it
        already was (or the membership changed)."""
        ...

    async def set_top_auto_renew(self, user_id: str, auto_renew: bool, now: int) -> TopMemberRow | None:
        """Turn renewal on or off (cancel); None when there is no active membership."""
        ...

    async def end_top_membership(self, user_id: str, started_at: int, now: int, *, abandon: bool) -> None:
        """A renewal could not be paid: ``lapsed``; ``abandon``: a first period never paid, forgotten."""
        ...

    async def top_members_due(self, before: int, limit: int) -> list[TopMemberRow]:
        """Active, auto-renewing memberships whose paid period ends before ``before``."""
        ...

    # -- favourites
    async def add_favourite(self, row: FavouriteRow, limit: int) -> str:
        """``added``, ``exists``, or ``full`` (the member already has ``limit``)."""
        ...

    async def remove_favourite(self, member_id: str, performer_id: str) -> bool:
        """False when it was not a favourite."""
        ...

    async def favourites(self, member_id: str) -> list[FavouriteRow]:
        """The member's favourites, oldest first."""
        ...

    async def fans_of(self, performer_ids: Sequence[str]) -> list[str]:
        """Members having any of these performers as a favourite."""
        ...

    # -- privates
    async def record_private(self, row: PrivateRow) -> bool:
        """Insert (idempotent by id); False when already recorded."""
        ...

    async def private_stats(self, member_id: str, performer_id: str) -> tuple[int, int]:
        """(number of completed privates, longest in seconds) of the pair."""
        ...

    async def private_members(self) -> list[str]:
        """Members having any recorded private (retention)."""
        ...

    async def delete_privates_of(self, member_ids: Sequence[str]) -> int:
        """Delete these members' private records (retention); rows deleted."""
        ...

    # -- ratings and votes
    async def set_rating(self, row: RatingRow) -> None:
        """Insert or replace a rating."""
        ...

    async def delete_rating(self, member_id: str, performer_id: str) -> bool:
        """False when there was none."""
        ...

    async def ratings_by(self, member_id: str) -> dict[str, int]:
        """performer id -> stars, for one member."""
        ...

    async def add_vote(self, row: VoteRow) -> bool:
        """False when the member already voted for the performer in that period."""
        ...

    async def vote_counts(self, period: str) -> dict[str, int]:
        """performer id -> votes in the period."""
        ...

    # -- mailing lists
    async def subscribe_mailing(self, row: SubscriptionRow) -> SubscriptionRow:
        """Insert, or the subscription already stored for (member, performer)."""
        ...

    async def mailing_subscription(self, member_id: str, performer_id: str) -> SubscriptionRow | None:
        """The subscription of the pair."""
        ...

    async def unsubscribe_mailing(self, member_id: str, performer_id: str) -> bool:
        """False when not subscribed."""
        ...

    async def subscription_by_token(self, token: str) -> SubscriptionRow | None:
        """The subscription with this unsubscribe token, unchanged (None: unknown token)."""
        ...

    async def unsubscribe_by_token(self, token: str) -> SubscriptionRow | None:
        """Delete the subscription with this token; the deleted row (None: unknown token)."""
        ...

    async def send_mailing(self, mailing: MailingRow, not_before: int) -> tuple[MailingRow | None, int | None]:
        """Store and fan out the mailing unless the performer sent one at or after ``not_before``:
        (the stored mailing with its recipient count, None) or (None, the last send time)."""
        ...

    async def inbox(self, member_id: str, limit: int) -> list[InboxRow]:
        """The member's delivered mailings, newest first."""
        ...

    # -- messages to performers
    async def add_message(self, row: MessageRow) -> None:
        """Insert a message."""
        ...

    async def messages_to(self, performer_id: str, limit: int) -> list[MessageRow]:
        """A performer's inbox, newest first."""
        ...

    async def messages_from(self, member_id: str, limit: int) -> list[MessageRow]:
        """What a member sent, newest first."""
        ...

    # -- performer attributes and presets
    async def performer_attributes(self, performer_id: str) -> AttributesRow | None:
        """One performer's search attributes."""
        ...

    async def all_performer_attributes(self) -> dict[str, AttributesRow]:
        """Every performer's search attributes, by performer id."""
        ...

    async def put_performer_attributes(self, row: AttributesRow) -> None:
        """Insert or replace."""
        ...

    async def presets(self, member_id: str) -> list[PresetRow]:
        """A member's saved searches, oldest first."""
        ...

    async def add_preset(self, row: PresetRow, limit: int) -> str:
        """``added``, ``exists`` (the name is taken) or ``full``."""
        ...

    async def delete_preset(self, member_id: str, preset_id: str) -> bool:
        """False when unknown."""
        ...

    # -- feeds, online events, system messages
    async def feed(self, member_id: str) -> FeedRow | None:
        """The member's feed settings."""
        ...

    async def feed_by_token_hash(self, token_hash: str) -> FeedRow | None:
        """A feed by the SHA-256 of its URL token."""
        ...

    async def put_feed(self, row: FeedRow) -> None:
        """Insert or replace."""
        ...

    async def add_online_events(self, rows: Sequence[OnlineEventRow]) -> None:
        """Record performers coming online (idempotent by id)."""
        ...

    async def online_events(self, since: int, limit: int) -> list[OnlineEventRow]:
        """Online events at or after ``since``, newest first."""
        ...

    async def delete_online_events_before(self, before: int) -> int:
        """Retention of the online log; rows deleted."""
        ...

    async def add_system_message(self, row: SystemMessageRow) -> None:
        """Insert a system message."""
        ...

    async def system_messages(self, limit: int) -> list[SystemMessageRow]:
        """Newest first."""
        ...

    # -- the accounts' tables, read only
    async def member_activity(self, user_id: str) -> MemberActivity | None:
        """Account creation and last credited purchase; None when no such account."""
        ...

    async def performer_catalog(self) -> list[PerformerCatalogRow]:
        """Every open performer account with price and categories."""
        ...

    # -- personal data
    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row about ``user_id``, by table."""
        ...

    async def erase_user(self, user_id: str, pseudonym: str) -> int:
        """Delete the user's rows; votes are re-keyed to ``pseudonym`` (award tallies stay right)."""
        ...

    async def schema_version(self) -> int:
        """The applied social migration version."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
