"""Credit control: RFC 4006-style reserve/commit over the ledger (docs/money.md, "Credit control flow").

One paid session (a private) draws on one wallet through grants:

1. ``authorize(session, wallet, rate)`` (request 0): in one transaction, with the
   wallet row locked, ``available = credits_posted - debits_posted - debits_pending``,
   ``g = min(grant_seconds, available // rate)``; a pending transfer wallet ->
   escrow:<session> of ``g * rate`` is written with a timeout of about 2 x g
   (RFC 4006's Tcc). ``g == 0`` refuses the start. ``final`` is set when nothing
   would be left for even one more second after this grant (Final-Unit-Indication).
2. The media side spends seconds from its local grant only (never streams a
   second it holds no grant for) and writes a usage event per second.
3. ``update(session, n, used)`` at 50-70 % of the grant: posts ``used * rate`` of
   the current hold (the remainder is released), pays the escrow out to the
   performer and the house, and opens the next hold - one transaction, keyed by
   (session, n): a retry returns the recorded answer and changes nothing.
4. A final grant schedules the stop at exhaustion and warns the member; just
   before cutting, one last ``update``: if a top-up arrived it returns a normal grant.
5. ``top_up`` credits the wallet, then calls every re-auth listener for each open
   session of the wallet (RFC 4006 RAR); the session answers with ``update`` and
   the scheduled stop is cancelled (the gap CGRateS has: it cut without re-checking).
6. ``terminate(session, n, used)``: post used, release the rest, pay out, close.
7. A crashed node's holds expire by their timeout (``expire_stale``, or lazily when
   the wallet is next touched); the credits return to the wallet.

Used seconds above the grant are never charged: overspend is the media side's
bug and is counted in the answer, never taken from the wallet unreserved. A
report that arrives after its hold expired is charged from what the wallet still
has, never more (the late path).

Revenue split: the performer's share of a session is ``floor(charged * bp / 10000)``
computed on the session's running total, so per-update rounding never drifts;
the house gets the rest. The escrow ends every request at zero.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable

from jasmin_sfu.services.errors import (
    CreditSessionClosedError,
    CreditSessionNotFoundError,
    InsufficientCreditError,
    RequestConflictError,
    RequestOutOfOrderError,
)
from jasmin_sfu.services.ledger import (
    CREDIT,
    HOUSE_REVENUE,
    US,
    Account,
    AccountFlags,
    Ledger,
    LedgerTxn,
    Result,
    Transfer,
    TransferFlags,
    earnings_account,
    escrow_account,
    linked,
    raise_for,
    wallet_account,
)
from jasmin_sfu.store.ledger_repo import CcRequestRow, CcSessionRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreditControlConfig:
    """Grant sizing and the revenue split (config section ``credit_control``)."""

    # 30 s: a renewal every ~15-20 s per session, while a wallet shared by
    # several sessions is never fragmented into large idle holds (RFC 4006 5.1.2).
    grant_seconds: int = 30
    # A hold lives ~2x its grant (RFC 4006 Tcc), at least 10 s so a small final
    # grant survives one slow renewal round trip.
    timeout_factor: float = 2.0
    min_timeout_s: int = 10
    # Performer's share of private revenue, in basis points (contract-specific;
    # docs/product.md gives no figure).
    performer_share_bp: int = 5000


@dataclass(frozen=True)
class Grant:
    """A credit-control answer: stream at most ``seconds`` more seconds."""

    seconds: int
    final: bool
    reservation_id: str
    request_number: int
    # The hold's expiry (epoch seconds): renew well before it.
    valid_until: float
    # Seconds reported above the previous grant and therefore not charged.
    overrun_seconds: int = 0


@dataclass(frozen=True)
class SessionTotals:
    """The answer to ``terminate``: what the whole session cost."""

    session_id: str
    request_number: int
    used_seconds: int
    charged: int
    performer_paid: int
    house_paid: int
    overrun_seconds: int = 0


@dataclass(frozen=True)
class ReAuthRequest:
    """Server-initiated re-authorisation (RFC 4006 RAR): answer it with ``update``."""

    session_id: str
    wallet_id: str
    reason: str


ReAuthListener = Callable[[ReAuthRequest], Awaitable[None]]


class CreditControl:
    """Reserve/commit credit control over a ``Ledger``."""

    def __init__(self, ledger: Ledger, config: CreditControlConfig = CreditControlConfig()) -> None:
        self.ledger = ledger
        self.config = config
        self._listeners: list[ReAuthListener] = []

    # -- listeners ------------------------------------------------------------------

    def add_reauth_listener(self, listener: ReAuthListener) -> None:
        """Be told when an open session's wallet was topped up (answer with ``update``)."""
        self._listeners.append(listener)

    def remove_reauth_listener(self, listener: ReAuthListener) -> None:
        """Undo ``add_reauth_listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- requests ------------------------------------------------------------------

    async def authorize(self, session_id: str, wallet_id: str, rate: int, *, performer_id: str) -> Grant:
        """Request 0: open the session with its first grant, or raise ``InsufficientCreditError``."""
        if rate <= 0:
            raise ValueError("a billed session has a positive rate")
        if not session_id or ":" in session_id:
            raise ValueError("session ids are non-empty and contain no ':'")

        async def go(lt: LedgerTxn) -> Grant:
            prior = await self._prior(lt, session_id, 0, "initial", 0)
            if prior is not None:
                g = Grant(**prior)
                s = await lt.tx.get_cc_session(session_id, lock=False)
                assert s is not None
                if (s.wallet_id, s.rate, s.payee_id) != (wallet_id, rate, earnings_account(performer_id)):
                    raise RequestConflictError(f"{session_id}#0 was authorised with other parameters")
                return g
            payee = earnings_account(performer_id)
            escrow = escrow_account(session_id)
            dmnec = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
            await lt.create_accounts(
                [
                    Account(escrow, CREDIT, "escrow", dmnec, session_id),
                    Account(payee, CREDIT, "earnings", dmnec, performer_id),
                ]
            )
            await lt.lock([wallet_id, escrow, payee, HOUSE_REVENUE])
            now = lt.now_us
            s = CcSessionRow(
                session_id=session_id,
                wallet_id=wallet_id,
                payee_id=payee,
                escrow_id=escrow,
                rate=rate,
                request_number=0,
                reservation_id=None,
                granted_seconds=0,
                final=False,
                status="open",
                used_seconds=0,
                charged=0,
                payee_paid=0,
                opened_at=now,
                updated_at=now,
            )
            grant = await self._grant(lt, s, 0)
            if grant.seconds == 0:
                raise InsufficientCreditError(f"wallet {wallet_id} cannot pay one second at rate {rate}")
            await lt.tx.put_cc_session(s)
            await lt.tx.insert_cc_request(CcRequestRow(session_id, 0, "initial", 0, json.dumps(asdict(grant))))
            return grant

        return await self.ledger.run(go)

    async def update(self, session_id: str, request_number: int, used_seconds: int) -> Grant:
        """Report ``used_seconds`` of the current grant and get the next one.

        Idempotent by (session_id, request_number). A grant of 0 seconds means
        stop now (and ``terminate``).
        """

        async def go(lt: LedgerTxn) -> Grant:
            prior = await self._prior(lt, session_id, request_number, "update", used_seconds)
            if prior is not None:
                return Grant(**prior)
            s = await self._open_session(lt, session_id, request_number)
            overrun = await self._settle(lt, s, request_number, used_seconds)
            grant = await self._grant(lt, s, request_number, overrun)
            s.request_number = request_number
            s.status = "open"
            s.updated_at = lt.now_us
            await lt.tx.put_cc_session(s)
            await lt.tx.insert_cc_request(
                CcRequestRow(session_id, request_number, "update", used_seconds, json.dumps(asdict(grant)))
            )
            return grant

        return await self.ledger.run(go)

    async def terminate(self, session_id: str, request_number: int, used_seconds: int) -> SessionTotals:
        """Report the last ``used_seconds``, release the rest of the hold, close the session.

        Idempotent by (session_id, request_number): a retried terminate answers the
        same totals and charges nothing more (ivozprovider #703).
        """

        async def go(lt: LedgerTxn) -> SessionTotals:
            prior = await self._prior(lt, session_id, request_number, "terminate", used_seconds)
            if prior is not None:
                return SessionTotals(**prior)
            s = await self._open_session(lt, session_id, request_number)
            overrun = await self._settle(lt, s, request_number, used_seconds)
            s.request_number = request_number
            s.status = "closed"
            s.reservation_id = None
            s.granted_seconds = 0
            s.updated_at = lt.now_us
            await lt.tx.put_cc_session(s)
            totals = SessionTotals(
                session_id=session_id,
                request_number=request_number,
                used_seconds=s.used_seconds,
                charged=s.charged,
                performer_paid=s.payee_paid,
                house_paid=s.charged - s.payee_paid,
                overrun_seconds=overrun,
            )
            await lt.tx.insert_cc_request(
                CcRequestRow(session_id, request_number, "terminate", used_seconds, json.dumps(asdict(totals)))
            )
            return totals

        return await self.ledger.run(go)

    async def session(self, session_id: str) -> CcSessionRow:
        """The stored credit-control state of a session."""

        async def go(lt: LedgerTxn) -> CcSessionRow | None:
            return await lt.tx.get_cc_session(session_id, lock=False)

        s = await self.ledger.run(go)
        if s is None:
            raise CreditSessionNotFoundError(session_id)
        return s

    # -- top-up and expiry -----------------------------------------------------------

    async def top_up(self, transfer_id: str, member_id: str, package_code: str) -> list[str]:
        """Credit a package, then re-authorise the wallet's open sessions; returns their ids."""
        await self.ledger.top_up(transfer_id, member_id, package_code)
        return await self.notify_top_up(wallet_account(member_id))

    async def notify_top_up(self, wallet_id: str, reason: str = "top_up") -> list[str]:
        """Send a re-auth to every listener for each open session of ``wallet_id``.

        Call it after any credit reaching the wallet (a top-up done elsewhere, a
        refund, free credits). A failing listener is logged; it never blocks the others.
        """

        async def go(lt: LedgerTxn) -> list[CcSessionRow]:
            return await lt.tx.open_cc_sessions(wallet_id)

        sessions = await self.ledger.run(go)
        for s in sessions:
            req = ReAuthRequest(s.session_id, wallet_id, reason)
            for listener in list(self._listeners):
                try:
                    await listener(req)
                except Exception:  # noqa: BLE001 - one listener must not stop the others
                    log.exception("re-auth listener failed", extra={"session_id": s.session_id})
        return [s.session_id for s in sessions]

    async def open_sessions(self, prefix: str) -> list[CcSessionRow]:
        """Sessions not yet terminated whose id starts with ``prefix`` (one node's, after a crash).

        Sessions whose hold a sweep expired (``expired``) are included: their seconds
        still have to be charged and their closing event written.
        """

        async def go(lt: LedgerTxn) -> list[CcSessionRow]:
            return await lt.tx.open_cc_sessions_by_prefix(prefix)

        return await self.ledger.run(go)

    async def expire_stale(self) -> list[str]:
        """Expire due holds (a crashed node's grants) and mark their sessions expired.

        Returns the session ids whose hold expired. The credits are back in the
        wallets; a node that is in fact alive can still ``update`` or ``terminate``
        (its late report is charged from what the wallet still has).
        """

        async def go(lt: LedgerTxn) -> list[str]:
            expired = await lt.sweep()
            out: list[str] = []
            for pid in expired:
                parts = pid.split(":")
                if len(parts) == 4 and parts[0] == "cc" and parts[3] == "hold":
                    s = await lt.tx.get_cc_session(parts[1], lock=True)
                    if s is not None and s.status == "open" and s.reservation_id == pid:
                        s.status = "expired"
                        s.updated_at = lt.now_us
                        await lt.tx.put_cc_session(s)
                        out.append(s.session_id)
            return out

        return await self.ledger.run(go)

    # -- internals -----------------------------------------------------------------

    async def _prior(self, lt: LedgerTxn, session_id: str, n: int, kind: str, used: int) -> dict[str, Any] | None:
        r = await lt.tx.get_cc_request(session_id, n)
        if r is None:
            return None
        if r.kind != kind or r.used_seconds != used:
            raise RequestConflictError(
                f"{session_id}#{n} was a {r.kind} of {r.used_seconds} s, now a {kind} of {used} s"
            )
        answer: dict[str, Any] = json.loads(r.answer)
        return answer

    async def _open_session(self, lt: LedgerTxn, session_id: str, n: int) -> CcSessionRow:
        s = await lt.tx.get_cc_session(session_id, lock=True)
        if s is None:
            raise CreditSessionNotFoundError(session_id)
        if s.status == "closed":
            raise CreditSessionClosedError(f"session {session_id} is closed")
        if n != s.request_number + 1:
            raise RequestOutOfOrderError(f"{session_id}: request {n}, expected {s.request_number + 1}")
        await lt.lock([s.wallet_id, s.escrow_id, s.payee_id, HOUSE_REVENUE])
        return s

    async def _settle(self, lt: LedgerTxn, s: CcSessionRow, n: int, used: int) -> int:
        """Charge ``used`` seconds of the current hold, release the rest, pay out. Returns overrun."""
        if used < 0:
            raise ValueError("used_seconds must be >= 0")
        chargeable = min(used, s.granted_seconds) if s.reservation_id else 0
        overrun = used - chargeable
        amount = chargeable * s.rate
        sid = s.session_id
        if s.reservation_id:
            if amount > 0:
                t = Transfer(
                    f"cc:{sid}:{n}:post",
                    amount=amount,
                    flags=int(TransferFlags.POST_PENDING),
                    pending_id=s.reservation_id,
                    code="private",
                    user_data=sid,
                )
            else:
                t = Transfer(
                    f"cc:{sid}:{n}:void",
                    flags=int(TransferFlags.VOID_PENDING),
                    pending_id=s.reservation_id,
                    code="private",
                    user_data=sid,
                )
            r = (await lt.apply([t]))[0]
            if r is Result.PENDING_TRANSFER_EXPIRED:
                # Late report: the hold lapsed and its credits went back. Charge
                # what the wallet still has, never more than was used.
                bal = await lt.balance(s.wallet_id)
                avail = bal.available if bal is not None else 0
                late = min(chargeable, max(0, avail) // s.rate)
                overrun += chargeable - late
                amount = late * s.rate
                if amount:
                    late_t = Transfer(
                        f"cc:{sid}:{n}:late", s.wallet_id, s.escrow_id, amount, CREDIT, "private_late", user_data=sid
                    )
                    raise_for([late_t], await lt.apply([late_t]))
            elif not r.ok:
                raise_for([t], [r])
        s.reservation_id = None
        s.granted_seconds = 0
        if amount:
            s.charged += amount
            s.used_seconds += amount // s.rate
            target = s.charged * self.config.performer_share_bp // 10_000
            perf, house = target - s.payee_paid, amount - (target - s.payee_paid)
            s.payee_paid = target
            legs = [
                Transfer(f"cc:{sid}:{n}:payee", s.escrow_id, s.payee_id, perf, code="private", user_data=sid),
                Transfer(f"cc:{sid}:{n}:house", s.escrow_id, HOUSE_REVENUE, house, code="private", user_data=sid),
            ]
            legs = linked([t for t in legs if t.amount])
            raise_for(legs, await lt.apply(legs))
        return overrun

    async def _grant(self, lt: LedgerTxn, s: CcSessionRow, n: int, overrun: int = 0) -> Grant:
        """Reserve the next grant from what the (locked) wallet has available."""
        c = self.config
        bal = await lt.balance(s.wallet_id)
        avail = max(0, bal.available) if bal is not None else 0
        g = min(c.grant_seconds, avail // s.rate)
        if g <= 0:
            s.reservation_id, s.granted_seconds, s.final = None, 0, True
            return Grant(0, True, "", n, lt.now_us / US, overrun)
        final = avail - g * s.rate < s.rate
        timeout = max(c.min_timeout_s, math.ceil(g * c.timeout_factor))
        hold = Transfer(
            f"cc:{s.session_id}:{n}:hold",
            s.wallet_id,
            s.escrow_id,
            g * s.rate,
            CREDIT,
            "private",
            int(TransferFlags.PENDING),
            timeout_s=timeout,
            user_data=s.session_id,
        )
        raise_for([hold], await lt.apply([hold]))
        s.reservation_id, s.granted_seconds, s.final = hold.id, g, final
        return Grant(g, final, hold.id, n, (lt.now_us + timeout * US) / US, overrun)
