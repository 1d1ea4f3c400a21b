"""VIP free credits: the top members by VIP points are paid on the 1st and 16th of each month.

docs/product.md: "VIP points per purchase: 29.99 -> 1, 69.99 -> 3, 99.99 -> 5, 159.99 -> 10.
The top 500 by points get free credits on the 1st and 16th of each month." Points come
with every purchase (``Ledger.top_up`` credits ``points:<member>``); this job pays the
free credits. The amounts are operator data: ``billing.vip_award_tiers`` ("max_rank:credits").

How a period is paid exactly once, by reruns and by several nodes alike:

* The period is named by its first day (``2026-12-01``, ``2026-12-16``) and starts at
  00:00 UTC. The ranking is the VIP-point balances made of transfers stamped before
  that instant, most first, ties by member id: a pure function of the journal, so
  every node computes the same list.
* The payment is one linked chain in one transaction: ``vip:<period>`` mints the
  period's budget from ``world:CREDIT`` into ``promo:vip`` (its ``user_data`` is the
  hash of the award list), then ``vip:<period>:<member>`` pays each member from
  ``promo:vip``. A rerun finds every id applied (``EXISTS``) and changes nothing; a
  run with another list (other tiers, a late purchase stamped before the cut) collides
  on ``vip:<period>`` and the whole chain is refused (``VipAwardConflictError``).
* A period is due ``billing.vip_settle_s`` after it starts (purchases of the day
  before have committed everywhere by then). After downtime only the latest due
  period is paid; one missed entirely is not paid later.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from jasmin_sfu.services.errors import VipAwardConflictError
from jasmin_sfu.services.ledger import (
    CREDIT,
    US,
    VIP_POINT,
    WORLD_CREDIT,
    Account,
    AccountFlags,
    Ledger,
    Result,
    Transfer,
    credits_to_units,
    linked,
    raise_for,
    wallet_account,
)

log = logging.getLogger(__name__)

PROMO_VIP = "promo:vip"
_POINTS_PREFIX = "points:"


def period_start(t: float) -> _dt.date:
    """The VIP period running at epoch seconds ``t``: the 1st or the 16th of its month (UTC)."""
    d = _dt.datetime.fromtimestamp(t, tz=_dt.UTC).date()
    return d.replace(day=16 if d.day >= 16 else 1)


def period_epoch(day: _dt.date) -> float:
    """00:00 UTC of ``day`` in epoch seconds."""
    return _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp()


@dataclass(frozen=True)
class VipAward:
    """One member's award of a period."""

    member_id: str
    rank: int
    points: int
    credits: int


@dataclass(frozen=True)
class VipRun:
    """What a run did: ``applied`` is False when the period had been paid already (or dry run)."""

    period: str
    awards: tuple[VipAward, ...]
    applied: bool


class VipAwards:
    """The idempotent VIP award job over the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        tiers: Sequence[tuple[int, int]],
        settle_s: int = 300,
        on_credited: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.tiers = tuple(tiers)
        self.settle_s = settle_s
        # Called with each paid wallet (credit control re-authorises its open privates).
        self.on_credited = on_credited

    @property
    def top_n(self) -> int:
        """How many members a period pays (the last tier's rank)."""
        return self.tiers[-1][0] if self.tiers else 0

    def credits_for(self, rank: int) -> int:
        """Free credits for a rank (1-based); 0 outside the tiers."""
        for max_rank, credits in self.tiers:
            if rank <= max_rank:
                return credits
        return 0

    def due_period(self) -> _dt.date:
        """The latest period whose settle time has passed, by the ledger's clock."""
        return period_start(self.ledger.clock() - self.settle_s)

    async def ranking(self, period: _dt.date) -> list[VipAward]:
        """The period's award list: the top members by points before the period began."""
        if not self.top_n:
            return []
        cut = round(period_epoch(period) * US)
        rows = await self.ledger.store.ranking(VIP_POINT, _POINTS_PREFIX, cut, self.top_n)
        return [
            VipAward(acc[len(_POINTS_PREFIX) :], rank, points, self.credits_for(rank))
            for rank, (acc, points) in enumerate(rows, start=1)
        ]

    async def run_due(self, *, dry_run: bool = False) -> VipRun:
        """Pay the due period (a no-op when it was paid already)."""
        return await self.run(self.due_period(), dry_run=dry_run)

    async def run(self, period: _dt.date, *, dry_run: bool = False) -> VipRun:
        """Pay ``period`` (a 1st or 16th); idempotent; raises ``VipAwardConflictError``."""
        if period.day not in (1, 16):
            raise ValueError(f"a VIP period starts on the 1st or the 16th, not {period.isoformat()}")
        name = period.isoformat()
        awards = await self.ranking(period)
        if dry_run or not awards:
            return VipRun(name, tuple(awards), False)
        listing = json.dumps([[a.member_id, a.credits] for a in awards], separators=(",", ":"))
        digest = hashlib.sha256(listing.encode()).hexdigest()
        total = sum(credits_to_units(a.credits) for a in awards)
        # The daemon checks every few minutes: a paid period costs one lookup, not a
        # transaction over every member's transfer.
        done = (await self.ledger.lookup_transfers([f"vip:{name}"])).get(f"vip:{name}")
        if done is not None:
            if done.user_data != digest or done.amount != total:
                raise VipAwardConflictError(f"VIP period {name} was paid to another list of members; nothing paid now")
            return VipRun(name, tuple(awards), False)
        dmnec = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        await self.ledger.ensure_accounts([Account(PROMO_VIP, CREDIT, "promo", dmnec)])
        chain = linked(
            [Transfer(f"vip:{name}", WORLD_CREDIT, PROMO_VIP, total, CREDIT, "vip_award_budget", user_data=digest)]
            + [
                Transfer(
                    f"vip:{name}:{a.member_id}",
                    PROMO_VIP,
                    wallet_account(a.member_id),
                    credits_to_units(a.credits),
                    CREDIT,
                    "vip_award",
                    user_data=f"rank {a.rank}",
                )
                for a in awards
            ]
        )
        results = await self.ledger.create_transfers(chain)
        if results[0] is Result.EXISTS_WITH_DIFFERENT_FIELDS:
            raise VipAwardConflictError(f"VIP period {name} was paid to another list of members; nothing paid now")
        raise_for(chain, results)
        applied = results[0] is Result.OK
        if applied:
            log.info("VIP awards paid", extra={"period": name, "members": len(awards), "units": total})
            if self.on_credited is not None:
                for a in awards:
                    try:
                        await self.on_credited(wallet_account(a.member_id))
                    except Exception:  # noqa: BLE001 - the credits are paid; a re-auth is a bonus
                        log.exception("re-auth after a VIP award failed", extra={"member": a.member_id})
        return VipRun(name, tuple(awards), applied)
