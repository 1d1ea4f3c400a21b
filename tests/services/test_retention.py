"""Retention at its boundaries, on an injected clock, on SQLite and on the real PostgreSQL.

docs/product.md, "Privacy rules": chat logs and usage data at most 120 days from the member's last
purchase; guest data at most 15 days; identity-check data at most 5 days; accounts inactive for
over a year may be closed. For each limit a row one day inside it is kept and a row one day
past it is deleted, through the real ``Retention.run`` over the real sources (accounts, chat,
social, the billing outbox) wired by ``build_privacy`` from the default ``[privacy]`` config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from jasmin_metering.config import OutboxConfig
from jasmin_metering.events import CloudEvent, event_id, rfc3339_us
from jasmin_metering.outbox import Outbox
from jasmin_sfu.config import Config, PrivacyConfig
from jasmin_sfu.services.accounts import AccountsService, AccountsSettings, token_hash
from jasmin_sfu.services.chat import ChatService
from jasmin_sfu.services.errors import AccountsError
from jasmin_sfu.services.ledger import wallet_account
from jasmin_sfu.services.personal_data import PersonalDataRegistry, RetentionPolicy
from jasmin_sfu.services.privacy import GUEST, IDENTITY, INACTIVE, USAGE, PrivacyService
from jasmin_sfu.services.retention import Retention, UsageDataSource, build_privacy
from jasmin_sfu.services.social import SocialService
from jasmin_sfu.store.accounts_repo import PaymentRow
from jasmin_sfu.store.chat_repo import MessageRow
from jasmin_sfu.store.privacy_usage import OutboxUsageStore
from tests.realparts import FakeClock
from tests.support import FAST, service_stores

DAY = 86400
US = 1_000_000


@dataclass
class World:
    clock: FakeClock
    accounts: AccountsService
    chat: ChatService
    social: SocialService
    outbox: Outbox
    privacy: PrivacyService
    retention: Retention
    registry: PersonalDataRegistry

    async def member(self, name: str) -> str:
        return (await self.accounts.register(name, "password-" + name, adult_confirmed=True)).principal.id

    async def purchase(self, member_id: str) -> None:
        now = self.accounts.now_us()
        await self.accounts.store.insert_payment(
            PaymentRow(f"pay-{member_id}-{now}", member_id, f"k-{now}", "p2999", 2999, "test", "credited", now)
        )

    async def line(self, author: str, kind: str = "member") -> str:
        mid = self.chat.new_id()
        await self.chat.store.add_message(
            MessageRow(mid, "anna", author, author[:32], kind, False, None, "hi", (), None, self.accounts.now_us())
        )
        return mid

    def usage_event(self, member_id: str) -> None:
        sid = f"node1-{member_id}"
        t = rfc3339_us(self.accounts.now_us())
        self.outbox.append(
            [
                CloudEvent(
                    id=event_id(sid, 1),
                    source="urn:jasmin:session:" + sid,
                    type="com.jasmin.usage.v1",
                    time=t,
                    sequence="000000000001",
                    partitionkey="wallet/" + wallet_account(member_id),
                    subject="member/" + member_id,
                    recordedtime=t,
                    data={"member_id": member_id, "units": 1},
                )
            ]
        )
        self.outbox.ack("file", self.outbox.max_pos())  # delivered: retention may delete it

    async def held(self, member_id: str) -> dict[str, int]:
        """Rows per kind still held about the member: chat lines, private records, usage events."""
        chat = (await self.chat.export(member_id))["chat_messages"]
        social = await self.social.personal_data_source().export(member_id)
        usage = await self.registry.sources[-1].export(member_id)
        return {"chat": len(chat), "privates": len(social["privates"]), "usage": len(usage["outbox_events"])}


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    # The longest guest session allowed: only the 15-day rule decides.
    settings = dataclasses.replace(FAST, guest_session_ttl_s=15 * DAY)
    async with service_stores(request.param, tmp_path, "accounts", "chat", "social") as (astore, cstore, sstore):
        async for w in _world(clock, settings, astore, cstore, sstore, tmp_path):
            yield w


async def _world(
    clock: FakeClock, settings: AccountsSettings, astore: Any, cstore: Any, sstore: Any, tmp_path: Path
) -> AsyncIterator[World]:
    accounts = AccountsService(astore, clock, settings)
    chat = ChatService(cstore, clock)
    social = SocialService(sstore, accounts, None, clock)
    outbox_path = str(tmp_path / "billing-outbox.sqlite3")
    outbox = Outbox(OutboxConfig(path=outbox_path))
    usage = UsageDataSource([OutboxUsageStore(outbox_path, ("file",))])
    registry = PersonalDataRegistry()
    registry.register(social.personal_data_source())
    registry.register(chat)
    # The daemon's own wiring and the documented defaults (120 / 15 / 5 / 365 days).
    cfg = dataclasses.replace(Config(), privacy=PrivacyConfig())
    privacy, retention = build_privacy(cfg, accounts, registry, None, usage, social)
    try:
        yield World(clock, accounts, chat, social, outbox, privacy, retention, registry)
    finally:
        await usage.close()
        outbox.close()
        await social.close()
        await chat.store.close()
        await accounts.close()


def test_the_limits_are_product_md_numbers() -> None:
    """Protects the numbers themselves: 120 days of usage, 15 of guest data, 5 of identity data,
    365 of inactivity (so the boundary tests below test docs/product.md's limits, not others)."""
    pv = PrivacyConfig()
    assert (pv.usage_retention_days, pv.guest_retention_days, pv.identity_retention_days, pv.inactive_account_days) == (
        120,
        15,
        5,
        365,
    )


async def test_chat_logs_and_usage_go_120_days_after_the_last_purchase(world: World) -> None:
    """Protects the 120-day limit on chat logs and usage data: a member whose last purchase was
    119 days ago keeps its chat lines, private records and usage events; one whose last purchase
    was 121 days ago loses all three. A member who never bought counts from its creation. A dry
    run counts what it can and deletes nothing."""
    w = world
    gone, keep = await w.member("gone"), await w.member("keep")
    never_gone = await w.member("nevergone")
    await w.purchase(gone)
    w.clock.advance(2 * DAY)
    await w.purchase(keep)
    never_keep = await w.member("neverkeep")
    for m in (gone, keep, never_gone, never_keep):
        await w.line(m)
        await w.social.record_private(m, "u_perf", 60)
        w.usage_event(m)
    w.clock.advance(119 * DAY)  # keep / neverkeep: 119 days; gone / nevergone: 121 days

    dry = await w.retention.run(dry_run=True)
    assert dry.purged["billing_usage"] == 2 and dry.purged["chat"] is None
    assert await w.held(gone) == {"chat": 1, "privates": 1, "usage": 1}

    report = await w.retention.run()
    for m in (keep, never_keep):
        assert await w.held(m) == {"chat": 1, "privates": 1, "usage": 1}
    for m in (gone, never_gone):
        assert await w.held(m) == {"chat": 0, "privates": 0, "usage": 0}
    assert report.purged["chat"] == 2 and report.purged["social"] == 2 and report.purged["billing_usage"] == 2
    assert report.by_category()[USAGE] == 6
    assert (await w.retention.run()).by_category()[USAGE] == 0  # idempotent


async def test_guest_data_goes_after_15_days(world: World) -> None:
    """Protects the 15-day guest limit: a guest session and a guest's chat line of 14 days stay,
    those of 16 days go (the sessions' 15-day token life alone would not delete the 14-day one)."""
    w = world
    old = await w.accounts.start_guest(adult_confirmed=True)
    old_line = await w.line("guest:old", kind="guest")
    w.clock.advance(2 * DAY)
    new = await w.accounts.start_guest(adult_confirmed=True)
    new_line = await w.line("guest:new", kind="guest")
    w.clock.advance(14 * DAY)  # old: 16 days, new: 14 days

    dry = await w.retention.run(dry_run=True)
    assert dry.by_category()[GUEST] == 1
    assert await w.accounts.store.session_by_token_hash(token_hash(old.token)) is not None

    report = await w.retention.run()
    assert await w.accounts.store.session_by_token_hash(token_hash(old.token)) is None
    assert await w.accounts.store.session_by_token_hash(token_hash(new.token)) is not None
    assert await w.chat.store.message(old_line) is None
    assert await w.chat.store.message(new_line) is not None
    assert report.by_category()[GUEST] == 1 and report.purged["chat"] == 1
    assert (await w.accounts.authenticate(new.token)).is_guest  # the 14-day guest still works


class IdentityChecks:
    """A stand-in identity-check store: this node keeps none, so the 5-day cut-off that every
    source receives is tested through a source that applies it."""

    name = "identity_checks"

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        return {"checks": [{"id": k, "at": v} for k, v in self.rows.items() if k == user_id]}

    async def erase(self, user_id: str, pseudonym: str) -> int:
        return 1 if self.rows.pop(user_id, None) is not None else 0

    async def purge_report(self, policy: RetentionPolicy, *, dry_run: bool = False) -> dict[str, int | None]:
        doomed = [k for k, at in self.rows.items() if at < policy.identity_before_us]
        if not dry_run:
            for k in doomed:
                del self.rows[k]
        return {IDENTITY: len(doomed)}

    async def purge(self, policy: RetentionPolicy) -> int:
        return int((await self.purge_report(policy))[IDENTITY] or 0)


async def test_identity_data_goes_after_5_days(world: World) -> None:
    """Protects the 5-day identity-check limit as every source receives it: a check of 4 days
    stays, one of 6 days goes; the report files it under identity data."""
    w = world
    checks = IdentityChecks()
    w.registry.register(checks)
    checks.rows["u_old"] = w.accounts.now_us()
    w.clock.advance(2 * DAY)
    checks.rows["u_new"] = w.accounts.now_us()
    w.clock.advance(4 * DAY)  # old: 6 days, new: 4 days
    assert (await w.retention.run(dry_run=True)).by_category()[IDENTITY] == 1 and len(checks.rows) == 2
    report = await w.retention.run()
    assert set(checks.rows) == {"u_new"}
    assert report.by_category()[IDENTITY] == 1


async def test_accounts_inactive_for_over_a_year_are_closed_and_erased(world: World) -> None:
    """Protects the inactivity rule: a member with no login or purchase for 366 days is closed and
    erased (reason inactive, username blacklisted); one inactive for 364 days, one that logged in
    364 days ago and one that bought 364 days ago stay open."""
    w = world
    gone = await w.member("gone")
    logged = await w.member("logged")
    bought = await w.member("bought")
    await w.line(gone)
    w.clock.advance(2 * DAY)
    keep = await w.member("keep")
    await w.accounts.login("logged", "password-logged")
    await w.purchase(bought)
    w.clock.advance(364 * DAY)  # gone: 366 days; keep and the others' last activity: 364 days

    dry = await w.retention.run(dry_run=True)
    assert dry.closed == (gone,)
    assert (await w.accounts.store.user_by_id(gone)).closed_at is None  # type: ignore[union-attr]

    report = await w.retention.run()
    assert report.closed == (gone,) and report.by_category()[INACTIVE] == 1
    user = await w.accounts.store.user_by_id(gone)
    assert user is not None and user.closed_at is not None and user.username == "[erased]"
    assert [e.reason for e in await w.accounts.store.open_erasures()] == []  # completed
    assert (await w.chat.export(gone))["chat_messages"] == []
    for uid in (keep, logged, bought):
        u = await w.accounts.store.user_by_id(uid)
        assert u is not None and u.closed_at is None
    with pytest.raises(AccountsError):
        await w.accounts.register("gone", "password-gone2", adult_confirmed=True)  # blacklisted
    assert (await w.retention.run()).closed == ()
