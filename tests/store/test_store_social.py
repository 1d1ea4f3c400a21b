"""The social store on SQLite and the real PostgreSQL: its own migration track beside the accounts',
the races decided in the database (24 favourites under concurrent adds, one mailing per window,
one TopMembership anchor, one vote per period), reads of the accounts' tables, export and erasure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from jasmin_sfu.store.accounts_repo import PaymentRow, PerformerRow, UserRow
from jasmin_sfu.store.postgres_accounts import PostgresAccountsStore
from jasmin_sfu.store.postgres_social import PostgresSocialStore
from jasmin_sfu.store.social_repo import FavouriteRow, MailingRow, SocialStore, SubscriptionRow, VoteRow
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_social import SqliteSocialStore
from tests.realparts import PG_DSN, pg_schema

T0 = 1_780_000_000 * 1_000_000


def tok(member: str) -> str:
    return "jasu_" + member.ljust(32, "0")


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[SocialStore, object]]:
    """(social store, accounts store) sharing a database (PostgreSQL) or a directory (SQLite)."""
    if request.param == "sqlite":
        acc_path = str(tmp_path / "accounts.sqlite3")
        acc = await SqliteAccountsStore.open(acc_path)
        soc = await SqliteSocialStore.open(str(tmp_path / "social.sqlite3"), acc_path)
        try:
            yield soc, acc
        finally:
            await soc.close()
            await acc.close()
        return
    async with pg_schema() as schema:
        pacc = await PostgresAccountsStore.open(PG_DSN, schema=schema)
        psoc = await PostgresSocialStore.open(PG_DSN, schema=schema, max_size=40)
        try:
            yield psoc, pacc
        finally:
            await psoc.close()
            await pacc.close()


async def test_own_migration_track_and_reads_of_the_accounts_tables(stores: tuple[SocialStore, object]) -> None:
    """Protects sharing a database: social_schema_version beside accounts_schema_version, and the
    last credited purchase and the performer catalog read from the accounts' tables."""
    soc, acc = stores
    assert await soc.schema_version() == 1
    await acc.create_user(UserRow("u_m", "mia", "mia", "member", "$x", T0))  # type: ignore[attr-defined]
    await acc.create_user(  # type: ignore[attr-defined]
        UserRow("u_p", "Alice", "alice", "performer", "$x", T0),
        PerformerRow("u_p", "Alice A", "", 250, False, T0, ("girl",)),
    )
    act = await soc.member_activity("u_m")
    assert act is not None and act.created_at == T0 and act.last_purchase_at is None
    await acc.insert_payment(
        PaymentRow(
            "pay1",
            "u_m",
            "key-00001",
            "p2999",
            2999,
            "test",
            "approved",  # type: ignore[attr-defined]
            T0 + 5,
        )
    )
    assert (await soc.member_activity("u_m")).last_purchase_at is None  # type: ignore[union-attr]
    await acc.mark_payment_credited("pay1", T0 + 7)  # type: ignore[attr-defined]
    assert (await soc.member_activity("u_m")).last_purchase_at == T0 + 7  # type: ignore[union-attr]
    assert await soc.member_activity("u_nobody") is None
    cat = await soc.performer_catalog()
    assert [(c.user_id, c.username, c.price_per_minute, c.categories) for c in cat] == [
        ("u_p", "Alice", 250, ("girl",))
    ]


async def test_concurrent_adds_never_pass_the_favourites_limit(stores: tuple[SocialStore, object]) -> None:
    """Protects 24 favourites under a race: 40 concurrent adds of different performers store 24."""
    soc, _ = stores
    results = await asyncio.gather(*(soc.add_favourite(FavouriteRow("u_m", f"u_p{i}", T0 + i), 24) for i in range(40)))
    assert results.count("added") == 24 and results.count("full") == 16
    assert len(await soc.favourites("u_m")) == 24
    assert await soc.add_favourite(FavouriteRow("u_m", "u_p0", T0), 24) == "exists"
    assert await soc.fans_of(["u_p0", "u_p1", "nobody"]) == ["u_m"]


async def test_one_mailing_per_window_even_when_sent_concurrently(stores: tuple[SocialStore, object]) -> None:
    """Protects the 24 h quota in the database: of two concurrent mailings one is stored and fanned
    out to every subscriber's inbox with its unsubscribe token; the other learns the last send time."""
    soc, _ = stores
    for m in ("u_a", "u_b"):
        await soc.subscribe_mailing(SubscriptionRow(m, "u_p", tok(m), T0))
    day = 86_400 * 1_000_000
    a, b = await asyncio.gather(
        soc.send_mailing(MailingRow("ml1", "u_p", "s", "b", T0), T0 - day),
        soc.send_mailing(MailingRow("ml2", "u_p", "s", "b", T0), T0 - day),
    )
    sent = [x for x in (a, b) if x[0] is not None]
    refused = [x for x in (a, b) if x[0] is None]
    assert len(sent) == 1 and sent[0][0].recipients == 2 and refused[0][1] == T0  # type: ignore[union-attr]
    inbox = await soc.inbox("u_a", 10)
    assert len(inbox) == 1 and inbox[0].unsubscribe_token == tok("u_a")
    later = T0 + day
    ok, _ = await soc.send_mailing(MailingRow("ml3", "u_p", "s", "b", later), later - day)
    assert ok is not None
    assert (await soc.unsubscribe_by_token(tok("u_a"))).member_id == "u_a"  # type: ignore[union-attr]
    assert await soc.unsubscribe_by_token(tok("u_a")) is None


async def test_top_membership_anchor_and_paid_periods(stores: tuple[SocialStore, object]) -> None:
    """Protects one fee per period: concurrent starts share one pending anchor (one transfer id),
    a period is marked paid once, and a lapsed membership starts afresh."""
    soc, _ = stores
    rows = await asyncio.gather(*(soc.begin_top_membership("u_m", T0 + i) for i in range(5)))
    assert len({r.started_at for r in rows}) == 1 and rows[0].status == "pending"
    start = rows[0].started_at
    p = 14 * 86_400 * 1_000_000
    assert await soc.mark_top_paid("u_m", start, 0, start + p, T0)
    assert not await soc.mark_top_paid("u_m", start, 0, start + p, T0)
    assert (await soc.begin_top_membership("u_m", T0 + 10)).started_at == start
    assert [r.user_id for r in await soc.top_members_due(start + p, 10)] == ["u_m"]
    await soc.end_top_membership("u_m", start, T0 + p, abandon=False)
    assert (await soc.top_member("u_m")).status == "lapsed"  # type: ignore[union-attr]
    fresh = await soc.begin_top_membership("u_m", T0 + p + 1)
    assert fresh.status == "pending" and fresh.started_at == T0 + p + 1


async def test_votes_are_unique_per_period_and_erasure_keeps_them_pseudonymous(
    stores: tuple[SocialStore, object],
) -> None:
    """Protects one vote per performer per period in the database, and erasure: every row of the
    member gone, its votes re-keyed to the pseudonym."""
    soc, _ = stores
    assert await soc.add_vote(VoteRow("u_m", "u_p", "2026-05", T0))
    assert not await soc.add_vote(VoteRow("u_m", "u_p", "2026-05", T0 + 1))
    assert await soc.add_vote(VoteRow("u_m", "u_p", "2026-06", T0 + 2))
    await soc.add_favourite(FavouriteRow("u_m", "u_p", T0), 24)
    exported = await soc.export_user("u_m")
    assert len(exported["votes"]) == 2 and len(exported["favourites"]) == 1
    assert await soc.erase_user("u_m", "pseudo") >= 3
    assert all(v == [] for v in (await soc.export_user("u_m")).values())
    assert await soc.vote_counts("2026-05") == {"u_p": 1}


async def test_export_holds_no_token_or_token_hash_and_every_row_naming_a_performer(
    stores: tuple[SocialStore, object],
) -> None:
    """Protects docs/privacy.md's rule 'no secret and no token hash in the download': the feed's
    token hash, the mailing list's unsubscribe token and its copy in every inbox row are capabilities
    and stay out of a member's export (the rows themselves are there). And the export of a performer
    holds every row erasure deletes for it: its mailing quota and its online log."""
    import json

    from jasmin_sfu.store.social_repo import FeedRow, OnlineEventRow

    soc, _ = stores
    await soc.put_feed(FeedRow("u_m", "feedhash" + "f" * 56, ("u_p",), (), True, True, T0))
    await soc.subscribe_mailing(SubscriptionRow("u_m", "u_p", tok("u_m"), T0))
    sent, _ = await soc.send_mailing(MailingRow("ml1", "u_p", "subject", "body", T0), T0 - 1)
    assert sent is not None
    await soc.add_online_events([OnlineEventRow("on1", "u_p", "alice", T0)])
    mine = await soc.export_user("u_m")
    assert len(mine["feed"]) == 1 and len(mine["mailing_subscriptions"]) == 1 and len(mine["inbox"]) == 1
    flat = json.dumps(mine)
    assert "feedhash" not in flat and tok("u_m") not in flat and "token" not in flat
    perf = await soc.export_user("u_p")
    assert [r["id"] for r in perf["mailings"]] == ["ml1"]
    assert [r["last_sent_at"] for r in perf["mail_quota"]] == [T0]
    assert [r["id"] for r in perf["online_events"]] == ["on1"]
    assert await soc.erase_user("u_p", "u_p") >= 3
    assert (await soc.export_user("u_p"))["online_events"] == []
