"""Read-only ledger queries for privacy: a member's rows for the data download, and its spending
with one performer for the performer's view of the member.

The ledger's own protocol (``LedgerStore``) is about moving money; these reads
are about people, so they live here, beside it, and never write. They run
through the ledger store's single-statement ``execute_raw`` with numbered
placeholders (``?1`` on SQLite, ``$1`` on PostgreSQL), on the store's own
connection (SQLite: its one worker thread; PostgreSQL: its pool).

Nothing here needs new indexes for the data download, which is rare. The
spending view reads ``cc_sessions`` by ``wallet_id`` (indexed) and tips from
``transfers`` by debit account, which is a scan on the current schema: fine
for the first sites, an index on ``transfers (debit_account_id)`` in the next
ledger migration when it is not (docs/privacy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jasmin_sfu.store.ledger_repo import earnings_account, points_account, wallet_account

_COLUMNS = {
    "accounts": "id, ledger, code, flags, user_data, debits_pending, debits_posted, credits_pending, credits_posted,"
    " timestamp",
    "transfers": "seq, id, debit_account_id, credit_account_id, amount, ledger, code, flags, pending_id, timeout_s,"
    " user_data, body_hash, timestamp",
    "pending_open": "pending_id, debit_account_id, credit_account_id, amount, expires_at",
    "cc_sessions": "session_id, wallet_id, payee_id, escrow_id, rate, request_number, reservation_id,"
    " granted_seconds, final, status, used_seconds, charged, payee_paid, opened_at, updated_at",
    "cc_requests": "session_id, request_number, kind, used_seconds, answer",
}

# {w} wallet, {pt} points, {e} earnings, {m} the member id itself (user_data).
_EXPORT = {
    "accounts": "id IN ({w}, {pt}, {e}) OR user_data = {m}",
    "transfers": "debit_account_id IN ({w}, {pt}, {e}) OR credit_account_id IN ({w}, {pt}, {e})",
    "pending_open": "debit_account_id IN ({w}, {pt}, {e}) OR credit_account_id IN ({w}, {pt}, {e})",
    "cc_sessions": "wallet_id = {w} OR payee_id = {e}",
    "cc_requests": "session_id IN (SELECT session_id FROM cc_sessions WHERE wallet_id = {w} OR payee_id = {e})",
}


@dataclass(frozen=True)
class SpendingEntry:
    """One paid private or one tip of a member with one performer (amounts in ledger units)."""

    kind: str  # private | tip
    at: int  # microseconds
    units: int
    seconds: int = 0


class LedgerReads:
    """Queries on a ``SqliteLedgerStore`` or ``PostgresLedgerStore`` (anything with ``execute_raw``)."""

    def __init__(self, store: Any) -> None:
        from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore

        self.store = store
        self._pg = isinstance(store, PostgresLedgerStore)

    def _p(self, n: int) -> str:
        return f"${n}" if self._pg else f"?{n}"

    async def _q(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return list(await self.store.execute_raw(sql, list(args)))

    async def export_member(self, member_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every ledger row naming the member's accounts, by table."""
        args = [wallet_account(member_id), points_account(member_id), earnings_account(member_id), member_id]
        marks = {"w": self._p(1), "pt": self._p(2), "e": self._p(3), "m": self._p(4)}
        out: dict[str, list[dict[str, Any]]] = {}
        for table, where in _EXPORT.items():
            cond = where.format(**marks)
            used = [i for i, k in enumerate(("w", "pt", "e", "m"), 1) if marks[k] in cond]
            # Numbered placeholders must be dense from 1: renumber the used ones.
            for new, old in enumerate(used, 1):
                cond = cond.replace(self._p(old), f"@@{new}")
            cond = cond.replace("@@", "$" if self._pg else "?")
            cols = _COLUMNS[table]
            rows = await self._q(f"SELECT {cols} FROM {table} WHERE {cond}", [args[i - 1] for i in used])
            names = [c.strip() for c in cols.split(",")]
            out[table] = [dict(zip(names, tuple(r))) for r in rows]
        return out

    async def spending(self, member_id: str, performer_id: str, limit: int = 50) -> list[SpendingEntry]:
        """The member's paid privates with the performer and its tips to it, newest first."""
        wallet, earnings = wallet_account(member_id), earnings_account(performer_id)
        privates = await self._q(
            f"SELECT opened_at, charged, used_seconds FROM cc_sessions WHERE wallet_id = {self._p(1)}"
            f" AND payee_id = {self._p(2)} AND charged > 0 ORDER BY opened_at DESC LIMIT {int(limit)}",
            [wallet, earnings],
        )
        # A tip is two linked legs, "<id>:performer" and "<id>:house" (Ledger.tip): the member spent both.
        tips = await self._q(
            "SELECT t.timestamp, t.amount + coalesce(h.amount, 0) FROM transfers t LEFT JOIN transfers h"
            " ON h.id = substr(t.id, 1, length(t.id) - 10) || ':house' AND h.debit_account_id = t.debit_account_id"
            f" WHERE t.debit_account_id = {self._p(1)} AND t.credit_account_id = {self._p(2)} AND t.code = 'tip'"
            f" ORDER BY t.timestamp DESC LIMIT {int(limit)}",
            [wallet, earnings],
        )
        out = [SpendingEntry("private", int(r[0]), int(r[1]), int(r[2])) for r in privates]
        out += [SpendingEntry("tip", int(r[0]), int(r[1])) for r in tips]
        out.sort(key=lambda e: e.at, reverse=True)
        return out[:limit]

    async def vip_points(self, member_id: str) -> int:
        """The member's VIP points (0 before any purchase)."""
        rows = await self._q(
            f"SELECT credits_posted - debits_posted FROM accounts WHERE id = {self._p(1)}", [points_account(member_id)]
        )
        return int(rows[0][0]) if rows else 0
