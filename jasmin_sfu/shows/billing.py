"""Billing privates by the second: credit control, the meter and the outbox.

The private's flow (``shows/privates.py``) drives this engine through one object per
private, the :class:`BilledPrivate` that ``authorize`` returns; nothing here knows
shows, sockets or the event bus (docs/money.md, "Credit control flow"):

1. Before the machine accepts a private, :meth:`PrivateBilling.authorize` opens a
   credit-control session with its first grant (a pending debit on the member's
   wallet). No grant, no private: ``insufficient_credits``. A grant whose private
   never starts is given back with :meth:`PrivateBilling.release`.
2. :meth:`PrivateBilling.start_metering` (the step the private started) starts the meter
   with a ceiling of the granted seconds.
   A ticker (every ``tick_s``) turns completed seconds into CloudEvents usage
   events in the durable outbox (synchronous, no network) and renews the grant
   when half of it is used.
3. On the last grant the private's :class:`BillingListener` hears
   ``credit_warning`` at each of ``warn_at_s`` seconds left; one second before the
   end a last renewal is tried (a top-up may have arrived); at exhaustion it hears
   ``credit_exhausted`` (the flow ends the private, pausing the member's media in
   that step).
4. A top-up re-authorises open sessions (RFC 4006 RAR): the renewal extends the
   ceiling and cancels the stop, with no break in the media.
5. :meth:`PrivateBilling.stop_metering` stops the meter, writes the closing event and
   terminates the credit-control session (charges the used seconds, releases the rest).
6. After a crash, :meth:`recover` closes this node's sessions that were left open,
   charging exactly the seconds whose usage events reached the outbox.

The media path never waits on any of this: start_metering, stop_metering, release and the
listener's calls are synchronous; ledger I/O runs in tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from jasmin_metering.events import CloudEvent, EventFactory
from jasmin_metering.meter import US, GrantTag, Meter, SessionClosed, SessionSpec, UsageRecord
from jasmin_metering.outbox import Outbox

from jasmin_sfu.config import BillingConfig, vip_tiers
from jasmin_sfu.services.credit_control import CreditControl, Grant, ReAuthRequest
from jasmin_sfu.services.errors import InsufficientCreditError
from jasmin_sfu.services.ledger import Ledger, per_second_rate
from jasmin_sfu.services.vip import VipAwards
from jasmin_sfu.store.ledger_repo import CcSessionRow
from jasmin_sfu.tasks import spawn_tracked


log = logging.getLogger(__name__)

# The usage events' ``data.kind`` and the middle of their type
# (``com.jasmin.live.private.usage.v1``), as docs/money.md shows them. Before
# 2026-12 the node wrote "privatesession"; see docs/money.md for old records.
PRIVATE_KIND = "private"
# The closing event's reason when a restarted node closes a session a crash left open.
CRASH_REASON = "crash"


class BillingListener(Protocol):
    """Who hears a billed private's credit running out (its show's flow, shows/privates.py)."""

    def credit_warning(self, private: BilledPrivate, seconds_left: int) -> None: ...

    def credit_exhausted(self, private: BilledPrivate, at: float) -> None: ...


@dataclass(eq=False)
class BilledPrivate:
    """One private's credit-control session, from its first grant to its end.

    ``authorize`` returns it; the flow hands the same object to ``start_metering``,
    ``stop_metering`` or ``release``: no key joins the grant to the private.
    """

    spec: SessionSpec
    grant: Grant
    show_id: str
    listener: BillingListener | None = None
    request_number: int = 0
    reported: int = 0  # billed seconds already reported to credit control
    started: bool = False
    released: bool = False
    final: bool = False
    warned: set[int] = field(default_factory=set)
    renewing: bool = False
    last_chance: bool = False
    ending: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class BillingRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PrivateBilling:
    # Renew when this fraction of the grant is left (RFC 4006: "well in advance").
    renew_when_left = 0.5
    # The meter's tick, and how often sessions are swept for lapsed grants.
    tick_s = 0.25
    sweep_s = 5.0

    def __init__(
        self,
        ledger: Ledger,
        cc: CreditControl,
        events: EventFactory,
        outbox: Outbox,
        settings: BillingConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``settings`` is the ``[billing]`` section as loaded (node_id, default_price_per_minute,
        warn_at_s are read here)."""
        self.ledger = ledger
        self.cc = cc
        self.events = events
        self.outbox = outbox
        self.settings = settings
        self.clock = clock
        self.meter = Meter()
        self._active: dict[str, BilledPrivate] = {}  # session id -> running (the ticker's and re-auths' view)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        cc.add_reauth_listener(self._on_reauth)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        # Close running sessions as if the privates ended now (a drain, not a crash).
        for sid, b in list(self._active.items()):
            self._close(sid, b, self.clock(), "node_shutdown")
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        spawn_tracked(self._tasks, coro, f"billing task {coro.__qualname__}", log)

    # -- 1. authorise before the accept ----------------------------------------------

    async def authorize(
        self,
        show_id: str,
        member_id: str,
        performer_id: str,
        price_per_minute: int | None,
        listener: BillingListener | None = None,
    ) -> BilledPrivate:
        """Open credit control for a private about to start; raises :class:`BillingRefused`.

        The caller owns the result: it must ``start_metering`` it or ``release`` it.
        """
        price = price_per_minute if price_per_minute is not None else self.settings.default_price_per_minute
        rate = per_second_rate(price)
        wallet = await self.ledger.open_member(member_id)
        await self.ledger.open_performer(performer_id)
        sid = f"{self.settings.node_id}-{uuid.uuid4().hex}"
        try:
            grant = await self.cc.authorize(sid, wallet, rate, performer_id=performer_id)
        except InsufficientCreditError:
            raise BillingRefused("insufficient_credits", "not enough credits for one second of this private") from None
        spec = SessionSpec(PRIVATE_KIND, sid, member_id, performer_id, wallet, rate)
        return BilledPrivate(spec, grant, show_id, listener, final=grant.final)

    def release(self, b: BilledPrivate) -> None:
        """The private never started (refused, raced, failed): give the hold back."""
        if not b.started and not b.released:
            b.released = True
            self._spawn(self._terminate(b, "not_started"))

    # -- 2/5. start and end --------------------------------------------------------------

    def start_metering(self, b: BilledPrivate, at: float) -> None:
        """The private started at ``at``: meter it from there, up to its grant."""
        if b.started or b.released:
            log.error("a grant was started twice or after its release", extra={"show_id": b.show_id})
            return
        b.started = True
        self.meter.start(b.spec, at, ceiling_seconds=b.grant.seconds, grant=self._tag(b))
        self._active[b.spec.session_id] = b

    def stop_metering(self, b: BilledPrivate, at: float, reason: str) -> None:
        """The private ended at ``at``: last seconds, closing event, charge; once."""
        if self._active.get(b.spec.session_id) is b:
            self._close(b.spec.session_id, b, at, reason)

    def _tag(self, b: BilledPrivate) -> GrantTag:
        return GrantTag(b.grant.reservation_id, b.grant.request_number, b.grant.final)

    def _append(self, records: list[UsageRecord], extra: list[CloudEvent] | None = None) -> None:
        events = [self.events.usage(r) for r in records] + (extra or [])
        if events:
            self.outbox.append(events)

    def _close(self, sid: str, b: BilledPrivate, at: float, reason: str) -> None:
        self._active.pop(sid, None)
        records, closed = self.meter.stop(sid, at, reason)
        self._append(records, [self.events.closed(closed)])
        self._spawn(self._terminate(b, reason, closed.billed_seconds))

    async def _terminate(self, b: BilledPrivate, reason: str, billed: int | None = None) -> None:
        async with b.lock:
            used = max(0, (billed if billed is not None else b.reported) - b.reported)
            b.request_number += 1
            totals = await self.cc.terminate(b.spec.session_id, b.request_number, used)
            log.info(
                "private billed",
                extra={
                    "show_id": b.show_id,
                    "session": b.spec.session_id,
                    "seconds": totals.used_seconds,
                    "charged": totals.charged,
                    "reason": reason,
                },
            )

    # -- 3/4. the ticker, renewals and the stop -----------------------------------------

    async def _tick_loop(self) -> None:
        last_sweep = self.clock()
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                now = self.clock()
                self.tick(now)
                if now - last_sweep >= self.sweep_s:
                    # Holds of crashed nodes (sharing a PostgreSQL ledger) expire here.
                    last_sweep = now
                    self._spawn(self.cc.expire_stale())
            except Exception:  # pragma: no cover - billing must not die silently
                log.exception("billing tick failed")

    def tick(self, now: float) -> None:
        """Bill completed seconds, renew grants, warn, and stop exhausted privates."""
        for sid, b in list(self._active.items()):
            self._append(self.meter.advance_session(sid, now))
            view = self.meter.view(sid)
            left = view.remaining_seconds if view.remaining_seconds is not None else 10**9
            if not b.final and not b.renewing and left <= max(1, int(b.grant.seconds * self.renew_when_left)):
                self._renew(sid, b, view.billed_seconds)
            if b.final:
                for w in self.settings.warn_at_s:
                    if left <= w and w not in b.warned:
                        b.warned.add(w)
                        if b.listener is not None:
                            b.listener.credit_warning(b, left)
                # One last renewal before cutting: a top-up may have arrived
                # without a re-auth reaching us (CGRateS cut without re-checking).
                if left <= 1 and not b.renewing and not b.last_chance:
                    b.last_chance = True
                    self._renew(sid, b, view.billed_seconds)
            if left == 0 and not b.renewing and not b.ending:
                b.ending = True
                self._end(b, now)

    def _renew(self, sid: str, b: BilledPrivate, billed: int) -> None:
        b.renewing = True
        self._spawn(self._do_renew(sid, b, billed))

    async def _do_renew(self, sid: str, b: BilledPrivate, billed: int) -> None:
        try:
            async with b.lock:
                if sid not in self._active:
                    return
                used = billed - b.reported
                b.request_number += 1
                g = await self.cc.update(sid, b.request_number, used)
                b.reported = billed
                b.grant = g
                if sid not in self._active:
                    return
                self.meter.set_grant(sid, ceiling_seconds=billed + g.seconds, grant=self._tag(b))
                if g.seconds > 0:
                    b.ending = False
                    b.last_chance = False
                if not g.final or g.seconds > max(self.settings.warn_at_s, default=0):
                    b.warned.clear()
                b.final = g.final
        finally:
            b.renewing = False

    def _end(self, b: BilledPrivate, now: float) -> None:
        if b.listener is not None:
            b.listener.credit_exhausted(b, now)

    async def _on_reauth(self, req: ReAuthRequest) -> None:
        b = self._active.get(req.session_id)
        if b is None:
            return
        view = self.meter.view(req.session_id)
        b.renewing = True
        await self._do_renew(req.session_id, b, view.billed_seconds)

    # -- 6. crash recovery -------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Close this node's sessions a crash left open, charging the metered seconds.

        The outbox holds a usage event for every second billed before the crash
        (written in the same step the meter counted it), so its last seq per
        session is the exact number of seconds to charge. Each such session gets
        its closing event here (reason ``crash``), written before the ledger is
        told, so a consumer always learns that the session ended; when the crash
        came after the closing event was written, that event stands and its seq
        (last usage seq + 1) is not charged.
        """
        closed = []
        for row in await self.cc.open_sessions(prefix=self.settings.node_id + "-"):
            last_seq, was_closed = self.outbox.last_seq(self.events.source(row.session_id))
            # A closed source's last seq is its closing event's: one past the last second.
            used_total = last_seq - 1 if was_closed else last_seq
            if not was_closed:
                self.outbox.append([self.events.closed(self._crash_closing(row, used_total))])
            used = max(0, used_total - row.used_seconds)
            await self.cc.terminate(row.session_id, row.request_number + 1, used)
            closed.append(row.session_id)
            log.warning("recovered private after a crash", extra={"session": row.session_id, "seconds": used_total})
        return closed

    def _crash_closing(self, row: CcSessionRow, billed: int) -> SessionClosed:
        """The closing totals of a session recovered after a crash (docs/money.md).

        ``started_at`` is when its first grant was opened; the instant of the
        crash is unknown, so ``ended_at`` is when this node closed it.
        """
        member = row.wallet_id.removeprefix("wallet:")
        performer = row.payee_id.removeprefix("earnings:")
        spec = SessionSpec(PRIVATE_KIND, row.session_id, member, performer, row.wallet_id, row.rate)
        now_us = round(self.clock() * US)
        return SessionClosed(
            spec,
            last_seq=billed,
            billed_seconds=billed,
            total_amount=billed * row.rate,
            reason=CRASH_REASON,
            started_at_us=row.opened_at,
            ended_at_us=max(now_us, row.opened_at),
            unbilled_us=0,
            over_grant_us=0,
        )


# -- composition ---------------------------------------------------------------------


@dataclass
class BillingStack:
    """Everything billing needs, opened and closed together (app.py owns one)."""

    billing: PrivateBilling
    ledger: Ledger
    cc: CreditControl
    relay: Any
    outbox: Outbox
    store: Any
    # How long a graceful stop waits for the relay to deliver what is in the outbox.
    drain_timeout_s: float = 5.0
    # The VIP award job (jasmin_sfu/services/vip.py) and the daemon's loop that runs it.
    vip: VipAwards | None = None
    vip_task: "asyncio.Task[None] | None" = None

    async def close(self) -> None:
        """Stop billing (closing events of running privates), drain the relay, close.

        The relay gets up to ``drain_timeout_s`` to deliver every event written so
        far (the closing events included) to every sink. What a sink has not
        acked by then stays in the outbox and is sent at the next start.
        """
        if self.vip_task is not None:
            self.vip_task.cancel()
            await asyncio.gather(self.vip_task, return_exceptions=True)
        await self.billing.stop()
        try:
            await asyncio.wait_for(self.relay.wait_idle(), self.drain_timeout_s)
        except TimeoutError:
            behind = {name: self.relay.lag(name) for name in self.relay.sinks}
            log.warning(
                "billing relay not drained within %.1f s; the outbox keeps the rest for the next start: %s",
                self.drain_timeout_s,
                {k: v for k, v in behind.items() if v},
            )
        await self.relay.stop()  # closes the sinks
        self.outbox.close()
        await self.store.close()


async def open_billing(
    cfg: BillingConfig, clock: Callable[[], float] = time.time, *, sinks: Any = None
) -> BillingStack:
    """Open the ledger, outbox, sinks and relay from ``cfg`` (a ``BillingConfig``).

    ``sinks`` (name -> ``BillingSink``) replaces the sinks ``cfg.sinks`` names (tests
    give sinks on their own streams and tables).
    """
    import os

    from jasmin_metering.config import (
        EventConfig,
        FileSinkConfig,
        NatsSinkConfig,
        OutboxConfig,
        PostgresSinkConfig,
        RedisStreamSinkConfig,
        SqliteSinkConfig,
        WebhookSinkConfig,
    )
    from jasmin_metering.outbox import OutboxRelay

    from jasmin_sfu.services.credit_control import CreditControlConfig

    os.makedirs(cfg.data_dir, exist_ok=True)
    store: Any
    if cfg.ledger_dsn:
        from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore

        store = await PostgresLedgerStore.open(cfg.ledger_dsn)
    else:
        from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

        store = await SqliteLedgerStore.open(os.path.join(cfg.data_dir, "ledger.sqlite3"))
    ledger = Ledger(store, clock)
    await ledger.bootstrap()
    cc = CreditControl(
        ledger, CreditControlConfig(grant_seconds=cfg.grant_seconds, performer_share_bp=cfg.performer_share_bp)
    )
    # The ledger may be shared by several worker processes; the outbox and the
    # local sink files are per process (two appenders to one JSONL would tear it).
    local = cfg.outbox_dir or cfg.data_dir
    os.makedirs(local, exist_ok=True)
    outbox = Outbox(OutboxConfig(path=os.path.join(local, "billing-outbox.sqlite3")))
    chosen: dict[str, Any] = dict(sinks) if sinks is not None else {}
    for name in cfg.sinks if sinks is None else ():
        if name == "file":
            from jasmin_metering.file_sink import FileSink

            chosen[name] = FileSink(FileSinkConfig(path=os.path.join(local, "billing-events.jsonl")))
        elif name == "sqlite":
            from jasmin_metering.sqlite_sink import SqliteSink

            chosen[name] = SqliteSink(SqliteSinkConfig(path=os.path.join(local, "billing-events.sqlite3")))
        elif name == "postgres":
            from jasmin_metering.postgres_sink import PostgresSink

            chosen[name] = PostgresSink(PostgresSinkConfig(dsn=cfg.postgres_dsn))
        elif name == "webhook":
            from jasmin_metering.webhook_sink import WebhookSink

            chosen[name] = WebhookSink(WebhookSinkConfig(url=cfg.webhook_url, secret=cfg.webhook_secret), clock)
        elif name == "redis":
            from jasmin_metering.redis_sink import RedisStreamSink

            chosen[name] = RedisStreamSink(RedisStreamSinkConfig(url=cfg.redis_url))
        elif name == "nats":
            from jasmin_metering.nats_sink import NatsSink

            chosen[name] = NatsSink(NatsSinkConfig(servers=(cfg.nats_url,)))
    relay = OutboxRelay(outbox, chosen)
    billing = PrivateBilling(ledger, cc, EventFactory(EventConfig(), clock), outbox, cfg, clock)
    await billing.recover()
    relay.start()
    billing.start()
    vip = vip_job(cfg, ledger, cc)
    vip_task = None
    if cfg.vip_check_interval_s > 0 and vip.top_n:
        vip_task = asyncio.get_running_loop().create_task(vip_loop(vip, cfg.vip_check_interval_s), name="vip-awards")
    return BillingStack(billing, ledger, cc, relay, outbox, store, cfg.drain_timeout_s, vip, vip_task)


def vip_job(cfg: BillingConfig, ledger: Ledger, cc: CreditControl | None = None) -> VipAwards:
    """The VIP award job of a ``BillingConfig`` (the daemon's loop and ``jasmin-sfu vip-awards``)."""
    notify = (lambda wallet: cc.notify_top_up(wallet, reason="vip_award")) if cc is not None else None
    return VipAwards(ledger, vip_tiers(cfg.vip_award_tiers), cfg.vip_settle_s, notify)


async def vip_loop(vip: VipAwards, interval_s: float) -> None:
    """Pay the due VIP period now and then; a paid period makes this a no-op (docs/money.md)."""
    while True:
        try:
            await vip.run_due()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged, retried at the next check
            log.exception("VIP award run failed")
        await asyncio.sleep(interval_s)
