"""The social store's queries, written once for SQLite and PostgreSQL.

Forty-odd small queries in two copies would drift apart, so the SQL lives here
once, in the common subset of both dialects (``?`` placeholders, ``ON CONFLICT``
upserts, INTEGER booleans), and each backend supplies only a connection:

* ``sqlite_social.SqliteSocialStore``: one connection driven by one worker
  thread, each method inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (an asyncio lock
  keeps a second method out of an open transaction between two statements);
* ``postgres_social.PostgresSocialStore``: an asyncpg pool, one READ COMMITTED
  transaction per method, ``?`` rewritten to ``$n`` once per statement, and
  ``lock(key)`` as an advisory transaction lock where a count must not race.

The accounts' tables are read through ``_acc`` (SQLite: a second, read-only
connection to ``accounts.sqlite3``; PostgreSQL: the same schema).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, Sequence

from jasmin_sfu.store.social_repo import (
    AttributesRow,
    FavouriteRow,
    FeedRow,
    InboxRow,
    MailingRow,
    MemberActivity,
    MessageRow,
    OnlineEventRow,
    PerformerCatalogRow,
    PresetRow,
    PrivateRow,
    RatingRow,
    SubscriptionRow,
    SystemMessageRow,
    TopMemberRow,
    VoteRow,
)


class Conn(Protocol):
    """One open transaction (or, for reads, one connection)."""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """All rows of a query."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; rows changed."""
        ...

    async def lock(self, key: str) -> None:
        """Serialise transactions on ``key`` until this one ends."""
        ...


_TOP = "user_id, status, started_at, period, paid_until, auto_renew, updated_at, cancelled_at, lapsed_at"
_ATTRS = "performer_id, hair_colour, build, age, sexual_preference, ethnicity, camera_quality, languages, updated_at"
_FEED = "member_id, token_hash, performers, categories, favourites, system_messages, updated_at"
_INBOX = "id, member_id, mailing_id, performer_id, subject, body, unsubscribe_token, created_at"
_FEED_EXPORT = "member_id, performers, categories, favourites, system_messages, updated_at"
_INBOX_EXPORT = "id, member_id, mailing_id, performer_id, subject, body, created_at"


def _split(s: str) -> tuple[str, ...]:
    return tuple(x for x in s.split(",") if x)


def _top(r: Sequence[Any]) -> TopMemberRow:
    return TopMemberRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8])


def _attrs(r: Sequence[Any]) -> AttributesRow:
    return AttributesRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _split(r[7]), r[8])


def _feed(r: Sequence[Any]) -> FeedRow:
    return FeedRow(r[0], r[1], _split(r[2]), _split(r[3]), bool(r[4]), bool(r[5]), r[6])


def _dicts(cols: str, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = [c.strip() for c in cols.split(",")]
    return [dict(zip(names, r)) for r in rows]


class SqlSocialStore:
    """``SocialStore`` over a ``Conn``; subclasses open connections and migrate."""

    def _tx(self) -> AbstractAsyncContextManager[Conn]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _acc(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._tx() as c:
            return await c.fetch(sql, *args)

    async def _x(self, sql: str, *args: Any) -> int:
        async with self._tx() as c:
            return await c.execute(sql, *args)

    # -- TopMembership -----------------------------------------------------------

    async def top_member(self, user_id: str) -> TopMemberRow | None:
        """The member's TopMembership row."""
        rows = await self._q(f"SELECT {_TOP} FROM soc_top_members WHERE user_id = ?", user_id)
        return _top(rows[0]) if rows else None

    async def begin_top_membership(self, user_id: str, now: int) -> TopMemberRow:
        """The running membership, or a new pending one anchored at ``now``."""
        async with self._tx() as c:
            # The WHERE keeps a live row: a pending one (its first fee is being charged, maybe by a
            # twin request: same anchor, same transfer id) or one paid past now.
            await c.execute(
                f"INSERT INTO soc_top_members ({_TOP}) VALUES (?, 'pending', ?, -1, ?, 1, ?, NULL, NULL)"
                " ON CONFLICT (user_id) DO UPDATE SET status = 'pending', started_at = excluded.started_at,"
                " period = -1, paid_until = excluded.paid_until, auto_renew = 1, updated_at = excluded.updated_at,"
                " cancelled_at = NULL, lapsed_at = NULL"
                " WHERE soc_top_members.status = 'lapsed'"
                " OR (soc_top_members.status = 'active' AND soc_top_members.paid_until <= excluded.started_at)",
                user_id,
                now,
                now,
                now,
            )
            rows = await c.fetch(f"SELECT {_TOP} FROM soc_top_members WHERE user_id = ?", user_id)
        return _top(rows[0])

    async def mark_top_paid(self, user_id: str, started_at: int, period: int, paid_until: int, now: int) -> bool:
        """Record a paid period (only forward, only for the same anchor)."""
        n = await self._x(
            "UPDATE soc_top_members SET status = 'active', period = ?, paid_until = ?, updated_at = ?"
            " WHERE user_id = ? AND started_at = ? AND period < ? AND status <> 'lapsed'",
            period,
            paid_until,
            now,
            user_id,
            started_at,
            period,
        )
        return n == 1

    async def set_top_auto_renew(self, user_id: str, auto_renew: bool, now: int) -> TopMemberRow | None:
        """Renewal on or off."""
        async with self._tx() as c:
            n = await c.execute(
                "UPDATE soc_top_members SET auto_renew = ?, cancelled_at = ?, updated_at = ?"
                " WHERE user_id = ? AND status = 'active'",
                int(auto_renew),
                None if auto_renew else now,
                now,
                user_id,
            )
            rows = await c.fetch(f"SELECT {_TOP} FROM soc_top_members WHERE user_id = ?", user_id) if n else []
        return _top(rows[0]) if rows else None

    async def end_top_membership(self, user_id: str, started_at: int, now: int, *, abandon: bool) -> None:
        """Lapse (or forget a never-paid pending) membership."""
        if abandon:
            await self._x(
                "DELETE FROM soc_top_members WHERE user_id = ? AND started_at = ? AND status = 'pending'",
                user_id,
                started_at,
            )
            return
        await self._x(
            "UPDATE soc_top_members SET status = 'lapsed', auto_renew = 0, lapsed_at = ?, updated_at = ?"
            " WHERE user_id = ? AND started_at = ? AND status <> 'lapsed'",
            now,
            now,
            user_id,
            started_at,
        )

    async def top_members_due(self, before: int, limit: int) -> list[TopMemberRow]:
        """Memberships to renew."""
        rows = await self._q(
            f"SELECT {_TOP} FROM soc_top_members WHERE status = 'active' AND auto_renew = 1 AND paid_until <= ?"
            " ORDER BY paid_until LIMIT ?",
            before,
            limit,
        )
        return [_top(r) for r in rows]

    # -- favourites -----------------------------------------------------------------

    async def add_favourite(self, row: FavouriteRow, limit: int) -> str:
        """Count and insert under the member's lock."""
        async with self._tx() as c:
            await c.lock("soc_fav:" + row.member_id)
            if await c.fetch(
                "SELECT 1 FROM soc_favourites WHERE member_id = ? AND performer_id = ?", row.member_id, row.performer_id
            ):
                return "exists"
            ((count,),) = await c.fetch("SELECT count(*) FROM soc_favourites WHERE member_id = ?", row.member_id)
            if count >= limit:
                return "full"
            await c.execute(
                "INSERT INTO soc_favourites (member_id, performer_id, created_at) VALUES (?, ?, ?)",
                row.member_id,
                row.performer_id,
                row.created_at,
            )
            return "added"

    async def remove_favourite(self, member_id: str, performer_id: str) -> bool:
        """Remove one."""
        return (
            await self._x(
                "DELETE FROM soc_favourites WHERE member_id = ? AND performer_id = ?", member_id, performer_id
            )
            == 1
        )

    async def favourites(self, member_id: str) -> list[FavouriteRow]:
        """Oldest first."""
        rows = await self._q(
            "SELECT member_id, performer_id, created_at FROM soc_favourites WHERE member_id = ?"
            " ORDER BY created_at, performer_id",
            member_id,
        )
        return [FavouriteRow(*r) for r in rows]

    async def fans_of(self, performer_ids: Sequence[str]) -> list[str]:
        """Members with any of these favourites."""
        if not performer_ids:
            return []
        marks = ", ".join("?" for _ in performer_ids)
        rows = await self._q(
            f"SELECT DISTINCT member_id FROM soc_favourites WHERE performer_id IN ({marks}) ORDER BY member_id",
            *performer_ids,
        )
        return [r[0] for r in rows]

    # -- privates ---------------------------------------------------------------------

    async def record_private(self, row: PrivateRow) -> bool:
        """Idempotent by id."""
        return (
            await self._x(
                "INSERT INTO soc_privates (id, member_id, performer_id, show_id, seconds, ended_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                row.id,
                row.member_id,
                row.performer_id,
                row.show_id,
                row.seconds,
                row.ended_at,
            )
            == 1
        )

    async def private_stats(self, member_id: str, performer_id: str) -> tuple[int, int]:
        """(count, longest)."""
        rows = await self._q(
            "SELECT count(*), coalesce(max(seconds), 0) FROM soc_privates WHERE member_id = ? AND performer_id = ?",
            member_id,
            performer_id,
        )
        return int(rows[0][0]), int(rows[0][1])

    async def private_members(self) -> list[str]:
        """Members with records."""
        return [r[0] for r in await self._q("SELECT DISTINCT member_id FROM soc_privates ORDER BY member_id")]

    async def delete_privates_of(self, member_ids: Sequence[str]) -> int:
        """Retention."""
        if not member_ids:
            return 0
        marks = ", ".join("?" for _ in member_ids)
        return await self._x(f"DELETE FROM soc_privates WHERE member_id IN ({marks})", *member_ids)

    # -- ratings and votes --------------------------------------------------------------

    async def set_rating(self, row: RatingRow) -> None:
        """Upsert."""
        await self._x(
            "INSERT INTO soc_ratings (member_id, performer_id, stars, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (member_id, performer_id) DO UPDATE SET stars = excluded.stars,"
            " updated_at = excluded.updated_at",
            row.member_id,
            row.performer_id,
            row.stars,
            row.updated_at,
        )

    async def delete_rating(self, member_id: str, performer_id: str) -> bool:
        """Delete."""
        return (
            await self._x("DELETE FROM soc_ratings WHERE member_id = ? AND performer_id = ?", member_id, performer_id)
            == 1
        )

    async def ratings_by(self, member_id: str) -> dict[str, int]:
        """One member's ratings."""
        rows = await self._q("SELECT performer_id, stars FROM soc_ratings WHERE member_id = ?", member_id)
        return {r[0]: int(r[1]) for r in rows}

    async def add_vote(self, row: VoteRow) -> bool:
        """Unique per (member, performer, period)."""
        return (
            await self._x(
                "INSERT INTO soc_votes (member_id, performer_id, period, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (member_id, performer_id, period) DO NOTHING",
                row.member_id,
                row.performer_id,
                row.period,
                row.created_at,
            )
            == 1
        )

    async def vote_counts(self, period: str) -> dict[str, int]:
        """Tally."""
        rows = await self._q(
            "SELECT performer_id, count(*) FROM soc_votes WHERE period = ? GROUP BY performer_id", period
        )
        return {r[0]: int(r[1]) for r in rows}

    # -- mailing lists ---------------------------------------------------------------------

    async def subscribe_mailing(self, row: SubscriptionRow) -> SubscriptionRow:
        """Insert or return the existing subscription."""
        async with self._tx() as c:
            await c.execute(
                "INSERT INTO soc_mail_subscriptions (member_id, performer_id, token, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (member_id, performer_id) DO NOTHING",
                row.member_id,
                row.performer_id,
                row.token,
                row.created_at,
            )
            rows = await c.fetch(
                "SELECT member_id, performer_id, token, created_at FROM soc_mail_subscriptions"
                " WHERE member_id = ? AND performer_id = ?",
                row.member_id,
                row.performer_id,
            )
        return SubscriptionRow(*rows[0])

    async def mailing_subscription(self, member_id: str, performer_id: str) -> SubscriptionRow | None:
        """One subscription."""
        rows = await self._q(
            "SELECT member_id, performer_id, token, created_at FROM soc_mail_subscriptions"
            " WHERE member_id = ? AND performer_id = ?",
            member_id,
            performer_id,
        )
        return SubscriptionRow(*rows[0]) if rows else None

    async def unsubscribe_mailing(self, member_id: str, performer_id: str) -> bool:
        """Delete by pair."""
        return (
            await self._x(
                "DELETE FROM soc_mail_subscriptions WHERE member_id = ? AND performer_id = ?", member_id, performer_id
            )
            == 1
        )

    async def subscription_by_token(self, token: str) -> SubscriptionRow | None:
        """The subscription with this unsubscribe token (read only)."""
        rows = await self._q(
            "SELECT member_id, performer_id, token, created_at FROM soc_mail_subscriptions WHERE token = ?", token
        )
        return SubscriptionRow(*rows[0]) if rows else None

    async def unsubscribe_by_token(self, token: str) -> SubscriptionRow | None:
        """Delete by token."""
        async with self._tx() as c:
            rows = await c.fetch(
                "SELECT member_id, performer_id, token, created_at FROM soc_mail_subscriptions WHERE token = ?", token
            )
            if rows:
                await c.execute("DELETE FROM soc_mail_subscriptions WHERE token = ?", token)
        return SubscriptionRow(*rows[0]) if rows else None

    async def send_mailing(self, mailing: MailingRow, not_before: int) -> tuple[MailingRow | None, int | None]:
        """Quota check, store, fan out: one transaction."""
        m = mailing
        async with self._tx() as c:
            moved = await c.execute(
                "INSERT INTO soc_mail_quota (performer_id, last_sent_at) VALUES (?, ?)"
                " ON CONFLICT (performer_id) DO UPDATE SET last_sent_at = excluded.last_sent_at"
                " WHERE soc_mail_quota.last_sent_at <= ?",
                m.performer_id,
                m.sent_at,
                not_before,
            )
            if moved != 1:
                ((last,),) = await c.fetch(
                    "SELECT last_sent_at FROM soc_mail_quota WHERE performer_id = ?", m.performer_id
                )
                return None, int(last)
            subs = await c.fetch(
                "SELECT member_id, token FROM soc_mail_subscriptions WHERE performer_id = ? ORDER BY member_id",
                m.performer_id,
            )
            await c.execute(
                "INSERT INTO soc_mailings (id, performer_id, subject, body, sent_at, recipients)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                m.id,
                m.performer_id,
                m.subject,
                m.body,
                m.sent_at,
                len(subs),
            )
            for member_id, token in subs:
                await c.execute(
                    f"INSERT INTO soc_inbox ({_INBOX}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    f"{m.id}:{member_id}",
                    member_id,
                    m.id,
                    m.performer_id,
                    m.subject,
                    m.body,
                    token,
                    m.sent_at,
                )
        return MailingRow(m.id, m.performer_id, m.subject, m.body, m.sent_at, len(subs)), None

    async def inbox(self, member_id: str, limit: int) -> list[InboxRow]:
        """Newest first."""
        rows = await self._q(
            f"SELECT {_INBOX} FROM soc_inbox WHERE member_id = ? ORDER BY created_at DESC, id LIMIT ?",
            member_id,
            limit,
        )
        return [InboxRow(*r) for r in rows]

    # -- messages --------------------------------------------------------------------------

    async def add_message(self, row: MessageRow) -> None:
        """Insert."""
        await self._x(
            "INSERT INTO soc_messages (id, member_id, performer_id, body, created_at) VALUES (?, ?, ?, ?, ?)",
            row.id,
            row.member_id,
            row.performer_id,
            row.body,
            row.created_at,
        )

    async def messages_to(self, performer_id: str, limit: int) -> list[MessageRow]:
        """A performer's inbox."""
        rows = await self._q(
            "SELECT id, member_id, performer_id, body, created_at FROM soc_messages WHERE performer_id = ?"
            " ORDER BY created_at DESC, id LIMIT ?",
            performer_id,
            limit,
        )
        return [MessageRow(*r) for r in rows]

    async def messages_from(self, member_id: str, limit: int) -> list[MessageRow]:
        """A member's sent messages."""
        rows = await self._q(
            "SELECT id, member_id, performer_id, body, created_at FROM soc_messages WHERE member_id = ?"
            " ORDER BY created_at DESC, id LIMIT ?",
            member_id,
            limit,
        )
        return [MessageRow(*r) for r in rows]

    # -- attributes and presets --------------------------------------------------------------

    async def performer_attributes(self, performer_id: str) -> AttributesRow | None:
        """One performer's."""
        rows = await self._q(f"SELECT {_ATTRS} FROM soc_performer_attrs WHERE performer_id = ?", performer_id)
        return _attrs(rows[0]) if rows else None

    async def all_performer_attributes(self) -> dict[str, AttributesRow]:
        """Everyone's."""
        return {r[0]: _attrs(r) for r in await self._q(f"SELECT {_ATTRS} FROM soc_performer_attrs")}

    async def put_performer_attributes(self, row: AttributesRow) -> None:
        """Upsert."""
        a = row
        await self._x(
            f"INSERT INTO soc_performer_attrs ({_ATTRS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (performer_id) DO UPDATE SET hair_colour = excluded.hair_colour, build = excluded.build,"
            " age = excluded.age, sexual_preference = excluded.sexual_preference, ethnicity = excluded.ethnicity,"
            " camera_quality = excluded.camera_quality, languages = excluded.languages,"
            " updated_at = excluded.updated_at",
            a.performer_id,
            a.hair_colour,
            a.build,
            a.age,
            a.sexual_preference,
            a.ethnicity,
            a.camera_quality,
            ",".join(a.languages),
            a.updated_at,
        )

    async def presets(self, member_id: str) -> list[PresetRow]:
        """Oldest first."""
        rows = await self._q(
            "SELECT id, member_id, name, query, created_at FROM soc_presets WHERE member_id = ?"
            " ORDER BY created_at, id",
            member_id,
        )
        return [PresetRow(*r) for r in rows]

    async def add_preset(self, row: PresetRow, limit: int) -> str:
        """Count and insert under the member's lock."""
        async with self._tx() as c:
            await c.lock("soc_preset:" + row.member_id)
            if await c.fetch("SELECT 1 FROM soc_presets WHERE member_id = ? AND name = ?", row.member_id, row.name):
                return "exists"
            ((count,),) = await c.fetch("SELECT count(*) FROM soc_presets WHERE member_id = ?", row.member_id)
            if count >= limit:
                return "full"
            await c.execute(
                "INSERT INTO soc_presets (id, member_id, name, query, created_at) VALUES (?, ?, ?, ?, ?)",
                row.id,
                row.member_id,
                row.name,
                row.query,
                row.created_at,
            )
            return "added"

    async def delete_preset(self, member_id: str, preset_id: str) -> bool:
        """Delete one of the member's."""
        return await self._x("DELETE FROM soc_presets WHERE member_id = ? AND id = ?", member_id, preset_id) == 1

    # -- feeds ------------------------------------------------------------------------------

    async def feed(self, member_id: str) -> FeedRow | None:
        """Settings."""
        rows = await self._q(f"SELECT {_FEED} FROM soc_feeds WHERE member_id = ?", member_id)
        return _feed(rows[0]) if rows else None

    async def feed_by_token_hash(self, token_hash: str) -> FeedRow | None:
        """By token."""
        rows = await self._q(f"SELECT {_FEED} FROM soc_feeds WHERE token_hash = ?", token_hash)
        return _feed(rows[0]) if rows else None

    async def put_feed(self, row: FeedRow) -> None:
        """Upsert."""
        f = row
        await self._x(
            f"INSERT INTO soc_feeds ({_FEED}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET"
            " token_hash = excluded.token_hash, performers = excluded.performers, categories = excluded.categories,"
            " favourites = excluded.favourites, system_messages = excluded.system_messages,"
            " updated_at = excluded.updated_at",
            f.member_id,
            f.token_hash,
            ",".join(f.performers),
            ",".join(f.categories),
            int(f.favourites),
            int(f.system_messages),
            f.updated_at,
        )

    async def add_online_events(self, rows: Sequence[OnlineEventRow]) -> None:
        """Idempotent by id."""
        async with self._tx() as c:
            for r in rows:
                await c.execute(
                    "INSERT INTO soc_online_events (id, performer_id, show_id, occurred_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    r.id,
                    r.performer_id,
                    r.show_id,
                    r.occurred_at,
                )

    async def online_events(self, since: int, limit: int) -> list[OnlineEventRow]:
        """Newest first."""
        rows = await self._q(
            "SELECT id, performer_id, show_id, occurred_at FROM soc_online_events WHERE occurred_at >= ?"
            " ORDER BY occurred_at DESC, id LIMIT ?",
            since,
            limit,
        )
        return [OnlineEventRow(*r) for r in rows]

    async def delete_online_events_before(self, before: int) -> int:
        """Retention."""
        return await self._x("DELETE FROM soc_online_events WHERE occurred_at < ?", before)

    async def add_system_message(self, row: SystemMessageRow) -> None:
        """Insert."""
        await self._x(
            "INSERT INTO soc_system_messages (id, title, body, created_at) VALUES (?, ?, ?, ?)",
            row.id,
            row.title,
            row.body,
            row.created_at,
        )

    async def system_messages(self, limit: int) -> list[SystemMessageRow]:
        """Newest first."""
        rows = await self._q(
            "SELECT id, title, body, created_at FROM soc_system_messages ORDER BY created_at DESC, id LIMIT ?", limit
        )
        return [SystemMessageRow(*r) for r in rows]

    # -- the accounts' tables, read only ------------------------------------------------------

    async def member_activity(self, user_id: str) -> MemberActivity | None:
        """Creation and last credited purchase."""
        users = await self._acc("SELECT created_at FROM acc_users WHERE id = ?", user_id)
        if not users:
            return None
        paid = await self._acc(
            "SELECT max(coalesce(credited_at, created_at)) FROM acc_payments WHERE user_id = ? AND status = 'credited'",
            user_id,
        )
        last = paid[0][0] if paid else None
        return MemberActivity(int(users[0][0]), int(last) if last is not None else None)

    async def performer_catalog(self) -> list[PerformerCatalogRow]:
        """Open performer accounts."""
        rows = await self._acc(
            "SELECT u.id, u.username, p.display_name, p.price_per_minute FROM acc_users u"
            " JOIN acc_performers p ON p.user_id = u.id WHERE u.role = 'performer' AND u.closed_at IS NULL"
            " ORDER BY u.username_key"
        )
        cats: dict[str, list[str]] = {}
        for pid, cat in await self._acc(
            "SELECT performer_id, category FROM acc_performer_categories ORDER BY performer_id, category"
        ):
            cats.setdefault(pid, []).append(cat)
        return [PerformerCatalogRow(r[0], r[1], r[2], int(r[3]), tuple(cats.get(r[0], ()))) for r in rows]

    # -- personal data --------------------------------------------------------------------------

    # (download table, columns, rows). Every row naming the person in any column is exported and
    # erased; a secret is not (docs/privacy.md: no token and no token hash in the download): the
    # feed's token hash, the unsubscribe token and its copy in the inbox are capabilities, and the
    # download (a file the member may mail around) must not carry them.
    _EXPORT: tuple[tuple[str, str, str], ...] = (
        ("top_membership", _TOP, "soc_top_members WHERE user_id = ?"),
        ("favourites", "member_id, performer_id, created_at", "soc_favourites WHERE member_id = ? OR performer_id = ?"),
        (
            "privates",
            "id, member_id, performer_id, show_id, seconds, ended_at",
            "soc_privates WHERE member_id = ? OR performer_id = ?",
        ),
        ("ratings", "member_id, performer_id, stars, updated_at", "soc_ratings WHERE member_id = ?"),
        ("votes", "member_id, performer_id, period, created_at", "soc_votes WHERE member_id = ?"),
        ("mailing_subscriptions", "member_id, performer_id, created_at", "soc_mail_subscriptions WHERE member_id = ?"),
        ("mailings", "id, performer_id, subject, body, sent_at, recipients", "soc_mailings WHERE performer_id = ?"),
        ("mail_quota", "performer_id, last_sent_at", "soc_mail_quota WHERE performer_id = ?"),
        ("inbox", _INBOX_EXPORT, "soc_inbox WHERE member_id = ?"),
        (
            "messages",
            "id, member_id, performer_id, body, created_at",
            "soc_messages WHERE member_id = ? OR performer_id = ?",
        ),
        ("performer_attributes", _ATTRS, "soc_performer_attrs WHERE performer_id = ?"),
        ("search_presets", "id, member_id, name, query, created_at", "soc_presets WHERE member_id = ?"),
        ("feed", _FEED_EXPORT, "soc_feeds WHERE member_id = ?"),
        ("online_events", "id, performer_id, show_id, occurred_at", "soc_online_events WHERE performer_id = ?"),
    )

    async def export_user(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row about the user, by table."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._tx() as c:
            for name, cols, where in self._EXPORT:
                args = [user_id] * where.count("?")
                out[name] = _dicts(cols, await c.fetch(f"SELECT {cols} FROM {where}", *args))
        return out

    async def erase_user(self, user_id: str, pseudonym: str) -> int:
        """Delete (votes: re-key)."""
        n = 0
        async with self._tx() as c:
            n += await c.execute("UPDATE soc_votes SET member_id = ? WHERE member_id = ?", pseudonym, user_id)
            for _name, _cols, where in self._EXPORT:
                if where.startswith("soc_votes"):
                    continue
                n += await c.execute(f"DELETE FROM {where}", *([user_id] * where.count("?")))
            n += await c.execute("DELETE FROM soc_ratings WHERE performer_id = ?", user_id)
            n += await c.execute("DELETE FROM soc_mail_subscriptions WHERE performer_id = ?", user_id)
            n += await c.execute("DELETE FROM soc_inbox WHERE performer_id = ?", user_id)
        return n
