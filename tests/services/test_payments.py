"""Credit purchases: one top-up per idempotency key whatever the retries, races or crashes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator

import pytest

from jasmin_sfu.services.accounts import AccountsService, Principal
from jasmin_sfu.services.credit_control import CreditControl, CreditControlConfig
from jasmin_sfu.services.errors import (
    AccountValidationError,
    NotPermittedError,
    PaymentConflictError,
    PaymentsUnavailableError,
)
from jasmin_sfu.services.ledger import Ledger, credits_to_units, wallet_account
from jasmin_sfu.services.payments import ApprovingTestProcessor, Purchases
from jasmin_sfu.store.accounts_repo import PaymentRow
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from tests.realparts import FakeClock
from tests.support import FAST, fast_hashing


@dataclass
class World:
    accounts: AccountsService
    ledger: Ledger
    purchases: Purchases
    member: Principal


@pytest.fixture
async def world(clock: FakeClock) -> AsyncIterator[World]:
    lstore = await SqliteLedgerStore.open(":memory:")
    astore = await SqliteAccountsStore.open(":memory:")
    ledger = Ledger(lstore, clock)
    await ledger.bootstrap()
    cc = CreditControl(ledger, CreditControlConfig())
    accounts = AccountsService(astore, clock, FAST, fast_hashing())
    member = (await accounts.register("uma", "password-u")).principal
    yield World(accounts, ledger, Purchases(astore, cc, ApprovingTestProcessor(), clock), member)
    await accounts.close()
    await lstore.close()


async def credits_of(w: World) -> int:
    return (await w.ledger.balance(wallet_account(w.member.id))).available


async def test_same_key_twice_buys_once_and_answers_the_same_purchase(world: World) -> None:
    """Protects members from double charges: a retried purchase (same key) is one top-up,
    answered with the first purchase; only last4 and expiry of the card are kept."""
    w = world
    assert (await w.purchases.wallet(w.member)).available_units == 0
    first = await w.purchases.buy(w.member, "p2999", "order-0001", card_last4="4242", card_expiry="12/29")
    again = await w.purchases.buy(w.member, "p2999", "order-0001", card_last4="4242", card_expiry="12/29")
    assert not first.replayed and again.replayed and again.payment_id == first.payment_id
    assert first.status == again.status == "credited"
    assert await credits_of(w) == credits_to_units(30)
    wallet = await w.purchases.wallet(w.member)
    assert (wallet.credits, wallet.vip_points) == ("30.00", 1)
    transfers = await w.ledger.lookup_transfers([f"{first.payment_id}:credits"])
    assert set(transfers) == {f"{first.payment_id}:credits"}  # the payment id is the ledger transfer id
    await w.purchases.buy(w.member, "p6999", "order-0002")
    assert await credits_of(w) == credits_to_units(30 + 72)
    assert (await w.ledger.replay()).ok


async def test_racing_retries_of_one_purchase_credit_once(world: World) -> None:
    """Protects against a double-clicked buy button: ten simultaneous requests, one top-up."""
    w = world
    got = await asyncio.gather(*[w.purchases.buy(w.member, "p9999", "order-race") for _ in range(10)])
    assert len({p.payment_id for p in got}) == 1
    assert await credits_of(w) == credits_to_units(105)


async def test_a_crash_between_charge_and_top_up_is_healed_by_the_retry(world: World) -> None:
    """Protects the gap between 'approved' and 'credited': the retry with the key tops up once."""
    w = world
    await w.purchases.store.insert_payment(
        PaymentRow("tp_crashed", w.member.id, "order-crash", "p2999", 2999, "test", "approved", 1)
    )
    p = await w.purchases.buy(w.member, "p2999", "order-crash")
    assert p.replayed and p.status == "credited" and p.payment_id == "tp_crashed"
    await w.purchases.buy(w.member, "p2999", "order-crash")
    assert await credits_of(w) == credits_to_units(30)


async def test_a_key_reused_for_another_purchase_is_a_conflict(world: World) -> None:
    """Protects against a client bug buying something else under an old key."""
    w = world
    await w.purchases.buy(w.member, "p2999", "order-0003")
    for change in ({"package_code": "p6999"}, {"card_last4": "1111"}):
        kw = {"package_code": "p2999", "idempotency_key": "order-0003", **change}
        with pytest.raises(PaymentConflictError):
            await w.purchases.buy(w.member, **kw)  # type: ignore[arg-type]
    assert await credits_of(w) == credits_to_units(30)


async def test_only_members_buy_and_inputs_are_checked(world: World) -> None:
    """Protects the wallet: guests and performers have none; unknown packages, bad keys and
    card fields other than last4/expiry are refused before any charge."""
    w = world
    guest = (await w.accounts.start_guest(adult_confirmed=True)).principal
    with pytest.raises(NotPermittedError):
        await w.purchases.buy(guest, "p2999", "order-0004")
    with pytest.raises(NotPermittedError):
        await w.purchases.wallet(guest)
    for kw, field in [
        ({"package_code": "free"}, "package"),
        ({"package_code": 2999}, "package"),
        ({"idempotency_key": "short"}, "idempotency_key"),
        ({"idempotency_key": None}, "idempotency_key"),
        ({"card_last4": "4242424242424242"}, "card_last4"),
        ({"card_expiry": "13/29"}, "card_expiry"),
    ]:
        args = {"package_code": "p2999", "idempotency_key": "order-0005", **kw}
        with pytest.raises(AccountValidationError) as e:
            await w.purchases.buy(w.member, **args)  # type: ignore[arg-type]
        assert e.value.field == field
    off = Purchases(w.purchases.store, w.purchases.cc, None, w.purchases.clock)
    with pytest.raises(PaymentsUnavailableError):
        await off.buy(w.member, "p2999", "order-0006")
    assert await w.purchases.store.payment(w.member.id, "order-0005") is None
