"""`make run`'s demo accounts (jasmin_sfu/services/demo.py) and the page's /demo endpoints,
on a real daemon with SQLite stores in a temp dir, over real HTTP."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from jasmin_sfu.app import Daemon, demo_banner
from jasmin_sfu.config import AccountsConfig, BillingConfig, Config
from jasmin_sfu.services.demo import DEMO_MEMBER, DEMO_PERFORMER, demo_enabled
from jasmin_sfu.services.errors import LedgerError
from jasmin_sfu.services.ledger import CREDIT, HOUSE_REVENUE, Transfer, credits_to_units, wallet_account
from tests.api.conftest import accounts_config
from tests.conftest import test_config as node_config


def config(tmp_path: Path, **accounts: Any) -> Config:
    return node_config(
        billing=BillingConfig(data_dir=str(tmp_path / "billing"), node_id="demo"),
        accounts=dataclasses.replace(accounts_config(str(tmp_path / "accounts")), **accounts),
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def started(cfg: Config) -> Daemon:
    d = Daemon(cfg)
    await d.start()
    return d


async def available(d: Daemon, member_id: str) -> int:
    assert d.billing is not None
    return (await d.billing.ledger.balance(wallet_account(member_id))).available


def test_seeding_only_on_the_embedded_defaults(tmp_path: Path) -> None:
    """Protects production: a node with a PostgreSQL DSN (accounts or ledger) or with
    accounts.seed_demo = false never gets accounts with public passwords."""
    assert demo_enabled(config(tmp_path))
    assert not demo_enabled(config(tmp_path, seed_demo=False))
    assert not demo_enabled(config(tmp_path, dsn="postgresql://127.0.0.1/test"))
    cfg = config(tmp_path)
    pg_ledger = cfg.replace(billing=dataclasses.replace(cfg.billing, ledger_dsn="postgresql://127.0.0.1/test"))
    assert not demo_enabled(pg_ledger)
    assert AccountsConfig().seed_demo, "make run's default config seeds"


async def test_seeding_is_idempotent_and_tops_up_only_when_below(tmp_path: Path) -> None:
    """Protects restarts: the same two accounts every start; the member's wallet is raised to
    30 credits only when below, through the ledger (the journal replays to the balances),
    and never stacks or lowers credits. seed_demo = false seeds nothing."""
    off = await started(config(tmp_path, seed_demo=False))
    try:
        assert await off.seed_demo() is None and off.demo is None
    finally:
        await off.stop()

    d = await started(config(tmp_path))
    try:
        first = await d.seed_demo()
        assert first is not None and first.member_credits == "30.00"
        assert (first.performer.username, first.member.username, first.show_id) == (
            DEMO_PERFORMER,
            DEMO_MEMBER,
            DEMO_PERFORMER,
        )
        login = await d.accounts.login(DEMO_PERFORMER, first.performer.password)  # type: ignore[union-attr]
        assert login.principal.kind == "performer"
        member = await d.accounts.login(DEMO_MEMBER, first.member.password)  # type: ignore[union-attr]
        assert member.principal.kind == "member" and member.principal.adult_confirmed
        assert d.demo is not None
        assert await d.demo.top_up(member.principal) == "40.00"
    finally:
        await d.stop()

    d = await started(config(tmp_path))
    try:
        again = await d.seed_demo()
        assert again is not None and again.member_credits == "40.00", "above 30: left alone"
        assert (again.performer.user_id, again.member.user_id) == (first.performer.user_id, first.member.user_id)
        # Spend 35 of the 40 credits: the next start tops the wallet up to exactly 30.
        assert d.billing is not None
        await d.billing.ledger.submit(
            [
                Transfer(
                    "spent-by-test",
                    wallet_account(first.member.user_id),
                    HOUSE_REVENUE,
                    credits_to_units(35),
                    CREDIT,
                    "tip",
                )
            ]
        )
    finally:
        await d.stop()

    d = await started(config(tmp_path))
    try:
        third = await d.seed_demo()
        assert third is not None and third.member_credits == "30.00"
        assert await available(d, first.member.user_id) == credits_to_units(30)
        assert d.billing is not None and (await d.billing.ledger.replay()).ok
        banner = demo_banner(third, "0.0.0.0", 8080)
        assert "demo_performer / demo-performer" in banner and "demo_member / demo-member" in banner
        assert "http://127.0.0.1:8080/?role=performer&demo=performer" in banner
    finally:
        await d.stop()


async def test_demo_endpoints(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Protects the page's first click and the free-credit door: /demo/config lists the demo
    accounts only when seeded, and says whether client ids are trusted and simulcast taken; /demo/top-up gives
    credits to the demo member only (401 without a token, 403 for a guest or another member,
    404 demo_off on a node without demo accounts)."""
    d = await started(config(tmp_path))
    try:
        base = f"http://127.0.0.1:{d.port}"
        async with http.get(base + "/demo/config") as r:
            assert r.status == 200 and await r.json() == {"trust_client_ids": False, "simulcast": True, "demo": None}
        async with http.post(base + "/demo/top-up") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "demo_off"
        seeded = await d.seed_demo()
        assert seeded is not None
        async with http.get(base + "/demo/config") as r:
            body = await r.json()
        assert body["demo"]["show_id"] == DEMO_PERFORMER and body["demo"]["top_up_credits"] == 10
        assert [(a["role"], a["username"]) for a in body["demo"]["accounts"]] == [
            ("performer", DEMO_PERFORMER),
            ("member", DEMO_MEMBER),
        ]
        async with http.post(base + "/demo/top-up") as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        assert d.accounts is not None
        other = await d.accounts.register("someone_else", "long enough pw", adult_confirmed=True)
        guest = await d.accounts.start_guest(adult_confirmed=True)
        for token in (other.token, guest.token):
            async with http.post(base + "/demo/top-up", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        assert d.billing is not None
        with pytest.raises(LedgerError):  # no wallet was ever opened for the other member
            await d.billing.ledger.balance(wallet_account(other.principal.id))
        member = await d.accounts.login(DEMO_MEMBER, "demo-member")
        async with http.post(base + "/demo/top-up", headers={"Authorization": f"Bearer {member.token}"}) as r:
            assert r.status == 200 and await r.json() == {"credits": "40.00"}
    finally:
        await d.stop()
