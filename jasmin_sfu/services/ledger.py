"""The double-entry ledger: TigerBeetle's model in SQL.

Accounts hold four balances (debits/credits x pending/posted) and flags;
transfers are immutable, append-only journal entries with client-given ids:

* idempotent: the same id with the same body answers ``EXISTS`` (treat it as
  ``OK``); the same id with another body answers ``EXISTS_WITH_DIFFERENT_FIELDS``
  and changes nothing;
* two-phase: ``PENDING`` reserves, ``POST_PENDING`` posts up to the pending
  amount (the rest is released), ``VOID_PENDING`` releases all, and a pending
  with ``timeout_s`` expires by itself (the ledger writes an ``EXPIRED`` entry the
  first time a transaction touches one of its accounts at or after the deadline,
  or in ``expire_due``). A pending resolves at most once (UNIQUE pending_id);
* ``LINKED`` chains succeed or fail together (a tip's performer and house legs);
* ``DEBITS_MUST_NOT_EXCEED_CREDITS`` counts pending debits, so a reservation is
  refused up front; the check and the update run under the account's row lock;
* balances are a pure function of the journal: ``replay()`` proves it.

Units: the ``CREDIT`` ledger counts in units of 1/6000 credit (``UNITS_PER_CREDIT``).
6000 = 100 hundredths x 60 seconds: a performer's price written in hundredths
of a credit per minute, P, costs exactly P units per second, so billing per
second needs no rounding at all and 60 seconds cost exactly the per-minute price
(P x 60 units = P hundredths). Rounding happens only when showing a balance in
credits: down, so a member is never shown more than they have.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass, field, replace
from enum import Enum, IntFlag
from typing import Awaitable, Callable, Collection, Sequence, TypeVar

from jasmin_sfu.services.errors import (
    AccountConflictError,
    InsufficientFundsError,
    LedgerError,
    PendingTransferError,
    StoreBusyError,
    TransferConflictError,
    TransferRejectedError,
    UnknownPackageError,
)
from jasmin_sfu.store.errors import RetryableStoreError
from jasmin_sfu.store.ledger_repo import (
    AccountRow,
    LedgerStore,
    LedgerTx,
    PendingRow,
    TransferRow,
    earnings_account,
    points_account,
    wallet_account,
)

T = TypeVar("T")
Clock = Callable[[], float]

US = 1_000_000
UNITS_PER_CREDIT = 6000
CREDIT = "CREDIT"
VIP_POINT = "VIP_POINT"
# BIGINT holds 2^63-1; capping single amounts at 2^62 keeps every sum of two in range.
MAX_AMOUNT = 2**62

HOUSE_REVENUE = "house:revenue"
WORLD_CREDIT = "world:CREDIT"
WORLD_VIP = "world:VIP_POINT"


def escrow_account(session_id: str) -> str:
    """The per-session escrow the grants of a paid session flow through; drained at close."""
    return f"escrow:{session_id}"


def per_second_rate(price_hundredths_per_minute: int) -> int:
    """Units billed per second for a per-minute price in hundredths of a credit.

    With 6000 units per credit the answer is the price itself, exactly:
    ``60 * per_second_rate(p) == p * UNITS_PER_CREDIT // 100`` for every p.
    """
    if price_hundredths_per_minute <= 0:
        raise ValueError("a per-minute price is positive")
    return price_hundredths_per_minute


def credits_to_units(credits: int) -> int:
    """Whole credits to ledger units."""
    return credits * UNITS_PER_CREDIT


def units_to_credits(units: int) -> str:
    """Ledger units shown as credits with two decimals, rounded down."""
    hundredths = units * 100 // UNITS_PER_CREDIT
    return f"{hundredths // 100}.{hundredths % 100:02d}"


@dataclass(frozen=True)
class CreditPackage:
    """A credit package: what it costs, what it gives."""

    code: str
    price_cents: int  # USD cents
    credits: int
    vip_points: int


# Prices and VIP points are the site's (docs/product.md, "Money"); the credit counts are
# this project's assumption (volume bonus of 0/3/5/7 %), configurable by operators.
PACKAGES: tuple[CreditPackage, ...] = (
    CreditPackage("p2999", 2999, 30, 1),
    CreditPackage("p6999", 6999, 72, 3),
    CreditPackage("p9999", 9999, 105, 5),
    CreditPackage("p15999", 15999, 170, 10),
)


def package(code: str, packages: Sequence[CreditPackage] = PACKAGES) -> CreditPackage:
    """Look a package up by code."""
    for p in packages:
        if p.code == code:
            return p
    raise UnknownPackageError(code)


class AccountFlags(IntFlag):
    """Account flags (TigerBeetle's)."""

    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class TransferFlags(IntFlag):
    """Transfer flags; ``EXPIRED`` is written only by the ledger itself."""

    NONE = 0
    LINKED = 1
    PENDING = 2
    POST_PENDING = 4
    VOID_PENDING = 8
    EXPIRED = 16


_CLIENT_FLAGS = TransferFlags.LINKED | TransferFlags.PENDING | TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING
_RESOLVING = TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING | TransferFlags.EXPIRED


class Result(str, Enum):
    """Per-transfer (and per-account) outcome codes, after TigerBeetle's."""

    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_EMPTY = "id_must_not_be_empty"
    FLAGS_INVALID = "flags_invalid"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    LEDGER_MISMATCH = "transfer_must_have_the_same_ledger_as_accounts"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    PENDING_ID_MUST_BE_EMPTY = "pending_id_must_be_empty"
    PENDING_ID_MUST_NOT_BE_EMPTY = "pending_id_must_not_be_empty"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS = "pending_transfer_has_different_accounts"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"

    @property
    def ok(self) -> bool:
        """OK and EXISTS both mean "applied" (TigerBeetle: handle exists exactly as ok)."""
        return self in (Result.OK, Result.EXISTS)


@dataclass(frozen=True)
class Account:
    """An account to create. Immutable apart from its balances; never deleted."""

    id: str
    ledger: str = CREDIT
    code: str = ""
    flags: int = 0
    user_data: str | None = None


@dataclass(frozen=True)
class Transfer:
    """A transfer to submit. For post/void, the accounts may be left empty."""

    id: str
    debit_account_id: str = ""
    credit_account_id: str = ""
    amount: int = 0
    ledger: str = CREDIT
    code: str = ""
    flags: int = 0
    pending_id: str | None = None
    timeout_s: int = 0
    user_data: str | None = None

    def body_hash(self) -> str:
        """Hash of every client-given field: equal hashes = the same request."""
        body = [
            self.id,
            self.debit_account_id,
            self.credit_account_id,
            self.amount,
            self.ledger,
            self.code,
            int(self.flags),
            self.pending_id,
            self.timeout_s,
            self.user_data,
        ]
        return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Balance:
    """An account's balances; ``available`` is what a new debit may take."""

    account_id: str
    ledger: str
    flags: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def available(self) -> int:
        """credits_posted - debits_posted - debits_pending (pending debits count)."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @classmethod
    def of(cls, a: AccountRow) -> "Balance":
        """From a stored row."""
        return cls(a.id, a.ledger, a.flags, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of replaying the journal."""

    transfers: int
    accounts: int
    mismatches: tuple[str, ...]
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def ok(self) -> bool:
        """True when every balance matched and debits equal credits."""
        return (
            not self.mismatches
            and self.debits_posted == self.credits_posted
            and self.debits_pending == self.credits_pending
        )


@dataclass
class _Work:
    """Writes gathered by one ``apply`` call, flushed at its end."""

    transfers: list[TransferRow] = field(default_factory=list)
    pendings: dict[str, PendingRow] = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)
    known: dict[str, TransferRow] = field(default_factory=dict)
    resolved: dict[str, TransferRow] = field(default_factory=dict)


@dataclass(frozen=True)
class _Snap:
    """State before a linked chain, restored when the chain fails."""

    balances: dict[str, tuple[int, int, int, int]]
    n_transfers: int
    pendings: dict[str, PendingRow]
    n_claims: int
    known: dict[str, TransferRow]
    resolved: dict[str, TransferRow]
    dirty: set[str]


def _bal(a: AccountRow) -> tuple[int, int, int, int]:
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


class LedgerTxn:
    """The ledger's rules inside one store transaction (see ``Ledger.run``).

    Accounts are locked on first use (after expiring their due pendings) and
    stay locked until the transaction ends, so every balance read here is the
    one the next ``apply`` checks against.
    """

    def __init__(self, tx: LedgerTx, now_us: int) -> None:
        self.tx = tx
        self.now_us = now_us
        self._accounts: dict[str, AccountRow] = {}
        self._dirty: set[str] = set()
        self.expired: list[str] = []

    async def lock(self, ids: Collection[str]) -> dict[str, Balance]:
        """Expire due pendings of these accounts, lock them, return their balances."""
        want = {i for i in ids if i and i not in self._accounts}
        work = _Work()
        while want:
            due = await self.tx.due_pendings(self.now_us, want, 500)
            extra = {a for d in due for a in (d.debit_account_id, d.credit_account_id)} - set(self._accounts)
            got = await self.tx.get_accounts(want | extra, lock=True)
            self._accounts.update(got)
            for p in await self.tx.claim_pendings([d.pending_id for d in due]):
                self._expire(p, work)
            if len(due) < 500:
                break
        if work.transfers:
            await self._flush(work)
        return {i: Balance.of(self._accounts[i]) for i in ids if i in self._accounts}

    async def balance(self, account_id: str) -> Balance | None:
        """One locked account's balance, or None when it does not exist."""
        return (await self.lock([account_id])).get(account_id)

    async def sweep(self, limit: int = 1000) -> list[str]:
        """Expire up to ``limit`` due pendings anywhere; returns their ids."""
        due = await self.tx.due_pendings(self.now_us, None, limit)
        await self.lock({a for d in due for a in (d.debit_account_id, d.credit_account_id)})
        return list(self.expired)

    def _expire(self, p: PendingRow, work: _Work) -> None:
        dr, cr = self._accounts[p.debit_account_id], self._accounts[p.credit_account_id]
        dr.debits_pending -= p.amount
        cr.credits_pending -= p.amount
        self._dirty |= {dr.id, cr.id}
        row = TransferRow(
            id=f"expire:{p.pending_id}",
            debit_account_id=dr.id,
            credit_account_id=cr.id,
            amount=p.amount,
            ledger=dr.ledger,
            code="expire",
            flags=int(TransferFlags.EXPIRED),
            pending_id=p.pending_id,
            timeout_s=0,
            user_data=None,
            body_hash="",
            timestamp=self.now_us,
        )
        work.transfers.append(row)
        work.resolved[p.pending_id] = row
        self.expired.append(p.pending_id)

    async def create_accounts(self, accounts: Sequence[Account]) -> list[Result]:
        """Create accounts; an identical existing one answers EXISTS."""
        existing = await self.tx.get_accounts([a.id for a in accounts], lock=False)
        out: list[Result] = []
        new: dict[str, AccountRow] = {}
        for a in accounts:
            if not a.id:
                out.append(Result.ID_MUST_NOT_BE_EMPTY)
                continue
            prev = existing.get(a.id) or new.get(a.id)
            if prev is not None:
                same = (prev.ledger, prev.code, prev.flags, prev.user_data) == (a.ledger, a.code, a.flags, a.user_data)
                out.append(Result.EXISTS if same else Result.EXISTS_WITH_DIFFERENT_FIELDS)
                continue
            new[a.id] = AccountRow(a.id, a.ledger, a.code, int(a.flags), a.user_data, timestamp=self.now_us)
            out.append(Result.OK)
        await self.tx.insert_accounts(list(new.values()))
        return out

    async def apply(self, transfers: Sequence[Transfer]) -> list[Result]:
        """Apply a batch: each transfer independently, except LINKED chains (all or nothing)."""
        refs = await self.tx.get_transfers({t.pending_id for t in transfers if t.pending_id})
        batch_pending = {t.id: t for t in transfers if t.flags & TransferFlags.PENDING}
        ids: set[str] = set()
        for t in transfers:
            if t.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING) and t.pending_id:
                p = refs.get(t.pending_id)
                bp = batch_pending.get(t.pending_id)
                if p is not None:
                    ids |= {p.debit_account_id, p.credit_account_id}
                elif bp is not None:
                    ids |= {bp.debit_account_id, bp.credit_account_id}
            else:
                ids |= {t.debit_account_id, t.credit_account_id}
        work = _Work()
        await self.lock(ids - {""})
        existing = await self.tx.get_transfers({t.id for t in transfers if t.id})
        resolutions = await self.tx.get_resolutions({t.pending_id for t in transfers if t.pending_id})
        n = len(transfers)
        results: list[Result] = [Result.OK] * n
        i = 0
        while i < n:
            # A chain runs from a LINKED transfer to the first one without LINKED.
            j = i
            while j < n and transfers[j].flags & TransferFlags.LINKED:
                j += 1
            if j == n:
                for k in range(i, n):
                    results[k] = Result.LINKED_EVENT_CHAIN_OPEN
                break
            snap = self._snapshot(work)
            failed: int | None = None
            for k in range(i, j + 1):
                results[k] = self._one(transfers[k], refs, existing, resolutions, work)
                if not results[k].ok:
                    failed = k
                    break
            if failed is not None and j > i:
                self._restore(snap, work)
                for k in range(i, j + 1):
                    if k != failed:
                        results[k] = Result.LINKED_EVENT_FAILED
            i = j + 1
        await self._flush(work)
        return results

    def _snapshot(self, work: _Work) -> _Snap:
        return _Snap(
            {k: _bal(a) for k, a in self._accounts.items()},
            len(work.transfers),
            dict(work.pendings),
            len(work.claims),
            dict(work.known),
            dict(work.resolved),
            set(self._dirty),
        )

    def _restore(self, s: _Snap, work: _Work) -> None:
        for k, (dp, dpo, cp, cpo) in s.balances.items():
            a = self._accounts[k]
            a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted = dp, dpo, cp, cpo
        del work.transfers[s.n_transfers :]
        del work.claims[s.n_claims :]
        work.pendings, work.known, work.resolved = s.pendings, s.known, s.resolved
        self._dirty = s.dirty

    def _one(
        self,
        t: Transfer,
        refs: dict[str, TransferRow],
        existing: dict[str, TransferRow],
        resolutions: dict[str, TransferRow],
        work: _Work,
    ) -> Result:
        F = TransferFlags
        if not t.id:
            return Result.ID_MUST_NOT_BE_EMPTY
        if t.flags & ~int(_CLIENT_FLAGS):
            return Result.FLAGS_INVALID
        h = t.body_hash()
        prior = work.known.get(t.id) or existing.get(t.id)
        if prior is not None:
            return Result.EXISTS if prior.body_hash == h else Result.EXISTS_WITH_DIFFERENT_FIELDS
        kinds = [f for f in (F.PENDING, F.POST_PENDING, F.VOID_PENDING) if t.flags & f]
        if len(kinds) > 1:
            return Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if t.amount < 0 or t.amount > MAX_AMOUNT:
            return Result.AMOUNT_OUT_OF_RANGE
        if t.timeout_s and not t.flags & F.PENDING:
            return Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if t.timeout_s < 0:
            return Result.AMOUNT_OUT_OF_RANGE
        if t.flags & (F.POST_PENDING | F.VOID_PENDING):
            return self._resolve(t, h, refs, resolutions, work)
        if t.pending_id:
            return Result.PENDING_ID_MUST_BE_EMPTY
        if t.debit_account_id == t.credit_account_id:
            return Result.ACCOUNTS_MUST_BE_DIFFERENT
        dr = self._accounts.get(t.debit_account_id)
        cr = self._accounts.get(t.credit_account_id)
        if dr is None or cr is None:
            return Result.ACCOUNT_NOT_FOUND
        if not (dr.ledger == cr.ledger == t.ledger):
            return Result.LEDGER_MISMATCH
        if t.amount == 0:
            return Result.AMOUNT_MUST_NOT_BE_ZERO
        if dr.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
            dr.debits_pending + dr.debits_posted + t.amount > dr.credits_posted
        ):
            return Result.EXCEEDS_CREDITS
        if cr.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
            cr.credits_pending + cr.credits_posted + t.amount > cr.debits_posted
        ):
            return Result.EXCEEDS_DEBITS
        if t.flags & F.PENDING:
            dr.debits_pending += t.amount
            cr.credits_pending += t.amount
            expires = self.now_us + t.timeout_s * US if t.timeout_s else None
            work.pendings[t.id] = PendingRow(t.id, dr.id, cr.id, t.amount, expires)
        else:
            dr.debits_posted += t.amount
            cr.credits_posted += t.amount
        self._dirty |= {dr.id, cr.id}
        row = TransferRow(
            id=t.id,
            debit_account_id=dr.id,
            credit_account_id=cr.id,
            amount=t.amount,
            ledger=t.ledger,
            code=t.code,
            flags=int(t.flags),
            pending_id=None,
            timeout_s=t.timeout_s,
            user_data=t.user_data,
            body_hash=h,
            timestamp=self.now_us,
        )
        work.transfers.append(row)
        work.known[t.id] = row
        return Result.OK

    def _resolve(
        self,
        t: Transfer,
        h: str,
        refs: dict[str, TransferRow],
        resolutions: dict[str, TransferRow],
        work: _Work,
    ) -> Result:
        F = TransferFlags
        pid = t.pending_id
        if not pid:
            return Result.PENDING_ID_MUST_NOT_BE_EMPTY
        p = work.known.get(pid) or refs.get(pid)
        if p is None:
            return Result.PENDING_TRANSFER_NOT_FOUND
        if not p.flags & F.PENDING:
            return Result.PENDING_TRANSFER_NOT_PENDING
        if (t.debit_account_id and t.debit_account_id != p.debit_account_id) or (
            t.credit_account_id and t.credit_account_id != p.credit_account_id
        ):
            return Result.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
        if t.ledger != p.ledger:
            return Result.LEDGER_MISMATCH
        res = work.resolved.get(pid) or resolutions.get(pid)
        if res is not None:
            if res.flags & F.POST_PENDING:
                return Result.PENDING_TRANSFER_ALREADY_POSTED
            if res.flags & F.VOID_PENDING:
                return Result.PENDING_TRANSFER_ALREADY_VOIDED
            return Result.PENDING_TRANSFER_EXPIRED
        if p.timeout_s and p.timestamp + p.timeout_s * US <= self.now_us:
            return Result.PENDING_TRANSFER_EXPIRED  # defensive: lock() expires it first
        if t.flags & F.POST_PENDING:
            if t.amount == 0:
                return Result.AMOUNT_MUST_NOT_BE_ZERO
            if t.amount > p.amount:
                return Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
            amount = t.amount
        else:
            if t.amount not in (0, p.amount):
                return Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
            amount = p.amount
        dr, cr = self._accounts[p.debit_account_id], self._accounts[p.credit_account_id]
        dr.debits_pending -= p.amount
        cr.credits_pending -= p.amount
        if t.flags & F.POST_PENDING:
            dr.debits_posted += amount
            cr.credits_posted += amount
        self._dirty |= {dr.id, cr.id}
        if pid in work.pendings:
            del work.pendings[pid]  # created and resolved in one batch: never indexed
        else:
            work.claims.append(pid)
        row = TransferRow(
            id=t.id,
            debit_account_id=dr.id,
            credit_account_id=cr.id,
            amount=amount,
            ledger=p.ledger,
            code=t.code or p.code,
            flags=int(t.flags),
            pending_id=pid,
            timeout_s=0,
            user_data=t.user_data if t.user_data is not None else p.user_data,
            body_hash=h,
            timestamp=self.now_us,
        )
        work.transfers.append(row)
        work.known[t.id] = row
        work.resolved[pid] = row
        return Result.OK

    async def _flush(self, work: _Work) -> None:
        if work.claims:
            got = await self.tx.claim_pendings(work.claims)
            if len(got) != len(set(work.claims)):
                # Someone else resolved one of them between our read and now.
                raise RetryableStoreError("pending transfer resolved concurrently")
        await self.tx.insert_transfers(work.transfers)
        await self.tx.insert_pendings(list(work.pendings.values()))
        await self.tx.update_balances([self._accounts[i] for i in sorted(self._dirty)])
        self._dirty.clear()
        work.transfers.clear()
        work.pendings.clear()
        work.claims.clear()


class Ledger:
    """The ledger service: rules over a ``LedgerStore``, time from an injected clock."""

    def __init__(self, store: LedgerStore, clock: Clock, *, max_retries: int = 20) -> None:
        self.store = store
        self.clock = clock
        self.max_retries = max_retries

    def now_us(self) -> int:
        """The injected clock in integer microseconds."""
        return round(self.clock() * US)

    async def run(self, fn: Callable[[LedgerTxn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction, rerunning it whole on deadlocks and races."""
        for attempt in range(self.max_retries):
            try:
                async with self.store.transaction() as tx:
                    return await fn(LedgerTxn(tx, self.now_us()))
            except RetryableStoreError:
                # Back off 0-2 ms x attempt so racing transactions spread out.
                await asyncio.sleep(random.uniform(0, 0.002) * (attempt + 1))
        raise StoreBusyError(f"gave up after {self.max_retries} attempts")

    async def create_accounts(self, accounts: Sequence[Account]) -> list[Result]:
        """Create accounts (idempotent by id)."""
        return await self.run(lambda lt: lt.create_accounts(accounts))

    async def ensure_accounts(self, accounts: Sequence[Account]) -> None:
        """Create accounts; raise ``AccountConflictError`` when an id exists with other fields."""
        for a, r in zip(accounts, await self.create_accounts(accounts)):
            if not r.ok:
                raise AccountConflictError(f"account {a.id}: {r.value}")

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[Result]:
        """Submit a batch; one result per transfer (OK and EXISTS both mean applied)."""
        return await self.run(lambda lt: lt.apply(transfers))

    async def submit(self, transfers: Sequence[Transfer]) -> None:
        """Submit a batch and raise the first failure as a domain error."""
        raise_for(transfers, await self.create_transfers(transfers))

    async def balance(self, account_id: str) -> Balance:
        """Current balance (expiring due pendings of the account first)."""
        b = await self.run(lambda lt: lt.balance(account_id))
        if b is None:
            raise LedgerError(f"no account {account_id}")
        return b

    async def expire_due(self, limit: int = 1000) -> list[str]:
        """Expire pending transfers whose timeout passed; returns their ids."""
        return await self.run(lambda lt: lt.sweep(limit))

    async def lookup_transfers(self, ids: Collection[str]) -> dict[str, TransferRow]:
        """Journal entries by id."""

        async def go(lt: LedgerTxn) -> dict[str, TransferRow]:
            return await lt.tx.get_transfers(ids)

        return await self.run(go)

    async def replay(self) -> ReplayReport:
        """Rebuild every balance from the journal and compare with the stored ones."""
        bal: dict[str, list[int]] = {}
        pend: dict[str, TransferRow] = {}
        mism: list[str] = []
        n = 0
        after = 0
        while True:
            rows = await self.store.journal(after, 5000)
            if not rows:
                break
            for t in rows:
                n += 1
                after = t.seq
                dr = bal.setdefault(t.debit_account_id, [0, 0, 0, 0])
                cr = bal.setdefault(t.credit_account_id, [0, 0, 0, 0])
                if t.flags & _RESOLVING:
                    p = pend.pop(t.pending_id or "", None)
                    if p is None:
                        mism.append(f"{t.id}: resolves unknown or resolved pending {t.pending_id}")
                        continue
                    dr[0] -= p.amount
                    cr[2] -= p.amount
                    if t.flags & TransferFlags.POST_PENDING:
                        dr[1] += t.amount
                        cr[3] += t.amount
                elif t.flags & TransferFlags.PENDING:
                    pend[t.id] = t
                    dr[0] += t.amount
                    cr[2] += t.amount
                else:
                    dr[1] += t.amount
                    cr[3] += t.amount
        accounts = await self.store.all_accounts()
        for a in accounts:
            got = bal.get(a.id, [0, 0, 0, 0])
            if list(_bal(a)) != got:
                mism.append(f"{a.id}: stored {_bal(a)} replayed {tuple(got)}")
            if (
                a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
                and a.debits_pending + a.debits_posted > a.credits_posted
            ):
                mism.append(f"{a.id}: debits exceed credits")
        stored_open = {p.pending_id for p in await self.store.open_pendings()}
        if stored_open != set(pend):
            mism.append(
                f"open pendings differ: stored-only {sorted(stored_open - set(pend))[:5]}, "
                f"journal-only {sorted(set(pend) - stored_open)[:5]}"
            )
        return ReplayReport(
            transfers=n,
            accounts=len(accounts),
            mismatches=tuple(mism),
            debits_pending=sum(a.debits_pending for a in accounts),
            debits_posted=sum(a.debits_posted for a in accounts),
            credits_pending=sum(a.credits_pending for a in accounts),
            credits_posted=sum(a.credits_posted for a in accounts),
        )

    # -- the site's accounts and money movements ----------------------------------------

    async def bootstrap(self) -> None:
        """Create the house and world accounts (idempotent)."""
        await self.ensure_accounts(
            [
                Account(WORLD_CREDIT, CREDIT, "world"),
                Account(WORLD_VIP, VIP_POINT, "world"),
                Account(HOUSE_REVENUE, CREDIT, "house"),
            ]
        )

    async def open_member(self, member_id: str) -> str:
        """Create a member's wallet and points account; returns the wallet id."""
        dmnec = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        await self.ensure_accounts(
            [
                Account(wallet_account(member_id), CREDIT, "wallet", dmnec, member_id),
                Account(points_account(member_id), VIP_POINT, "points", dmnec, member_id),
            ]
        )
        return wallet_account(member_id)

    async def open_performer(self, performer_id: str) -> str:
        """Create a performer's earnings account; returns its id."""
        dmnec = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        await self.ensure_accounts([Account(earnings_account(performer_id), CREDIT, "earnings", dmnec, performer_id)])
        return earnings_account(performer_id)

    async def top_up(self, transfer_id: str, member_id: str, package_code: str) -> CreditPackage:
        """Credit a purchased package and its VIP points, as one linked chain.

        ``transfer_id`` comes from the payment (its idempotency key): a retried
        purchase notification credits once.
        """
        pkg = package(package_code)
        legs = [
            Transfer(
                f"{transfer_id}:credits",
                WORLD_CREDIT,
                wallet_account(member_id),
                credits_to_units(pkg.credits),
                CREDIT,
                "topup",
                int(TransferFlags.LINKED),
                user_data=pkg.code,
            ),
            Transfer(
                f"{transfer_id}:points",
                WORLD_VIP,
                points_account(member_id),
                pkg.vip_points,
                VIP_POINT,
                "vip_points",
                0,
                user_data=pkg.code,
            ),
        ]
        await self.submit(legs)
        return pkg

    async def tip(
        self,
        transfer_id: str,
        member_id: str,
        performer_id: str,
        amount_units: int,
        performer_share_bp: int,
    ) -> tuple[int, int]:
        """A tip (surprise): member -> performer share + house rest, all or nothing.

        The performer's share is rounded down to the unit, the house gets the
        remainder, so the two legs always add up to the tip. Returns the legs.
        """
        perf = amount_units * performer_share_bp // 10_000
        house = amount_units - perf
        wallet = wallet_account(member_id)
        legs = [
            Transfer(f"{transfer_id}:performer", wallet, earnings_account(performer_id), perf, CREDIT, "tip"),
            Transfer(f"{transfer_id}:house", wallet, HOUSE_REVENUE, house, CREDIT, "tip_fee"),
        ]
        legs = linked([t for t in legs if t.amount])
        await self.submit(legs)
        return perf, house


def linked(transfers: Sequence[Transfer]) -> list[Transfer]:
    """Chain transfers: LINKED on all but the last, so they apply all or nothing."""
    out = []
    for i, t in enumerate(transfers):
        flags = (t.flags | TransferFlags.LINKED) if i < len(transfers) - 1 else (t.flags & ~TransferFlags.LINKED)
        out.append(replace(t, flags=int(flags)))
    return out


def raise_for(transfers: Sequence[Transfer], results: Sequence[Result]) -> None:
    """Raise the first failed result as a domain error (the cause, not linked_event_failed)."""
    failed = [(t, r) for t, r in zip(transfers, results) if not r.ok]
    if not failed:
        return
    primary = [(t, r) for t, r in failed if r not in (Result.LINKED_EVENT_FAILED, Result.LINKED_EVENT_CHAIN_OPEN)]
    t, r = (primary or failed)[0]
    if r is Result.EXISTS_WITH_DIFFERENT_FIELDS:
        raise TransferConflictError(t.id, r)
    if r in (Result.EXCEEDS_CREDITS, Result.EXCEEDS_DEBITS):
        raise InsufficientFundsError(t.id, r)
    if r.value.startswith("pending_transfer"):
        raise PendingTransferError(t.id, r)
    raise TransferRejectedError(t.id, r)
