"""[billing] settings that reach the money (issue 11 #24): the performer's revenue share, and
the daemon's VIP award loop, through the billing stack the daemon opens (open_billing)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

from bench.peers import wait_for
from jasmin_sfu.services.ledger import HOUSE_REVENUE, credits_to_units, earnings_account, wallet_account
from jasmin_sfu.services.vip import period_epoch
from jasmin_sfu.shows.billing import open_billing
from tests.realparts import FakeClock
from tests.shows.billing_crash_child import MEMBER, PERFORMER, PRICE, SHOW, billing_config, build_sinks


async def test_performer_share_is_the_billing_setting(tmp_path: Path) -> None:
    """Protects billing.performer_share_bp: with 7000 bp the performer earns floor(70 %) of a
    private's charge and the house the rest (the default was a hard-coded 50 %)."""
    clock = FakeClock()
    spec = {"data_dir": str(tmp_path), "node_id": "share"}
    cfg = dataclasses.replace(billing_config(spec), performer_share_bp=7000)
    stack = await open_billing(cfg, clock, sinks=build_sinks(spec))
    try:
        await stack.ledger.open_member(MEMBER)
        await stack.cc.top_up("seed", MEMBER, "p2999")
        private = await stack.billing.authorize(SHOW, MEMBER, PERFORMER, PRICE)
        stack.billing.start_metering(private, clock())
        for _ in range(30):  # 7.5 s in ticks, each renewal answered before the next tick
            clock.advance(0.25)
            stack.billing.tick(clock())
            while stack.billing._tasks:
                await asyncio.gather(*list(stack.billing._tasks))
        stack.billing.stop_metering(private, clock(), "ended")
        assert await wait_for(lambda: not stack.billing._tasks, 10)
        charged = (await stack.ledger.balance(wallet_account(MEMBER))).debits_posted
        assert charged == 7 * PRICE
        assert (await stack.ledger.balance(earnings_account(PERFORMER))).credits_posted == charged * 7000 // 10_000
        assert (await stack.ledger.balance(HOUSE_REVENUE)).credits_posted == charged - charged * 7000 // 10_000
    finally:
        await stack.close()


async def test_the_daemons_vip_loop_pays_the_due_period(tmp_path: Path) -> None:
    """Protects the daemon's trigger of the VIP job: with vip_check_interval_s set, the billing
    stack pays the due period by itself (tiers from the config), once, and stops with it."""
    clock = FakeClock(period_epoch(dt.date(2026, 6, 1)) - 3600)
    spec = {"data_dir": str(tmp_path), "node_id": "vip"}
    cfg = dataclasses.replace(billing_config(spec), vip_check_interval_s=0.02, vip_award_tiers=("1:9",))
    stack = await open_billing(cfg, clock, sinks=build_sinks(spec))
    try:
        await stack.ledger.open_member(MEMBER)
        await stack.cc.top_up("seed", MEMBER, "p2999")
        clock.advance(3600 + 600)

        async def paid() -> int:
            return (await stack.ledger.balance(wallet_account(MEMBER))).credits_posted

        for _ in range(500):
            if await paid() > credits_to_units(30):
                break
            await asyncio.sleep(0.02)
        assert await paid() == credits_to_units(30 + 9)
        await asyncio.sleep(0.1)  # a few more loop turns: still paid once
        assert await paid() == credits_to_units(30 + 9)
    finally:
        await stack.close()
    assert stack.vip_task is not None and stack.vip_task.done()
