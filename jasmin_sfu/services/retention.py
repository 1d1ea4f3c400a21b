"""Retention: one policy from PRODUCT.md's limits, applied by every personal-data source.

PRODUCT.md, Privacy rules: chat logs and usage data at most 120 days from the
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
``jasmin-sfu retention [--dry-run]``. A dry run changes nothing and reports
what would go: sources with a ``preview(policy)`` method say how many rows,
the others are reported as ``None`` (unknown).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from jasmin_sfu.services.accounts import US
from jasmin_sfu.services.personal_data import RetentionPolicy
from jasmin_sfu.services.privacy import DAY_S, PrivacyService
from jasmin_sfu.store.privacy_usage import OutboxUsageStore

log = logging.getLogger("jasmin_sfu.services.retention")


@dataclass(frozen=True)
class RetentionSettings:
    """The limits in days (config ``[privacy]``; validated against PRODUCT.md's maximums)."""

    usage_days: int = 120
    guest_days: int = 15
    identity_days: int = 5
    inactive_days: int = 365


def build_policy(now_us: int, settings: RetentionSettings, last_purchase_us: Mapping[str, int]) -> RetentionPolicy:
    """The cut-offs at ``now_us``: anything (of a member whose last purchase is) older is deleted."""
    day = DAY_S * US
    return RetentionPolicy(
        now_us=now_us,
        usage_before_us=now_us - settings.usage_days * day,
        guest_before_us=now_us - settings.guest_days * day,
        identity_before_us=now_us - settings.identity_days * day,
        inactive_before_us=now_us - settings.inactive_days * day,
        last_purchase_us=dict(last_purchase_us),
    )


@dataclass(frozen=True)
class RetentionReport:
    """One run: accounts closed for inactivity, erasures resumed, rows per source (None: unknown)."""

    policy: RetentionPolicy
    dry_run: bool
    closed: tuple[str, ...]
    resumed: int
    purged: dict[str, int | None] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts for logs and the command line (no member ids)."""
        return {"dry_run": self.dry_run, "inactive_closed": len(self.closed), "erasures_resumed": self.resumed,
                "purged": dict(self.purged)}


class Retention:
    """Runs the retention policy over a ``PrivacyService``'s registry."""

    def __init__(self, privacy: PrivacyService, settings: RetentionSettings = RetentionSettings()) -> None:
        self.privacy = privacy
        self.settings = settings

    async def run(self, *, dry_run: bool = False) -> RetentionReport:
        """One retention run (see the module docstring)."""
        accounts = self.privacy.accounts
        resumed = 0 if dry_run else len(await self.privacy.resume_erasures())
        now = accounts.now_us()
        inactive = await accounts.store.inactive_members(now - self.settings.inactive_days * DAY_S * US)
        if not dry_run:
            for user_id in inactive:
                await self.privacy.erase(user_id, "inactive")
        policy = build_policy(now, self.settings, await accounts.store.last_purchases())
        purged: dict[str, int | None] = {}
        for source in self.privacy.registry.sources:
            if dry_run:
                preview = getattr(source, "preview", None)
                purged[source.name] = await preview(policy) if preview is not None else None
            else:
                purged[source.name] = await source.purge(policy)
        report = RetentionReport(policy, dry_run, tuple(inactive), resumed, purged)
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
    """The billing outbox's per-second usage events (``billing_usage`` in the download).

    Kept through erasure (they are the itemised record of what was charged,
    under the member id that erasure made a pseudonym) and purged by the
    usage limit: 120 days after the member's last purchase, once every billing
    sink has received them. Copies the sinks hold belong to the billing system.
    """

    name = "billing_usage"

    def __init__(self, store: OutboxUsageStore) -> None:
        self.store = store

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The member's usage events still in the outbox."""
        return {"outbox_events": await self.store.export(user_id)}

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Kept (billing records under the pseudonymous id); the usage limit deletes them."""
        return 0

    async def purge(self, policy: RetentionPolicy) -> int:
        """Delivered events of members whose last purchase is older than the usage limit."""
        return await self.store.purge(policy.last_purchase_us, policy.usage_before_us)

    async def preview(self, policy: RetentionPolicy) -> int:
        """How many events ``purge`` would delete."""
        return await self.store.purge(policy.last_purchase_us, policy.usage_before_us, dry_run=True)


# -- wiring (the daemon and the command line) -----------------------------------------------

# Websocket close code when a connection's token is revoked or its account erased
# (4000-4999 are the application's; 4401 echoes HTTP 401).
REVOKED_CLOSE_CODE = 4401


def end_revoked_sessions(sessions: Any, user_id: str | None, session_id: str | None) -> int:
    """Close the signaling websockets that joined with a revoked token (or any token of ``user_id``).

    ``sessions`` holds ``SignalingSession``s whose ``handler.principal`` is the
    joined identity (None before a join). Returns how many were closed.
    """
    n = 0
    for s in list(sessions):
        p = getattr(getattr(s, "handler", None), "principal", None)
        if p is None:
            continue
        if (user_id is not None and p.id == user_id) or (session_id is not None and p.session_id == session_id):
            task = asyncio.get_running_loop().create_task(
                s.ws.close(code=REVOKED_CLOSE_CODE, message=b"token revoked")
            )
            _closing.add(task)
            task.add_done_callback(_closing.discard)
            n += 1
    return n


_closing: set["asyncio.Task[Any]"] = set()


@dataclass
class PrivacyStack:
    """What ``open_privacy`` opened: the service, the retention job and its task."""

    service: PrivacyService
    retention: Retention
    usage: OutboxUsageStore | None = None
    task: "asyncio.Task[None] | None" = None

    async def close(self) -> None:
        """Stop the retention loop and close the outbox connection."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.usage is not None:
            await self.usage.close()


async def open_privacy(
    cfg: Any, accounts: Any, registry: Any, billing: Any = None, social: Any = None, sessions: Any = None,
    *, schedule: bool = True,
) -> PrivacyStack:
    """Register the accounts, ledger and usage sources, build the service, start the retention loop.

    ``cfg`` is the whole ``Config``; ``billing`` a ``BillingStack`` (None: billing
    off, no ledger reads); ``social`` the ``SocialService`` (favourites);
    ``sessions`` the daemon's signaling sessions, ended on revocation.
    """
    from jasmin_sfu.services.privacy import AccountsDataSource, LedgerDataSource, PrivacySettings
    from jasmin_sfu.store.privacy_ledger import LedgerReads

    pv = cfg.privacy
    history = LedgerReads(billing.store) if billing is not None else None
    favourites = None
    if social is not None:
        async def favourites(member_id: str, performer_id: str) -> bool:
            return any(r.performer_id == performer_id for r in await social.store.favourites(member_id))

    service = PrivacyService(
        accounts, registry, PrivacySettings(site=pv.site, username_blacklist_days=pv.username_blacklist_days),
        history, favourites,
    )
    registry.register(AccountsDataSource(accounts))
    usage = None
    if history is not None:
        registry.register(LedgerDataSource(history))
        usage = OutboxUsageStore(billing.outbox.config.path, tuple(billing.relay.sinks))
        registry.register(UsageDataSource(usage))
    if sessions is not None:
        accounts.revocation_listeners.append(lambda uid, sid: end_revoked_sessions(sessions, uid, sid))
    retention = Retention(service, RetentionSettings(
        pv.usage_retention_days, pv.guest_retention_days, pv.identity_retention_days, pv.inactive_account_days))
    stack = PrivacyStack(service, retention, usage)
    if schedule:
        await service.resume_erasures()
        stack.task = asyncio.get_running_loop().create_task(retention.loop(pv.retention_interval_s))
    return stack
