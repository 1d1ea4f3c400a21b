"""Retention: one policy from docs/product.md's limits, applied by every personal-data source.

docs/product.md, "Privacy rules": chat logs and usage data at most 120 days from the
member's last purchase; guest data at most 15 days; identity-check data at most
5 days; accounts inactive for over a year may be closed. A run:

1. finishes erasures a crash left open;
2. closes and erases member accounts with no login, purchase or creation in
   ``inactive_account_days`` (365): an account kept closed but full would keep
   personal data for no purpose, so closing here means "forget my data" with
   reason ``inactive`` (the username is blacklisted the same way);
3. builds one ``RetentionPolicy`` (cut-offs in microseconds from the injected
   clock; ``last_purchase_us`` = each member's last purchase, or its creation
   when it never bought) and runs every registered source's ``purge``.

It runs every ``retention_interval_s`` in the daemon and on demand with
``jasmin-sfu retention [--dry-run]`` (``open_offline`` + ``format_report``).
A dry run changes nothing and reports what would go: sources with a
``preview(policy)`` method say how many rows, the others are reported as
``None`` (unknown).

The report has one line per category of docs/product.md's rules (``ReportLine``):
a source with ``purge_report(policy, dry_run=)`` splits its count by category
(accounts: guest data, expired sessions, lapsed blacklist); the other sources'
counts go under the category their name maps to in ``SOURCE_CATEGORY``.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, UTC
from typing import Any, Callable, Mapping, Sequence

import aiohttp

from jasmin_sfu.services.accounts import US
from jasmin_sfu.services.personal_data import PersonalDataRegistry, RetentionPolicy
from jasmin_sfu.services.privacy import (
    BLACKLIST,
    DAY_S,
    FINANCIAL,
    GUEST,
    IDENTITY,
    INACTIVE,
    RESUMED,
    SESSIONS,
    USAGE,
    PrivacyService,
    PrivacySettings,
)
from jasmin_sfu.store.privacy_usage import LocalBillingLog, OutboxUsageStore
from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)


def build_policy(now_us: int, settings: PrivacySettings, last_purchase_us: Mapping[str, int]) -> RetentionPolicy:
    """The cut-offs at ``now_us``: anything (of a member whose last purchase is) older is deleted."""
    day = DAY_S * US
    return RetentionPolicy(
        now_us=now_us,
        usage_before_us=now_us - settings.usage_retention_days * day,
        guest_before_us=now_us - settings.guest_retention_days * day,
        identity_before_us=now_us - settings.identity_retention_days * day,
        inactive_before_us=now_us - settings.inactive_account_days * day,
        last_purchase_us=dict(last_purchase_us),
    )


# A source without ``purge_report``: the category its one count belongs to.
SOURCE_CATEGORY = {"chat": USAGE, "social": USAGE, "billing_usage": USAGE, "ledger": FINANCIAL}


def category_rules(settings: PrivacySettings) -> dict[str, str]:
    """The limit of each category, in words, from the configured numbers."""
    s = settings
    return {
        INACTIVE: f"no login or purchase for {s.inactive_account_days} days: closed and erased",
        RESUMED: "interrupted erasures, finished",
        USAGE: f"{s.usage_retention_days} days after the member's last purchase "
        f"(guests' chat: {s.guest_retention_days} days)",
        GUEST: f"{s.guest_retention_days} days",
        IDENTITY: f"{s.identity_retention_days} days (this node stores none)",
        SESSIONS: "expired or revoked tokens",
        BLACKLIST: f"{s.username_blacklist_days} days after an erasure",
        FINANCIAL: "kept 10 years: nothing deleted",
    }


@dataclass(frozen=True)
class ReportLine:
    """Rows one source deleted (or would delete) in one category; ``rows`` None: unknown (dry run)."""

    category: str
    source: str
    rows: int | None


@dataclass(frozen=True)
class RetentionReport:
    """One run: accounts closed for inactivity, erasures resumed, rows per source (None: unknown)."""

    policy: RetentionPolicy
    dry_run: bool
    closed: tuple[str, ...]
    resumed: int
    purged: dict[str, int | None] = field(default_factory=dict)
    lines: tuple[ReportLine, ...] = ()

    def by_category(self) -> dict[str, int | None]:
        """Rows per category over every source (None when a source of it could not count)."""
        out: dict[str, int | None] = {}
        for line in self.lines:
            if line.category not in out:
                out[line.category] = line.rows
            else:
                prev = out[line.category]
                out[line.category] = None if prev is None or line.rows is None else prev + line.rows
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for logs and the command line (no member ids)."""
        return {
            "dry_run": self.dry_run,
            "inactive_closed": len(self.closed),
            "erasures_resumed": self.resumed,
            "purged": dict(self.purged),
            "categories": self.by_category(),
        }


class Retention:
    """Runs the retention policy over a ``PrivacyService``'s registry."""

    def __init__(self, privacy: PrivacyService, settings: PrivacySettings | None = None) -> None:
        self.privacy = privacy
        self.settings = settings if settings is not None else PrivacySettings()

    async def run(self, *, dry_run: bool = False) -> RetentionReport:
        """One retention run (see the module docstring); a dry run writes nothing."""
        accounts = self.privacy.accounts
        if dry_run:
            resumed = len(await accounts.store.open_erasures())
        else:
            resumed = len(await self.privacy.resume_erasures())
        now = accounts.now_us()
        inactive = await accounts.store.inactive_members(now - self.settings.inactive_account_days * DAY_S * US)
        if not dry_run:
            for user_id in inactive:
                await self.privacy.erase(user_id, "inactive")
        policy = build_policy(now, self.settings, await accounts.store.last_purchases())
        purged: dict[str, int | None] = {}
        lines = [ReportLine(INACTIVE, "accounts", len(inactive)), ReportLine(RESUMED, "accounts", resumed)]
        for source in self.privacy.registry.sources:
            split = getattr(source, "purge_report", None)
            if split is not None:
                counts: dict[str, int | None] = await split(policy, dry_run=dry_run)
            elif dry_run:
                preview = getattr(source, "preview", None)
                counts = {
                    SOURCE_CATEGORY.get(source.name, source.name): await preview(policy)
                    if preview is not None
                    else None
                }
            else:
                counts = {SOURCE_CATEGORY.get(source.name, source.name): await source.purge(policy)}
            values = list(counts.values())
            purged[source.name] = None if None in values else sum(v for v in values if v is not None)
            lines += [ReportLine(cat, source.name, n) for cat, n in counts.items()]
        if not any(line.category == IDENTITY for line in lines):
            # No source keeps identity-check data (docs/privacy.md): say so rather than omit the rule.
            lines.append(ReportLine(IDENTITY, "-", 0))
        report = RetentionReport(policy, dry_run, tuple(inactive), resumed, purged, tuple(lines))
        log.info("retention run", extra=report.summary())
        return report

    async def loop(self, interval_s: float) -> None:
        """Run every ``interval_s`` seconds until cancelled (a failed run is retried at the next one)."""
        while True:
            # Sleep first: start-up already resumed open erasures, and a node
            # restarting in a loop should not purge on every start.
            await asyncio.sleep(interval_s)
            try:
                await self.run()
            except Exception:  # noqa: BLE001 - retried at the next interval
                log.exception("retention run failed")


class UsageDataSource:
    """The member's per-second usage events held on this node (``billing_usage`` in the download).

    Where they are: the billing outbox (``outbox_events``) until every sink
    acked them (the relay then prunes them, within milliseconds), and after
    that the local sinks of the same directory: ``billing-events.jsonl``
    (``file``) and the ``billing_events`` table of ``billing-events.sqlite3``
    (``sqlite``). The download holds all of them.

    Kept through erasure (they are the itemised record of what was charged,
    under the member id that erasure made a pseudonym). Retention deletes
    delivered outbox events 120 days after the member's last purchase; the
    local sinks are the billing system's log and are not pruned here
    (docs/privacy.md, known gaps). Copies in remote sinks belong to the
    billing system.
    """

    name = "billing_usage"

    def __init__(self, outboxes: Sequence[OutboxUsageStore], logs: Sequence[LocalBillingLog] = ()) -> None:
        self.outboxes = tuple(outboxes)
        self.logs = tuple(logs)

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The member's usage events in the outbox(es) and the local sinks, by table."""
        out: dict[str, list[dict[str, Any]]] = {"outbox_events": []}
        for outbox in self.outboxes:
            out["outbox_events"] += await outbox.export(user_id)
        for local in self.logs:
            for table, rows in (await local.export(user_id)).items():
                out.setdefault(table, []).extend(rows)
        return out

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Kept (billing records under the pseudonymous id); the usage limit deletes them."""
        return 0

    async def purge(self, policy: RetentionPolicy) -> int:
        """Delivered outbox events of members whose last purchase is older than the usage limit."""
        n = 0
        for outbox in self.outboxes:
            n += await outbox.purge(policy.last_purchase_us, policy.usage_before_us)
        return n

    async def preview(self, policy: RetentionPolicy) -> int:
        """How many events ``purge`` would delete."""
        n = 0
        for outbox in self.outboxes:
            n += await outbox.purge(policy.last_purchase_us, policy.usage_before_us, dry_run=True)
        return n

    async def close(self) -> None:
        """Close the outbox connections."""
        for outbox in self.outboxes:
            await outbox.close()


def local_usage_source(billing: Any) -> UsageDataSource:
    """The usage source of a running ``BillingStack``: its outbox and its local sinks' files."""
    jsonl = sqlite_path = None
    table = "billing_events"
    for name, sink in billing.relay.sinks.items():
        if name == "file":
            jsonl = sink.config.path
        elif name == "sqlite":
            sqlite_path, table = sink.config.path, sink.config.table
    outbox = OutboxUsageStore(billing.outbox.config.path, tuple(billing.relay.sinks))
    return UsageDataSource([outbox], [LocalBillingLog(jsonl, sqlite_path, table)])


def offline_usage_source(billing_cfg: Any) -> UsageDataSource:
    """The usage source for the command line, from the config alone (no billing opened).

    The files are where ``open_billing`` puts them: ``billing-outbox.sqlite3``,
    ``billing-events.jsonl`` and ``billing-events.sqlite3`` in ``outbox_dir``
    (or ``data_dir``), and in its ``worker<N>`` subdirectories when the node
    runs several workers (the supervisor gives each its own). Outboxes that do
    not exist are skipped (the command never creates one).
    """
    base = billing_cfg.outbox_dir or billing_cfg.data_dir
    dirs = [base] + sorted(d for d in glob.glob(os.path.join(base, "worker*")) if os.path.isdir(d))
    sinks = tuple(billing_cfg.sinks)
    outboxes, logs = [], []
    for d in dirs:
        path = os.path.join(d, "billing-outbox.sqlite3")
        if os.path.exists(path):
            outboxes.append(OutboxUsageStore(path, sinks))
        logs.append(
            LocalBillingLog(
                os.path.join(d, "billing-events.jsonl") if "file" in sinks else None,
                os.path.join(d, "billing-events.sqlite3") if "sqlite" in sinks else None,
            )
        )
    return UsageDataSource(outboxes, logs)


# -- wiring (the daemon and the command line) -----------------------------------------------

# Websocket close code when a connection's token is revoked or its account erased
# (4000-4999 are the application's; 4401 echoes HTTP 401).
REVOKED_CLOSE_CODE = 4401
# How long an erasure waits for the member's websockets to leave their shows (docs/privacy.md, step 3).
LIVE_WAIT_S = 5.0
# How long a worker waits for its supervisor's answer to a revocation: the supervisor answers
# after every other worker's wait (at most LIVE_WAIT_S) or gives up on a worker before this.
SUPERVISOR_WAIT_S = LIVE_WAIT_S + 3.0


def _revoked_sessions(sessions: Any, user_id: str | None, session_id: str | None) -> list[Any]:
    """The sessions that joined with a revoked token (or any token of ``user_id``)."""

    def revoked(p: Any) -> bool:
        return p is not None and (
            (user_id is not None and p.id == user_id) or (session_id is not None and p.session_id == session_id)
        )

    out = []
    for s in list(sessions):
        handler = getattr(s, "handler", None)
        # The joined identity, and the one a notifications.subscribe {token} registered.
        subscribed = getattr(getattr(handler, "notifications", None), "principal", None)
        if revoked(getattr(handler, "principal", None)) or revoked(subscribed):
            out.append(s)
    return out


def _close_revoked(s: Any) -> None:
    closing = s.ws.close(code=REVOKED_CLOSE_CODE, message=b"token revoked")
    spawn_tracked(_closing, closing, "closing a revoked websocket", log)


def end_revoked_sessions(sessions: Any, user_id: str | None, session_id: str | None) -> int:
    """Close the signaling websockets that joined with a revoked token (or any token of ``user_id``).

    ``sessions`` holds ``SignalingSession``s whose ``handler.principal`` is the
    joined identity (None before a join) and whose ``handler.notifications.principal``
    is the member a ``notifications.subscribe {token}`` registered. Returns how
    many were closed.
    """
    found = _revoked_sessions(sessions, user_id, session_id)
    for s in found:
        _close_revoked(s)
    return len(found)


class SignalingLiveSessions:
    """``privacy.LiveSessions`` over the daemon's signaling sessions (app.py wires it).

    ``ended(session)`` is an awaitable that completes once the session's close
    handler has run: the member has left its show, so a private it was in has
    ended and been billed as at a disconnect (docs/privacy.md). A client that
    does not answer the close within ``timeout_s`` is not waited for longer: the
    late writers (the record of privates) then find the account closed.
    """

    def __init__(self, sessions: Any, ended: Callable[[Any], Any], timeout_s: float = LIVE_WAIT_S) -> None:
        self.sessions = sessions
        self.ended = ended
        self.timeout_s = timeout_s

    async def end_user(self, user_id: str) -> int:
        """Close every websocket of the user (4401) and wait until each has left its show."""
        return await self.end(user_id, None)

    async def end(self, user_id: str | None, session_id: str | None) -> int:
        """Close the websockets of the user, or of the one token (4401), and wait until each left its show."""
        found = _revoked_sessions(self.sessions, user_id, session_id)
        waits = []
        for s in found:
            _close_revoked(s)
            waits.append(asyncio.ensure_future(self.ended(s)))
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=self.timeout_s)
            for t in pending:
                t.cancel()
            if pending:
                log.warning(
                    "revocation: sessions still open after the wait",
                    extra={"user_id": user_id, "session_id": session_id, "count": len(pending)},
                )
        return len(found)


# -- several worker processes (server.workers > 1): a revocation reaches every one -----------------

# Set while this worker runs a revocation another worker made: its listeners end this
# process's sessions, and the revocation is not posted to the supervisor again.
_FROM_ANOTHER_WORKER: ContextVar[bool] = ContextVar("revocation_from_another_worker", default=False)


@dataclass(frozen=True)
class SupervisorLink:
    """How a supervised worker reaches its supervisor (app.py builds it from ``server.supervisor_url``).

    ``url``: the supervisor's ``/internal/revoke``; ``headers``: the per-run secret;
    ``own_port()``: this worker's loopback port, so the supervisor skips it.
    """

    url: str
    headers: Mapping[str, str]
    own_port: Callable[[], int | None]


def revocation_request(body: Any) -> tuple[str | None, str | None]:
    """``(member_id, session_id)`` of a ``/internal/revoke`` body: exactly one of the two, an id.

    Raises ``ValueError`` with the reason for anything else."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    member_id, session_id = body.get("member_id"), body.get("session_id")
    if (member_id is None) == (session_id is None):
        raise ValueError("exactly one of member_id and session_id")
    given = member_id if member_id is not None else session_id
    if not isinstance(given, str) or not _REVOCATION_ID.fullmatch(given):
        raise ValueError("member_id / session_id: 1-64 of A-Z a-z 0-9 _ . : -")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 64:
        raise ValueError("reason: a string of at most 64 characters")
    return member_id, session_id


_REVOCATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")


class WorkerRevocations:
    """With ``server.workers`` > 1, a revocation made in this worker reaches the node's other workers.

    An accounts revocation listener: each revocation (an erasure, a logout, a
    password change) is posted to the supervisor's ``/internal/revoke``, which
    posts it to every other worker's; there ``revoke_here`` runs that worker's
    own revocation listeners (its websockets close with 4401, its WHIP/WHEP
    sessions end) and waits until the websockets have left their shows (at most
    ``LIVE_WAIT_S``), then answers. An erasure waits for that answer
    (``settled``) before erasing anything, as it waits for this worker's own
    websockets; a logout does not wait (nothing is erased after it). A worker
    or a supervisor that does not answer in time is logged (the supervisor
    counts it) and the erasure goes on: that worker's late writers find the
    account closed, as for a client that does not answer its close.
    """

    def __init__(
        self,
        link: SupervisorLink,
        accounts: Any,
        here: SignalingLiveSessions | None,
        timeout_s: float = SUPERVISOR_WAIT_S,
    ) -> None:
        self.link = link
        self.accounts = accounts
        self.here = here
        self.timeout_s = timeout_s
        # Account -> its revocation on its way to the other workers (an erasure awaits it).
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.unanswered = 0

    def revoked(self, user_id: str | None, session_id: str | None) -> None:
        """The accounts listener: post this worker's revocation to the other workers."""
        if _FROM_ANOTHER_WORKER.get():
            return
        self._post(user_id, session_id)

    def _post(self, user_id: str | None, session_id: str | None) -> asyncio.Task[None]:
        body: dict[str, Any] = (
            {"member_id": user_id, "reason": "account revoked"}
            if user_id is not None
            else {"session_id": session_id, "reason": "token revoked"}
        )
        body["from_port"] = self.link.own_port()
        task = spawn_tracked(self._tasks, self._tell(body), "posting a revocation to the other workers", log)
        if user_id is not None:
            self._pending[user_id] = task
            task.add_done_callback(
                lambda t: self._pending.pop(user_id, None) if self._pending.get(user_id) is t else None
            )
        return task

    async def _tell(self, body: dict[str, Any]) -> None:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    self.link.url,
                    json=body,
                    headers=dict(self.link.headers),
                    timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                ) as r,
            ):
                answer = await r.json() if r.status == 200 else {"status": r.status}
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            answer = {"error": repr(exc)}
        if not isinstance(answer, dict) or answer.get("unanswered") != 0:
            self.unanswered += 1
            log.warning(
                "revocation: not every other worker confirmed it",
                extra={"member_id": body.get("member_id"), "session_id": body.get("session_id"), "answer": answer},
            )

    async def settled(self, user_id: str) -> None:
        """Return once every other worker has ended the account's sessions (or did not answer in time)."""
        task = self._pending.get(user_id) or self._post(user_id, None)
        await asyncio.wait([task], timeout=self.timeout_s + 1)

    async def revoke_here(self, user_id: str | None, session_id: str | None) -> int:
        """Another worker's revocation: run this worker's listeners, wait for its websockets to leave."""
        mark = _FROM_ANOTHER_WORKER.set(True)
        try:
            if user_id is not None:
                self.accounts.account_revoked(user_id)
            elif session_id is not None:
                self.accounts.token_revoked(session_id)
        finally:
            _FROM_ANOTHER_WORKER.reset(mark)
        return await self.here.end(user_id, session_id) if self.here is not None else 0

    async def close(self) -> None:
        """Stop the posts still on their way."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class AllWorkersLiveSessions:
    """``privacy.LiveSessions`` of every worker process: this one's websockets, and the other
    workers' through the supervisor, waited for together."""

    def __init__(self, here: SignalingLiveSessions, others: WorkerRevocations) -> None:
        self.here = here
        self.others = others

    async def end_user(self, user_id: str) -> int:
        """End the user's websockets here and in the other workers; how many were here."""
        n, _ = await asyncio.gather(self.here.end_user(user_id), self.others.settled(user_id))
        return n


_closing: set["asyncio.Task[Any]"] = set()


@dataclass
class PrivacyStack:
    """What ``open_privacy`` opened: the service, the retention job and its task."""

    service: PrivacyService
    retention: Retention
    usage: UsageDataSource | None = None
    task: "asyncio.Task[None] | None" = None
    # With server.workers > 1: revocations to and from the other workers (app.py's /internal/revoke).
    revocations: WorkerRevocations | None = None

    async def close(self) -> None:
        """Stop the retention loop and close the outbox connections."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.revocations is not None:
            await self.revocations.close()
        if self.usage is not None:
            await self.usage.close()


def build_privacy(
    cfg: Any,
    accounts: Any,
    registry: PersonalDataRegistry,
    history: Any = None,
    usage: UsageDataSource | None = None,
    social: Any = None,
    live: Any = None,
) -> tuple[PrivacyService, Retention]:
    """The service and the retention job; registers the accounts, ledger and usage sources (in this order)."""
    from jasmin_sfu.services.privacy import AccountsDataSource, LedgerDataSource

    pv = cfg.privacy
    favourites = None
    if social is not None:

        async def favourites(member_id: str, performer_id: str) -> bool:
            return any(r.performer_id == performer_id for r in await social.store.favourites(member_id))

    service = PrivacyService(
        accounts,
        registry,
        pv,
        history,
        favourites,
        live,
    )
    registry.register(AccountsDataSource(accounts))
    if history is not None:
        registry.register(LedgerDataSource(history))
    if usage is not None:
        registry.register(usage)
    retention = Retention(service, pv)
    return service, retention


async def open_privacy(
    cfg: Any,
    accounts: Any,
    registry: Any,
    billing: Any = None,
    social: Any = None,
    sessions: Any = None,
    *,
    schedule: bool = True,
    session_ended: Callable[[Any], Any] | None = None,
    supervisor: SupervisorLink | None = None,
) -> PrivacyStack:
    """Register the accounts, ledger and usage sources, build the service, start the retention loop.

    ``cfg`` is the whole ``Config``; ``billing`` a ``BillingStack`` (None: billing
    off, no ledger reads); ``social`` the ``SocialService`` (favourites);
    ``sessions`` the daemon's signaling sessions, ended on revocation;
    ``session_ended(session)`` an awaitable done once that session's close handler
    ran (an erasure waits for it: the member's private ends before anything is erased);
    ``supervisor``: set in a supervised worker, whose revocations then reach the other
    workers, and an erasure waits for theirs too (``WorkerRevocations``).
    """
    from jasmin_sfu.store.privacy_ledger import LedgerReads

    history = LedgerReads(billing.store) if billing is not None else None
    usage = local_usage_source(billing) if billing is not None else None
    here = SignalingLiveSessions(sessions, session_ended) if sessions is not None and session_ended else None
    revocations = WorkerRevocations(supervisor, accounts, here) if supervisor is not None else None
    live: Any = here
    if here is not None and revocations is not None:
        live = AllWorkersLiveSessions(here, revocations)
    service, retention = build_privacy(cfg, accounts, registry, history, usage, social, live)
    if sessions is not None:
        accounts.revocation_listeners.append(lambda uid, sid: end_revoked_sessions(sessions, uid, sid))
    if revocations is not None:
        accounts.revocation_listeners.append(revocations.revoked)
    stack = PrivacyStack(service, retention, usage, revocations=revocations)
    if schedule:
        await service.resume_erasures()
        stack.task = asyncio.get_running_loop().create_task(retention.loop(cfg.privacy.retention_interval_s))
    return stack


# -- the command line: `jasmin-sfu retention [--dry-run]` ----------------------------------------


@dataclass
class OfflineStack:
    """The stores of a node, opened for one retention run beside (or without) the running daemon."""

    privacy: PrivacyStack
    closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def retention(self) -> Retention:
        return self.privacy.retention

    async def close(self) -> None:
        """Close everything that was opened, last first."""
        await self.privacy.close()
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:  # noqa: BLE001 - closing the rest matters more
                log.exception("closing a store after retention failed")


async def open_offline(cfg: Any, clock: Callable[[], float] = time.time) -> OfflineStack:
    """Open the stores the daemon's retention runs over, and nothing live.

    The same databases and the same sources in the same order as ``Daemon.start``
    (social, chat, accounts, ledger, billing usage), but no billing machinery:
    opening billing would recover (terminate) the running daemon's open
    privates, append to its outbox and its billing log, and start its relay.
    The ledger is opened for reads only (``LedgerReads``), the outboxes through
    their own connections (as the daemon's retention does), chat without its
    Redis bus. A SQLite database file that does not exist is skipped, never
    created. Raises ``ValueError`` when accounts are disabled or their SQLite
    database is missing (a wrong ``data_dir``).
    """
    from jasmin_sfu.services.accounts import open_accounts
    from jasmin_sfu.services.chat import open_chat
    from jasmin_sfu.services.social import open_social
    from jasmin_sfu.store.privacy_ledger import LedgerReads

    acc = cfg.accounts
    if not acc.enabled:
        raise ValueError("accounts.enabled is false: this node keeps no personal data on disk, nothing to retain")
    # SQLite: a database file that does not exist holds nothing, and is not created
    # here (a wrong data_dir must not grow empty databases, least of all in a dry run).
    if not acc.dsn and not os.path.exists(os.path.join(acc.data_dir, "accounts.sqlite3")):
        raise ValueError(f"no accounts database in {os.path.abspath(acc.data_dir)!r}: is accounts.data_dir right?")

    def present(name: str, data_dir: str, dsn: str) -> bool:
        return bool(dsn) or os.path.exists(os.path.join(data_dir, name))

    closers: list[Callable[[], Any]] = []
    try:
        accounts = await open_accounts(acc, clock)
        closers.append(accounts.close)
        history = None
        b = cfg.billing
        if b.enabled and present("ledger.sqlite3", b.data_dir, b.ledger_dsn):
            ledger_store: Any
            if b.ledger_dsn:
                from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore

                ledger_store = await PostgresLedgerStore.open(b.ledger_dsn)
            else:
                from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

                ledger_store = await SqliteLedgerStore.open(os.path.join(b.data_dir, "ledger.sqlite3"))
            closers.append(ledger_store.close)
            history = LedgerReads(ledger_store)
        registry = PersonalDataRegistry()
        social = None
        if present("social.sqlite3", acc.data_dir, acc.dsn):
            social = await open_social(acc, accounts, None, clock)
            closers.append(social.close)
            registry.register(social.personal_data_source())
        if present("chat.sqlite3", acc.data_dir, acc.dsn):
            chat = await open_chat(replace(cfg.chat, redis_url=""), acc, clock)
            closers.append(chat.close)
            registry.register(chat)
        usage = offline_usage_source(b) if b.enabled else None
        service, retention = build_privacy(cfg, accounts, registry, history, usage, social)
    except BaseException:
        for close in reversed(closers):
            await close()
        raise
    return OfflineStack(PrivacyStack(service, retention, usage), closers)


def format_report(report: RetentionReport, settings: PrivacySettings) -> str:
    """The report as a text table: one line per category and source."""
    rules = category_rules(settings)
    when = datetime.fromtimestamp(report.policy.now_us / US, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = "would delete" if report.dry_run else "deleted"
    title = f"jasmin-sfu retention at {when}" + (" (dry run: nothing was changed)" if report.dry_run else "")
    rows = [("CATEGORY", "SOURCE", head.upper(), "LIMIT")]
    unknown = False
    order = {c: i for i, c in enumerate(rules)}
    for line in sorted(report.lines, key=lambda ln: order.get(ln.category, len(order))):
        n = "?" if line.rows is None else str(line.rows)
        unknown = unknown or line.rows is None
        rows.append((line.category, line.source, n, rules.get(line.category, "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = [title, ""]
    for r in rows:
        out.append("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip())
    if unknown:
        out += ["", "?: this source cannot count without deleting (it has no preview)"]
    return "\n".join(out) + "\n"
