"""Concurrent charges of one member on SQLite and PostgreSQL: TopMembership starts (issue 11 #22), purchases.

docs/social.md: ``POST /api/v1/me/top-membership`` answers 201 when it charged and
200 when the membership was already running. Four requests at once from one member
used to be answered 201 "charged" four times, while one fee was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import BillingConfig, PaymentsConfig
from jasmin_sfu.services.ledger import credits_to_units, wallet_account
from tests.api.conftest import Api, accounts_config
from tests.conftest import test_config as daemon_config
from tests.realparts import PG_DSN, FakeClock, pg_schema


@pytest.fixture(params=["sqlite", "postgres"])
async def api_any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The REST daemon with accounts, social and the ledger on SQLite, or all on PostgreSQL."""
    async with pg_schema() if request.param == "postgres" else contextlib.nullcontext("") as schema:
        dsn = f"{PG_DSN}?search_path={schema}" if schema else ""
        clock = FakeClock()
        accounts = accounts_config(str(tmp_path))
        if dsn:
            import dataclasses

            accounts = dataclasses.replace(accounts, dsn=dsn)
        cfg = daemon_config(
            billing=BillingConfig(data_dir=str(tmp_path), node_id="race1", ledger_dsn=dsn),
            accounts=accounts,
            payments=PaymentsConfig(provider="test"),
        )
        d = Daemon(cfg, accounts_clock=clock)
        await d.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Api(d, f"http://127.0.0.1:{d.port}", f"ws://127.0.0.1:{d.port}/ws", clock, session)
        finally:
            await d.stop()


@pytest.mark.parametrize("n", [4, 8])
async def test_concurrent_top_membership_starts_answer_one_201_and_the_rest_200(api_any_store: Api, n: int) -> None:
    """Protects the documented answers under concurrency: of n simultaneous starts exactly one
    is 201 (charged), the others 200 (already), and exactly one fee of 15 credits is taken."""
    api = api_any_store
    token, mid = await api.member("race")
    status, _, _ = await api.call(
        "POST", "/api/v1/wallet/purchases", token=token, json={"package": "p2999", "idempotency_key": "key-race-1"}
    )
    assert status == 201
    answers = await asyncio.gather(
        *[api.call("POST", "/api/v1/me/top-membership", token=token, json={}) for _ in range(n)]
    )
    statuses = sorted(s for s, _, _ in answers)
    assert statuses == [200] * (n - 1) + [201], statuses
    assert all(body["active"] and body["period"] == 0 for _, body, _ in answers)
    ledger = api.daemon.billing.ledger if api.daemon.billing is not None else None
    assert ledger is not None
    wallet = await ledger.balance(wallet_account(mid))
    assert wallet.debits_posted == credits_to_units(15)


@pytest.mark.parametrize("n", [4])
async def test_concurrent_purchases_with_one_key_answer_one_201_and_the_rest_200(api_any_store: Api, n: int) -> None:
    """Protects the purchase answers under concurrency (the same class of defect as the
    TopMembership start): n simultaneous purchases with one idempotency key are one purchase,
    answered 201 once and 200 (replayed) otherwise, and the package is credited once."""
    api = api_any_store
    token, mid = await api.member("buyer")
    answers = await asyncio.gather(
        *[
            api.call(
                "POST",
                "/api/v1/wallet/purchases",
                token=token,
                json={"package": "p2999", "idempotency_key": "key-twin-1"},
            )
            for _ in range(n)
        ]
    )
    statuses = sorted(s for s, _, _ in answers)
    assert statuses == [200] * (n - 1) + [201], statuses
    assert len({body["payment_id"] for _, body, _ in answers}) == 1
    ledger = api.daemon.billing.ledger if api.daemon.billing is not None else None
    assert ledger is not None
    assert (await ledger.balance(wallet_account(mid))).credits_posted == credits_to_units(30)
