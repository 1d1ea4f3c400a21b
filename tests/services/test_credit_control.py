"""Credit control (reserve/commit) on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from jasmin_sfu.services.credit_control import CreditControl, CreditControlConfig, Grant, ReAuthRequest
from jasmin_sfu.services.errors import (
    CreditSessionClosedError,
    CreditSessionNotFoundError,
    InsufficientCreditError,
    InsufficientFundsError,
    RequestConflictError,
    RequestOutOfOrderError,
)
from jasmin_sfu.services.ledger import (
    HOUSE_REVENUE,
    WORLD_CREDIT,
    Ledger,
    Transfer,
    credits_to_units,
    earnings_account,
    escrow_account,
    per_second_rate,
)
from tests.realparts import FakeClock

if TYPE_CHECKING:
    from jasmin_metering.meter import SessionSpec, UsageRecord

RATE = per_second_rate(199)  # 1.99 credits per minute


async def member(ledger: Ledger, name: str, units: int) -> str:
    w = await ledger.open_member(name)
    if units:
        await ledger.submit([Transfer(f"fund:{name}", WORLD_CREDIT, w, units)])
    return w


async def check(ledger: Ledger) -> None:
    rep = await ledger.replay()
    assert rep.ok, rep.mismatches


@pytest.fixture
def cc(ledger: Ledger) -> CreditControl:
    return CreditControl(ledger, CreditControlConfig(grant_seconds=30, performer_share_bp=6000))


async def test_authorize_update_terminate_posts_used_and_drains_escrow(ledger: Ledger, cc: CreditControl) -> None:
    w = await member(ledger, "m1", RATE * 100)
    g0 = await cc.authorize("s1", w, RATE, performer_id="p1")
    assert (g0.seconds, g0.final, g0.request_number) == (30, False, 0)
    assert (await ledger.balance(w)).available == RATE * 70
    g1 = await cc.update("s1", 1, 20)
    assert (g1.seconds, g1.final) == (30, False)
    assert (await ledger.balance(w)).available == RATE * (100 - 20 - 30)
    totals = await cc.terminate("s1", 2, 7)
    assert totals.used_seconds == 27 and totals.charged == 27 * RATE
    assert totals.performer_paid == 27 * RATE * 6000 // 10000
    assert totals.performer_paid + totals.house_paid == totals.charged
    assert (await ledger.balance(w)).available == RATE * 73
    esc = await ledger.balance(escrow_account("s1"))
    assert esc.credits_posted == esc.debits_posted and esc.credits_pending == 0
    assert (await ledger.balance(earnings_account("p1"))).credits_posted == totals.performer_paid
    await check(ledger)


async def test_grant_is_final_when_nothing_would_be_left(ledger: Ledger, cc: CreditControl) -> None:
    w = await member(ledger, "m1", RATE * 45 + RATE - 1)
    g0 = await cc.authorize("s1", w, RATE, performer_id="p1")
    assert (g0.seconds, g0.final) == (30, False)
    g1 = await cc.update("s1", 1, 30)
    assert (g1.seconds, g1.final) == (15, True)
    g2 = await cc.update("s1", 2, 15)
    assert (g2.seconds, g2.final, g2.reservation_id) == (0, True, "")
    await cc.terminate("s1", 3, 0)
    assert (await ledger.balance(w)).available == RATE - 1
    await check(ledger)


async def test_authorize_refuses_an_empty_wallet(ledger: Ledger, cc: CreditControl) -> None:
    w = await member(ledger, "m1", RATE - 1)
    with pytest.raises(InsufficientCreditError):
        await cc.authorize("s1", w, RATE, performer_id="p1")
    with pytest.raises(CreditSessionNotFoundError):
        await cc.session("s1")


async def test_requests_are_idempotent_and_ordered(ledger: Ledger, cc: CreditControl) -> None:
    w = await member(ledger, "m1", RATE * 200)
    g0 = await cc.authorize("s1", w, RATE, performer_id="p1")
    assert await cc.authorize("s1", w, RATE, performer_id="p1") == g0
    with pytest.raises(RequestConflictError):
        await cc.authorize("s1", w, RATE + 1, performer_id="p1")
    g1 = await cc.update("s1", 1, 10)
    assert await cc.update("s1", 1, 10) == g1
    with pytest.raises(RequestConflictError):
        await cc.update("s1", 1, 11)
    with pytest.raises(RequestOutOfOrderError):
        await cc.update("s1", 3, 5)
    assert (await ledger.balance(w)).available == RATE * (200 - 10 - 30)
    await check(ledger)


async def test_used_above_grant_is_never_charged(ledger: Ledger, cc: CreditControl) -> None:
    w = await member(ledger, "m1", RATE * 100)
    await cc.authorize("s1", w, RATE, performer_id="p1")
    totals = await cc.terminate("s1", 1, 45)
    assert (totals.used_seconds, totals.overrun_seconds) == (30, 15)
    assert (await ledger.balance(w)).available == RATE * 70


async def test_crashed_node_grant_expires_and_releases_credits(
    ledger: Ledger, cc: CreditControl, clock: FakeClock
) -> None:
    w = await member(ledger, "m1", RATE * 100)
    g0 = await cc.authorize("s1", w, RATE, performer_id="p1")
    assert g0.valid_until == pytest.approx(clock.now + 60)  # 2 x 30 s
    clock.advance(61)
    assert await cc.expire_stale() == ["s1"]
    assert (await ledger.balance(w)).available == RATE * 100
    assert (await cc.session("s1")).status == "expired"
    assert await cc.notify_top_up(w) == []  # expired sessions get no re-auth
    # a replacement node closes it late: charged from what is still there
    totals = await cc.terminate("s1", 1, 12)
    assert totals.charged == 12 * RATE
    assert (await ledger.balance(w)).available == RATE * 88
    await check(ledger)


async def test_late_report_charges_at_most_what_is_left(ledger: Ledger, cc: CreditControl, clock: FakeClock) -> None:
    w = await member(ledger, "m1", RATE * 40)
    await cc.authorize("s1", w, RATE, performer_id="p1")
    clock.advance(61)
    await cc.authorize("s2", w, RATE, performer_id="p2")  # takes 30 of the 40 after s1's hold expired
    totals = await cc.terminate("s1", 1, 25)
    assert (totals.used_seconds, totals.overrun_seconds) == (10, 15)
    assert (await ledger.balance(w)).available == 0
    await check(ledger)


async def test_fifty_concurrent_grants_on_one_wallet(ledger: Ledger, cc: CreditControl) -> None:
    """50 sessions authorise at once (separate connections on PostgreSQL): the wallet never goes
    negative and exactly floor(balance / (grant x rate)) sessions get a grant."""
    per_grant = 30 * RATE
    w = await member(ledger, "m1", 7 * per_grant + RATE - 1)
    results = await asyncio.gather(
        *[cc.authorize(f"c{i}", w, RATE, performer_id="p1") for i in range(50)], return_exceptions=True
    )
    grants = [r for r in results if isinstance(r, Grant)]
    refused = [r for r in results if isinstance(r, InsufficientCreditError)]
    assert len(grants) == 7 and len(refused) == 43
    assert all(g.seconds == 30 for g in grants)
    b = await ledger.balance(w)
    assert b.available == RATE - 1 and b.debits_pending == 7 * per_grant
    await check(ledger)


async def test_cgrates_2220_disconnect_stops_billing(ledger: Ledger, cc: CreditControl) -> None:
    """CGRateS #2220: a call was shut down AND carried on billing. After terminate, nothing more
    is granted or charged, and the meter/outbox refuse seconds after the closing event."""
    from jasmin_metering.config import EventConfig, OutboxConfig
    from jasmin_metering.errors import OutboxSessionClosedError, SessionClosedError
    from jasmin_metering.events import EventFactory
    from jasmin_metering.meter import Meter, SessionSpec
    from jasmin_metering.outbox import Outbox

    w = await member(ledger, "m1", RATE * 100)
    await cc.authorize("s1", w, RATE, performer_id="p1")
    meter = Meter()
    spec = SessionSpec("private", "s1", "m1", "p1", w, RATE)
    meter.start(spec, 1000.0)
    recs, closed = meter.stop("s1", 1012.5, "member_left")
    assert len(recs) == 12 and closed.unbilled_us == 500_000
    await cc.terminate("s1", 1, len(recs))
    after = (await ledger.balance(w)).available
    assert after == RATE * 88
    with pytest.raises(CreditSessionClosedError):
        await cc.update("s1", 2, 5)
    with pytest.raises(CreditSessionClosedError):
        await cc.terminate("s1", 2, 5)
    with pytest.raises(SessionClosedError):
        meter.advance_session("s1", 1100.0)
    assert meter.advance(1100.0) == []
    ob = Outbox(OutboxConfig(path=":memory:"))
    ef = EventFactory(EventConfig(), lambda: 1013.0)
    ob.append([ef.usage(r) for r in recs] + [ef.closed(closed)])
    late = meter_record_after_close(spec, closed.last_seq + 2)
    with pytest.raises(OutboxSessionClosedError):
        ob.append([ef.usage(late)])
    assert (await ledger.balance(w)).available == after
    await check(ledger)


def meter_record_after_close(spec: "SessionSpec", seq: int) -> "UsageRecord":
    from jasmin_metering.meter import UsageRecord

    return UsageRecord(spec, seq, 1013_000_000, 1014_000_000, RATE, None)


async def test_ivozprovider_703_never_charged_twice(ledger: Ledger, cc: CreditControl) -> None:
    """ivozprovider #703: prepaid charged during the call and again at the end. Retried updates
    and terminates (lost answers) charge each used second exactly once."""
    w = await member(ledger, "m1", RATE * 100)
    await cc.authorize("s1", w, RATE, performer_id="p1")
    for _ in range(3):
        await cc.update("s1", 1, 20)
    for _ in range(3):
        totals = await cc.terminate("s1", 2, 9)
    assert totals.charged == 29 * RATE
    assert (await ledger.balance(w)).available == RATE * 71
    assert (await ledger.balance(HOUSE_REVENUE)).credits_posted == totals.house_paid
    await check(ledger)


async def test_cgrates_568_no_wallet_goes_negative(ledger: Ledger, cc: CreditControl) -> None:
    """CGRateS #568: DebitUsage ignored AllowNegative=false. Concurrent sessions, overrunning
    reports, tips and top-ups on one wallet never take it below zero."""
    w = await member(ledger, "m1", RATE * 50)
    await ledger.open_performer("p9")
    grants = await asyncio.gather(
        *[cc.authorize(f"s{i}", w, RATE, performer_id="p1") for i in range(4)], return_exceptions=True
    )
    ok = [f"s{i}" for i, g in enumerate(grants) if isinstance(g, Grant)]
    assert len(ok) == 2  # 30 + 20 seconds
    refused = [g for g in grants if not isinstance(g, Grant)]
    assert len(refused) == 2 and all(isinstance(g, InsufficientCreditError) for g in refused), refused
    granted = {s: g.seconds for s, g in zip([f"s{i}" for i in range(4)], grants) if isinstance(g, Grant)}
    overruns = await asyncio.gather(*[cc.update(s, 1, 1000) for s in ok])
    # Each report overran its grant: nothing more is granted, the overrun is named, not charged.
    assert [(g.seconds, g.final, g.overrun_seconds) for g in overruns] == [(0, True, 1000 - granted[s]) for s in ok]
    with pytest.raises(InsufficientFundsError):
        await ledger.tip("t1", "m1", "p9", RATE * 51, 5000)
    b = await ledger.balance(w)
    assert b.available >= 0 and b.debits_posted + b.debits_pending <= b.credits_posted
    for s in ok:
        await cc.terminate(s, 2, 1000)
    b = await ledger.balance(w)
    assert b.available == 0 and b.debits_posted == b.credits_posted
    await check(ledger)


class _ShowSide:
    """What the shows layer will do with grants: schedule a stop at a final grant's end,
    cancel it when a re-auth after a top-up brings a normal grant."""

    def __init__(self, cc: CreditControl, clock: FakeClock, session_id: str) -> None:
        self.cc, self.clock, self.sid = cc, clock, session_id
        self.n = 0
        self.used = 0
        self.stop_at: float | None = None
        self.warned = False

    def on_grant(self, g: Grant) -> None:
        self.n = g.request_number
        self.used = 0
        if g.final:
            self.stop_at = self.clock.now + g.seconds
            self.warned = True
        else:
            self.stop_at = None

    async def on_reauth(self, req: ReAuthRequest) -> None:
        if req.session_id == self.sid:
            self.on_grant(await self.cc.update(self.sid, self.n + 1, self.used))


async def test_cgrates_final_grant_topup_cancels_stop(ledger: Ledger, cc: CreditControl, clock: FakeClock) -> None:
    """CGRateS waits out the final debit and disconnects without re-checking: a top-up in the last
    window does not save the call. Here the top-up re-authorises and cancels the scheduled stop."""
    w = await member(ledger, "m1", RATE * 12)
    show = _ShowSide(cc, clock, "s1")
    cc.add_reauth_listener(show.on_reauth)
    show.on_grant(await cc.authorize("s1", w, RATE, performer_id="p1"))
    assert show.stop_at == clock.now + 12 and show.warned
    clock.advance(5)
    show.used = 5
    assert await cc.top_up("pay-1", "m1", "p2999") == ["s1"]
    assert show.stop_at is None  # stop cancelled
    assert show.n == 1
    s = await cc.session("s1")
    assert (s.granted_seconds, s.final) == (30, False)
    assert (await ledger.balance(w)).available == credits_to_units(30) + RATE * 7 - RATE * 30
    await cc.terminate("s1", 2, 30)
    await check(ledger)


async def test_a_failing_listener_does_not_block_others(ledger: Ledger, cc: CreditControl) -> None:
    w = await member(ledger, "m1", RATE * 100)
    await cc.authorize("s1", w, RATE, performer_id="p1")
    seen: list[str] = []

    async def bad(req: ReAuthRequest) -> None:
        raise RuntimeError("boom")

    async def good(req: ReAuthRequest) -> None:
        seen.append(req.session_id)

    cc.add_reauth_listener(bad)
    cc.add_reauth_listener(good)
    assert await cc.notify_top_up(w) == ["s1"]
    assert seen == ["s1"]
    cc.remove_reauth_listener(bad)
