"""VIP free credits on the 1st and 16th (docs/product.md; issue 11 #24), on SQLite and PostgreSQL,
with an injected clock: the top members by VIP points before the period began are paid
the operator's tier amounts, once, however often and on however many nodes the job runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jasmin_sfu.config import BillingConfig, ConfigError, Config, validate, vip_tiers
from jasmin_sfu.services.errors import VipAwardConflictError
from jasmin_sfu.services.ledger import Ledger, credits_to_units, wallet_account
from jasmin_sfu.services.vip import PROMO_VIP, VipAwards, period_epoch, period_start
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from tests.conftest import REPO
from tests.realparts import FakeClock

JUNE_1 = period_epoch(dt.date(2026, 6, 1))
JUNE_16 = period_epoch(dt.date(2026, 6, 16))
TIERS = ((2, 10), (3, 5))  # ranks 1-2 get 10 credits, rank 3 gets 5: the top 3 are paid


async def buy(ledger: Ledger, member: str, *packages: str) -> None:
    await ledger.open_member(member)
    for i, p in enumerate(packages):
        await ledger.top_up(f"pay-{member}-{i}-{ledger.now_us()}", member, p)


async def wallets(ledger: Ledger, members: str) -> dict[str, int]:
    return {m: (await ledger.balance(wallet_account(m))).credits_posted for m in members}


def test_periods_start_on_the_1st_and_16th_utc() -> None:
    """Protects the schedule: the period running at any instant began on the 1st or 16th, 00:00 UTC."""
    assert period_start(JUNE_1 - 1) == dt.date(2026, 5, 16)
    assert period_start(JUNE_1) == dt.date(2026, 6, 1)
    assert period_start(JUNE_16 - 1) == dt.date(2026, 6, 1)
    assert period_start(JUNE_16 + 20 * 86400) == dt.date(2026, 7, 1)


async def test_top_members_by_points_are_paid_once_per_period(ledger: Ledger, clock: FakeClock) -> None:
    """Protects the VIP rule and its idempotence: the ranking counts points bought before the
    period's first instant (a later purchase waits for the next period), ties go by member id,
    the tiers decide the amounts, the run waits vip_settle_s, and a rerun pays nothing more."""
    await buy(ledger, "a", "p15999")  # 10 points
    await buy(ledger, "b", "p9999")  # 5
    await buy(ledger, "c", "p6999", "p2999")  # 4
    await buy(ledger, "d", "p6999", "p2999")  # 4: ties with c, loses on the id
    await buy(ledger, "f", "p2999")  # 1
    vip = VipAwards(ledger, TIERS, settle_s=300)
    assert (await vip.run_due()).awards == ()  # 16 May: nobody had points before it
    clock.now = JUNE_1 + 10
    await buy(ledger, "e", "p15999", "p15999")  # 20 points, but after 1 June began
    before = await wallets(ledger, "abcdef")
    clock.now = JUNE_1 + 299
    assert (await vip.run_due()).period == "2026-05-16"  # 1 June is not settled yet
    clock.now = JUNE_1 + 300
    run = await vip.run_due()
    assert run.period == "2026-06-01" and run.applied
    assert [(a.member_id, a.rank, a.points, a.credits) for a in run.awards] == [
        ("a", 1, 10, 10),
        ("b", 2, 5, 10),
        ("c", 3, 4, 5),
    ]
    after = await wallets(ledger, "abcdef")
    gained = {m: after[m] - before[m] for m in after}
    assert gained == {
        "a": credits_to_units(10),
        "b": credits_to_units(10),
        "c": credits_to_units(5),
        "d": 0,
        "e": 0,
        "f": 0,
    }
    again = await vip.run_due()
    assert not again.applied and again.awards == run.awards
    assert await wallets(ledger, "abcdef") == after
    promo = await ledger.balance(PROMO_VIP)
    assert promo.credits_posted == promo.debits_posted == credits_to_units(25)
    report = await ledger.replay()
    assert report.ok, report.mismatches


async def test_two_nodes_at_once_pay_a_period_once(ledger: Ledger, clock: FakeClock) -> None:
    """Protects against double payment by two nodes (or a rerun racing the daemon): two jobs
    on separate Ledger objects over one store run the same due period concurrently; exactly
    one applies it and every member is paid once."""
    await buy(ledger, "a", "p15999")
    await buy(ledger, "b", "p2999")
    clock.now = JUNE_16 + 600
    nodes = [VipAwards(Ledger(ledger.store, clock), TIERS, settle_s=300) for _ in range(4)]
    runs = await asyncio.gather(*[n.run_due() for n in nodes])
    assert sorted(r.applied for r in runs) == [False, False, False, True]
    got = await wallets(ledger, "ab")
    assert got == {"a": credits_to_units(170 + 10), "b": credits_to_units(30 + 10)}
    assert (await ledger.replay()).ok


async def test_another_award_list_for_a_paid_period_is_refused_whole(ledger: Ledger, clock: FakeClock) -> None:
    """Protects "never pays twice": when a period was paid and a rerun computes another list
    (here: the operator changed the tiers), nothing of the new list is paid."""
    await buy(ledger, "a", "p15999")
    await buy(ledger, "b", "p2999")
    clock.now = JUNE_1 + 600
    assert (await VipAwards(ledger, ((1, 10),)).run_due()).applied
    paid = await wallets(ledger, "ab")
    with pytest.raises(VipAwardConflictError):
        await VipAwards(ledger, ((2, 10),)).run_due()
    assert await wallets(ledger, "ab") == paid
    assert (await ledger.replay()).ok


def test_tiers_are_operator_data_validated_by_the_config() -> None:
    """Protects the config: tiers parse as rising max_rank:credits, bad ones are config errors,
    and the performer's share must be basis points."""
    assert vip_tiers(("10:50", "100:20", "500:5")) == ((10, 50), (100, 20), (500, 5))
    assert vip_tiers(BillingConfig().vip_award_tiers) == ((500, 5),)
    for bad in (("500",), ("10:5", "5:50"), ("10:0",), ("x:1",)):
        with pytest.raises(ConfigError):
            validate(Config(billing=BillingConfig(vip_award_tiers=bad)))
    with pytest.raises(ConfigError):
        validate(Config(billing=BillingConfig(performer_share_bp=10_001)))


async def test_cli_vip_awards_pays_a_period_once(tmp_path: Path) -> None:
    """Protects the operator's trigger: `jasmin-sfu vip-awards --period` pays the period and
    prints the table; run again it answers "already paid" and pays nothing."""
    clock = FakeClock()
    store = await SqliteLedgerStore.open(str(tmp_path / "ledger.sqlite3"))
    try:
        ledger = Ledger(store, clock)
        await ledger.bootstrap()
        await buy(ledger, "m1", "p9999")
    finally:
        await store.close()
    env = {**os.environ, "JASMIN_BILLING_DATA_DIR": str(tmp_path), "JASMIN_BILLING_VIP_AWARD_TIERS": "500:7"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jasmin_sfu", "vip-awards", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = cli("--period", "2026-06-01")
    assert first.returncode == 0, first.stderr
    assert "2026-06-01: 1 member(s), paid now" in first.stdout and " m1" in first.stdout
    second = cli("--period", "2026-06-01")
    assert second.returncode == 0 and "already paid" in second.stdout
    assert cli("--period", "2026-06-02").returncode == 2
    store = await SqliteLedgerStore.open(str(tmp_path / "ledger.sqlite3"))
    try:
        wallet = await Ledger(store, clock).balance(wallet_account("m1"))
        assert wallet.credits_posted == credits_to_units(105 + 7)
    finally:
        await store.close()


def test_cli_vip_awards_refuses_a_data_dir_without_a_ledger(tmp_path: Path) -> None:
    """Protects a wrong billing.data_dir: `vip-awards` (dry run or not) answers a clear error
    and exit 1, and creates no empty ledger database there (it used to create one)."""
    env = {**os.environ, "JASMIN_BILLING_DATA_DIR": str(tmp_path / "nowhere")}
    for args in (["--dry-run"], []):
        run = subprocess.run(
            [sys.executable, "-m", "jasmin_sfu", "vip-awards", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert "no ledger database" in run.stderr and "billing.data_dir" in run.stderr
        assert not (tmp_path / "nowhere").exists()


async def test_a_late_purchase_stamped_before_the_cut_cannot_add_a_winner(ledger: Ledger, clock: FakeClock) -> None:
    """Protects the cap of a period: a purchase that commits after the period was paid but is
    stamped before its first instant (a node's clock behind) makes a rerun rank another member
    first; the same total, another list: the rerun is refused and nobody is paid twice or extra."""
    await buy(ledger, "a", "p2999")
    await buy(ledger, "b", "p2999")
    clock.now = JUNE_1 + 600
    assert [a.member_id for a in (await VipAwards(ledger, ((1, 10),)).run_due()).awards] == ["a"]
    clock.now = JUNE_1 - 5
    await buy(ledger, "b", "p15999")
    clock.now = JUNE_1 + 900
    paid = await wallets(ledger, "ab")
    with pytest.raises(VipAwardConflictError):
        await VipAwards(ledger, ((1, 10),)).run_due()
    assert await wallets(ledger, "ab") == paid
