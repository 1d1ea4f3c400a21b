"""The ledger's rules, on SQLite and on the real PostgreSQL (``store`` is parametrized)."""

from __future__ import annotations


import pytest

from jasmin_sfu.services.errors import (
    InsufficientFundsError,
    PendingTransferError,
    TransferConflictError,
    UnknownPackageError,
)
from jasmin_sfu.services.ledger import (
    HOUSE_REVENUE,
    PACKAGES,
    UNITS_PER_CREDIT,
    WORLD_CREDIT,
    Account,
    AccountFlags,
    Ledger,
    Result,
    Transfer,
    TransferFlags,
    credits_to_units,
    earnings_account,
    linked,
    package,
    per_second_rate,
    points_account,
    units_to_credits,
    wallet_account,
)
from tests.realparts import FakeClock

PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING)
VOID = int(TransferFlags.VOID_PENDING)


async def funded(ledger: Ledger, member: str, units: int) -> str:
    w = await ledger.open_member(member)
    if units:
        await ledger.submit([Transfer(f"fund:{member}", WORLD_CREDIT, w, units, code="topup")])
    return w


async def assert_replays(ledger: Ledger) -> None:
    rep = await ledger.replay()
    assert rep.ok, rep.mismatches


def test_sixty_seconds_cost_exactly_the_per_minute_price() -> None:
    """The unit is 1/6000 credit, so per-second billing needs no rounding."""
    for price in range(1, 20_001):  # 0.01 .. 200.00 credits per minute
        rate = per_second_rate(price)
        assert rate * 60 == price * UNITS_PER_CREDIT // 100
        assert (rate * 60) * 100 % UNITS_PER_CREDIT == 0
    assert units_to_credits(per_second_rate(199) * 60) == "1.99"
    assert units_to_credits(per_second_rate(199) * 59) == "1.95"  # 1.9566 shown rounded down
    with pytest.raises(ValueError):
        per_second_rate(0)


def test_package_table_matches_the_vip_points() -> None:
    assert [(p.price_cents, p.vip_points) for p in PACKAGES] == [(2999, 1), (6999, 3), (9999, 5), (15999, 10)]
    with pytest.raises(UnknownPackageError):
        package("nope")


async def test_top_up_credits_units_and_vip_points_once(ledger: Ledger) -> None:
    await ledger.open_member("m1")
    for _ in range(3):  # a retried payment notification credits once
        await ledger.top_up("pay-1", "m1", "p6999")
    assert (await ledger.balance(wallet_account("m1"))).available == credits_to_units(72)
    assert (await ledger.balance(points_account("m1"))).credits_posted == 3
    await assert_replays(ledger)


async def test_same_id_same_body_exists_different_body_conflicts(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 1000)
    await ledger.open_performer("p1")
    t = Transfer("tip-1", w, earnings_account("p1"), 100, code="tip")
    assert await ledger.create_transfers([t]) == [Result.OK]
    assert await ledger.create_transfers([t]) == [Result.EXISTS]
    other = Transfer("tip-1", w, earnings_account("p1"), 101, code="tip")
    assert await ledger.create_transfers([other]) == [Result.EXISTS_WITH_DIFFERENT_FIELDS]
    with pytest.raises(TransferConflictError):
        await ledger.submit([other])
    assert (await ledger.balance(w)).available == 900
    await assert_replays(ledger)


async def test_duplicate_id_inside_one_batch_applies_once(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 1000)
    t = Transfer("x", w, HOUSE_REVENUE, 10)
    assert await ledger.create_transfers([t, t, Transfer("x", w, HOUSE_REVENUE, 11)]) == [
        Result.OK,
        Result.EXISTS,
        Result.EXISTS_WITH_DIFFERENT_FIELDS,
    ]
    assert (await ledger.balance(w)).available == 990


async def test_wallet_cannot_go_below_zero(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 100)
    assert await ledger.create_transfers([Transfer("a", w, HOUSE_REVENUE, 101)]) == [Result.EXCEEDS_CREDITS]
    with pytest.raises(InsufficientFundsError):
        await ledger.submit([Transfer("a", w, HOUSE_REVENUE, 101)])
    await ledger.submit([Transfer("b", w, HOUSE_REVENUE, 100)])
    assert (await ledger.balance(w)).available == 0


async def test_world_account_may_go_negative(ledger: Ledger) -> None:
    await funded(ledger, "m1", 5000)
    b = await ledger.balance(WORLD_CREDIT)
    assert b.debits_posted - b.credits_posted == 5000


async def test_pending_counts_against_credits_and_post_partial_releases_rest(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 1000)
    await ledger.submit([Transfer("h1", w, HOUSE_REVENUE, 800, flags=PENDING, timeout_s=60)])
    assert (await ledger.balance(w)).available == 200
    assert await ledger.create_transfers([Transfer("h2", w, HOUSE_REVENUE, 300, flags=PENDING)]) == [
        Result.EXCEEDS_CREDITS
    ]
    assert await ledger.create_transfers([Transfer("p1", amount=801, flags=POST, pending_id="h1")]) == [
        Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
    ]
    await ledger.submit([Transfer("p1", amount=500, flags=POST, pending_id="h1")])
    b = await ledger.balance(w)
    assert (b.available, b.debits_posted, b.debits_pending) == (500, 500, 0)
    # resolves at most once
    assert await ledger.create_transfers([Transfer("p2", amount=1, flags=POST, pending_id="h1")]) == [
        Result.PENDING_TRANSFER_ALREADY_POSTED
    ]
    assert await ledger.create_transfers([Transfer("v1", flags=VOID, pending_id="h1")]) == [
        Result.PENDING_TRANSFER_ALREADY_POSTED
    ]
    # the retry of the same post is "exists", not a second charge
    assert await ledger.create_transfers([Transfer("p1", amount=500, flags=POST, pending_id="h1")]) == [Result.EXISTS]
    await assert_replays(ledger)


async def test_void_restores_exactly_the_pending_amount(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 1000)
    await ledger.submit([Transfer("h1", w, HOUSE_REVENUE, 700, flags=PENDING)])
    await ledger.submit([Transfer("v1", flags=VOID, pending_id="h1")])
    assert (await ledger.balance(w)).available == 1000
    with pytest.raises(PendingTransferError):
        await ledger.submit([Transfer("p1", amount=1, flags=POST, pending_id="h1")])
    await assert_replays(ledger)


async def test_pending_expires_by_the_injected_clock(ledger: Ledger, clock: FakeClock) -> None:
    w = await funded(ledger, "m1", 1000)
    await ledger.submit([Transfer("h1", w, HOUSE_REVENUE, 600, flags=PENDING, timeout_s=60)])
    clock.advance(59.9)
    assert (await ledger.balance(w)).available == 400
    clock.advance(0.1)
    # touching the wallet expires it (no sweeper needed)
    assert (await ledger.balance(w)).available == 1000
    assert await ledger.create_transfers([Transfer("p1", amount=10, flags=POST, pending_id="h1")]) == [
        Result.PENDING_TRANSFER_EXPIRED
    ]
    await assert_replays(ledger)


async def test_expire_due_sweeps_everywhere(ledger: Ledger, clock: FakeClock) -> None:
    ws = [await funded(ledger, f"m{i}", 100) for i in range(3)]
    for i, w in enumerate(ws):
        await ledger.submit([Transfer(f"h{i}", w, HOUSE_REVENUE, 50, flags=PENDING, timeout_s=10 * (i + 1))])
    clock.advance(20)
    assert sorted(await ledger.expire_due()) == ["h0", "h1"]
    assert await ledger.expire_due() == []
    clock.advance(100)
    assert await ledger.expire_due() == ["h2"]
    await assert_replays(ledger)


async def test_linked_chain_is_all_or_nothing(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 100)
    await ledger.open_performer("p1")
    legs = linked(
        [
            Transfer("t:perf", w, earnings_account("p1"), 60),
            Transfer("t:house", w, HOUSE_REVENUE, 50),  # 110 > 100: the chain fails
        ]
    )
    assert await ledger.create_transfers(legs) == [Result.LINKED_EVENT_FAILED, Result.EXCEEDS_CREDITS]
    assert (await ledger.balance(w)).available == 100
    assert (await ledger.balance(earnings_account("p1"))).credits_posted == 0
    # a failed chain does not poison independent transfers of the same batch
    res = await ledger.create_transfers(legs + [Transfer("solo", w, HOUSE_REVENUE, 10)])
    assert res == [Result.LINKED_EVENT_FAILED, Result.EXCEEDS_CREDITS, Result.OK]
    # a chain left open at the end of a batch fails whole
    open_chain = [Transfer("o1", w, HOUSE_REVENUE, 1, flags=int(TransferFlags.LINKED))]
    assert await ledger.create_transfers(open_chain) == [Result.LINKED_EVENT_CHAIN_OPEN]
    await assert_replays(ledger)


async def test_tip_splits_performer_and_house(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 1000)
    await ledger.open_performer("p1")
    assert await ledger.tip("tip-9", "m1", "p1", 333, performer_share_bp=6000) == (199, 134)
    assert (await ledger.balance(w)).available == 667
    assert (await ledger.balance(earnings_account("p1"))).credits_posted == 199
    with pytest.raises(InsufficientFundsError):
        await ledger.tip("tip-10", "m1", "p1", 668, performer_share_bp=6000)
    assert (await ledger.balance(earnings_account("p1"))).credits_posted == 199
    await assert_replays(ledger)


async def test_invalid_transfers_are_refused(ledger: Ledger) -> None:
    w = await funded(ledger, "m1", 100)
    cases = [
        (Transfer("", w, HOUSE_REVENUE, 1), Result.ID_MUST_NOT_BE_EMPTY),
        (Transfer("a", w, w, 1), Result.ACCOUNTS_MUST_BE_DIFFERENT),
        (Transfer("b", w, "nope", 1), Result.ACCOUNT_NOT_FOUND),
        (Transfer("c", w, HOUSE_REVENUE, 0), Result.AMOUNT_MUST_NOT_BE_ZERO),
        (Transfer("d", w, HOUSE_REVENUE, -1), Result.AMOUNT_OUT_OF_RANGE),
        (Transfer("e", w, HOUSE_REVENUE, 1, timeout_s=5), Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
        (Transfer("f", w, HOUSE_REVENUE, 1, flags=PENDING | POST), Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
        (Transfer("g", w, HOUSE_REVENUE, 1, flags=int(TransferFlags.EXPIRED)), Result.FLAGS_INVALID),
        (Transfer("h", amount=1, flags=POST, pending_id="missing"), Result.PENDING_TRANSFER_NOT_FOUND),
        (Transfer("i", w, points_account("m1"), 1), Result.LEDGER_MISMATCH),
    ]
    assert await ledger.create_transfers([t for t, _ in cases]) == [r for _, r in cases]
    assert (await ledger.balance(w)).available == 100


async def test_accounts_are_idempotent_and_conflicts_detected(ledger: Ledger) -> None:
    a = Account("acc:1", code="wallet", flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS))
    assert await ledger.create_accounts([a]) == [Result.OK]
    assert await ledger.create_accounts([a]) == [Result.EXISTS]
    assert await ledger.create_accounts([Account("acc:1", code="other")]) == [Result.EXISTS_WITH_DIFFERENT_FIELDS]
