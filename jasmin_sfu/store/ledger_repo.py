"""Repository protocols of the ledger and credit control, and their plain row types.

The services (``jasmin_sfu.services.ledger`` / ``credit_control``) hold the rules;
a store only keeps rows and gives the isolation the rules need:

* ``LedgerStore.transaction()`` opens one database transaction. Account rows read
  with ``lock=True`` stay locked until it ends (PostgreSQL ``SELECT ... FOR
  UPDATE``; SQLite ``BEGIN IMMEDIATE`` already holds the one write lock), so a
  balance check and the balance update it guards are atomic.
* ``transfers`` is append-only (the schema refuses UPDATE and DELETE) with a
  UNIQUE ``id`` and a UNIQUE ``pending_id``: a transfer id is applied once and a
  pending transfer resolves at most once, even if the service layer had a bug.
* ``accounts`` carries CHECK constraints for ``debits_must_not_exceed_credits``,
  so no wallet can go below zero even through a buggy code path.
* A store raises ``RetryableStoreError`` for deadlocks, serialization failures and
  unique-key races; the service reruns the whole transaction.

All amounts are integers (smallest credit units); all times integer microseconds.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Collection, Protocol, Sequence


# Account names. They live with the rows (not in ``services.ledger``, which re-exports them)
# so a store-side reader (``privacy_ledger``) finds a member's accounts without importing upwards.
def wallet_account(member_id: str) -> str:
    """A member's credit wallet (may never go below zero)."""
    return f"wallet:{member_id}"


def points_account(member_id: str) -> str:
    """A member's VIP points."""
    return f"points:{member_id}"


def earnings_account(performer_id: str) -> str:
    """A performer's earnings."""
    return f"earnings:{performer_id}"


@dataclass
class AccountRow:
    """An account and its four balances (TigerBeetle's model)."""

    id: str
    ledger: str
    code: str
    flags: int
    user_data: str | None
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0


@dataclass(frozen=True)
class TransferRow:
    """One journal entry; ``seq`` is its position in the journal (store-assigned)."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: str
    code: str
    flags: int
    pending_id: str | None
    timeout_s: int
    user_data: str | None
    body_hash: str
    timestamp: int
    seq: int = 0


@dataclass(frozen=True)
class PendingRow:
    """An unresolved pending transfer (an index row, deleted on post/void/expiry)."""

    pending_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    expires_at: int | None


@dataclass
class CcSessionRow:
    """Credit-control state of one session."""

    session_id: str
    wallet_id: str
    payee_id: str
    escrow_id: str
    rate: int
    request_number: int
    reservation_id: str | None
    granted_seconds: int
    final: bool
    status: str  # open | closed | expired
    used_seconds: int
    charged: int
    payee_paid: int
    opened_at: int
    updated_at: int


@dataclass(frozen=True)
class CcRequestRow:
    """One answered credit-control request, kept for idempotent retries."""

    session_id: str
    request_number: int
    kind: str  # initial | update | terminate
    used_seconds: int
    answer: str  # JSON of the answer given


class LedgerTx(Protocol):
    """Operations inside one database transaction."""

    async def get_accounts(self, ids: Collection[str], *, lock: bool) -> dict[str, AccountRow]:
        """Accounts by id; ``lock`` keeps them locked until the transaction ends."""
        ...

    async def insert_accounts(self, rows: Sequence[AccountRow]) -> None:
        """Insert new accounts."""
        ...

    async def update_balances(self, rows: Sequence[AccountRow]) -> None:
        """Write the four balances of locked accounts."""
        ...

    async def get_transfers(self, ids: Collection[str]) -> dict[str, TransferRow]:
        """Transfers by id."""
        ...

    async def get_resolutions(self, pending_ids: Collection[str]) -> dict[str, TransferRow]:
        """The post/void/expiry transfer of each resolved pending id."""
        ...

    async def insert_transfers(self, rows: Sequence[TransferRow]) -> None:
        """Append to the journal, in order."""
        ...

    async def get_pendings(self, ids: Collection[str]) -> dict[str, PendingRow]:
        """Open pending transfers by id."""
        ...

    async def due_pendings(self, now: int, account_ids: Collection[str] | None, limit: int) -> list[PendingRow]:
        """Open pendings expired at ``now`` (touching ``account_ids`` when given)."""
        ...

    async def claim_pendings(self, ids: Collection[str]) -> list[PendingRow]:
        """Delete open pendings and return those this transaction removed (the claim)."""
        ...

    async def insert_pendings(self, rows: Sequence[PendingRow]) -> None:
        """Index new pending transfers."""
        ...

    async def get_cc_session(self, session_id: str, *, lock: bool) -> CcSessionRow | None:
        """Credit-control state of a session."""
        ...

    async def put_cc_session(self, row: CcSessionRow) -> None:
        """Insert or replace credit-control state."""
        ...

    async def open_cc_sessions(self, wallet_id: str) -> list[CcSessionRow]:
        """Open sessions drawing on a wallet."""
        ...

    async def open_cc_sessions_by_prefix(self, prefix: str) -> list[CcSessionRow]:
        """Sessions not terminated yet (open, or expired by a sweep) whose id starts with ``prefix``."""
        ...

    async def get_cc_request(self, session_id: str, request_number: int) -> CcRequestRow | None:
        """A recorded answer."""
        ...

    async def insert_cc_request(self, row: CcRequestRow) -> None:
        """Record an answer."""
        ...


class LedgerStore(Protocol):
    """A database holding the ledger and the credit-control state."""

    def transaction(self) -> AbstractAsyncContextManager[LedgerTx]:
        """One transaction: committed when the block exits normally, rolled back otherwise."""
        ...

    async def journal(self, after_seq: int, limit: int) -> list[TransferRow]:
        """Journal entries after ``after_seq`` in order (for replay)."""
        ...

    async def all_accounts(self) -> list[AccountRow]:
        """Every account with its stored balances."""
        ...

    async def open_pendings(self) -> list[PendingRow]:
        """Every unresolved pending transfer."""
        ...

    async def ranking(self, ledger: str, prefix: str, before_us: int, limit: int) -> list[tuple[str, int]]:
        """The ``limit`` accounts whose id starts with ``prefix`` holding the most posted ``ledger``
        units from transfers stamped before ``before_us``: (account id, balance), balance > 0,
        most first, ties by account id (a pure function of the journal: every node agrees)."""
        ...

    async def schema_version(self) -> int:
        """The applied migration version."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
