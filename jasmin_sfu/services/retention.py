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
            try:
                await self.run()
            except Exception:  # noqa: BLE001 - retried at the next interval
                log.exception("retention run failed")
            await asyncio.sleep(interval_s)


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
