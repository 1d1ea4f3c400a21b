"""SQLite implementation of ``LedgerStore`` (the embedded default).

Threading (``jasmin_sfu.store.sqlite_base``): one connection, driven by one
dedicated worker thread. A commit with ``synchronous=FULL`` fsyncs the WAL
(0.1-10 ms on real disks), which must never stall the media event loop, so
statements run in the thread; one thread, because SQLite admits one writer at a
time anyway. Transactions are ``BEGIN IMMEDIATE``: the write lock is taken at
the start, so a balance read inside the transaction cannot change before the
update it guards (this is the atomic check). An ``asyncio.Lock`` serialises
transactions of this process on the one connection.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Collection, Sequence

from jasmin_sfu.store import migrations
from jasmin_sfu.store.errors import RetryableStoreError
from jasmin_sfu.store.ledger_repo import (
    AccountRow,
    CcRequestRow,
    CcSessionRow,
    PendingRow,
    TransferRow,
)
from jasmin_sfu.store.sqlite_base import SqliteStore, Track

# Column lists and row builders, shared with the PostgreSQL store (same tables on both dialects).
ACC_COLS = (
    "id, ledger, code, flags, user_data, debits_pending, debits_posted, credits_pending, credits_posted, timestamp"
)
TR_COLS = (
    "id, debit_account_id, credit_account_id, amount, ledger, code, flags, pending_id,"
    " timeout_s, user_data, body_hash, timestamp, seq"
)
CC_COLS = (
    "session_id, wallet_id, payee_id, escrow_id, rate, request_number, reservation_id, granted_seconds,"
    " final, status, used_seconds, charged, payee_paid, opened_at, updated_at"
)


def account_row(r: Sequence[Any]) -> AccountRow:
    return AccountRow(*r)


def transfer_row(r: Sequence[Any]) -> TransferRow:
    return TransferRow(*r)


def cc_row(r: Sequence[Any]) -> CcSessionRow:
    vals = list(r)
    vals[8] = bool(vals[8])
    return CcSessionRow(*vals)


def transfer_args(t: TransferRow) -> tuple[Any, ...]:
    """A transfer's values in the order both stores insert them (``seq`` is left to the database)."""
    return (
        t.id,
        t.debit_account_id,
        t.credit_account_id,
        t.amount,
        t.ledger,
        t.code,
        t.flags,
        t.pending_id,
        t.timeout_s,
        t.user_data,
        t.body_hash,
        t.timestamp,
    )


def _qs(n: int) -> str:
    return ",".join("?" * n)


class _Tx:
    """LedgerTx over the store's connection; every call hops to the worker thread."""

    def __init__(self, store: "SqliteLedgerStore") -> None:
        self._s = store

    async def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return await self._s._rows(sql, args)

    async def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._s._call(lambda db: db.executemany(sql, rows))

    async def get_accounts(self, ids: Collection[str], *, lock: bool) -> dict[str, AccountRow]:
        ids = list(ids)
        if not ids:
            return {}
        rows = await self._q(f"SELECT {ACC_COLS} FROM accounts WHERE id IN ({_qs(len(ids))})", ids)
        return {r[0]: account_row(r) for r in rows}

    async def insert_accounts(self, rows: Sequence[AccountRow]) -> None:
        await self._many(
            f"INSERT INTO accounts ({ACC_COLS}) VALUES ({_qs(10)})",
            [
                (
                    a.id,
                    a.ledger,
                    a.code,
                    a.flags,
                    a.user_data,
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                    a.timestamp,
                )
                for a in rows
            ],
        )

    async def update_balances(self, rows: Sequence[AccountRow]) -> None:
        await self._many(
            "UPDATE accounts SET debits_pending = ?, debits_posted = ?, credits_pending = ?, credits_posted = ?"
            " WHERE id = ?",
            [(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.id) for a in rows],
        )

    async def get_transfers(self, ids: Collection[str]) -> dict[str, TransferRow]:
        ids = list(ids)
        if not ids:
            return {}
        rows = await self._q(f"SELECT {TR_COLS} FROM transfers WHERE id IN ({_qs(len(ids))})", ids)
        return {r[0]: transfer_row(r) for r in rows}

    async def get_resolutions(self, pending_ids: Collection[str]) -> dict[str, TransferRow]:
        ids = list(pending_ids)
        if not ids:
            return {}
        rows = await self._q(f"SELECT {TR_COLS} FROM transfers WHERE pending_id IN ({_qs(len(ids))})", ids)
        return {r[7]: transfer_row(r) for r in rows}

    async def insert_transfers(self, rows: Sequence[TransferRow]) -> None:
        await self._many(
            "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code, flags,"
            f" pending_id, timeout_s, user_data, body_hash, timestamp) VALUES ({_qs(12)})",
            [transfer_args(t) for t in rows],
        )

    async def get_pendings(self, ids: Collection[str]) -> dict[str, PendingRow]:
        ids = list(ids)
        if not ids:
            return {}
        rows = await self._q(
            "SELECT pending_id, debit_account_id, credit_account_id, amount, expires_at FROM pending_open"
            f" WHERE pending_id IN ({_qs(len(ids))})",
            ids,
        )
        return {r[0]: PendingRow(*r) for r in rows}

    async def due_pendings(self, now: int, account_ids: Collection[str] | None, limit: int) -> list[PendingRow]:
        sql = (
            "SELECT pending_id, debit_account_id, credit_account_id, amount, expires_at FROM pending_open"
            " WHERE expires_at IS NOT NULL AND expires_at <= ?"
        )
        args: list[Any] = [now]
        if account_ids is not None:
            ids = list(account_ids)
            if not ids:
                return []
            sql += f" AND (debit_account_id IN ({_qs(len(ids))}) OR credit_account_id IN ({_qs(len(ids))}))"
            args += ids + ids
        sql += " ORDER BY expires_at LIMIT ?"
        args.append(limit)
        return [PendingRow(*r) for r in await self._q(sql, args)]

    async def claim_pendings(self, ids: Collection[str]) -> list[PendingRow]:
        ids = list(ids)
        if not ids:
            return []
        rows = await self._q(
            f"DELETE FROM pending_open WHERE pending_id IN ({_qs(len(ids))})"
            " RETURNING pending_id, debit_account_id, credit_account_id, amount, expires_at",
            ids,
        )
        return [PendingRow(*r) for r in rows]

    async def insert_pendings(self, rows: Sequence[PendingRow]) -> None:
        await self._many(
            "INSERT INTO pending_open (pending_id, debit_account_id, credit_account_id, amount, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(p.pending_id, p.debit_account_id, p.credit_account_id, p.amount, p.expires_at) for p in rows],
        )

    async def get_cc_session(self, session_id: str, *, lock: bool) -> CcSessionRow | None:
        rows = await self._q(f"SELECT {CC_COLS} FROM cc_sessions WHERE session_id = ?", (session_id,))
        return cc_row(rows[0]) if rows else None

    async def put_cc_session(self, row: CcSessionRow) -> None:
        r = row
        await self._q(
            f"INSERT OR REPLACE INTO cc_sessions ({CC_COLS}) VALUES ({_qs(15)})",
            (
                r.session_id,
                r.wallet_id,
                r.payee_id,
                r.escrow_id,
                r.rate,
                r.request_number,
                r.reservation_id,
                r.granted_seconds,
                int(r.final),
                r.status,
                r.used_seconds,
                r.charged,
                r.payee_paid,
                r.opened_at,
                r.updated_at,
            ),
        )

    async def open_cc_sessions(self, wallet_id: str) -> list[CcSessionRow]:
        rows = await self._q(
            f"SELECT {CC_COLS} FROM cc_sessions WHERE wallet_id = ? AND status = 'open' ORDER BY session_id",
            (wallet_id,),
        )
        return [cc_row(r) for r in rows]

    async def open_cc_sessions_by_prefix(self, prefix: str) -> list[CcSessionRow]:
        rows = await self._q(
            f"SELECT {CC_COLS} FROM cc_sessions WHERE substr(session_id, 1, ?) = ? AND status <> 'closed'"
            " ORDER BY session_id",
            (len(prefix), prefix),
        )
        return [cc_row(r) for r in rows]

    async def get_cc_request(self, session_id: str, request_number: int) -> CcRequestRow | None:
        rows = await self._q(
            "SELECT session_id, request_number, kind, used_seconds, answer FROM cc_requests"
            " WHERE session_id = ? AND request_number = ?",
            (session_id, request_number),
        )
        return CcRequestRow(*rows[0]) if rows else None

    async def insert_cc_request(self, row: CcRequestRow) -> None:
        await self._q(
            "INSERT INTO cc_requests (session_id, request_number, kind, used_seconds, answer) VALUES (?, ?, ?, ?, ?)",
            (row.session_id, row.request_number, row.kind, row.used_seconds, row.answer),
        )


# Pending, voiding and expiring entries move no posted balance (shared with the PostgreSQL store).
NOT_POSTED = 2 | 8 | 16
RANKING_SQL = (
    "SELECT acc, SUM(n) AS bal FROM ("
    " SELECT credit_account_id AS acc, amount AS n FROM transfers WHERE ledger = {p1} AND timestamp < {p2}"
    " AND (flags & {p3}) = 0"
    " UNION ALL"
    " SELECT debit_account_id AS acc, -amount AS n FROM transfers WHERE ledger = {p1} AND timestamp < {p2}"
    " AND (flags & {p3}) = 0"
    ") t WHERE substr(acc, 1, {p4}) = {p5} GROUP BY acc HAVING SUM(n) > 0 ORDER BY bal DESC, acc LIMIT {p6}"
)


class SqliteLedgerStore(SqliteStore):
    """The ledger in one SQLite file (or ``:memory:``)."""

    track = Track("database schema", "schema_version", migrations.SQLITE)
    foreign_keys = True
    # A unique-key race (two creators of one transfer id) is rerun by the service.
    unique_error = RetryableStoreError
    thread_name = "sqlite-ledger"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        async with self._transaction():
            yield _Tx(self)

    async def journal(self, after_seq: int, limit: int) -> list[TransferRow]:
        """Journal entries after ``after_seq``."""
        rows = await self._rows(
            f"SELECT {TR_COLS} FROM transfers WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        )
        return [transfer_row(r) for r in rows]

    async def all_accounts(self) -> list[AccountRow]:
        """Every account."""
        rows = await self._rows(f"SELECT {ACC_COLS} FROM accounts ORDER BY id")
        return [account_row(r) for r in rows]

    async def open_pendings(self) -> list[PendingRow]:
        """Every unresolved pending transfer."""
        rows = await self._rows(
            "SELECT pending_id, debit_account_id, credit_account_id, amount, expires_at FROM pending_open"
        )
        return [PendingRow(*r) for r in rows]

    async def ranking(self, ledger: str, prefix: str, before_us: int, limit: int) -> list[tuple[str, int]]:
        """The ``limit`` accounts whose id starts with ``prefix`` holding the most posted ``ledger``
        units from transfers stamped before ``before_us``: (account id, balance), balance > 0,
        most first, ties by account id (a pure function of the journal: every node agrees)."""
        rows = await self._rows(
            RANKING_SQL.format(p1="?1", p2="?2", p3="?3", p4="?4", p5="?5", p6="?6"),
            (ledger, before_us, NOT_POSTED, len(prefix), prefix, limit),
        )
        return [(str(a), int(b)) for a, b in rows]

    async def execute_raw(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        async with self._lock:
            return await self._rows(sql, args)
