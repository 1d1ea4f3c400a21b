"""Buying credit packages: a payment processor behind a protocol, then an idempotent top-up.

A purchase is idempotent on (member, idempotency key), from the client's
request down to the ledger:

1. A key already recorded for this member answers the recorded purchase (a
   different package or card under the same key is a ``PaymentConflictError``).
2. Otherwise the processor charges with the same key (a real processor dedupes
   on it; the test processor derives the payment id from it), and the payment
   is recorded (``insert_payment`` returns the row a racing twin stored first).
   The request that stored the row answers "created" (201); every other request
   with the key, twin or retry, is a replay (200).
3. ``CreditControl.top_up`` credits the package with the **payment id as the
   ledger transfer id**: applied once however often it is retried, and open
   privates of the wallet are re-authorised at once.
4. The payment is marked credited. A crash between any two steps is healed by
   the client's retry with the same key.

docs/product.md: only the last four digits and the expiry of a card are ever
stored. This module never receives more: there is no card-number field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

from jasmin_sfu.services.accounts import ADMIN, MEMBER, PERFORMER, US, Clock, Principal
from jasmin_sfu.services.credit_control import CreditControl
from jasmin_sfu.services.errors import (
    AccountValidationError,
    LedgerError,
    NotPermittedError,
    PaymentConflictError,
    PaymentDeclinedError,
    PaymentsUnavailableError,
    UnknownPackageError,
)
from jasmin_sfu.services.ledger import (
    earnings_account,
    package,
    points_account,
    units_to_credits,
    wallet_account,
)
from jasmin_sfu.store.accounts_repo import AccountsStore, PaymentRow

IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")
LAST4_RE = re.compile(r"^[0-9]{4}\Z")
EXPIRY_RE = re.compile(r"^(0[1-9]|1[0-2])/[0-9]{2}\Z")


@dataclass(frozen=True)
class Charge:
    """A processor's answer."""

    payment_id: str
    approved: bool
    card_last4: str | None = None
    card_expiry: str | None = None


class PaymentProcessor(Protocol):
    """A card processor: charges once per idempotency key."""

    name: str

    async def charge(
        self, idempotency_key: str, amount_cents: int, currency: str, card_last4: str | None, card_expiry: str | None
    ) -> Charge:
        """Charge ``amount_cents``; the same key must give the same payment."""
        ...


class ApprovingTestProcessor:
    """The test payment provider: approves everything, moves no money.

    The payment id is a hash of the idempotency key, so a retried charge is the
    same payment, as with a real processor's idempotency keys.
    """

    name = "test"

    async def charge(
        self, idempotency_key: str, amount_cents: int, currency: str, card_last4: str | None, card_expiry: str | None
    ) -> Charge:
        """Approve, keeping only what may be stored of the card."""
        pid = "tp_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return Charge(pid, True, card_last4, card_expiry)


@dataclass(frozen=True)
class Purchase:
    """A purchase as the member sees it."""

    payment_id: str
    package_code: str
    credits: int
    vip_points: int
    amount_cents: int
    status: str
    created_at: float
    card_last4: str | None
    card_expiry: str | None
    replayed: bool  # True: an earlier request with this key did it


@dataclass(frozen=True)
class Wallet:
    """A member's credits (ledger units: 1/6000 credit) and VIP points."""

    available_units: int
    held_units: int
    vip_points: int

    @property
    def credits(self) -> str:
        """Available credits with two decimals, rounded down."""
        return units_to_credits(self.available_units)


@dataclass(frozen=True)
class Earnings:
    """A performer's earnings (ledger units: 1/6000 credit) and its share of what members pay."""

    units: int  # posted to earnings:<performer>, net of any debit
    share_bp: int  # the performer's share of a private, basis points (billing.performer_share_bp)

    @property
    def credits(self) -> str:
        """Earned credits with two decimals, rounded down."""
        return units_to_credits(self.units)


def _check_optional(field: str, value: Any, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise AccountValidationError(field, what)
    return value


class Purchases:
    """Credit purchases and wallet balances of members."""

    def __init__(
        self, store: AccountsStore, cc: CreditControl, processor: PaymentProcessor | None, clock: Clock
    ) -> None:
        self.store = store
        self.cc = cc
        self.ledger = cc.ledger
        self.processor = processor
        self.clock = clock

    @staticmethod
    def _member(principal: Principal) -> str:
        if principal.kind != MEMBER:
            raise NotPermittedError("only members have a wallet")
        return principal.id

    async def buy(
        self,
        principal: Principal,
        package_code: Any,
        idempotency_key: Any,
        *,
        card_last4: Any = None,
        card_expiry: Any = None,
    ) -> Purchase:
        """Buy a credit package once per idempotency key (see the module doc)."""
        uid = self._member(principal)
        if self.processor is None:
            raise PaymentsUnavailableError("no payment provider is configured on this node")
        processor = self.processor
        try:
            if not isinstance(package_code, str):
                raise UnknownPackageError(repr(package_code))
            pkg = package(package_code)
        except UnknownPackageError:
            raise AccountValidationError("package", "unknown package") from None
        key = _check_optional(
            "idempotency_key", idempotency_key, IDEMPOTENCY_KEY_RE, "8-64 characters of A-Z a-z 0-9 _ -"
        )
        if key is None:
            raise AccountValidationError("idempotency_key", "required")
        last4 = _check_optional("card_last4", card_last4, LAST4_RE, "four digits")
        expiry = _check_optional("card_expiry", card_expiry, EXPIRY_RE, "MM/YY")
        wanted = (pkg.code, last4, expiry)
        row = await self.store.payment(uid, key)
        replayed = row is not None
        if row is None:
            charge = await processor.charge(f"{uid}:{key}", pkg.price_cents, "USD", last4, expiry)
            if not charge.approved:
                raise PaymentDeclinedError("the payment was declined")
            mine = PaymentRow(
                charge.payment_id,
                uid,
                key,
                pkg.code,
                pkg.price_cents,
                processor.name,
                "approved",
                round(self.clock() * US),
                charge.card_last4,
                charge.card_expiry,
            )
            # Decided by the insert alone: of racing twins exactly one stores the row. (Deciding
            # by the credited mark as well let the insert and the mark go to different twins,
            # and four twins were all answered 200.)
            row, stored = await self.store.insert_payment(mine)
            replayed = not stored
        if (row.package_code, row.card_last4, row.card_expiry) != wanted:
            raise PaymentConflictError("this idempotency key was used for another purchase")
        if row.status != "credited":
            await self.ledger.open_member(uid)
            await self.cc.top_up(row.id, uid, row.package_code)
            await self.store.mark_payment_credited(row.id, round(self.clock() * US))
            row = await self.store.payment(uid, key) or row
        return Purchase(
            row.id,
            pkg.code,
            pkg.credits,
            pkg.vip_points,
            row.amount_cents,
            row.status,
            row.created_at / US,
            row.card_last4,
            row.card_expiry,
            replayed,
        )

    async def wallet(self, principal: Principal) -> Wallet:
        """The member's available and held credits and VIP points (zero before any purchase)."""
        uid = self._member(principal)
        try:
            w = await self.ledger.balance(wallet_account(uid))
            p = await self.ledger.balance(points_account(uid))
        except LedgerError:  # no wallet yet
            return Wallet(0, 0, 0)
        return Wallet(w.available, w.debits_pending, p.credits_posted - p.debits_posted)

    async def earnings(self, principal: Principal, performer_id: str) -> Earnings:
        """What the performer ``performer_id`` earned (privates and tips, posted: a running private's
        seconds land at each grant renewal and at its end). The performer itself or an admin."""
        if principal.kind not in (PERFORMER, ADMIN) or (principal.kind == PERFORMER and principal.id != performer_id):
            raise NotPermittedError("only the performer itself or an admin may see its earnings")
        share = self.cc.config.performer_share_bp
        try:
            b = await self.ledger.balance(earnings_account(performer_id))
        except LedgerError:  # nothing earned yet: the account opens with its first private
            return Earnings(0, share)
        return Earnings(b.credits_posted - b.debits_posted, share)
