"""The social service's rules on real SQLite stores with an injected clock: renewals after downtime
sell the running period only, a stale pending start is redone, privates from show events (group
shows, unknown ids, an end without a start), retention of the private records, and search order."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from jasmin_sfu.services.accounts import AccountsService, AccountsSettings
from jasmin_sfu.services.ledger import Ledger, credits_to_units, wallet_account
from jasmin_sfu.services.personal_data import RetentionPolicy
from jasmin_sfu.services.search import Attributes, Candidate, SearchFilters, search
from jasmin_sfu.services.social import SocialService
from jasmin_sfu.shows.events import ShowEvent
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from jasmin_sfu.store.sqlite_social import SqliteSocialStore
from tests.realparts import FakeClock

DAY = 86400
US = 1_000_000


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[SocialService, FakeClock]]:
    clock = FakeClock()
    acc_store = await SqliteAccountsStore.open(str(tmp_path / "accounts.sqlite3"))
    accounts = AccountsService(
        acc_store, clock, AccountsSettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1)
    )
    lstore = await SqliteLedgerStore.open(":memory:")
    ledger = Ledger(lstore, clock)
    await ledger.bootstrap()
    store = await SqliteSocialStore.open(str(tmp_path / "social.sqlite3"), str(tmp_path / "accounts.sqlite3"))
    svc = SocialService(store, accounts, ledger, clock)
    yield svc, clock
    await svc.close()
    await lstore.close()
    await accounts.close()


async def wallet(svc: SocialService, member_id: str) -> int:
    assert svc.ledger is not None
    return (await svc.ledger.balance(wallet_account(member_id))).available


async def test_renewal_after_downtime_sells_the_running_period_only(world: tuple[SocialService, FakeClock]) -> None:
    """Protects members from paying for periods they never had: after 40 days down, one fee buys
    the period running now (period 2), ending at started_at + 3 x 14 days."""
    svc, clock = world
    issued = await svc.accounts.register("memb", "password-memb", adult_confirmed=True)
    assert svc.ledger is not None
    await svc.ledger.open_member(issued.principal.id)
    await svc.ledger.top_up("pay-1", issued.principal.id, "p6999")  # 72 credits
    view, charged = await svc.subscribe_top(issued.principal)
    assert charged and view.period == 0
    start = view.started_at
    assert start is not None
    clock.advance(40 * DAY)
    assert await svc.renew_due() == 1 and await svc.renew_due() == 0
    after = await svc.top_membership(issued.principal)
    assert after.period == 2 and after.paid_until == start + 3 * 14 * DAY
    assert await wallet(svc, issued.principal.id) == credits_to_units(72 - 30)


async def test_a_stale_pending_start_whose_fee_never_landed_starts_afresh(
    world: tuple[SocialService, FakeClock],
) -> None:
    """Protects a crash between 'pending' and the charge: hours later the member gets a full 14 days
    from now, not the remains of the old anchor."""
    svc, clock = world
    issued = await svc.accounts.register("memc", "password-memc", adult_confirmed=True)
    uid = issued.principal.id
    assert svc.ledger is not None
    await svc.ledger.open_member(uid)
    await svc.ledger.top_up("pay-2", uid, "p2999")
    await svc.store.begin_top_membership(uid, svc.now_us())  # the crash: pending, never charged
    clock.advance(2 * 3600)
    view, charged = await svc.subscribe_top(issued.principal)
    assert charged and view.started_at == clock.now and view.paid_until == clock.now + 14 * DAY
    assert await wallet(svc, uid) == credits_to_units(15)


async def test_privates_come_from_show_events(world: tuple[SocialService, FakeClock]) -> None:
    """Protects the record behind votes, mailing lists and messages: whole seconds between
    private.started and private.ended, for the group account and each performer account in the
    show; ids that are no performer account and an end without a start record nothing."""
    svc, _clock = world
    a = svc.accounts
    await a.create_admin("boss", "boss-password")
    boss = (await a.login("boss", "boss-password")).principal
    p1 = await a.create_performer(boss, "ann", "password-ann", display_name="Ann", price_per_minute=100)
    p2 = await a.create_performer(boss, "bob", "password-bob", display_name="Bob", price_per_minute=100)
    grp = await a.create_performer(
        boss, "duo", "password-duo", display_name="Duo", price_per_minute=100, group_members=["ann", "bob"]
    )
    ids = (p1.user_id, p2.user_id, "sess-legacy")
    svc.on_show_event(ShowEvent("private.ended", "duo", 50.0, member_id="u_x", performer_ids=ids))
    svc.on_show_event(ShowEvent("private.started", "duo", 100.0, member_id="u_m", performer_ids=ids))
    svc.on_show_event(ShowEvent("private.ended", "duo", 400.7, member_id="u_m", performer_ids=ids))
    await svc.drain()
    for pid in (grp.user_id, p1.user_id, p2.user_id):
        assert await svc.store.private_stats("u_m", pid) == (1, 300)
    assert await svc.store.private_stats("u_m", "sess-legacy") == (0, 0)
    assert await svc.store.private_members() == ["u_m"]


async def test_retention_purges_private_records_of_members_without_recent_purchase(
    world: tuple[SocialService, FakeClock],
) -> None:
    """Protects the 120-day usage limit: records of a member whose last purchase is before the
    cut-off go; those of a member who bought recently stay."""
    svc, clock = world
    await svc.record_private("u_old", "u_p", 60)
    await svc.record_private("u_new", "u_p", 60)
    now = svc.now_us()
    policy = RetentionPolicy(
        now, now - 120 * DAY * US, now, now, now, {"u_old": now - 121 * DAY * US, "u_new": now - DAY * US}
    )
    assert await svc.personal_data_source().purge(policy) == 1
    assert await svc.store.private_members() == ["u_new"]


def test_search_orders_by_own_rating_with_unrated_last_and_unset_attributes_never_match() -> None:
    """Protects sorting and filter semantics: rating_desc puts the caller's unrated performers last;
    a performer without an age is not in an age range."""

    def c(name: str, rating: int | None, age: int | None) -> Candidate:
        return Candidate("u_" + name, name, name, 100, (), Attributes(age=age), False, rating, False)

    cands = [c("a", None, 20), c("b", 3, None), c("c", 5, 30)]
    assert [x.username for x in search(cands, SearchFilters(sort="rating_desc")).results] == ["c", "b", "a"]
    assert [x.username for x in search(cands, SearchFilters(age_min=18, age_max=25)).results] == ["a"]
    page = search(cands, SearchFilters(sort="name", limit=2))
    assert page.next_offset == 2 and page.total == 3
