"""PostgreSQL implementation of ``LedgerStore`` (production; several nodes share it).

Isolation: READ COMMITTED plus explicit row locks. Account rows are read with
``SELECT ... FOR UPDATE ORDER BY id`` (a fixed lock order, so two transactions
on the same accounts queue instead of deadlocking); every balance check runs
after the lock, and the update it guards is in the same transaction. Pending
claims are ``DELETE ... RETURNING``: of two racing resolvers only one gets the
row. Deadlocks, serialization failures and unique-key races surface as
``RetryableStoreError`` and the service reruns the transaction.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Collection, Sequence

import asyncpg

from jasmin_sfu.store import migrations
from jasmin_sfu.store.errors import IntegrityStoreError, RetryableStoreError
from jasmin_sfu.store.ledger_repo import (
    AccountRow,
    CcRequestRow,
    CcSessionRow,
    PendingRow,
    TransferRow,
)
from jasmin_sfu.store.pg_base import PgTrack, PostgresStore
from jasmin_sfu.store.sqlite_ledger import (
    ACC_COLS,
    CC_COLS,
    NOT_POSTED,
    RANKING_SQL,
    TR_COLS,
    account_row,
    cc_row,
    transfer_args,
    transfer_row,
)

_PD_COLS = "pending_id, debit_account_id, credit_account_id, amount, expires_at"


def _pd(r: Any) -> PendingRow:
    return PendingRow(*tuple(r))


class _Tx:
    """LedgerTx over one pooled connection inside one transaction."""

    def __init__(self, con: asyncpg.Connection) -> None:
        self._c = con

    async def get_accounts(self, ids: Collection[str], *, lock: bool) -> dict[str, AccountRow]:
        ids = sorted(set(ids))
        if not ids:
            return {}
        sql = f"SELECT {ACC_COLS} FROM accounts WHERE id = ANY($1::text[]) ORDER BY id"
        if lock:
            sql += " FOR UPDATE"
        return {r["id"]: account_row(r) for r in await self._c.fetch(sql, ids)}

    async def insert_accounts(self, rows: Sequence[AccountRow]) -> None:
        if rows:
            await self._c.executemany(
                f"INSERT INTO accounts ({ACC_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
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
        if rows:
            await self._c.executemany(
                "UPDATE accounts SET debits_pending = $1, debits_posted = $2, credits_pending = $3,"
                " credits_posted = $4 WHERE id = $5",
                [(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.id) for a in rows],
            )

    async def get_transfers(self, ids: Collection[str]) -> dict[str, TransferRow]:
        ids = list(ids)
        if not ids:
            return {}
        rows = await self._c.fetch(f"SELECT {TR_COLS} FROM transfers WHERE id = ANY($1::text[])", ids)
        return {r["id"]: transfer_row(r) for r in rows}

    async def get_resolutions(self, pending_ids: Collection[str]) -> dict[str, TransferRow]:
        ids = list(pending_ids)
        if not ids:
            return {}
        rows = await self._c.fetch(f"SELECT {TR_COLS} FROM transfers WHERE pending_id = ANY($1::text[])", ids)
        return {r["pending_id"]: transfer_row(r) for r in rows}

    async def insert_transfers(self, rows: Sequence[TransferRow]) -> None:
        if rows:
            await self._c.executemany(
                "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code, flags,"
                " pending_id, timeout_s, user_data, body_hash, timestamp)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                [transfer_args(t) for t in rows],
            )

    async def get_pendings(self, ids: Collection[str]) -> dict[str, PendingRow]:
        ids = list(ids)
        if not ids:
            return {}
        rows = await self._c.fetch(f"SELECT {_PD_COLS} FROM pending_open WHERE pending_id = ANY($1::text[])", ids)
        return {r["pending_id"]: _pd(r) for r in rows}

    async def due_pendings(self, now: int, account_ids: Collection[str] | None, limit: int) -> list[PendingRow]:
        if account_ids is None:
            rows = await self._c.fetch(
                f"SELECT {_PD_COLS} FROM pending_open WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
                now,
                limit,
            )
        else:
            ids = list(account_ids)
            if not ids:
                return []
            rows = await self._c.fetch(
                f"SELECT {_PD_COLS} FROM pending_open WHERE expires_at <= $1"
                " AND (debit_account_id = ANY($2::text[]) OR credit_account_id = ANY($2::text[]))"
                " ORDER BY expires_at LIMIT $3",
                now,
                ids,
                limit,
            )
        return [_pd(r) for r in rows]

    async def claim_pendings(self, ids: Collection[str]) -> list[PendingRow]:
        ids = list(ids)
        if not ids:
            return []
        rows = await self._c.fetch(
            f"DELETE FROM pending_open WHERE pending_id = ANY($1::text[]) RETURNING {_PD_COLS}", ids
        )
        return [_pd(r) for r in rows]

    async def insert_pendings(self, rows: Sequence[PendingRow]) -> None:
        if rows:
            await self._c.executemany(
                f"INSERT INTO pending_open ({_PD_COLS}) VALUES ($1,$2,$3,$4,$5)",
                [(p.pending_id, p.debit_account_id, p.credit_account_id, p.amount, p.expires_at) for p in rows],
            )

    async def get_cc_session(self, session_id: str, *, lock: bool) -> CcSessionRow | None:
        sql = f"SELECT {CC_COLS} FROM cc_sessions WHERE session_id = $1"
        if lock:
            sql += " FOR UPDATE"
        r = await self._c.fetchrow(sql, session_id)
        return cc_row(r) if r is not None else None

    async def put_cc_session(self, row: CcSessionRow) -> None:
        r = row
        await self._c.execute(
            f"INSERT INTO cc_sessions ({CC_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
            " ON CONFLICT (session_id) DO UPDATE SET request_number = excluded.request_number,"
            " reservation_id = excluded.reservation_id, granted_seconds = excluded.granted_seconds,"
            " final = excluded.final, status = excluded.status, used_seconds = excluded.used_seconds,"
            " charged = excluded.charged, payee_paid = excluded.payee_paid, updated_at = excluded.updated_at",
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
        )

    async def open_cc_sessions(self, wallet_id: str) -> list[CcSessionRow]:
        rows = await self._c.fetch(
            f"SELECT {CC_COLS} FROM cc_sessions WHERE wallet_id = $1 AND status = 'open' ORDER BY session_id",
            wallet_id,
        )
        return [cc_row(r) for r in rows]

    async def open_cc_sessions_by_prefix(self, prefix: str) -> list[CcSessionRow]:
        rows = await self._c.fetch(
            f"SELECT {CC_COLS} FROM cc_sessions WHERE left(session_id, $1) = $2 AND status <> 'closed'"
            " ORDER BY session_id",
            len(prefix),
            prefix,
        )
        return [cc_row(r) for r in rows]

    async def get_cc_request(self, session_id: str, request_number: int) -> CcRequestRow | None:
        r = await self._c.fetchrow(
            "SELECT session_id, request_number, kind, used_seconds, answer FROM cc_requests"
            " WHERE session_id = $1 AND request_number = $2",
            session_id,
            request_number,
        )
        return CcRequestRow(*tuple(r)) if r is not None else None

    async def insert_cc_request(self, row: CcRequestRow) -> None:
        await self._c.execute(
            "INSERT INTO cc_requests (session_id, request_number, kind, used_seconds, answer)"
            " VALUES ($1, $2, $3, $4, $5)",
            row.session_id,
            row.request_number,
            row.kind,
            row.used_seconds,
            row.answer,
        )


class PostgresLedgerStore(PostgresStore):
    """The ledger in PostgreSQL, through an asyncpg pool."""

    # Advisory lock key held while migrating, so two nodes starting together do not
    # both run migration N (an arbitrary constant: "jasm" in ASCII).
    track = PgTrack("database schema", "schema_version", migrations.POSTGRES, 0x6A61736D)
    # A unique-key race (two creators of one transfer id) is rerun by the service.
    unique_error = RetryableStoreError

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        """One READ COMMITTED transaction on a pooled connection."""
        async with self._transaction() as con:
            yield _Tx(con)

    async def journal(self, after_seq: int, limit: int) -> list[TransferRow]:
        """Journal entries after ``after_seq``."""
        rows = await self._fetch(
            f"SELECT {TR_COLS} FROM transfers WHERE seq > $1 ORDER BY seq LIMIT $2", after_seq, limit
        )
        return [transfer_row(r) for r in rows]

    async def all_accounts(self) -> list[AccountRow]:
        """Every account."""
        rows = await self._fetch(f"SELECT {ACC_COLS} FROM accounts ORDER BY id")
        return [account_row(r) for r in rows]

    async def open_pendings(self) -> list[PendingRow]:
        """Every unresolved pending transfer."""
        rows = await self._fetch(f"SELECT {_PD_COLS} FROM pending_open")
        return [_pd(r) for r in rows]

    async def ranking(self, ledger: str, prefix: str, before_us: int, limit: int) -> list[tuple[str, int]]:
        """The ``limit`` accounts whose id starts with ``prefix`` holding the most posted ``ledger``
        units from transfers stamped before ``before_us``: (account id, balance), balance > 0,
        most first, ties by account id (a pure function of the journal: every node agrees)."""
        rows = await self._fetch(
            RANKING_SQL.format(p1="$1", p2="$2", p3="$3", p4="$4", p5="$5", p6="$6"),
            ledger,
            before_us,
            NOT_POSTED,
            len(prefix),
            prefix,
            limit,
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def execute_raw(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one statement outside the service rules (tests use it to prove the constraints)."""
        try:
            async with self._pool.acquire() as con:
                return list(await con.fetch(sql, *args))
        except asyncpg.exceptions.IntegrityConstraintViolationError as e:
            raise IntegrityStoreError(repr(e)) from e
        except asyncpg.exceptions.RaiseError as e:
            raise IntegrityStoreError(repr(e)) from e
