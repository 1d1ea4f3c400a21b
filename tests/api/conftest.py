"""A daemon with accounts, billing and the test payment provider, on a fake accounts clock; and the
daemons of a cluster on the real Redis (``prefix``, ``make_node``) for the cluster tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AccountsConfig, BillingConfig, ClusterConfig, Config, PaymentsConfig
from jasmin_sfu.services.accounts import AccountsService
from tests.conftest import test_config
from tests.realparts import REDIS_URL, FakeClock, redis_key_prefix

SECRET = "e" * 40  # the cluster's shared secret, the same on every node of a test
MakeNode = Callable[..., Awaitable[Daemon]]


def accounts_config(data_dir: str, *, trust_client_ids: bool = False) -> AccountsConfig:
    """Accounts in ``data_dir`` with argon2id at its cheapest (these tests are about rules)."""
    return AccountsConfig(
        data_dir=data_dir,
        trust_client_ids=trust_client_ids,
        password_time_cost=1,
        password_memory_kib=1024,
        password_parallelism=1,
    )


@dataclass
class Api:
    daemon: Daemon
    http: str
    ws: str
    clock: FakeClock
    session: aiohttp.ClientSession

    @property
    def accounts(self) -> AccountsService:
        assert self.daemon.accounts is not None
        return self.daemon.accounts

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.http + path, json=json, data=data, headers=h) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body, r

    async def member(self, name: str, *, adult: bool = True) -> tuple[str, str]:
        """Register a member; returns (token, member id)."""
        status, body, _ = await self.call(
            "POST",
            "/api/v1/accounts",
            json={"username": name, "password": "password-" + name, "adult_confirmed": adult},
        )
        assert status == 201, body
        return body["token"], body["principal"]["id"]

    async def admin_token(self) -> str:
        await self.accounts.create_admin("boss", "boss-password")
        return (await self.accounts.login("boss", "boss-password")).token

    async def performer(self, admin: str, name: str, price: int = 200, **extra: Any) -> tuple[str, str]:
        """Create a performer through the API; returns (token, performer id)."""
        status, body, _ = await self.call(
            "POST",
            "/api/v1/performers",
            token=admin,
            json={
                "username": name,
                "password": "password-" + name,
                "display_name": name.title(),
                "price_per_minute": price,
                **extra,
            },
        )
        assert status == 201, body
        issued = await self.accounts.login(name, "password-" + name)
        return issued.token, body["id"]


async def start_api(tmp_path: Path, *, trust_client_ids: bool = False) -> tuple[Daemon, FakeClock]:
    clock = FakeClock()
    cfg = test_config(
        billing=BillingConfig(data_dir=str(tmp_path), node_id="api1"),
        accounts=accounts_config(str(tmp_path), trust_client_ids=trust_client_ids),
        payments=PaymentsConfig(provider="test"),
    )
    d = Daemon(cfg, accounts_clock=clock)
    await d.start()
    return d, clock


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    d, clock = await start_api(tmp_path)
    async with aiohttp.ClientSession() as session:
        yield Api(d, f"http://127.0.0.1:{d.port}", f"ws://127.0.0.1:{d.port}/ws", clock, session)
    await d.stop()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A Redis key prefix of the test's own for its cluster nodes; its keys are deleted afterwards."""
    async with redis_key_prefix("jcluster") as name:
        yield name


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    """Starts daemons of one cluster in this process on 127.0.0.1: ``make(node_id, prefix, base)`` with
    ``base`` the config to add the ``[cluster]`` section to (the loopback one by default), a 0.2 s
    heartbeat and a ``ttl_s`` TTL, an accounts clock if given. Each is stopped afterwards, unless
    the test stopped it itself (its SIGTERM path)."""
    started: list[Daemon] = []

    async def make(
        node_id: str,
        prefix: str,
        base: Config | None = None,
        *,
        redis_url: str = REDIS_URL,
        ttl_s: float = 2.0,
        clock: Any = None,
    ) -> Daemon:
        cfg = (base or test_config()).replace(
            cluster=ClusterConfig(
                redis_url=redis_url,
                key_prefix=prefix,
                node_id=node_id,
                secret=SECRET,
                heartbeat_interval_s=0.2,
                ttl_s=ttl_s,
            )
        )
        d = Daemon(cfg, **({"accounts_clock": clock} if clock is not None else {}))
        await d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        if not d.draining:
            await d.stop()
